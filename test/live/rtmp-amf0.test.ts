import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Amf0Date, Amf0EcmaArray, decodeAmf0, decodeFirstAmf0, encodeAmf0, type Amf0Value } from '../../src/live/rtmp/amf0.ts';
import { RtmpError } from '../../src/live/rtmp/errors.ts';

// S3.9: AMF0 as RTMP commands and onMetaData use it; nothing decoded is trusted.

const refused = (f: () => unknown, match: RegExp) => {
  assert.throws(f, (e: unknown) => e instanceof RtmpError && e.code === 'amf_invalid' && match.test(e.message));
};

/** Plain values compare with null-prototype objects decoded. */
const plain = (v: Amf0Value): unknown => JSON.parse(JSON.stringify(v, (_k, x) => (x instanceof Amf0EcmaArray ? { ecma: x.props } : x === undefined ? '<undefined>' : x)));

describe('AMF0 (S3.9)', () => {
  test('every type encodes and decodes to itself', () => {
    const values: Amf0Value[] = [
      0,
      -1.5,
      1e300,
      true,
      false,
      '',
      'connect',
      'é✓',
      'x'.repeat(70_000), // long string (marker 12)
      null,
      undefined,
      { app: 'live', nested: { a: [1, 'two', null] } },
      new Amf0EcmaArray({ duration: 0, width: 320, encoder: 'Lavf' }),
      [1, [2, [3]]],
      new Amf0Date(1_700_000_000_000, 0),
    ];
    const buf = encodeAmf0(...values);
    const back = decodeAmf0(buf, 8);
    assert.equal(back.length, values.length);
    assert.deepEqual(back.map(plain), values.map(plain));
    assert.ok(back[12] instanceof Amf0EcmaArray);
    assert.ok(back[14] instanceof Amf0Date && back[14].ms === 1_700_000_000_000);
    assert.equal(buf[buf.indexOf(Buffer.from('xxxx')) - 5], 0x0c, 'a string over 65535 bytes is a long string');
  });

  test('bytes written by ffmpeg for connect decode (object with object end)', () => {
    // "connect", 1, {app: "live", type: "nonprivate"} as ffmpeg writes it.
    const hex =
      '0200' + '07' + Buffer.from('connect').toString('hex') + '00' + '3ff0000000000000' + '03' +
      '0003' + Buffer.from('app').toString('hex') + '02' + '0004' + Buffer.from('live').toString('hex') +
      '0004' + Buffer.from('type').toString('hex') + '02' + '000a' + Buffer.from('nonprivate').toString('hex') +
      '000009';
    const [name, tid, obj] = decodeAmf0(Buffer.from(hex, 'hex'), 8);
    assert.equal(name, 'connect');
    assert.equal(tid, 1);
    assert.deepEqual(plain(obj), { app: 'live', type: 'nonprivate' });
  });

  test('a string, long string or array claiming more bytes than are there is refused, allocating nothing', () => {
    refused(() => decodeAmf0(Buffer.from([0x02, 0xff, 0xff, 0x61]), 8), /claims 65535 bytes, 1 left/);
    refused(() => decodeAmf0(Buffer.from([0x0c, 0xff, 0xff, 0xff, 0xff, 0x61]), 8), /claims 4294967295 bytes/);
    refused(() => decodeAmf0(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x05]), 8), /strict array claims 4294967295/);
    refused(() => decodeAmf0(Buffer.from([0x00, 0x01]), 8), /number claims 8 bytes/);
    refused(() => decodeAmf0(Buffer.from([0x03, 0x00, 0x01, 0x61]), 8), /left/); // object cut short
  });

  test('nesting deeper than the limit is refused; at the limit it decodes', () => {
    let v: Amf0Value = 1;
    for (let i = 0; i < 8; i++) v = { a: v };
    assert.equal(decodeAmf0(encodeAmf0(v), 8).length, 1);
    refused(() => decodeAmf0(encodeAmf0({ a: v }), 8), /nesting deeper than 8/);
    let arr: Amf0Value = [];
    for (let i = 0; i < 9; i++) arr = [arr];
    refused(() => decodeAmf0(encodeAmf0(arr), 8), /nesting deeper than 8/);
    // 100 000 nested objects: refused at depth 9, no stack overflow.
    refused(() => decodeAmf0(Buffer.alloc(100_000 * 4, Buffer.from([0x03, 0x00, 0x01, 0x61])), 8), /nesting/);
  });

  test('markers with no use in ingest (reference, AMF3 switch) and a stray object end are refused', () => {
    refused(() => decodeAmf0(Buffer.from([0x07, 0x00, 0x00]), 8), /marker 0x7/);
    refused(() => decodeAmf0(Buffer.from([0x11]), 8), /marker 0x11/);
    refused(() => decodeAmf0(Buffer.from([0x09]), 8), /object end marker outside/);
  });

  test('a key "__proto__" is an ordinary key', () => {
    const buf = Buffer.concat([Buffer.from([0x03, 0x00, 0x09]), Buffer.from('__proto__'), encodeAmf0({ polluted: true }), Buffer.from([0, 0, 9])]);
    const [obj] = decodeAmf0(buf, 8) as [Record<string, unknown>];
    assert.equal(Object.getPrototypeOf(obj), null);
    assert.deepEqual(plain(obj['__proto__'] as Amf0Value), { polluted: true });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  test('decodeFirstAmf0 gives the length of the first value (to strip @setDataFrame)', () => {
    const body = encodeAmf0('@setDataFrame', 'onMetaData', new Amf0EcmaArray({ width: 320 }));
    const first = decodeFirstAmf0(body, 8);
    assert.equal(first.value, '@setDataFrame');
    assert.equal(first.length, 3 + '@setDataFrame'.length);
    assert.equal(decodeFirstAmf0(body.subarray(first.length), 8).value, 'onMetaData');
  });

  test('property: random bytes never throw anything but a refusal, nor loop', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          decodeAmf0(Buffer.from(bytes), 4);
        } catch (e) {
          assert.ok(e instanceof RtmpError, String(e));
        }
      }),
      { numRuns: 2000 },
    );
  });
});
