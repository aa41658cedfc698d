import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.ts';
import { parseRate, TokenBucket } from '../../src/transfer/token-bucket.ts';

// The bucket's decisions on a ManualClock (#11.2): each test names one rule, and moves
// time itself, so nothing depends on how fast this machine runs.

/** Lets every pending promise callback run (the bucket's waits end in microtasks). */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** Starts `take(bytes)` and records when it passes. */
function taking(bucket: TokenBucket, bytes: number, passed: string[], name: string): Promise<void> {
  return bucket.take(bytes).then(() => void passed.push(name));
}

test('rates parse with decimal and binary units', () => {
  assert.equal(parseRate('8MB/s'), 8_000_000);
  assert.equal(parseRate('500k'), 500_000);
  assert.equal(parseRate('1MiB/s'), 1_048_576);
  assert.equal(parseRate('1200'), 1200);
  assert.throws(() => parseRate('fast'), RangeError);
  assert.throws(() => parseRate('0'), RangeError);
});

test('a full bucket lets its burst through at once; more waits exactly as long as the rate says', async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket(1000, 500, clock); // 1000 bytes/s, 500 bytes of burst
  const passed: string[] = [];
  void taking(bucket, 500, passed, 'burst');
  await settle();
  assert.deepEqual(passed, ['burst'], 'the burst passes without the clock moving');
  void taking(bucket, 100, passed, 'next');
  await settle();
  clock.advance(99);
  await settle();
  assert.deepEqual(passed, ['burst'], '100 bytes at 1000 bytes/s need 100 ms, not 99');
  clock.advance(1);
  await settle();
  assert.deepEqual(passed, ['burst', 'next']);
});

test('callers pass in the order they asked', async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket(1000, 1, clock);
  await bucket.take(1); // empty now
  const passed: string[] = [];
  void taking(bucket, 300, passed, 'first');
  void taking(bucket, 100, passed, 'second');
  await settle();
  clock.advance(100);
  await settle();
  assert.deepEqual(passed, [], 'the small request does not overtake the big one ahead of it');
  clock.advance(200);
  await settle();
  assert.deepEqual(passed, ['first']);
  clock.advance(99);
  await settle();
  assert.deepEqual(passed, ['first'], 'the second then waits its own 100 ms');
  clock.advance(1);
  await settle();
  assert.deepEqual(passed, ['first', 'second']);
});

test('an idle bucket fills up to its burst and no further', async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket(1000, 500, clock);
  await bucket.take(500);
  clock.advance(60_000); // a minute idle: 60 000 bytes' worth of time
  const passed: string[] = [];
  void taking(bucket, 500, passed, 'burst');
  void taking(bucket, 10, passed, 'beyond');
  await settle();
  assert.deepEqual(passed, ['burst'], 'only the burst passes at once');
  clock.advance(10);
  await settle();
  assert.deepEqual(passed, ['burst', 'beyond']);
});

test('a clock set back adds nothing and takes nothing away', async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket(1000, 500, clock);
  await bucket.take(500);
  clock.advance(-3_600_000); // the system clock corrected by an hour
  const passed: string[] = [];
  void taking(bucket, 100, passed, 'after');
  await settle();
  assert.deepEqual(passed, []);
  clock.advance(100);
  await settle();
  assert.deepEqual(passed, ['after'], 'it waits 100 ms, not an hour and 100 ms');
});

test('close lets every waiting caller through without the clock moving', async () => {
  const clock = new ManualClock();
  const due = clock.now() + 999_999; // a million bytes at 1000 bytes/s, less the one of burst
  const bucket = new TokenBucket(1000, 1, clock);
  const passed: string[] = [];
  void taking(bucket, 1_000_000, passed, 'a');
  void taking(bucket, 1_000_000, passed, 'b');
  await settle();
  assert.ok(clock.isWaitingFor(due), 'the first waits on the clock, the second behind it');
  bucket.close();
  await settle();
  assert.deepEqual(passed, ['a', 'b']);
  assert.ok(!clock.isWaitingFor(due), 'no wait is left behind');
});
