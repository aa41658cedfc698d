import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.ts';
import { shortId } from '../format.ts';
import type { CatalogItem } from '../types.ts';

/** Titles of contents by ID, asked of the catalog once each (GET /contents/:id). */
const titleCache = new Map<string, string>();
export function useTitles(ids: string[]): Map<string, string> {
  const [, setTick] = useState(0);
  const missing = ids.filter((id) => !titleCache.has(id));
  useEffect(() => {
    let live = true;
    for (const id of missing) {
      titleCache.set(id, shortId(id));
      api<CatalogItem>('GET', `/contents/${encodeURIComponent(id)}`, undefined, { anonymous: true }).then(
        (c) => (titleCache.set(id, c.title), live && setTick((t) => t + 1)),
        () => {},
      );
    }
    return () => {
      live = false;
    };
  }, [missing.join()]);
  return titleCache;
}
