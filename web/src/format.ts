import { formatBytes } from '../../src/core/units.ts';

// How the app writes money, sizes and times: the same words and units as the CLI.

/** Amounts as the CLI prints them: integer minor units (docs/ledger.md). */
export function money(minor: number): string {
  return String(minor);
}

/** Decimal sizes, the CLI's own formatter (core/units.ts has no imports, so the app shares it). */
export const bytes = formatBytes;

/** A time in the browser's own time zone. */
export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function shortId(id: string): string {
  return id.slice(0, 12);
}
