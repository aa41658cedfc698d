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

/** A span of time in words: "12 s", "3 min", "2 h", "4 days" (seconds under 2 min, minutes under 2 h, hours under 2 days). */
export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} days`;
}
