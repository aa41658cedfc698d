import { after, before, describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { AppError } from '../../src/core/errors.ts';
import { testEngines } from '../helpers/db.ts';
import { beat, openFixture, type Fixture } from './fixture.ts';

// S1.2 heartbeats: validated, kept in memory, written in one batched statement per flush.

const absurd: [string, Record<string, unknown>][] = [
  ...['uptimeRatio', 'upBps', 'downBps', 'sendLoadBps', 'recvLoadBps', 'cpu'].flatMap((field): [string, Record<string, unknown>][] => [
    [`${field} NaN`, beat({ [field]: NaN })],
    [`${field} Infinity`, beat({ [field]: Infinity })],
    [`${field} negative`, beat({ [field]: -1 })],
    [`${field} missing`, beat({ [field]: undefined })],
    [`${field} a string`, beat({ [field]: '5' })],
  ]),
  ['uptimeRatio above 1', beat({ uptimeRatio: 1.01 })],
  ['cpu above 1', beat({ cpu: 2 })],
  ['upBps above 1e12', beat({ upBps: 1e12 + 1 })],
  ['downBps above 1e12', beat({ downBps: 2e12 })],
  ['sendLoadBps above 1e12', beat({ upBps: 1e12, sendLoadBps: 1.05e12 })],
  ['recvLoadBps above 1e12', beat({ downBps: 1e12, recvLoadBps: 1.05e12 })],
  ['send load above 110% of upstream capacity', beat({ upBps: 1000, sendLoadBps: 1101 })],
  ['receive load above 110% of downstream capacity', beat({ downBps: 1000, recvLoadBps: 1101 })],
  ['send load with no upstream at all', beat({ upBps: 0, sendLoadBps: 1 })],
  // S1.5: upload slots come with their use, and the use cannot exceed them
  ['slots without slotsBusy', beat({ slots: 4 })],
  ['slotsBusy without slots', beat({ slotsBusy: 1 })],
  ['slotsBusy above slots', beat({ slots: 4, slotsBusy: 4.01 })],
  ['slots 0', beat({ slots: 0, slotsBusy: 0 })],
  ['slots not an integer', beat({ slots: 2.5, slotsBusy: 1 })],
  ['slots above 10,000', beat({ slots: 10_001, slotsBusy: 0 })],
  ['slotsBusy negative', beat({ slots: 4, slotsBusy: -0.5 })],
  ['slotsBusy NaN', beat({ slots: 4, slotsBusy: NaN })],
];

async function latestState(f: Fixture, id: string) {
  return f.handle.db.selectFrom('terminals').select(['last_state', 'last_seen_at']).where('id', '=', id).executeTakeFirstOrThrow();
}

for (const engine of testEngines()) {
  describe(`terminal heartbeats (${engine.name})`, () => {
    let f: Fixture;
    before(async () => {
      f = await openFixture(engine);
    });
    after(() => f.close());

    // One terminal for all refusals: since none may be recorded, it must stay without state.
    let t: Awaited<ReturnType<Fixture['newTerminal']>>;
    before(async () => {
      t = await f.newTerminal('refused');
    });
    for (const [label, state] of absurd) {
      test(`refuses a heartbeat with ${label}: 400 invalid_heartbeat, nothing recorded`, async () => {
        await assert.rejects(f.svc.heartbeat(t.id, state), (err: any) => err instanceof AppError && err.code === 'invalid_heartbeat' && err.status === 400);
        const writes = f.writes.writes;
        assert.equal(await f.svc.flush(), 0, 'nothing buffered');
        assert.equal(f.writes.writes, writes, 'no write statement');
        assert.equal((await latestState(f, t.id)).last_state, null);
      });
    }

    test('accepts boundary values (ratios 0 and 1, load exactly 110% of capacity)', async () => {
      const t = await f.newTerminal();
      await f.svc.heartbeat(t.id, beat({ uptimeRatio: 0, cpu: 1, upBps: 1000, sendLoadBps: 1100, downBps: 1e12, recvLoadBps: 1e12 }));
      await f.svc.heartbeat(t.id, beat({ uptimeRatio: 1, cpu: 0, upBps: 0, sendLoadBps: 0 }));
      assert.equal(await f.svc.flush(), 1);
    });

    test('keeps upload slots and their use (S1.5), all slots busy included', async () => {
      const t = await f.newTerminal();
      await f.svc.heartbeat(t.id, beat({ slots: 4, slotsBusy: 4 }));
      await f.svc.flush();
      assert.deepEqual((await latestState(f, t.id)).last_state, { ...beat({ slots: 4, slotsBusy: 4 }), at: f.clock.now() });
    });

    test('ignores unknown extra fields rather than storing them', async () => {
      const t = await f.newTerminal();
      await f.svc.heartbeat(t.id, { ...beat(), secret: 'x' });
      await f.svc.flush();
      assert.equal('secret' in ((await latestState(f, t.id)).last_state as object), false);
    });

    test('heartbeat for an unknown terminal is 404 unknown_terminal', async () => {
      await assert.rejects(f.svc.heartbeat('trm_nope', beat()), (err: any) => err.code === 'unknown_terminal' && err.status === 404);
    });

    test('1,000 heartbeats from 10 terminals: no write until flush, then one statement writing the latest beat of each', async () => {
      const terminals = [];
      for (let i = 0; i < 10; i++) terminals.push(await f.newTerminal(`t${i}`));
      await f.svc.flush();
      const writesBefore = f.writes.writes;
      for (let round = 0; round < 100; round++) {
        f.clock.advance(10);
        for (const [i, t] of terminals.entries()) {
          await f.svc.heartbeat(t.id, beat({ cpu: round / 100, upBps: 10_000_000 + 1000 * i + round }));
        }
      }
      assert.equal(f.writes.writes, writesBefore, 'zero DB writes before the flush');
      for (const t of terminals) assert.equal((await latestState(f, t.id)).last_state, null);

      assert.equal(await f.svc.flush(), 10, 'ten rows written');
      assert.equal(f.writes.writes, writesBefore + 1, 'exactly one write statement');
      for (const [i, t] of terminals.entries()) {
        const row = await latestState(f, t.id);
        assert.deepEqual(row.last_state, { ...beat({ cpu: 0.99, upBps: 10_000_000 + 1000 * i + 99 }), at: f.clock.now() });
        assert.equal(row.last_seen_at?.getTime(), f.clock.now());
      }

      assert.equal(await f.svc.flush(), 0, 'nothing left to flush');
      assert.equal(f.writes.writes, writesBefore + 1, 'an empty flush writes nothing');
    });

    test('metrics: heartbeats counted by outcome, flush batch sizes observed', async () => {
      const t = await f.newTerminal();
      const count = async (outcome: string) =>
        (await f.metrics.getSingleMetric('cascade_terminal_heartbeats_total')!.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
      const [acc, ref] = [await count('accepted'), await count('refused')];
      await f.svc.heartbeat(t.id, beat());
      await f.svc.heartbeat(t.id, beat({ cpu: -1 })).catch(() => {});
      assert.equal(await count('accepted'), acc + 1);
      assert.equal(await count('refused'), ref + 1);
      await f.svc.flush();
      const text = await f.metrics.metrics();
      assert.match(text, /cascade_terminal_heartbeat_flush_rows_count [1-9]/);
    });

    test('an older beat never overwrites a newer stored one (several origin processes)', async () => {
      const t = await f.newTerminal();
      const stamp = f.clock.now();
      await f.svc.heartbeat(t.id, beat({ cpu: 0.5 }));
      await f.svc.flush();
      // Another process already stored a newer beat:
      await f.handle.db.updateTable('terminals').set({ last_seen_at: new Date(stamp + 5000), last_state: { ...(beat({ cpu: 0.9 }) as any), at: stamp + 5000 } }).where('id', '=', t.id).execute();
      await f.svc.heartbeat(t.id, beat({ cpu: 0.1 }));
      assert.equal(await f.svc.flush(), 0);
      assert.equal((await latestState(f, t.id)).last_state?.cpu, 0.9);
    });

    test('start() flushes every heartbeatFlushMs; stop() flushes what is left', async () => {
      const t = await f.newTerminal();
      // The timer's flushes are told apart from anyone else's by counting the calls it makes.
      const flush = mock.method(f.svc, 'flush');
      mock.timers.enable({ apis: ['setInterval'] });
      try {
        f.svc.start();
        await f.svc.heartbeat(t.id, beat({ cpu: 0.31 }));
        mock.timers.tick(f.config.heartbeatFlushMs - 1);
        assert.equal(flush.mock.callCount(), 0, 'no flush before the period');
        mock.timers.tick(1);
        assert.equal(flush.mock.callCount(), 1, 'the timer flushes once the period is up');
        assert.equal(await flush.mock.calls[0]!.result, 1);
        assert.equal((await latestState(f, t.id)).last_state?.cpu, 0.31);
        await f.svc.heartbeat(t.id, beat({ cpu: 0.32 }));
        mock.timers.tick(f.config.heartbeatFlushMs);
        assert.equal(flush.mock.callCount(), 2, 'and again every period');
        assert.equal(await flush.mock.calls[1]!.result, 1);
        assert.equal((await latestState(f, t.id)).last_state?.cpu, 0.32);
        await f.svc.heartbeat(t.id, beat({ cpu: 0.33 }));
        await f.svc.stop();
        assert.equal(flush.mock.callCount(), 3, 'stop() flushes what is left');
        assert.equal((await latestState(f, t.id)).last_state?.cpu, 0.33);
        mock.timers.tick(10 * f.config.heartbeatFlushMs);
        assert.equal(flush.mock.callCount(), 3, 'no flush after stop()');
      } finally {
        mock.timers.reset();
        flush.mock.restore();
      }
    });
  });
}
