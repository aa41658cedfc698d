// Piece sets travel as compact ranges: "0-9,12,20-31". Grants and receipts use them.

/** A source still fetching a content sends the pieces it holds in this header with each piece (#19, piece-server.ts). */
export const HAVE_HEADER = 'cascade-have';
/** Longer lists are not sent in a header (receivers ask `/have` instead): 8 KiB keeps within every HTTP stack's header limit. */
export const MAX_HAVE_HEADER = 8192;
/** How many pieces an answer to a run request (`?count=`, #19) carries: the next ones from the first that the source holds. */
export const RUN_HEADER = 'cascade-run';
/** Pieces one request may ask for (`?count=`, #19): a run costs one request, one upload slot and one grant check. */
export const MAX_RUN_PIECES = 16;

export function encodeRanges(indices: Iterable<number>): string {
  const sorted = [...new Set(indices)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** Parses ranges into [first, last] spans; null for anything malformed, overlapping, descending or at/beyond `limit`. */
export function parseRangeSpans(text: string, limit: number): Array<[number, number]> | null {
  if (typeof text !== 'string' || text.length === 0 || text.length > 100_000) return null;
  const spans: Array<[number, number]> = [];
  let last = -1;
  for (const part of text.split(',')) {
    const m = /^(\d{1,9})(?:-(\d{1,9}))?$/.exec(part);
    if (!m) return null;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (a <= last || b < a || b >= limit) return null;
    spans.push([a, b]);
    last = b;
  }
  return spans;
}

/** Parses ranges into the piece indices they name; null as for parseRangeSpans. */
export function decodeRanges(text: string, limit: number): number[] | null {
  const spans = parseRangeSpans(text, limit);
  if (!spans) return null;
  const out: number[] = [];
  for (const [a, b] of spans) for (let i = a; i <= b; i++) out.push(i);
  return out;
}

/** A membership test over ranges without expanding them (grants can name millions of pieces). */
export function rangeSet(text: string): (index: number) => boolean {
  if (text === '') return () => false;
  const spans = text.split(',').map((p) => {
    const [a, b] = p.split('-').map(Number);
    return [a, b ?? a] as const;
  });
  return (i) => {
    let lo = 0;
    let hi = spans.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (i < spans[mid][0]) hi = mid - 1;
      else if (i > spans[mid][1]) lo = mid + 1;
      else return true;
    }
    return false;
  };
}
