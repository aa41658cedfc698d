import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loopPosition, renderLoopPlaylist } from '../../src/live/filler-playlist.ts';
import { parseVodPlaylist } from '../../src/live/fillers.ts';

// S3.14: the filler loops by the clock, the same for every viewer and origin.

const segs = [
  { uri: 'a', durationMs: 2000 },
  { uri: 'b', durationMs: 2000 },
  { uri: 'c', durationMs: 1000 },
];
const E = Date.UTC(2026, 5, 15, 12, 0);

test('S3.14: the position is a pure function of the time since the filler was set', () => {
  assert.equal(loopPosition(segs, E, E), 0);
  assert.equal(loopPosition(segs, E, E + 1999), 0);
  assert.equal(loopPosition(segs, E, E + 2000), 1);
  assert.equal(loopPosition(segs, E, E + 4000), 2);
  assert.equal(loopPosition(segs, E, E + 4999), 2);
  assert.equal(loopPosition(segs, E, E + 5000), 3, 'the second pass');
  assert.equal(loopPosition(segs, E, E + 5000 * 1000 + 2500), 3001);
  assert.equal(loopPosition(segs, E, E - 10_000), 0, 'a clock behind the epoch starts at the beginning');
});

test('S3.14: the playlist slides by media sequence and marks every new pass with a discontinuity', () => {
  const at = (ms: number) => renderLoopPlaylist({ init: 'init.mp4', segments: segs, epochMs: E, now: E + ms, count: 4 });
  const first = at(0);
  assert.match(first, /#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.000,\na\n$/);
  const later = at(6000); // positions 0..3: a b c | a
  assert.match(later, /#EXT-X-MEDIA-SEQUENCE:0\n/);
  assert.equal(later.split('\n').filter((l) => !l.startsWith('#') && l).join(''), 'abca');
  assert.equal((later.match(/#EXT-X-DISCONTINUITY\n/g) ?? []).length, 1);
  assert.ok(later.indexOf('#EXT-X-DISCONTINUITY\n') < later.lastIndexOf('\na\n'), 'before the second pass');
  const slid = at(9000); // positions 1..4? 9000 = 5000 + 4000 → 3 + 2 = 5: 2..5 = c a b c
  assert.match(slid, /#EXT-X-MEDIA-SEQUENCE:2\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n/);
  const top = at(10_500); // position 6 (a, pass 2): 3..6 = a b c a; the first listed begins pass 1
  assert.match(top, /#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n/);
  assert.equal((top.match(/#EXT-X-DISCONTINUITY\n/g) ?? []).length, 1, 'the tag of the top segment is counted in the sequence, not repeated');
  assert.match(top, /#EXT-X-TARGETDURATION:2\n/);
});

test('ffmpeg’s VOD playlist is read segment by segment', () => {
  const text = '#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.000000,\nseg_0000.m4s\n#EXTINF:1.480000,\nseg_0001.m4s\n#EXT-X-ENDLIST\n';
  assert.deepEqual(parseVodPlaylist(text), [
    { name: 'seg_0000.m4s', durationMs: 2000 },
    { name: 'seg_0001.m4s', durationMs: 1480 },
  ]);
});
