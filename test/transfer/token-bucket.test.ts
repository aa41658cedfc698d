import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRate, TokenBucket } from '../../src/transfer/token-bucket.ts';

test('rates parse with decimal and binary units', () => {
  assert.equal(parseRate('8MB/s'), 8_000_000);
  assert.equal(parseRate('500k'), 500_000);
  assert.equal(parseRate('1MiB/s'), 1_048_576);
  assert.equal(parseRate('1200'), 1200);
  assert.throws(() => parseRate('fast'), RangeError);
  assert.throws(() => parseRate('0'), RangeError);
});

test('a bucket holds traffic to its rate', async () => {
  const bucket = new TokenBucket(1_000_000, 100_000);
  const started = performance.now();
  for (let i = 0; i < 4; i++) await bucket.take(100_000); // 100 kB burst + 300 kB at 1 MB/s
  const ms = performance.now() - started;
  assert.ok(ms >= 280, `took ${ms} ms, expected about 300`);
  assert.ok(ms < 1500, `took ${ms} ms`);
});
