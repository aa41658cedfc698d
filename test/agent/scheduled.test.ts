import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { ScheduledDeliveries, mainSource, type ScheduledEvent, type ScheduleMode } from '../../src/agent/scheduled.ts';
import { Api } from '../../src/core/http-client.ts';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { AppError } from '../../src/core/errors.ts';
import { encodeToken } from '../../src/core/signed-token.ts';
import { ORDER_TOKEN_TYPE } from '../../src/schedule/push.ts';
import type { DeliveryOrder } from '../../src/schedule/runner.ts';
import type { DownloadOptions, DownloadResult } from '../../src/transfer/downloader.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { waitFor } from '../helpers/wait.ts';

// The agent's side of scheduled delivery (#5, S0.3, S0.4, S0.7): ScheduledDeliveries against
// a real origin and its scheduler, on the origin's ManualClock. Its transfer is scripted here
// (the test hands it pieces, finishes or fails it) so that each rule can be seen exactly:
// when it calls in, what it reports and when, that it pauses at the window's end by its own
// clock, and what it counts. delivery.test.ts runs the same with real agents and transfers.

const PIECE = 64 * 1024;
const PIECES = 4;
const DAY = 86_400_000;
/** A Monday, one minute before the daily 10:00–10:10 UTC window opens. */
const T0 = Date.parse('2026-06-01T09:59:00Z');
const OPEN = Date.parse('2026-06-01T10:00:00Z');
const CLOSE = Date.parse('2026-06-01T10:10:00Z');
const WINDOW = { days: 'daily', start: '10:00', end: '10:10', timeZone: 'UTC' };
const REPORT_MS = 30_000;

/** A fetch the test drives: it hands the pieces, then finishes or fails it; the agent's abort ends it. */
interface ScriptedFetch {
  contentId: string;
  extra: Partial<DownloadOptions>;
  piece(i: number): void;
  finish(bySource: Record<string, number>): void;
  fail(err: Error): void;
}

/** Lets pending promise callbacks and I/O run: what a step of the clock set off has started by then. */
const settle = () => new Promise((r) => setTimeout(r, 50));

for (const engine of testEngines()) {
  describe(`scheduled deliveries, the agent's side (${engine.name})`, () => {
    let o: TestOrigin;
    // The scheduler's own timer stays out of the way (1 h): the agent's calls and the test step it.
    before(async () => {
      o = await startTestOrigin({ engine, now: T0, config: { pieceSize: PIECE, holdingsSpotCheck: false, scheduleTickMs: 3_600_000 } });
    });
    after(() => o.close());

    /** A content and a terminal whose schedule names it (the window daily 10:00–10:10 UTC); and the terminal's ScheduledDeliveries, not started. */
    async function setup(mode: ScheduleMode, opts: { held?: number[] } = {}) {
      const pub = await o.userWithRoles(['publisher']);
      const res = await o.call('POST', '/contents?title=Evening&genre=news&price=0', { token: pub.token, body: randomBytes(PIECE * PIECES), headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const contentId: string = res.body.id;
      const member = await o.userWithRoles(['member']);
      const reg = await o.registerTerminal(member.token, generateKeyPair(), { name: 'box' });
      const terminalId: string = reg.body.terminal.id;
      const token = await o.accounts.issueToken(member.userId, terminalId, 'test terminal session', null);
      await o.schedules.requests.create(terminalId, { select: { contentId }, windows: [WINDOW] });

      // The calls it made, each once answered: by then whatever it does next (sleep again) has begun.
      const calls: { route: string; json: any }[] = [];
      class CountingApi extends Api {
        override async request<T>(method: string, route: string, o: { json?: unknown } = {}): Promise<T> {
          try {
            return await super.request<T>(method, route, o);
          } finally {
            calls.push({ route, json: o.json });
          }
        }
      }
      const reports = () => calls.filter((c) => c.route === '/schedules/deliveries/report').map((c) => c.json);
      const checkIns = () => calls.filter((c) => c.route === '/schedules/check-in').length;
      const fetches: ScriptedFetch[] = [];
      const events: ScheduledEvent[] = [];
      const sd = new ScheduledDeliveries({
        mode,
        terminalId,
        api: () => new CountingApi(o.url, token),
        originKey: o.keys.publicKeyB64,
        fetch: (id, extra) =>
          new Promise<DownloadResult>((resolve, reject) => {
            extra.signal?.addEventListener('abort', () => reject(new AppError('aborted', 'The download was stopped.', 499)));
            fetches.push({
              contentId: id,
              extra,
              piece: (i) => extra.onPiece?.(i), // a resumed download names its held pieces too
              finish: (bySource) => resolve({ contentId: id, bySource } as DownloadResult),
              fail: reject,
            });
          }),
        // As the agent claims (agent.ts claimWhole): over this terminal's session.
        claimWhole: (id) => new CountingApi(o.url, token).request('PUT', '/terminals/holdings', { json: { contentIds: [id], mode: 'add' } }).then(() => true, () => false),
        pieceLength: () => PIECE,
        heldPieces: () => new Set(opts.held ?? []),
        clock: o.clock,
        logger: pino({ level: 'silent' }),
        pushUrl: 'http://127.0.0.1:9/schedule/orders',
        reportMs: REPORT_MS,
        retryMs: 50,
        onEvent: (e) => events.push(e),
      });
      const history = async () => (await o.schedules.deliveries.history(terminalId, { contentId })).entries.reverse();
      return { o, sd, contentId, terminalId, token, fetches, events, reports, checkIns, history };
    }

    test('pull (S0.3): asleep until the opening the origin names, then called in and fetching at the admitted rate; progress every reportMs by its clock; at the window end it pauses by its own clock, counting only the pieces it did not hold', async () => {
      const t = await setup('pull', { held: [0] });
      try {
        t.sd.start();
        await waitFor(() => t.events.some((e) => e.event === 'check-in'), 'the first check-in');
        assert.equal(t.events[0]!.nextCheckInAt, new Date(OPEN).toISOString());
        await waitFor(() => t.o.clock.isWaitingFor(OPEN), 'the agent asleep until the opening');
        t.o.clock.set(OPEN - 1);
        await settle();
        assert.equal(t.checkIns(), 1, 'no call before the opening');
        assert.equal(t.fetches.length, 0);

        t.o.clock.set(OPEN);
        await waitFor(() => t.fetches.length === 1, 'the fetch of the order given at the opening');
        const [order] = t.o.scheduler!.orders(t.terminalId);
        assert.equal(t.fetches[0]!.contentId, t.contentId);
        assert.equal(t.fetches[0]!.extra.downRate, order!.rateBytesPerSecond, 'capped at the admitted rate (S0.6)');
        assert.equal(t.checkIns(), 2);

        // Piece 0 was held already (a resumed delivery): only 1 and 2 are this attempt's bytes.
        for (const i of [0, 1, 2]) t.fetches[0]!.piece(i);
        t.o.clock.advance(REPORT_MS - 1);
        await settle();
        assert.deepEqual(t.reports(), [], 'no report before reportMs');
        t.o.clock.advance(1);
        await waitFor(() => t.reports().length === 1, 'a progress report after reportMs');
        assert.deepEqual(t.reports()[0], { contentId: t.contentId, bytes: 2 * PIECE, state: 'running' });

        // Time passes as it does, one report at a time (a silent terminal fails after 2 min, S0.7)…
        for (let n = 2; t.o.clock.now() + REPORT_MS < CLOSE; n++) {
          t.o.clock.advance(REPORT_MS);
          await waitFor(() => t.reports().length === n, `report ${n}`);
        }
        // …until the window closes on the agent's clock; nobody tells it.
        t.o.clock.set(CLOSE);
        await waitFor(() => t.events.some((e) => e.event === 'paused'), 'the pause at the window end');
        assert.equal(t.fetches[0]!.extra.signal?.aborted, true, 'the fetch stopped');
        assert.deepEqual(t.events.find((e) => e.event === 'paused'), { event: 'paused', contentId: t.contentId, bytes: 2 * PIECE, reason: 'window_closed' });
        assert.deepEqual(t.reports().at(-1), { contentId: t.contentId, bytes: 2 * PIECE, state: 'paused', reason: 'window_closed' }, 'the last word is the pause');
        assert.ok(t.reports().slice(0, -1).every((r) => r.state === 'running'));
        await t.o.scheduler!.tick();
        assert.deepEqual((await t.history()).map((r) => [r.outcome, r.reason, r.bytes]), [['deferred', 'window_closed', 2 * PIECE]]);
      } finally {
        await t.sd.close();
      }
    });

    test('done (S0.7): reported with who delivered most of it, recorded so at the origin; then it calls in again at once', async () => {
      o.clock.set(OPEN + DAY); // the next day's window is open
      const t = await setup('pull');
      try {
        t.sd.start();
        await waitFor(() => t.fetches.length === 1, 'the fetch of the order given at the check-in');
        const peer = 'trm_peerwithmost';
        for (let i = 0; i < PIECES; i++) t.fetches[0]!.piece(i);
        const held = await t.o.call('PUT', '/terminals/holdings', { token: t.token, json: { contentIds: [t.contentId], mode: 'add' } });
        assert.equal(held.status, 200, JSON.stringify(held.body));
        const before = t.checkIns();
        t.fetches[0]!.finish({ origin: PIECE, [peer]: 3 * PIECE });
        await waitFor(() => t.events.some((e) => e.event === 'delivered'), 'the delivery');
        assert.deepEqual(t.events.find((e) => e.event === 'delivered'), { event: 'delivered', contentId: t.contentId, bytes: PIECES * PIECE, source: 'peer', sourceId: peer });
        assert.deepEqual(t.reports().at(-1), { contentId: t.contentId, bytes: PIECES * PIECE, state: 'done', source: 'peer', sourceId: peer });
        await t.o.scheduler!.tick();
        assert.deepEqual((await t.history()).map((r) => [r.outcome, r.bytes, r.source, r.sourceId]), [['done', PIECES * PIECE, 'peer', peer]]);
        // More may be due: it calls in again without waiting for the clock.
        await waitFor(() => t.checkIns() > before, 'a check-in right after the delivery');
        assert.deepEqual(mainSource({ origin: 0, [peer]: 0 }), undefined, 'nothing fetched: no source');
      } finally {
        await t.sd.close();
      }
    });

    test('a "done" the origin refuses as not held (the whole claim was lost on its way): the agent claims the content again and says done again', async () => {
      o.clock.set(OPEN + DAY + 60_000); // still in that day's window
      const t = await setup('pull');
      try {
        t.sd.start();
        await waitFor(() => t.fetches.length === 1, 'the fetch');
        for (let i = 0; i < PIECES; i++) t.fetches[0]!.piece(i);
        // No holdings claim reaches the origin this time: it refuses the first "done" (not_held).
        t.fetches[0]!.finish({ origin: PIECES * PIECE });
        await waitFor(() => t.events.some((e) => e.event === 'delivered'), 'the delivery');
        const done = { contentId: t.contentId, bytes: PIECES * PIECE, state: 'done', source: 'origin' };
        assert.deepEqual(t.reports().slice(-2), [done, done], 'said twice');
        await t.o.scheduler!.tick();
        assert.deepEqual((await t.history()).map((r) => [r.outcome, r.bytes, r.source]), [['done', PIECES * PIECE, 'origin']]);
        const claims = await t.o.db.db.selectFrom('holdings').select(['terminal_id', 'pieces']).where('content_id', '=', t.contentId).execute();
        assert.deepEqual(claims, [{ terminal_id: t.terminalId, pieces: null }], 'held whole, as the agent claimed again');
      } finally {
        await t.sd.close();
      }
    });

    test('a failed fetch is reported with its code; the origin records the failure and the attempt ends', async () => {
      o.clock.set(OPEN + 2 * DAY);
      const t = await setup('pull');
      try {
        t.sd.start();
        await waitFor(() => t.fetches.length === 1, 'the fetch');
        t.fetches[0]!.piece(1);
        t.fetches[0]!.fail(new AppError('piece_corrupt', 'Every source sent bad bytes for piece 2.', 502));
        await waitFor(() => t.events.some((e) => e.event === 'failed'), 'the failure');
        assert.deepEqual(t.reports().at(-1), { contentId: t.contentId, bytes: PIECE, state: 'failed', reason: 'piece_corrupt' });
        await t.o.scheduler!.tick();
        assert.deepEqual((await t.history()).map((r) => [r.outcome, r.reason, r.bytes]), [['failed', 'piece_corrupt', PIECE]]);
        assert.deepEqual(t.sd.running(), []);
      } finally {
        await t.sd.close();
      }
    });

    test('address (S0.4): registered with the origin; pushed orders without its signature or for another terminal are refused; a re-sent order is fetched once; closing stops it without a word to the origin', async () => {
      o.clock.set(OPEN + 3 * DAY);
      const t = await setup('address');
      try {
        t.sd.start();
        await waitFor(
          async () => (await t.o.db.db.selectFrom('schedule_push_addresses').select('url').where('terminal_id', '=', t.terminalId).executeTakeFirst())?.url === 'http://127.0.0.1:9/schedule/orders',
          'the registered address',
        );
        const order: DeliveryOrder = { terminalId: t.terminalId, contentId: t.contentId, title: 'Evening', totalSize: PIECES * PIECE, rateBytesPerSecond: 100_000, windowEnd: new Date(CLOSE + 3 * DAY).toISOString(), attempt: 'x#1', issuedAt: new Date(o.clock.now()).toISOString() };
        const refused = (token: unknown) => assert.throws(() => t.sd.acceptPushed(token), (e: unknown) => e instanceof AppError && e.code === 'invalid_order' && e.status === 400);
        refused(42);
        refused(encodeToken({ typ: ORDER_TOKEN_TYPE, ...order }, generateKeyPair().privateKey));
        refused(encodeToken({ typ: ORDER_TOKEN_TYPE, ...order, terminalId: 'trm_someone_else' }, t.o.keys.privateKey));
        refused(encodeToken({ typ: 'cascade-grant', ...order }, t.o.keys.privateKey));
        assert.equal(t.fetches.length, 0, 'nothing fetched for a refused order');

        const signed = encodeToken({ typ: ORDER_TOKEN_TYPE, ...order }, t.o.keys.privateKey);
        assert.deepEqual(t.sd.acceptPushed(signed), order);
        assert.deepEqual(t.sd.acceptPushed(signed), order);
        assert.equal(t.fetches.length, 1, 'a re-sent order starts nothing new');
        assert.equal(t.fetches[0]!.extra.downRate, 100_000);
        assert.deepEqual(t.sd.running(), [t.contentId]);

        // Shutting down is not the window closing: the origin learns at the window's end.
        t.fetches[0]!.piece(0);
        await t.sd.close();
        assert.deepEqual(t.events.at(-1), { event: 'paused', contentId: t.contentId, bytes: PIECE, reason: 'agent_closing' });
        assert.deepEqual(t.reports(), []);
      } finally {
        await t.sd.close();
      }
    });
  });
}
