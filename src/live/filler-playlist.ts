// S3.14: a channel's filler as a live HLS playlist that loops for ever, as a pure function of
// the time. Every viewer (and every origin) computes the same position from the filler's epoch
// — like a TV channel, not a video each viewer starts — so nothing is kept per viewer. Each
// pass after the first is marked with a discontinuity (the clip's timestamps start again).

export interface LoopSegment {
  uri: string;
  durationMs: number;
}

export interface LoopPlaylistInput {
  init: string;
  segments: LoopSegment[];
  /** When the loop started (the filler was set). */
  epochMs: number;
  now: number;
  /** Segments listed (the newest that have begun). */
  count: number;
}

/** The global index (pass × segments + index in the pass) of the segment playing at `now`. */
export function loopPosition(segments: LoopSegment[], epochMs: number, now: number): number {
  const total = segments.reduce((s, x) => s + x.durationMs, 0);
  if (total <= 0) throw new Error('a loop needs a positive duration');
  const elapsed = Math.max(0, now - epochMs);
  const pass = Math.floor(elapsed / total);
  let at = elapsed - pass * total;
  let i = 0;
  while (i < segments.length - 1 && at >= segments[i].durationMs) at -= segments[i++].durationMs;
  return pass * segments.length + i;
}

export function renderLoopPlaylist(x: LoopPlaylistInput): string {
  const n = x.segments.length;
  const current = loopPosition(x.segments, x.epochMs, x.now);
  const first = Math.max(0, current - x.count + 1);
  const target = Math.max(1, Math.ceil(Math.max(...x.segments.map((s) => s.durationMs)) / 1000));
  const lines = [
    '#EXTM3U',
    '#EXT-X-VERSION:7',
    `#EXT-X-TARGETDURATION:${target}`,
    `#EXT-X-MEDIA-SEQUENCE:${first}`,
    // The passes begun before the first listed segment: each began with a discontinuity.
    `#EXT-X-DISCONTINUITY-SEQUENCE:${Math.floor(first / n)}`,
    `#EXT-X-MAP:URI="${x.init}"`,
  ];
  for (let k = first; k <= current; k++) {
    const s = x.segments[k % n];
    if (k % n === 0 && k > first) lines.push('#EXT-X-DISCONTINUITY');
    lines.push(`#EXTINF:${(s.durationMs / 1000).toFixed(3)},`, s.uri);
  }
  return lines.join('\n') + '\n';
}
