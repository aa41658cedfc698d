import type { CatalogItem } from '../types.ts';

// Placeholder until the browser download library lands (web/src/lib/download.ts).
export function DownloadPanel(_: { content: CatalogItem; onDone: () => void }) {
  return null;
}
