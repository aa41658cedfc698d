import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeRanges, encodeRanges, rangeSet } from '../../src/transfer/piece-ranges.ts';

test('ranges round-trip and compress runs', () => {
  assert.equal(encodeRanges([0, 1, 2, 3, 7, 9, 10]), '0-3,7,9-10');
  assert.deepEqual(decodeRanges('0-3,7,9-10', 11), [0, 1, 2, 3, 7, 9, 10]);
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 500 })), (xs) => {
      const text = encodeRanges(xs);
      if (xs.length === 0) return text === '';
      const back = decodeRanges(text, 501)!;
      const has = rangeSet(text);
      return JSON.stringify(back) === JSON.stringify([...xs].sort((a, b) => a - b)) && [...Array(501).keys()].every((i) => has(i) === xs.includes(i));
    }),
  );
});

test('malformed, overlapping, descending or out-of-range ranges are refused', () => {
  for (const bad of ['', 'a', '1-', '-1', '3-1', '1,1', '5,2', '0-10', '1-2,2-3', '1.5', ' 1']) {
    assert.equal(decodeRanges(bad, 10), null, bad);
  }
});
