import { formatBytes } from '../core/units.ts';
import { ORIGIN_SOURCE_ID } from './grant-token.ts';
import type { DownloadResult } from './downloader.ts';
import type { DropReason } from './source-set.ts';

// "Tell people why" for S1.5: after a download, which sources served how much and,
// when no peer did, why each holder was not used — the origin's reasons (`skipped`)
// and this receiver's own (`dropped`). `cascade get` and `cascade agent --get` print it.

const DROPPED: Record<DropReason, string> = {
  stalled: 'offered, but it stalled and was dropped',
  bad_piece: 'offered, but it sent a bad piece and was dropped',
  refused: 'offered, but it refused our requests and was dropped',
  slow: 'offered, but it was too slow and was dropped',
};

/** `edge eu/paris` for an edge the origin directed us to (S2.2: its reason starts so), else the terminal. */
function sourceName(id: string, reasons?: Record<string, string[]>): string {
  if (id === ORIGIN_SOURCE_ID) return 'the origin';
  const edge = reasons?.[id]?.[0]?.match(/^(edge [^:]+):/);
  return edge ? edge[1] : `terminal ${id}`;
}

/** Lines for people: who served how much, then (if only the origin served) why no peer did. */
export function describeSources(result: Pick<DownloadResult, 'bySource' | 'skipped' | 'dropped' | 'offered'> & Partial<Pick<DownloadResult, 'reasons'>>): string[] {
  const served = Object.entries(result.bySource)
    .filter(([, n]) => n > 0)
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0));
  const lines = [served.length ? `Served by ${served.map(([id, n]) => `${sourceName(id, result.reasons)}: ${formatBytes(n)}`).join(', ')}.` : 'Nothing was fetched: every piece was already here.'];
  // S2.2, tell people why: the edge the origin directed this receiver to, and for what reason.
  for (const [id] of served) {
    const why = result.reasons?.[id]?.[0];
    if (why?.startsWith('edge ')) lines.push(`The origin directed you to ${why}.`);
  }
  const peerServed = served.some(([id]) => id !== ORIGIN_SOURCE_ID);
  if (peerServed || served.length === 0) return lines;
  const dropped = Object.entries(result.dropped).filter(([id]) => id !== ORIGIN_SOURCE_ID);
  const idle = result.offered.filter((id) => id !== ORIGIN_SOURCE_ID && !(id in result.dropped));
  if (result.skipped.length === 0 && dropped.length === 0 && idle.length === 0) {
    lines.push('Only the origin served: no other terminal holds this content.');
    return lines;
  }
  lines.push('Only the origin served. Other holders:');
  for (const s of result.skipped) lines.push(`  ${sourceName(s.sourceId)}: not offered: ${s.why}`);
  for (const [id, why] of dropped) lines.push(`  ${sourceName(id)}: ${DROPPED[why]}`);
  for (const id of idle) lines.push(`  ${sourceName(id)}: offered, but it served nothing before the download ended`);
  return lines;
}
