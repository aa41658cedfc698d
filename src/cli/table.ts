// Text tables for the CLI's listings (wallet records, receipts, payouts, schedules).

/** Rows as aligned columns under `head`; `right` names the columns aligned right (numbers). */
export function table(head: string[], rows: string[][], right: Iterable<number> = []): string[] {
  const rightCols = new Set(right);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (rightCols.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)];
}

/** "2026-11-30 08:15:21Z": an ISO time to the second. */
export const timeToSecond = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
