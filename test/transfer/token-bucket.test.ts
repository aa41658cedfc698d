import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.ts';
import { parseRate, STARVED_MS, TokenBucket, TRICKLE_BYTES, type Turn } from '../../src/transfer/token-bucket.ts';

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

test('a caller taking more than the burst after an idle time waits for all but the burst (time nobody waited adds no more)', async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket(1000, 500, clock);
  await bucket.take(500);
  clock.advance(60_000);
  const passed: string[] = [];
  void taking(bucket, 2000, passed, 'big');
  await settle();
  clock.advance(1499);
  await settle();
  assert.deepEqual(passed, [], '2000 bytes with 500 in the bucket need 1500 ms more');
  clock.advance(1);
  await settle();
  assert.deepEqual(passed, ['big']);
});

// #19: a source's capped link finishes its requests one after another (token-bucket.ts "Who passes next").
test('turns: the oldest turn of the lowest rank passes first, whatever the order of asking', async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket(1000, 1, clock);
  await bucket.take(1); // empty now
  const older = bucket.turn();
  const younger = bucket.turn();
  const secondOfItsReceiver = bucket.turn(1);
  const passed: string[] = [];
  void bucket.take(100, secondOfItsReceiver).then(() => passed.push('rank 1'));
  void bucket.take(100, younger).then(() => passed.push('younger'));
  void bucket.take(100, older).then(() => passed.push('older'));
  await settle();
  for (let k = 0; k < 3; k++) {
    clock.advance(100);
    await settle();
  }
  assert.deepEqual(passed, ['older', 'younger', 'rank 1']);
});

test('turns: a turn that keeps taking keeps the link; one that came back while the bucket refilled is not passed over', async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket(1000, 1, clock);
  await bucket.take(1);
  const a = bucket.turn();
  const b = bucket.turn();
  const passed: string[] = [];
  // a takes again as soon as it passed (a request sending its next chunk); b asks once.
  let aLeft = 5;
  const aLoop = async () => {
    while (aLeft-- > 0) {
      await bucket.take(100, a);
      passed.push('a');
    }
  };
  void aLoop();
  void bucket.take(100, b).then(() => passed.push('b'));
  for (let k = 0; k < 6; k++) {
    clock.advance(100);
    await settle();
  }
  assert.deepEqual(passed, ['a', 'a', 'a', 'a', 'a', 'b']);
});

test(`turns: one left waiting ${STARVED_MS} ms since it last passed goes before the oldest`, async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket(1000, 1, clock);
  await bucket.take(1);
  const a = bucket.turn();
  const b = bucket.turn();
  const passed: string[] = [];
  let stop = false;
  const aLoop = async () => {
    while (!stop) {
      await bucket.take(250, a);
      passed.push('a');
    }
  };
  void aLoop();
  void bucket.take(250, b).then(() => passed.push('b'));
  for (let t = 250; t <= STARVED_MS + 250; t += 250) {
    clock.advance(250);
    await settle();
  }
  stop = true;
  assert.deepEqual(passed, ['a', 'a', 'a', 'b', 'a'], 'b passes once it has waited STARVED_MS, then a goes on');
  bucket.close();
});

test(`turns: a starved turn taking through takeSome gets ${TRICKLE_BYTES} bytes, not a share of the link; take still gets all it asked`, async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket(10_000, 1, clock);
  await bucket.take(1);
  const a = bucket.turn();
  const b = bucket.turn();
  const c = bucket.turn();
  const passed: string[] = [];
  let stop = false;
  // a and b send pieces chunk after chunk, as the piece server does; c takes once.
  const sending = async (name: string, turn: Turn) => {
    while (!stop) passed.push(`${name}${await bucket.takeSome(2000, turn)}`);
  };
  void sending('a', a);
  void sending('b', b);
  void bucket.take(2000, c).then(() => passed.push('c2000'));
  for (let t = 0; t < 2 * STARVED_MS + 500; t += 100) {
    clock.advance(100);
    await settle();
  }
  stop = true;
  bucket.close();
  const trickle = `b${TRICKLE_BYTES}`;
  assert.deepEqual(
    passed.slice(0, 8),
    ['a2000', 'a2000', 'a2000', 'a2000', trickle, 'c2000', 'a2000', 'a2000'],
    'a keeps the link; after STARVED_MS b gets a trickle and c, a caller of take, all it asked for; then a again',
  );
  const first = passed.indexOf(trickle);
  const between = passed.slice(first + 1, passed.indexOf(trickle, first + 1));
  assert.ok(between.filter((p) => p === 'a2000').length >= 3 && !between.includes('b2000'), `b trickles again only after another STARVED_MS: ${passed.join(' ')}`);
});

test('a waiter whose request hung up leaves the line: it takes 0 bytes, spends no tokens, and the one behind it passes at once if the tokens are there', async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket(1000, 1, clock);
  await bucket.take(1); // empty now
  const hangUp = new AbortController();
  const passed: string[] = [];
  void bucket.takeSome(300, bucket.turn(), hangUp.signal).then((n) => passed.push(`a${n}`));
  void bucket.takeSome(100, bucket.turn()).then((n) => passed.push(`b${n}`));
  await settle();
  clock.advance(100);
  await settle();
  assert.equal(passed.length, 0, 'a, first in line, needs 300 ms of tokens; b waits behind it');
  hangUp.abort();
  await settle();
  assert.deepEqual(passed, ['a0', 'b100'], 'a leaves with nothing; b passes on the 100 ms of tokens there, not after a’s 300');
  void bucket.takeSome(100, bucket.turn()).then((n) => passed.push(`c${n}`));
  clock.advance(99);
  await settle();
  assert.equal(passed.length, 2, 'a spent nothing, b spent its 100: c waits its own 100 ms');
  clock.advance(1);
  await settle();
  assert.deepEqual(passed, ['a0', 'b100', 'c100']);
  // Asked with a signal already aborted: nothing waits, nothing is spent.
  const gone = AbortSignal.abort();
  assert.equal(await bucket.takeSome(100, bucket.turn(), gone), 0);
});
