import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ChunkReader, type RtmpMessage } from '../../src/live/rtmp/chunk-reader.ts';
import { basicHeader, ChunkWriter } from '../../src/live/rtmp/chunk-writer.ts';
import { RtmpError, type RtmpCloseCode } from '../../src/live/rtmp/errors.ts';
import { ServerHandshake } from '../../src/live/rtmp/handshake.ts';
import { FLV_HEADER, flvTag } from '../../src/live/rtmp/flv.ts';

// S3.9: the chunk stream (fmt 0–3, extended timestamps, chunk sizes, abort) and its bounds;
// the handshake; FLV tags.

const limits = { maxChunkSize: 65_536, maxPendingBytes: 1 << 20, maxChunkStreams: 8, maxInputBytes: 1 << 20 };
const reader = (over: Partial<typeof limits> = {}, maxLength = 1 << 20) => new ChunkReader({ ...limits, ...over }, () => maxLength);

function drain(r: ChunkReader): RtmpMessage[] {
  const out: RtmpMessage[] = [];
  for (let m = r.next(); m; m = r.next()) out.push(m);
  return out;
}

const code = (f: () => unknown): RtmpCloseCode => {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof RtmpError, String(e));
    return e.code;
  }
  assert.fail('expected a refusal');
};

const u24 = (n: number) => [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];

describe('chunk stream (S3.9)', () => {
  test('fmt 0, 1, 2, 3 headers as the specification’s example: timestamps add deltas, fmt 3 repeats the last delta', () => {
    const r = reader();
    const body = (n: number, fill: number) => Buffer.alloc(n, fill);
    r.push(
      Buffer.from([
        // fmt 0, csid 3: ts 1000, length 32, type 8, stream 1
        0x03, ...u24(1000), ...u24(32), 8, 1, 0, 0, 0, ...body(32, 1),
        // fmt 2: delta 33 → 1033
        0x83, ...u24(33), ...body(32, 2),
        // fmt 3, new message: delta 33 again → 1066
        0xc3, ...body(32, 3),
        // fmt 1: delta 10, length 4, type 9 → 1076
        0x43, ...u24(10), ...u24(4), 9, ...body(4, 4),
      ]),
    );
    const got = drain(r);
    assert.deepEqual(
      got.map((m) => [m.timestamp, m.type, m.streamId, m.payload.length, m.payload[0]]),
      [
        [1000, 8, 1, 32, 1],
        [1033, 8, 1, 32, 2],
        [1066, 8, 1, 32, 3],
        [1076, 9, 1, 4, 4],
      ],
    );
  });

  test('a message longer than the chunk size continues in fmt 3 chunks, interleaved with another chunk stream', () => {
    const r = reader();
    const big = Buffer.alloc(300, 7);
    r.push(Buffer.from([0x04, ...u24(5), ...u24(300), 9, 1, 0, 0, 0]));
    r.push(big.subarray(0, 128));
    assert.equal(r.next(), null);
    // an audio message on csid 5 between the video's chunks
    r.push(Buffer.from([0x05, ...u24(5), ...u24(2), 8, 1, 0, 0, 0, 0xaf, 0x01]));
    r.push(Buffer.concat([Buffer.from([0xc4]), big.subarray(128, 256), Buffer.from([0xc4]), big.subarray(256)]));
    const got = drain(r);
    assert.deepEqual(got.map((m) => [m.csid, m.type, m.payload.length]), [[5, 8, 2], [4, 9, 300]]);
    assert.deepEqual(got[1].payload, big);
  });

  test('bytes arriving one at a time give the same messages', () => {
    const w = new ChunkWriter();
    const msgs: RtmpMessage[] = [
      { csid: 3, type: 20, streamId: 0, timestamp: 0, payload: Buffer.alloc(500, 1) },
      { csid: 300, type: 9, streamId: 1, timestamp: 0x01020304, payload: Buffer.alloc(129, 2) },
      { csid: 70, type: 8, streamId: 1, timestamp: 5, payload: Buffer.alloc(0) },
    ];
    const bytes = Buffer.concat(msgs.map((m) => w.write(m)));
    const r = reader();
    const got: RtmpMessage[] = [];
    for (const b of bytes) {
      r.push(Buffer.from([b]));
      got.push(...drain(r));
    }
    assert.deepEqual(got, msgs);
  });

  test('extended timestamps: in fmt 0 and repeated in fmt 3 continuation chunks; as an extended delta', () => {
    const r = reader();
    const ts = 0x12345678;
    const payload = Buffer.alloc(200, 9);
    r.push(Buffer.concat([
      Buffer.from([0x06, 0xff, 0xff, 0xff, ...u24(200), 9, 1, 0, 0, 0, 0x12, 0x34, 0x56, 0x78]),
      payload.subarray(0, 128),
      Buffer.from([0xc6, 0x12, 0x34, 0x56, 0x78]),
      payload.subarray(128),
      // fmt 2 with an extended delta of 0x01000000
      Buffer.from([0x86, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00]),
      payload.subarray(0, 128),
      Buffer.from([0xc6, 0x01, 0x00, 0x00, 0x00]),
      payload.subarray(128),
    ]));
    const got = drain(r);
    assert.deepEqual(got.map((m) => m.timestamp), [ts, (ts + 0x01000000) >>> 0]);
    assert.deepEqual(got[0].payload, payload);
    assert.deepEqual(got[1].payload, payload);
  });

  test('property: whatever the chunk size and IDs, written messages read back identical', () => {
    const msg = fc.record({
      csid: fc.oneof(fc.integer({ min: 3, max: 6 }), fc.constantFrom(64, 319, 320, 65599)),
      type: fc.constantFrom(8, 9, 18, 20),
      streamId: fc.integer({ min: 0, max: 3 }),
      timestamp: fc.oneof(fc.integer({ min: 0, max: 0xfffffe }), fc.integer({ min: 0xffffff, max: 0xffffffff })),
      payload: fc.uint8Array({ maxLength: 700 }).map((a) => Buffer.from(a)),
    }).map((m): RtmpMessage => ({ ...m }));
    fc.assert(
      fc.property(fc.array(msg, { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 97 }), (msgs, size, slice) => {
        const w = new ChunkWriter();
        w.setChunkSize(size);
        const r = reader();
        r.setChunkSize(size);
        const bytes = Buffer.concat(msgs.map((m) => w.write(m)));
        const got: RtmpMessage[] = [];
        for (let i = 0; i < bytes.length; i += slice) {
          r.push(bytes.subarray(i, i + slice));
          got.push(...drain(r));
        }
        assert.deepEqual(got, msgs);
        assert.equal(r.pendingBytes, 0);
      }),
      { numRuns: 300 },
    );
  });

  test('Abort drops the partial message and its pending bytes', () => {
    const r = reader();
    r.push(Buffer.concat([Buffer.from([0x04, ...u24(0), ...u24(1000), 9, 1, 0, 0, 0]), Buffer.alloc(128)]));
    assert.equal(r.next(), null);
    assert.equal(r.pendingBytes, 1000);
    r.abort(4);
    assert.equal(r.pendingBytes, 0);
    r.push(Buffer.from([0x04, ...u24(1), ...u24(1), 9, 1, 0, 0, 0, 0x17]));
    assert.deepEqual(drain(r).map((m) => m.payload.length), [1]);
  });

  test('bounds: chunk size, message length before its body, pending bytes, chunk stream IDs, unparsed input', () => {
    assert.equal(code(() => reader().setChunkSize(0)), 'chunk_size_invalid');
    assert.equal(code(() => reader().setChunkSize(65_537)), 'chunk_size_over_limit');
    // The header alone is refused: the body is never waited for.
    assert.equal(code(() => { const r = reader({}, 1000); r.push(Buffer.from([0x03, 0, 0, 0, ...u24(1001), 20, 0, 0, 0, 0])); r.next(); }), 'message_too_long');
    // Two messages of 600 in progress on two chunk streams exceed 1000 pending bytes.
    assert.equal(code(() => {
      const r = reader({ maxPendingBytes: 1000 });
      r.push(Buffer.concat([Buffer.from([0x04, 0, 0, 0, ...u24(600), 9, 1, 0, 0, 0]), Buffer.alloc(128), Buffer.from([0x05, 0, 0, 0, ...u24(600), 9, 1, 0, 0, 0])]));
      drain(r);
    }), 'pending_bytes_over_limit');
    assert.equal(code(() => {
      const r = reader({ maxChunkStreams: 2 });
      r.push(Buffer.from([0x03, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 0, 0x05, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 0]));
      drain(r);
    }), 'too_many_chunk_streams');
    assert.equal(code(() => { const r = reader(); r.push(Buffer.from([0x43, 0, 0, 0, 0, 0, 1, 20])); r.next(); }), 'chunk_stream_unknown');
    assert.equal(code(() => { const r = reader({ maxInputBytes: 100 }); r.push(Buffer.alloc(60, 0x03)); r.push(Buffer.alloc(60, 0x03)); }), 'input_over_limit');
  });

  test('basic header: 1, 2 and 3 bytes', () => {
    assert.deepEqual([...basicHeader(0, 2)], [0x02]);
    assert.deepEqual([...basicHeader(3, 63)], [0xff]);
    assert.deepEqual([...basicHeader(1, 64)], [0x40, 0x00]);
    assert.deepEqual([...basicHeader(0, 319)], [0x00, 0xff]);
    assert.deepEqual([...basicHeader(0, 320)], [0x01, 0x00, 0x01]);
    assert.deepEqual([...basicHeader(2, 65599)], [0x81, 0xff, 0xff]);
  });
});

describe('handshake (S3.9)', () => {
  const c1 = Buffer.alloc(1536, 0xab);
  const random = (n: number) => Buffer.alloc(n, 0x5a);

  test('C0+C1 → S0+S1+S2 (S2 echoes C1, S1 has a zero version field); C2 completes; later bytes are handed back', () => {
    const hs = new ServerHandshake(random);
    const a = hs.push(Buffer.concat([Buffer.from([3]), c1.subarray(0, 100)]));
    assert.deepEqual(a, { done: false });
    const b = hs.push(c1.subarray(100));
    assert.equal(b.done, false);
    assert.equal(b.reply!.length, 1 + 1536 * 2);
    assert.equal(b.reply![0], 3);
    assert.deepEqual([...b.reply!.subarray(1, 9)], [0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(b.reply!.subarray(9, 1537), random(1528));
    assert.deepEqual(b.reply!.subarray(1537), c1);
    const c = hs.push(Buffer.concat([b.reply!.subarray(1, 1537), Buffer.from([0x02, 0x00])]));
    assert.equal(c.done, true);
    assert.deepEqual(c.done && [...c.rest], [0x02, 0x00]);
  });

  test('a first byte other than 3 is refused at once (an HTTP request, a TLS hello, encrypted RTMP)', () => {
    for (const first of ['G', '\x16', '\x06']) {
      assert.equal(code(() => new ServerHandshake(random).push(Buffer.from(first, 'latin1'))), 'handshake_bad_version');
    }
  });
});

describe('FLV tags (S3.9)', () => {
  test('header, tag with 24+8-bit timestamp and PreviousTagSize', () => {
    assert.equal(FLV_HEADER.toString('latin1', 0, 3), 'FLV');
    const t = flvTag(9, 0x12345678, Buffer.from([1, 2, 3]));
    assert.deepEqual([...t], [9, 0, 0, 3, 0x34, 0x56, 0x78, 0x12, 0, 0, 0, 1, 2, 3, 0, 0, 0, 14]);
  });
});
