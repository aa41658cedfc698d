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
import { ORDER_TOKEN_TYPE } from '../../src/schedule/push.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { waitFor as until } from '../helpers/wait.ts';
import { windowsAround } from '../helpers/windows.ts';

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


/** A terminal with a session and no agent: the test makes its calls over HTTP itself. */
async function bareTerminal(o: TestOrigin, name: string, roles = ['member']): Promise<{ id: string; call: (method: string, url: string, json: unknown) => ReturnType<TestOrigin['call']> }> {
  const user = await o.userWithRoles(roles);
  const reg = await o.registerTerminal(user.token, generateKeyPair(), { name });
  assert.equal(reg.status, 201, JSON.stringify(reg.body));
  const token = await o.accounts.issueToken(user.userId, reg.body.terminal.id, 'test terminal session', null);
  return { id: reg.body.terminal.id, call: (method, url, json) => o.call(method, url, { token, json }) };
}

for (const engine of testEngines()) {
  describe(`scheduled delivery end to end (${engine.name})`, () => {
    let o: TestOrigin;
    let work: string;
    let W: number;
    let win: ReturnType<typeof windowsAround>['win'];
    const agents: Agent[] = [];
    /** The agents' warnings (a refused report, a failed holdings claim): named when a wait fails. */
    const warnings: string[] = [];
    const warned = () => (warnings.length ? `; the agents warned: ${warnings.slice(-5).join(' | ')}` : '; no agent warned');

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
        logger: pino({ level: 'warn' }, { write: (line: string) => void warnings.push(`${name}: ${line.trim()}`) }),
      });
      agents.push(a);
      return a;
    }

    const history = async (terminalId: string, contentId: string) => (await o.schedules.deliveries.history(terminalId, { contentId })).entries.reverse();

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

    test('pull (S0.3) and push (S0.4): nothing before the window; at its opening the origin pushes to the stream and the address, the pull agent wakes and calls in; the window closes mid-transfer and the rest comes in the next window', async () => {
      // --- before window A ---
      const pullId = await publish('Pull news');
      const streamId = await publish('Stream news');
      const addressId = await publish('Address news');
      const ev = { pull: [] as ScheduledEvent[], stream: [] as ScheduledEvent[], address: [] as ScheduledEvent[] };
      const puller = await agent('puller', 'pull', ev.pull);
      const streamer = await agent('streamer', 'stream', ev.stream);
      const addressee = await agent('addressee', 'address', ev.address);
      // 128 KiB/s: the 1 MiB content takes ~8 s, time enough to close the window part way.
      const cap = 128 * 1024;
      await o.schedules.requests.create(puller.terminalId, { select: { contentId: pullId }, windows: [win(W - MIN, W, cap), win(W + MIN, W + 2 * MIN, cap)] });
      // Capped too: an uncapped window would be given the whole egress budget (S0.6), and the others would wait for it.
      await o.schedules.requests.create(streamer.terminalId, { select: { contentId: streamId }, windows: [win(W - MIN, W, 8 * cap)] });
      await o.schedules.requests.create(addressee.terminalId, { select: { contentId: addressId }, windows: [win(W - MIN, W, 8 * cap)] });
      puller.scheduled!.wakeUp();
      await until(() => ev.pull.some((e) => e.event === 'check-in' && e.nextCheckInAt === new Date(W - MIN).toISOString()), 'a check-in that names window A as the next call');
      await until(async () => (await o.db.db.selectFrom('schedule_push_addresses').select('url').where('terminal_id', '=', addressee.terminalId).executeTakeFirst())?.url === `${addressee.url}/schedule/orders`, 'the registered address');
      await until(() => o.clock.isWaitingFor(W - MIN), 'the pull agent asleep until its window');
      await o.scheduler!.tick();
      for (const [a, id] of [[puller, pullId], [streamer, streamId], [addressee, addressId]] as const) {
        assert.equal(a.store.get(id), undefined, 'nothing fetched before the window');
        assert.equal((await history(a.terminalId, id)).length, 0, 'nothing due before the window');
      }
      assert.deepEqual([...ev.stream, ...ev.address], []);

      // --- window A opens: the origin's step pushes; the pull agent wakes by itself ---
      o.clock.set(W - MIN);
      await o.scheduler!.tick();
      await until(() => ev.stream.some((e) => e.event === 'delivered'), () => `the delivery pushed down the stream${warned()}`);
      await until(() => ev.address.some((e) => e.event === 'delivered'), () => `the delivery pushed to the address${warned()}`);
      await until(() => ev.pull.some((e) => e.event === 'order'), 'the pull agent’s order in window A');
      await until(() => (puller.store.get(pullId)?.have.size ?? 0) >= 3, 'three verified pieces');
      // The pushed ones (1 MiB at 1 MiB/s) are whole before the window closes: waited for, not raced
      // against the puller's third piece (a faketime run on a loaded machine lost that race once).
      for (const [a, id] of [[streamer, streamId], [addressee, addressId]] as const) await until(async () => (await history(a.terminalId, id))[0]?.outcome === 'done', () => `the pushed delivery done at ${a.terminalId}${warned()}`);
      const running = await history(puller.terminalId, pullId);

      // --- window A closes mid-transfer (at once: the rest of the content takes seconds at the cap): the pull agent pauses by its own clock; the origin defers the rest ---
      o.clock.set(W);
      assert.deepEqual(running.map((r) => [r.outcome, r.source, r.dueAt]), [['running', 'origin', new Date(W - MIN).toISOString()]]);
      await until(() => ev.pull.some((e) => e.event === 'paused'), () => `the pause at the window end${warned()}`);
      await o.scheduler!.tick();
      for (const [a, id] of [[streamer, streamId], [addressee, addressId]] as const) {
        const r = await history(a.terminalId, id);
        assert.deepEqual(r.map((x) => [x.outcome, x.source, x.bytes, x.dueAt, x.startedAt]), [['done', 'origin', SIZE, new Date(W - MIN).toISOString(), new Date(W - MIN).toISOString()]]);
        assert.ok(a.store.list().find((c) => c.id === id)?.complete);
      }
      const held = puller.store.get(pullId)!.have.size;
      assert.ok(held >= 3 && held < PIECES, `paused part way (${held} of ${PIECES} pieces)`);
      const paused = await history(puller.terminalId, pullId);
      assert.equal(paused[0]!.outcome, 'deferred');
      assert.equal(paused[0]!.reason, 'window_closed');
      assert.equal(paused[0]!.endedAt, new Date(W).toISOString());

      // --- window B: it wakes again, resumes from the verified pieces and finishes ---
      await until(() => o.clock.isWaitingFor(W + MIN) && ev.pull.some((e) => e.event === 'check-in' && e.nextCheckInAt === new Date(W + MIN).toISOString()), 'asleep until window B');
      o.clock.set(W + MIN);
      await until(() => ev.pull.some((e) => e.event === 'delivered'), () => `delivery in window B${warned()}`, 30_000);
      await o.scheduler!.tick();
      const records = await history(puller.terminalId, pullId);
      assert.deepEqual(records.map((r) => [r.outcome, r.reason, r.deferrals, r.dueAt, r.source]), [
        ['deferred', 'window_closed', 0, new Date(W - MIN).toISOString(), 'origin'],
        ['done', null, 1, new Date(W + MIN).toISOString(), 'origin'],
      ]);
      // Nothing fetched twice: the two attempts' bytes add up to the content.
      const delivered = ev.pull.find((e) => e.event === 'delivered')!;
      assert.equal(delivered.bytes! + held * PIECE, SIZE);
      assert.equal(records[0]!.bytes + records[1]!.bytes, SIZE, JSON.stringify(records.map((r) => r.bytes)));
      assert.ok(puller.store.list().find((c) => c.id === pullId)?.complete);
      // Delivered: the plans no longer list them.
      for (const a of [puller, streamer, addressee]) assert.deepEqual((await o.schedules.planner.plan(a.terminalId)).items, []);
    });

    test('a content published while a window is open reaches the matching terminal at once (S0.5: added to its plan; S0.4: pushed)', async () => {
      // Window B is open (origin time W + 1 min, from the test above).
      const events: ScheduledEvent[] = [];
      const a = await agent('breaking-watcher', 'stream', events);
      await o.schedules.requests.create(a.terminalId, { select: { genre: 'Breaking' }, windows: [win(W + MIN, W + 2 * MIN, 1024 * 1024)] });
      await until(() => o.scheduler!.orders(a.terminalId).length === 0 && a.scheduled!.running().length === 0, 'an idle stream');
      assert.deepEqual((await o.schedules.planner.plan(a.terminalId)).items, []);
      const pub = await o.userWithRoles(['publisher']);
      const res = await o.call('POST', `/contents?title=Flash&genre=breaking&price=0`, { token: pub.token, body: randomBytes(SIZE), headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(res.status, 201);
      // No call from the terminal and no tick from the test: the publish event drives it.
      await until(() => events.some((e) => e.event === 'delivered' && e.contentId === res.body.id), () => `the new content pushed and delivered${warned()}`);
      await o.scheduler!.tick();
      assert.deepEqual((await history(a.terminalId, res.body.id)).map((r) => [r.outcome, r.bytes]), [['done', SIZE]]);
    });

    test('the record names who delivered most of it: a peer that holds the content, or the origin (S0.7)', async () => {
      // 'Stream news' is held whole by the stream agent of the first test: a second receiver may fetch it from there.
      const streamId = (await o.content.list({})).items.find((c) => c.title === 'Stream news')!.id;
      const events: ScheduledEvent[] = [];
      const a = await agent('second-receiver', 'stream', events);
      await o.schedules.requests.create(a.terminalId, { select: { contentId: streamId }, windows: [win(W + MIN, W + 2 * MIN, 1024 * 1024)] });
      await until(() => events.some((e) => e.event === 'delivered'), () => `the second delivery${warned()}`);
      await o.scheduler!.tick();
      const delivered = events.find((e) => e.event === 'delivered')!;
      const [record] = await history(a.terminalId, streamId);
      assert.equal(record!.outcome, 'done');
      assert.ok(delivered.source === 'origin' || delivered.source === 'peer');
      assert.equal(record!.source, delivered.source);
      assert.equal(record!.sourceId, delivered.sourceId ?? null);
      if (delivered.source === 'peer') assert.equal(record!.sourceId, agents.find((x) => x.store.list().some((c) => c.id === streamId && c.complete) && x !== a)!.terminalId);
    });

    test('push to an address: orders without the origin’s signature, or for another terminal, are refused and nothing is fetched', async () => {
      const contentId = await publish('Forged news');
      const a = await agent('forged-to', 'address');
      const order = { terminalId: a.terminalId, contentId, title: 'x', totalSize: SIZE, rateBytesPerSecond: 1e6, windowEnd: new Date(W + 2 * MIN).toISOString(), attempt: 'forged#1', issuedAt: new Date().toISOString() };
      const forged = encodeToken({ typ: ORDER_TOKEN_TYPE, ...order }, generateKeyPair().privateKey);
      const foreign = encodeToken({ typ: ORDER_TOKEN_TYPE, ...order, terminalId: 'trm_someone_else' }, o.keys.privateKey);
      const wrongType = encodeToken({ typ: 'cascade-grant', ...order }, o.keys.privateKey);
      // A body that is no { token: string } at all is refused by the route's schema (strict: no coercion), before any order is looked at.
      for (const [token, why, code] of [[forged, 'bad signature', 'invalid_order'], [foreign, 'another terminal', 'invalid_order'], [wrongType, 'not an order', 'invalid_order'], [42, 'not a token', 'invalid_request']] as const) {
        const res = await request(`${a.url}/schedule/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
        const body = (await res.body.json()) as any;
        assert.equal(res.statusCode, 400, why);
        assert.equal(body.error.code, code, why);
      }
      assert.equal(a.store.get(contentId), undefined);
      assert.deepEqual(a.scheduled!.running(), []);
      // An agent in another mode takes no pushed orders at all.
      const puller = agents.find((x) => x.scheduled && x !== a && x.store.list().some((c) => c.complete))!;
      const res = await request(`${puller.url}/schedule/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: foreign }) });
      assert.equal(res.statusCode, 409);
      assert.equal(((await res.body.json()) as any).error.code, 'not_push_mode');
    });

    test('refusals: reports for nothing running, "done" the holder registry does not confirm, bad push addresses — nothing changes', async () => {
      const { id: terminalId, call } = await bareTerminal(o, 'bare');
      const contentId = await publish('Refusals');

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
      await o.schedules.requests.create(terminalId, { select: { contentId }, windows: [win(W + MIN, W + 2 * MIN)] });
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

      // A final count that arrives after the origin closed the window raises that attempt's bytes (never lowers them).
      const late = await publish('Late count');
      await o.schedules.requests.create(terminalId, { select: { contentId: late }, windows: [win(W + MIN, W + 2 * MIN)] });
      res = await call('POST', '/schedules/check-in', {});
      assert.deepEqual(res.body.orders.map((x: any) => x.contentId), [late]);
      res = await call('POST', '/schedules/deliveries/report', { contentId: late, bytes: PIECE, state: 'running' });
      assert.equal(res.body.continue, true);
      o.clock.set(W + 2 * MIN);
      await o.scheduler!.tick();
      assert.deepEqual((await history(terminalId, late)).map((r) => [r.outcome, r.reason, r.bytes]), [['deferred', 'window_closed', PIECE]]);
      res = await call('POST', '/schedules/deliveries/report', { contentId: late, bytes: 3 * PIECE, state: 'paused', reason: 'window_closed' });
      assert.equal(res.status, 200);
      assert.equal(res.body.continue, false);
      res = await call('POST', '/schedules/deliveries/report', { contentId: late, bytes: 2 * PIECE, state: 'paused' });
      assert.deepEqual((await history(terminalId, late)).map((r) => [r.outcome, r.bytes]), [['deferred', 3 * PIECE]]);
      res = await call('POST', '/schedules/deliveries/report', { contentId: late, bytes: SIZE, state: 'done' });
      assert.equal(res.status, 404);
      assert.equal(res.body.error.code, 'unknown_order');
    });

    // Last: it restarts the origin (later tests would tick the old scheduler).
    test('an origin restart loses nothing: the open attempt is picked up, the terminal is re-admitted on its next call, and it completes (S0.6 never dropped)', async () => {
      const { id: terminalId, call } = await bareTerminal(o, 'restart');
      const contentId = await publish('Restart news');
      o.clock.set(Math.max(o.clock.now(), W + 2 * MIN));
      await o.schedules.requests.create(terminalId, { select: { contentId }, windows: [win(W + 2 * MIN, W + 3 * MIN)] });
      let res = await call('POST', '/schedules/check-in', {});
      assert.deepEqual(res.body.orders.map((x: any) => x.contentId), [contentId]);
      res = await call('POST', '/schedules/deliveries/report', { contentId, bytes: PIECE, state: 'running' });
      assert.equal(res.body.continue, true);
      const [before] = await history(terminalId, contentId);

      const live = await o.restart();
      res = await call('POST', '/schedules/deliveries/report', { contentId, bytes: 2 * PIECE, state: 'running' });
      assert.equal(res.status, 404, 'the new process did not hand out this order');
      assert.equal(res.body.error.code, 'unknown_order');
      res = await call('POST', '/schedules/check-in', {});
      assert.deepEqual(res.body.orders.map((x: any) => x.contentId), [contentId], 're-admitted on its next call');
      const after = await history(terminalId, contentId);
      assert.deepEqual(after.map((r) => [r.id, r.outcome, r.deferrals]), [[before!.id, 'running', 0]], 'the same attempt, not a new one');

      res = await call('PUT', '/terminals/holdings', { contentIds: [contentId], mode: 'add' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      res = await call('POST', '/schedules/deliveries/report', { contentId, bytes: SIZE - PIECE, state: 'done' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      await live.scheduler!.tick();
      assert.deepEqual((await history(terminalId, contentId)).map((r) => [r.id, r.outcome, r.bytes]), [[before!.id, 'done', SIZE - PIECE]]);
    });
  });
}

describe('an origin started with SCHEDULER=off', () => {
  test('answers the delivery routes with scheduler_elsewhere (503) and stores nothing', async () => {
    const o = await startTestOrigin({ config: { scheduler: false } });
    try {
      assert.equal(o.scheduler, null);
      const { call } = await bareTerminal(o, 'elsewhere');
      for (const [method, url, json] of [
        ['POST', '/schedules/check-in', {}],
        ['PUT', '/schedules/push-address', { url: 'http://127.0.0.1:1/x' }],
        ['POST', '/schedules/deliveries/report', { contentId: 'a'.repeat(64), bytes: 0, state: 'running' }],
        ['GET', '/schedules/orders', undefined],
      ] as const) {
        const res = await call(method, url, json);
        assert.equal(res.status, 503, url);
        assert.equal(res.body.error.code, 'scheduler_elsewhere', url);
      }
      assert.equal((await o.db.db.selectFrom('schedule_push_addresses').selectAll().execute()).length, 0);
    } finally {
      await o.close();
    }
  });
});

// #5 point 5 through the live origin (S0.6): more terminals due than the budget allows.
// HTTP-only terminals (no pieces move), so the clock can be anywhere.
for (const engine of testEngines()) {
  describe(`live admission order (${engine.name})`, () => {
    test('budget for one at a time: the premium terminal first, then the member, then the congested premium; the waiting ones are told to call back soon', async () => {
      const T = Date.parse('2026-06-01T09:59:00Z');
      const o = await startTestOrigin({ engine, now: T, config: { pieceSize: PIECE, holdingsSpotCheck: false, scheduleTickMs: 3_600_000, scheduleEgressBps: 10 * 1_000_000, scheduleMaxRate: 10 * 1_000_000 } });
      try {
        const pub = await o.userWithRoles(['publisher']);
        const res = await o.call('POST', '/contents?title=Morning&genre=news&price=0', { token: pub.token, body: randomBytes(SIZE), headers: { 'content-type': 'application/octet-stream' } });
        const contentId: string = res.body.id;
        const window = { days: 'daily', start: '10:00', end: '12:00', timeZone: 'UTC' };
        async function terminal(name: string, roles: string[], recvLoadBps: number) {
          const { id, call } = await bareTerminal(o, name, roles);
          const beat = await call('POST', '/terminals/heartbeat', { uptimeRatio: 1, upBps: 100e6, downBps: 800e6, sendLoadBps: 0, recvLoadBps, cpu: 0.1 });
          assert.equal(beat.status, 204, JSON.stringify(beat.body));
          await o.schedules.requests.create(id, { select: { contentId }, windows: [window] });
          return { id, call };
        }
        const congested = await terminal('congested-premium', ['premium'], 700e6); // receiving 87 % of its link
        const member = await terminal('member', ['member'], 0);
        const premium = await terminal('premium', ['premium'], 0);
        const all = [congested, member, premium];
        // All three call in before the window: present, nothing due yet.
        for (const t of all) assert.deepEqual((await t.call('POST', '/schedules/check-in', {})).body.orders, []);
        o.clock.set(Date.parse('2026-06-01T10:00:00Z'));
        await o.scheduler!.tick();

        const served: string[] = [];
        for (let round = 0; round < 3; round++) {
          const views = await Promise.all(all.map(async (t) => ({ t, view: (await t.call('POST', '/schedules/check-in', {})).body })));
          const running = views.filter((v) => v.view.orders.length > 0);
          assert.equal(running.length, 1, `one at a time (round ${round})`);
          const { t, view } = running[0]!;
          assert.equal(view.orders[0].rateBytesPerSecond, 10_000_000);
          for (const w of views.filter((v) => v.t !== t && !served.includes(v.t.id))) {
            assert.equal(w.view.waiting, 1);
            assert.equal(w.view.nextCheckInAt, new Date(o.clock.now() + 10_000).toISOString(), 'waiting: call back in 10 s');
          }
          served.push(t.id);
          await t.call('PUT', '/terminals/holdings', { contentIds: [contentId], mode: 'add' });
          const done = await t.call('POST', '/schedules/deliveries/report', { contentId, bytes: SIZE, state: 'done' });
          assert.equal(done.status, 200, JSON.stringify(done.body));
          o.clock.advance(1000);
        }
        assert.deepEqual(served, [premium.id, member.id, congested.id]);
        for (const t of all) assert.deepEqual((await o.schedules.deliveries.history(t.id)).entries.map((r) => r.outcome), ['done']);
      } finally {
        await o.close();
      }
    });
  });
}
