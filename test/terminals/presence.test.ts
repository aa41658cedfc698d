import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateHeartbeat } from '../../src/terminals/heartbeat.ts';
import { HeartbeatBuffer, newerState } from '../../src/terminals/presence.ts';
import type { TerminalState } from '../../src/terminals/tables.ts';

// Pure building blocks of S1.2: the heartbeat buffer and the rules (the challenge store is in challenges.test.ts).

const state = (at: number, cpu = 0.5): TerminalState => ({ uptimeRatio: 1, upBps: 10, downBps: 10, sendLoadBps: 0, recvLoadBps: 0, cpu, at });

test('a failed flush puts its beats back, without overwriting beats that arrived meanwhile', async () => {
  const buf = new HeartbeatBuffer();
  buf.record('a', state(1));
  buf.record('b', state(1));
  await assert.rejects(
    buf.drain(async () => {
      assert.equal(buf.latest('a')?.at, 1, 'in-flight beats stay visible');
      buf.record('a', state(2)); // newer beat during the failing write
      throw new Error('db down');
    }),
    /db down/,
  );
  assert.equal(buf.size, 2);
  assert.equal(buf.latest('a')?.at, 2);
  let written: string[] = [];
  assert.equal(await buf.drain(async (batch) => ((written = [...batch.keys()].sort()), batch.size)), 2);
  assert.deepEqual(written, ['a', 'b']);
  assert.equal(buf.size, 0);
  assert.equal(buf.latest('a'), undefined);
});

test('newerState keeps the later beat, and either when the other is missing', () => {
  assert.equal(newerState(state(1), state(2))?.at, 2);
  assert.equal(newerState(state(3), state(2))?.at, 3);
  assert.equal(newerState(null, state(2))?.at, 2);
  assert.equal(newerState(state(1), undefined)?.at, 1);
  assert.equal(newerState(null, undefined), null);
  // A tie goes to the unflushed beat (second): it came later, and the flush writes it over the stored one.
  const stored = { ...state(5), cpu: 0.1 };
  const fresh = { ...state(5), cpu: 0.9 };
  assert.equal(newerState(stored, fresh), fresh);
});

test('validateHeartbeat returns only the known fields', () => {
  const v = validateHeartbeat({ uptimeRatio: 1, upBps: 5, downBps: 5, sendLoadBps: 5.5, recvLoadBps: 0, cpu: 0, extra: true });
  assert.deepEqual(Object.keys(v).sort(), ['cpu', 'downBps', 'recvLoadBps', 'sendLoadBps', 'upBps', 'uptimeRatio']);
  const withSlots = validateHeartbeat({ uptimeRatio: 1, upBps: 5, downBps: 5, sendLoadBps: 0, recvLoadBps: 0, cpu: 0, slots: 4, slotsBusy: 1.5 });
  assert.deepEqual([withSlots.slots, withSlots.slotsBusy], [4, 1.5]);
  assert.throws(() => validateHeartbeat(null), /invalid|refused/i);
  assert.throws(() => validateHeartbeat('x'), /refused/);
});
