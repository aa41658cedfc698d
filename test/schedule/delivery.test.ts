import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { request } from 'undici';
import { startAgent, type Agent } from '../../src/agent/agent.ts';
import type { ScheduledEvent, ScheduleMode } from '../../src/agent/scheduled.ts';
import { encodeToken } from '../../src/core/signed-token.ts';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { ORDER_TOKEN_TYPE } from '../../src/schedule/runner.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #5 points 3 and 4 end to end (S0.3, S0.4, S0.7): real agents, real HTTP, the origin's
// scheduler. Pull: the agent sleeps until its window opens (on the origin's ManualClock),
// calls in, fetches at the admitted rate, pauses when the window closes and resumes in
// its next window from the verified pieces. Push: the origin sends the order down a held
// event stream, or POSTs it to the address the agent registered, at the opening.
//
// Time: the origin's clock starts 150 s behind real time and only ever moves to window
// edges within ±90 s of real time, because receivers sign piece requests with the real
// time and the origin checks them against its own (PROOF_WINDOW_MS, 120 s).

const PIECE = 64 * 1024;
const PIECES = 16;
const SIZE = PIECE * PIECES;
const MIN = 60_000;

/** Waits (real time) until `f` is true; fails with `what` after `ms`. */
async function until(f: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Two one-minute windows around W (the whole minute nearest to now): A = [W−1 min, W) and
 * B = [W+1 min, W+2 min), daily, in a whole-hour zone where they fall around noon (so they
 * never cross a local midnight whenever the test runs).
 */
function windowsAround(W: number) {
  const utcHour = new Date(W).getUTCHours();
  const offset = 12 - utcHour; // local = UTC + offset, in −11…12
  const zone = offset === 0 ? 'Etc/UTC' : `Etc/GMT${offset > 0 ? '-' : '+'}${Math.abs(offset)}`; // Etc/GMT-N is UTC+N
  const hhmm = (t: number) => new Date(t + offset * 3_600_000).toISOString().slice(11, 16);
  const win = (from: number, to: number, cap?: number) => ({ days: 'daily', start: hhmm(from), end: hhmm(to), timeZone: zone, ...(cap ? { capBytesPerSecond: cap } : {}) });
  return { zone, win };
}

for (const engine of testEngines()) {
  describe(`scheduled delivery end to end (${engine.name})`, () => {
    let o: TestOrigin;
    let work: string;
    let W: number;
    let win: ReturnType<typeof windowsAround>['win'];
    const agents: Agent[] = [];

    async function publish(title: string): Promise<string> {
      const pub = await o.userWithRoles(['publisher']);
      const res = await o.call('POST', `/contents?title=${encodeURIComponent(title)}&genre=news&price=0`, {
        token: pub.token,
        body: randomBytes(SIZE),
        headers: { 'content-type': 'application/octet-stream' },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.id;
    }

    async function agent(name: string, mode: ScheduleMode, events: ScheduledEvent[] = []): Promise<Agent> {
      const user = await o.userWithRoles(['member']);
      const a = await startAgent({
        origin: o.url,
        token: user.token,
        originKey: o.keys.publicKeyB64,
        home: path.join(work, name),
        name,
        heartbeatMs: 60_000,
        cpuLoad: () => 0.1,
        downloads: { stallMs: 3000, refreshMs: 200 },
        schedule: mode,
        clock: o.clock,
        scheduleReportMs: 50,
        onScheduleEvent: (e) => events.push(e),
        logger: pino({ level: 'silent' }),
      });
      agents.push(a);
      return a;
    }

    const history = async (terminalId: string, contentId: string) => (await o.schedules.history(terminalId, { contentId })).entries.reverse();

    before(async () => {
      // The scheduler's own timer stays out of the way (1 h): the test ticks it, or agents' calls do.
      const real = Date.now();
      // The whole minute nearest to now: every window edge below is within 90 s of real time.
      W = Math.round(real / MIN) * MIN;
      o = await startTestOrigin({ engine, now: real - 150_000, config: { pieceSize: PIECE, holdingsSpotCheck: false, scheduleTickMs: 3_600_000 } });
      work = mkdtempSync(path.join(os.tmpdir(), 'cascade-scheduled-'));
      ({ win } = windowsAround(W));
    });
    after(async () => {
      for (const a of agents) await a.close().catch(() => {});
      await o.close();
      rmSync(work, { recursive: true, force: true });
    });

    test('pull (S0.3): wakes at the opening, fetches at the window cap, pauses at its end, resumes in the next window from the verified pieces', async () => {
      const contentId = await publish('Pull news');
      const events: ScheduledEvent[] = [];
      const a = await agent('puller', 'pull', events);
      // 128 KiB/s: the 1 MiB content takes ~8 s, time enough to close the window part way.
      const cap = 128 * 1024;
      await o.schedules.create(a.terminalId, { select: { contentId }, windows: [win(W - MIN, W, cap), win(W + MIN, W + 2 * MIN, cap)] });
      a.scheduled!.wakeUp();
      await until(() => events.some((e) => e.event === 'check-in' && e.nextCheckInAt === new Date(W - MIN).toISOString()), 'a check-in that names window A as the next call');
      await until(() => o.clock.sleepers > 0, 'the agent asleep until its window');
      assert.equal(a.store.get(contentId), undefined, 'nothing fetched before the window');
      assert.deepEqual((await history(a.terminalId, contentId)).length, 0);

      // Window A opens: the agent wakes by itself, calls in and gets the order at the cap.
      o.clock.set(W - MIN);
      await until(() => events.some((e) => e.event === 'order'), 'the order in window A');
      await until(() => (a.store.get(contentId)?.have.size ?? 0) >= 3, 'three verified pieces');
      const running = await history(a.terminalId, contentId);
      assert.equal(running.length, 1);
      assert.equal(running[0]!.outcome, 'running');
      assert.equal(running[0]!.source, 'origin');
      assert.equal(running[0]!.dueAt, new Date(W - MIN).toISOString());

      // Window A closes mid-transfer: the agent pauses by its own clock and says so; the origin defers the rest.
      o.clock.set(W);
      await until(() => events.some((e) => e.event === 'paused'), 'the pause at the window end');
      await o.scheduler!.tick();
      const held = a.store.get(contentId)!.have.size;
      assert.ok(held >= 3 && held < PIECES, `paused part way (${held} of ${PIECES} pieces)`);
      const paused = await history(a.terminalId, contentId);
      assert.equal(paused[0]!.outcome, 'deferred');
      assert.equal(paused[0]!.reason, 'window_closed');
      assert.equal(paused[0]!.endedAt, new Date(W).toISOString());
      assert.ok(paused[0]!.bytes > 0 && paused[0]!.bytes < SIZE, `bytes of attempt 1: ${paused[0]!.bytes}`);

      // Window B: it wakes again, resumes from the verified pieces and finishes.
      await until(() => o.clock.sleepers > 0 && events.filter((e) => e.event === 'check-in').some((e) => e.nextCheckInAt === new Date(W + MIN).toISOString()), 'asleep until window B');
      o.clock.set(W + MIN);
      await until(() => events.some((e) => e.event === 'delivered'), 'delivery in window B', 30_000);
      await o.scheduler!.tick();
      const records = await history(a.terminalId, contentId);
      assert.deepEqual(records.map((r) => [r.outcome, r.reason, r.deferrals]), [
        ['deferred', 'window_closed', 0],
        ['done', null, 1],
      ]);
      assert.equal(records[1]!.dueAt, new Date(W + MIN).toISOString());
      // Nothing fetched twice: the two attempts' bytes add up to the content.
      const delivered = events.find((e) => e.event === 'delivered')!;
      assert.equal(delivered.bytes! + held * PIECE, SIZE);
      assert.equal(records[0]!.bytes + records[1]!.bytes, SIZE, JSON.stringify([records.map((r) => r.bytes), held, delivered.bytes]));
      assert.ok(a.store.list().find((c) => c.id === contentId)?.complete);
      // Delivered: the plan no longer lists it.
      assert.equal((await o.schedules.plan(a.terminalId)).items.length, 0);
    });

    test('push (S0.4) over a held event stream: the origin sends the order at the opening', async () => {
      // Window B is open now (origin time W + 1 min, set by the pull test; the window runs to W + 2 min).
      o.clock.set(Math.max(o.clock.now(), W + MIN));
      const contentId = await publish('Stream news');
      const events: ScheduledEvent[] = [];
      const a = await agent('streamer', 'stream', events);
      await o.schedules.create(a.terminalId, { select: { contentId }, windows: [win(W + MIN, W + 2 * MIN)] });
      await until(() => o.scheduler!.orders(a.terminalId).length > 0 || events.some((e) => e.event === 'order'), 'the order pushed down the stream');
      await until(() => events.some((e) => e.event === 'delivered'), 'the pushed delivery');
      await o.scheduler!.tick();
      const records = await history(a.terminalId, contentId);
      assert.deepEqual(records.map((r) => [r.outcome, r.source]), [['done', 'origin']]);
      assert.equal(records[0]!.bytes, SIZE);
      assert.ok(a.store.list().find((c) => c.id === contentId)?.complete);
    });

    test('push (S0.4) to a registered address: the origin POSTs a signed order; forged and foreign orders are refused', async () => {
      o.clock.set(Math.max(o.clock.now(), W + MIN));
      const contentId = await publish('Address news');
      const events: ScheduledEvent[] = [];
      const a = await agent('addressee', 'address', events);
      await until(async () => (await o.db.db.selectFrom('schedule_push_addresses').select('url').where('terminal_id', '=', a.terminalId).executeTakeFirst())?.url === `${a.url}/schedule/orders`, 'the registered address');

      // Refusals first: nothing is fetched for them.
      const order = { terminalId: a.terminalId, contentId, title: 'x', totalSize: SIZE, rateBytesPerSecond: 1e6, windowEnd: new Date(W + 2 * MIN).toISOString(), attempt: 'forged#1', issuedAt: new Date().toISOString() };
      const forged = encodeToken({ typ: ORDER_TOKEN_TYPE, ...order }, generateKeyPair().privateKey);
      const foreign = encodeToken({ typ: ORDER_TOKEN_TYPE, ...order, terminalId: 'trm_someone_else' }, o.keys.privateKey);
      for (const [token, why] of [[forged, 'bad_signature'], [foreign, 'another terminal'], [42, 'not a token']] as const) {
        const res = await request(`${a.url}/schedule/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
        const body = (await res.body.json()) as any;
        assert.equal(res.statusCode, 400, why);
        assert.equal(body.error.code, 'invalid_order', why);
      }
      assert.equal(a.store.get(contentId), undefined);
      assert.deepEqual(a.scheduled!.running(), []);

      await o.schedules.create(a.terminalId, { select: { contentId }, windows: [win(W + MIN, W + 2 * MIN)] });
      await until(() => events.some((e) => e.event === 'delivered'), 'the delivery pushed to the address');
      await o.scheduler!.tick();
      assert.deepEqual((await history(a.terminalId, contentId)).map((r) => r.outcome), ['done']);
    });

    test('refusals: reports for nothing running, "done" the holder registry does not confirm, bad push addresses — nothing changes', async () => {
      const user = await o.userWithRoles(['member']);
      const keys = generateKeyPair();
      const reg = await o.call('POST', '/terminals', { token: user.token, json: { publicKey: keys.publicKeyB64, name: 'bare' } });
      const terminalId: string = reg.body.terminal.id;
      const token = await o.accounts.issueToken(user.userId, terminalId, 'test terminal session', null);
      const contentId = await publish('Refusals');
      const call = (method: string, url: string, json: unknown) => o.call(method, url, { token, json });

      let res = await call('POST', '/schedules/deliveries/report', { contentId, bytes: 10, state: 'running' });
      assert.equal(res.status, 404);
      assert.equal(res.body.error.code, 'unknown_order');
      res = await call('POST', '/schedules/deliveries/report', { contentId, bytes: -1, state: 'running' });
      assert.equal(res.status, 400);
      res = await call('POST', '/schedules/deliveries/report', { contentId, bytes: 1, state: 'finished' });
      assert.equal(res.status, 400);
      for (const url of ['not a url', 'ftp://example.org/x']) {
        res = await call('PUT', '/schedules/push-address', { url });
        assert.equal(res.status, 400, url);
        assert.equal(res.body.error.code, 'invalid_push_address');
      }
      assert.equal(await o.db.db.selectFrom('schedule_push_addresses').select('url').where('terminal_id', '=', terminalId).executeTakeFirst(), undefined);

      // "done" for a running order that the holder registry does not confirm.
      o.clock.set(Math.max(o.clock.now(), W + MIN));
      await o.schedules.create(terminalId, { select: { contentId }, windows: [win(W + MIN, W + 2 * MIN)] });
      res = await call('POST', '/schedules/check-in', {});
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.open, true);
      assert.deepEqual(res.body.orders.map((x: any) => x.contentId), [contentId]);
      res = await call('POST', '/schedules/deliveries/report', { contentId, bytes: SIZE, state: 'done' });
      assert.equal(res.status, 409);
      assert.equal(res.body.error.code, 'not_held');
      await o.scheduler!.tick();
      assert.deepEqual((await history(terminalId, contentId)).map((r) => r.outcome), ['running']);
      // A report for another terminal's content changes nothing either.
      res = await call('POST', '/schedules/deliveries/report', { contentId: 'f'.repeat(64), bytes: 1, state: 'running' });
      assert.equal(res.body.error.code, 'unknown_order');
      // The agent gives up: failed, tried again in the next window (deferrals + 1 then).
      res = await call('POST', '/schedules/deliveries/report', { contentId, bytes: PIECE, state: 'failed', reason: 'disk_full' });
      assert.equal(res.status, 200);
      assert.equal(res.body.continue, false);
      const records = await history(terminalId, contentId);
      assert.deepEqual(records.map((r) => [r.outcome, r.reason, r.bytes]), [['failed', 'disk_full', PIECE]]);
      res = await call('POST', '/schedules/check-in', {});
      assert.deepEqual(res.body.orders, [], 'not again in the same window');
    });
  });
}
