import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { ingestDecision } from '../../src/live/ingest-rules.ts';
import { encodingBitrates, ffmpegArgs, parsePlaylist } from '../../src/live/packager.ts';
import { entryHash, renderPlaylist, signEntry, verifySegmentLog, type SegmentEntry } from '../../src/live/segment-log.ts';

// The streaming half's pure rules (#15): who may publish when (S3.9), the packager's encoding
// within the channel's bitrate and its playlist reading, the signed segment log's chain, and the
// viewers' playlist. Time is passed in.

const M = 60_000;
const START = Date.UTC(2026, 11, 24, 18, 0);
const END = START + 30 * M;

describe('S3.9 ingest decision', () => {
  const confirmed = { status: 'confirmed' as const, startAt: START, endAt: END };

  test('the connectable window is [start − 5 min, end + 3 min): its first instant is in, its end is out', () => {
    assert.equal(ingestDecision('live', confirmed, START - 5 * M).ok, true);
    assert.equal(ingestDecision('live', confirmed, END + 3 * M - 1).ok, true);
    const early = ingestDecision('live', confirmed, START - 5 * M - 1);
    assert.equal(early.ok === false && early.code, 'too_early');
    assert.match(early.ok === false ? early.tell : '', /Too early: you can connect from 2026-12-24T17:55:00\.000Z/);
    const late = ingestDecision('live', confirmed, END + 3 * M);
    assert.equal(late.ok === false && late.code, 'too_late');
    const ok = ingestDecision('live', confirmed, START);
    assert.deepEqual(ok, { ok: true, windowEnd: END + 3 * M });
  });

  test('a live booking may publish again (a reconnect); others are refused with their own code whatever the time', () => {
    assert.equal(ingestDecision('live', { ...confirmed, status: 'live' }, START).ok, true);
    const code = (d: ReturnType<typeof ingestDecision>) => (d.ok ? 'ok' : d.code);
    assert.equal(code(ingestDecision('live', undefined, START)), 'unknown_key');
    assert.equal(code(ingestDecision('other', confirmed, START)), 'wrong_app');
    assert.equal(code(ingestDecision('live', { ...confirmed, status: 'awaiting_reconfirmation' }, START)), 'not_reconfirmed');
    assert.equal(code(ingestDecision('live', { ...confirmed, status: 'cancelled' }, START)), 'cancelled');
    assert.equal(code(ingestDecision('live', { ...confirmed, status: 'done' }, START)), 'ended');
  });
});

describe('#15.2 packaging', () => {
  test('audio and video fit within the channel bitrate, video never below a floor', () => {
    for (const kbps of [100, 300, 800, 2500, 8000]) {
      const { videoKbps, audioKbps } = encodingBitrates(kbps);
      assert.ok(videoKbps + audioKbps <= Math.max(kbps, 50 + audioKbps), `${kbps}: ${videoKbps}+${audioKbps}`);
      assert.ok(videoKbps >= 50);
    }
    const args = ffmpegArgs({ dir: '/d', prefix: 't2_', bitrateKbps: 2500, segmentSeconds: 2 });
    assert.equal(args[args.indexOf('-maxrate') + 1], '2372k');
    assert.equal(args[args.indexOf('-hls_time') + 1], '2');
    assert.equal(args[args.indexOf('-force_key_frames') + 1], 'expr:gte(t,n_forced*2)');
    assert.equal(args[args.indexOf('-hls_fmp4_init_filename') + 1], 't2_init.mp4');
    assert.equal(args.at(-1), '/d/t2_index.m3u8');
  });

  test("ffmpeg's playlist is read as (name, duration) in order", () => {
    const text = '#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-MAP:URI="t1_init.mp4"\n#EXTINF:1.000000,\nt1_seg_000000.m4s\n#EXTINF:0.966667,\n/abs/t1_seg_000001.m4s\n#EXT-X-ENDLIST\n';
    assert.deepEqual(parsePlaylist(text), [
      { name: 't1_seg_000000.m4s', durationMs: 1000 },
      { name: 't1_seg_000001.m4s', durationMs: 967 },
    ]);
  });
});

describe('#15.2 the signed segment log', () => {
  const keys = generateKeyPair();
  function log(names: [string, number][]): SegmentEntry[] {
    const out: SegmentEntry[] = [];
    let init = '';
    for (const [name, durationMs] of names) {
      const last = out.at(-1);
      if (durationMs === 0) init = name;
      out.push({
        type: 'cascade.live.segment',
        v: 1,
        program: 'bkg_x',
        seq: out.length,
        name,
        init,
        media: last ? (last.durationMs > 0 ? last.media + 1 : last.media) : 1,
        sha256: 'a'.repeat(64),
        bytes: 10,
        durationMs,
        at: new Date(START).toISOString(),
        prev: last ? entryHash(last) : '',
      });
    }
    return out;
  }
  const entries = log([['t1_init.mp4', 0], ['t1_seg_000000.m4s', 1000], ['t1_seg_000001.m4s', 400], ['t2_init.mp4', 0], ['t2_seg_000000.m4s', 1000]]);

  test('a log verifies whole and from any point given the entry before; edits, drops, reorders and another key do not', () => {
    const signed = entries.map((e) => signEntry(e, keys.privateKey));
    assert.equal(verifySegmentLog(signed, keys.publicKeyB64), null);
    assert.equal(verifySegmentLog(signed.slice(3), keys.publicKeyB64, entries[2]), null);
    assert.match(verifySegmentLog(signed.slice(3), keys.publicKeyB64)!, /expected seq 0/);
    assert.match(verifySegmentLog([signed[0], signed[2]], keys.publicKeyB64)!, /expected seq 1/);
    assert.match(verifySegmentLog([signed[1], signed[0]], keys.publicKeyB64)!, /expected seq 0/);
    const forged = signEntry({ ...entries[1], prev: '0'.repeat(64) }, keys.privateKey);
    assert.match(verifySegmentLog([signed[0], forged], keys.publicKeyB64)!, /prev is not/);
    assert.match(verifySegmentLog(signed, generateKeyPair().publicKeyB64)!, /signature/);
  });

  test('media sequence numbers count media segments only; a take change is a discontinuity with its own map; the end is marked', () => {
    const media = entries.filter((e) => e.durationMs > 0);
    assert.deepEqual(media.map((m) => m.media), [1, 2, 3]);
    const text = renderPlaylist({ media, ended: true, targetSeconds: 1, uri: (n) => `segments/${n}?s=S` });
    assert.equal(
      text,
      [
        '#EXTM3U', '#EXT-X-VERSION:7', '#EXT-X-TARGETDURATION:1', '#EXT-X-MEDIA-SEQUENCE:1', '#EXT-X-INDEPENDENT-SEGMENTS',
        '#EXT-X-MAP:URI="segments/t1_init.mp4?s=S"', '#EXTINF:1.000,', 'segments/t1_seg_000000.m4s?s=S', '#EXTINF:0.400,', 'segments/t1_seg_000001.m4s?s=S',
        '#EXT-X-DISCONTINUITY', '#EXT-X-MAP:URI="segments/t2_init.mp4?s=S"', '#EXTINF:1.000,', 'segments/t2_seg_000000.m4s?s=S',
        '#EXT-X-ENDLIST', '',
      ].join('\n'),
    );
    const live = renderPlaylist({ media: media.slice(-1), ended: false, targetSeconds: 1, uri: (n) => n });
    assert.match(live, /#EXT-X-MEDIA-SEQUENCE:3\n/);
    assert.doesNotMatch(live, /ENDLIST/);
  });
});
