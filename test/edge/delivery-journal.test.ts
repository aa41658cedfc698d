import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import { ManualClock } from '../../src/core/clock.ts';
import { generateKeyPair, signBytes } from '../../src/core/crypto.ts';
import { AppError } from '../../src/core/errors.ts';
import { Api } from '../../src/core/http-client.ts';
import { createHttpApp } from '../../src/core/http.ts';
import { walletAccount } from '../../src/ledger/accounts.ts';
import { DEFAULT_TARIFF } from '../../src/ledger/tariff.ts';
import { loginMessage } from '../../src/terminals/challenges.ts';
import { DeliveryService, type DeliveryReport } from '../../src/edge/deliveries.ts';
import { DeliveryJournal, DeliveryReporter, JOURNAL_FILE, openDeliveryReporting } from '../../src/edge/delivery-journal.ts';
import { deliveryRoutes, type ResolveEdge } from '../../src/edge/delivery-routes.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// The edge's side of S2.4: reports are journaled (fsynced) before they are sent, the reporter
// sends what is unacknowledged in batches, retries after network errors and 5xx answers, and a
// reporter started again over the same journal (the edge restarted mid-way) finishes the job:
// every delivery billed exactly once, the edge's and the origin's counts equal.
//
// The origin is a real one (test origin: database, ledger, accounts, terminal sessions); the
// delivery routes run beside it on an app of their own with an injected resolveEdge, until the
// edge spine (src/edge/index.ts) composes them into the origin.

const T0 = Date.UTC(2026, 11, 1, 4, 0);

describe('delivery journal and reporter', () => {
  let o: TestOrigin;
  let side: FastifyInstance;
  let sideUrl: string;
  let deliveries: DeliveryService;
  let contentId: string;
  const edges = new Map<string, { id: string; ownerId: string; kind: 'home' | 'store' | 'delivery' }>();
  const ownerOf = new Map<string, string>();
  /** Answers 503 to the next n report requests (after doing nothing). */
  let failNext = 0;
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'cascade-journal-'));
    dirs.push(d);
    return d;
  };

  /** A terminal of a fresh operator, registered as an edge: its session token and edge ID. */
  async function edge(name: string): Promise<{ token: string; edgeId: string; ownerId: string }> {
    const owner = await o.userWithRoles(['operator']);
    const keys = generateKeyPair();
    const reg = await o.registerTerminal(owner.token, keys, { name });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    const terminalId: string = reg.body.terminal.id;
    const { nonce } = (await o.call('POST', '/terminals/challenge', { json: { terminalId } })).body;
    const login = await o.call('POST', '/terminals/login', { json: { credential: reg.body.credential, nonce, signature: signBytes(keys.privateKey, loginMessage(terminalId, nonce)) } });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    const edgeId = `edg_${name}${randomBytes(3).toString('hex')}`;
    edges.set(terminalId, { id: edgeId, ownerId: owner.userId, kind: 'home' });
    ownerOf.set(edgeId, owner.userId);
    return { token: login.body.token, edgeId, ownerId: owner.userId };
  }

  before(async () => {
    o = await startTestOrigin({ now: T0, config: { signupCredit: 0 } });
    const publisher = await o.userWithRoles(['publisher']);
    contentId = randomBytes(32).toString('hex');
    await o.db.db
      .insertInto('contents')
      .values({ id: contentId, title: 'Film', summary: '', author: 'a', genre: 'g', price: 500, publisher_id: publisher.userId, piece_size: 1024, piece_count: 1, total_size: 1000, manifest: {} as never, created_at: new Date(T0) })
      .execute();
    deliveries = new DeliveryService({ db: o.db.db, clock: o.clock, ledger: o.ledger, tariff: DEFAULT_TARIFF, edges: { ownerOf: async (id) => ownerOf.get(id) ?? null } });
    const resolveEdge: ResolveEdge = async (terminalId) => edges.get(terminalId) ?? null;
    side = createHttpApp({ logger: pino({ level: 'silent' }), resolveToken: o.accounts.resolveToken, title: 'deliveries' });
    side.addHook('onRequest', async (req, reply) => {
      if (req.url.startsWith('/edges/me/deliveries/reports') && failNext > 0) {
        failNext--;
        await reply.code(503).send({ error: { code: 'unavailable', message: 'try again' } });
      }
    });
    await side.register(deliveryRoutes({ deliveries, resolveEdge }));
    await side.listen({ host: '127.0.0.1', port: 0 });
    const addr = side.server.address();
    sideUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  });
  after(async () => {
    await side.close();
    await o.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  async function customer(funds: number) {
    const u = await o.userWithRoles(['member']);
    await o.fund(u.userId, funds, `fund-${u.userId}`);
    return u;
  }
  const posted = async (userId: string) => (await o.ledger.balance(walletAccount(userId).id)).posted;

  test('the journal: fsynced lines survive a reopen; a torn last line is ignored; it is compacted on open; its size is capped', async () => {
    const dir = tmp();
    const clock = new ManualClock(T0);
    let j = await DeliveryJournal.open(dir, { clock });
    const a = await j.record({ deliveryId: 'dlv_a', fee: 1, final: false });
    const b = await j.record({ deliveryId: 'dlv_a', fee: 2, bytes: 10, viewedSeconds: 5, final: true });
    const c = await j.record({ deliveryId: 'dlv_b', fee: 3, final: true });
    assert.deepEqual([a, b, c], [1, 2, 3]);
    await j.acknowledge([a]);
    await j.refuse([{ seq: c, code: 'not_your_delivery', message: 'no' }]);
    assert.deepEqual(j.counts(), { recorded: 3, acknowledged: 1, refused: 1, pending: 1 });
    await assert.rejects(j.record({ deliveryId: 'nope', fee: 1, final: true }), (e: AppError) => e.code === 'invalid_delivery_report');
    await assert.rejects(j.record({ deliveryId: 'dlv_x', fee: -1, final: true }), (e: AppError) => e.code === 'invalid_delivery_report');
    await j.close();
    appendFileSync(path.join(dir, JOURNAL_FILE), '{"t":"report","seq":9,"report":{"deli'); // a crash mid-write
    j = await DeliveryJournal.open(dir, { clock });
    assert.deepEqual(j.counts(), { recorded: 3, acknowledged: 1, refused: 1, pending: 1 });
    assert.deepEqual(j.pending(10), [{ seq: 2, report: { deliveryId: 'dlv_a', fee: 2, bytes: 10, viewedSeconds: 5, final: true } }]);
    assert.equal(j.latestRefusals()[0].code, 'not_your_delivery');
    const lines = readFileSync(path.join(dir, JOURNAL_FILE), 'utf8').trim().split('\n');
    assert.equal(lines.length, 2, 'compacted: a base line and the one report still to send');
    assert.equal(await j.record({ deliveryId: 'dlv_c', fee: 4, final: true }), 4, 'sequence numbers go on');
    await j.close();

    const big = tmp();
    writeFileSync(path.join(big, JOURNAL_FILE), '{"t":"ack","seqs":[]}\n'.repeat(11));
    await assert.rejects(DeliveryJournal.open(big, { clock, maxLines: 10 }), (e: AppError) => e.code === 'journal_too_large');
  });

  test('killed mid-way and started again: every report delivered, every delivery billed exactly once, the counts agree', async () => {
    const e = await edge('home');
    const u = await customer(100_000);
    const dir = tmp();
    const clock = new ManualClock(T0);
    const opened: string[] = [];
    for (let i = 0; i < 25; i++) opened.push((await deliveries.open({ edgeId: e.edgeId, kind: 'rental', contentId, userId: u.userId, payer: 'wallet', maxFee: 1000, terms: { perHour: 100 } })).id);
    const fees = opened.map((_, i) => 7 * i + 1);

    // The first run: journals progress and final reports, sends three batches, and dies after the
    // origin processed the fourth but before its answer was journaled.
    let journal = await DeliveryJournal.open(dir, { clock });
    let posts = 0;
    class Dying extends Api {
      override async post<T>(route: string, json?: unknown): Promise<T> {
        const answer = await super.post<T>(route, json);
        if (++posts === 4) throw new AppError('origin_unreachable', 'the edge died before it journaled the answer', 503);
        return answer;
      }
    }
    const first = new DeliveryReporter({ journal, api: () => new Dying(sideUrl, e.token), clock, batchSize: 6 });
    for (const [i, id] of opened.entries()) {
      await first.report({ deliveryId: id, fee: Math.floor(fees[i] / 2), viewedSeconds: 60, final: false });
      await first.report({ deliveryId: id, fee: fees[i], viewedSeconds: 120, final: true });
    }
    const died = await first.flush();
    assert.equal(died.sent, 18);
    assert.equal(died.error?.code, 'origin_unreachable');
    await journal.close(); // the process is gone: nothing more is written
    assert.deepEqual(journal.counts(), { recorded: 50, acknowledged: 18, refused: 0, pending: 32 });

    // The second run starts over the same directory and sends what is unacknowledged.
    journal = await DeliveryJournal.open(dir, { clock });
    assert.deepEqual(journal.counts(), { recorded: 50, acknowledged: 18, refused: 0, pending: 32 });
    const second = new DeliveryReporter({ journal, api: () => new Api(sideUrl, e.token), clock, batchSize: 6 });
    const done = await second.flush();
    assert.equal(done.error, null);
    assert.equal(done.sent, 32);
    assert.equal(done.duplicates, 6, 'the fourth batch (three deliveries, progress and final) was billed already: duplicates');
    assert.deepEqual(journal.counts(), { recorded: 50, acknowledged: 50, refused: 0, pending: 0 });
    assert.equal((await second.flush()).sent, 0, 'nothing left');

    // The origin's view agrees with the edge's.
    const total = fees.reduce((s, f) => s + f, 0);
    assert.deepEqual(await deliveries.counts(e.edgeId), { opened: 25, open: 0, billed: 25, billedFees: total });
    assert.equal(await posted(u.userId), 100_000 - total, 'each delivery charged once');
    assert.ok((await o.ledger.checkConservation()).ok);
    const operator = await o.userWithRoles(['operator']);
    const listed = await new Api(sideUrl, operator.token).get(`/edges/${e.edgeId}/deliveries?limit=1000`);
    assert.equal(listed.deliveries.length, 25);
    assert.ok(listed.deliveries.every((d: { state: string; reports: number }) => d.state === 'billed' && d.reports === 2));
    const mine = await new Api(sideUrl, u.token).get('/deliveries/mine?limit=10');
    assert.equal(mine.deliveries.length, 10);
    assert.equal(typeof mine.nextBefore, 'number');
    assert.deepEqual(mine.deliveries[0].split, { edge: 84, royalty: 67, fee: 16, rounding: 2 }, 'fee 169 split on its total');
    // Each delivery is one record in the wallet's history (S1.12), of exactly its fee.
    const history = await o.call('GET', '/wallet/history?limit=3', { token: u.token });
    assert.equal(history.status, 200, JSON.stringify(history.body));
    const record = history.body.entries.find((r: { id: string }) => r.id === `delivery:${opened[24]}`);
    assert.ok(record, JSON.stringify(history.body.entries.map((r: { id: string }) => r.id)));
    assert.equal(record.amount, -169);
    assert.equal(record.reason, 'delivery');
    assert.match(record.description, /^Delivery of “Film” by an edge: paid 169 \(source user\S+ 84, royalty to user\S+ 67, platform fee 16, rounding 2\)$/);
    assert.deepEqual(record.split.map((p: { part: string; amount: number }) => [p.part, p.amount]), [['source', 84], ['royalty', 67], ['fee', 16], ['rounding', 2]]);
    await journal.close();
  });

  test('refused reports are journaled with their code and not sent again; the rest of the batch is billed', async () => {
    const e = await edge('refusing');
    const other = await edge('other');
    const u = await customer(10_000);
    const mine = await deliveries.open({ edgeId: e.edgeId, kind: 'rental', contentId, userId: u.userId, payer: 'wallet', maxFee: 100, terms: {} });
    const theirs = await deliveries.open({ edgeId: other.edgeId, kind: 'rental', contentId, userId: u.userId, payer: 'wallet', maxFee: 100, terms: {} });
    const dir = tmp();
    const clock = new ManualClock(T0);
    const journal = await DeliveryJournal.open(dir, { clock });
    const reporter = new DeliveryReporter({ journal, api: () => new Api(sideUrl, e.token), clock });
    const reports: DeliveryReport[] = [
      { deliveryId: theirs.id, fee: 10, final: true },
      { deliveryId: mine.id, fee: 101, final: true },
      { deliveryId: 'dlv_unknown', fee: 1, final: true },
      { deliveryId: mine.id, fee: 60, final: true },
      { deliveryId: mine.id, fee: 61, final: true },
    ];
    for (const r of reports) await reporter.report(r);
    const r = await reporter.flush();
    assert.deepEqual({ sent: r.sent, accepted: r.accepted, duplicates: r.duplicates, refused: r.refused }, { sent: 5, accepted: 1, duplicates: 0, refused: 4 });
    assert.deepEqual(
      journal.latestRefusals().map((x) => [x.deliveryId, x.code]),
      [
        [theirs.id, 'not_your_delivery'],
        [mine.id, 'fee_exceeds_terms'],
        ['dlv_unknown', 'unknown_delivery'],
        [mine.id, 'delivery_already_billed'],
      ],
    );
    assert.equal(reporter.status().refused, 4);
    assert.equal((await deliveries.get(theirs.id))!.state, 'open', 'another edge cannot bill it');
    assert.equal((await deliveries.get(mine.id))!.charged, 60);
    await journal.close();
    const again = await DeliveryJournal.open(dir, { clock });
    assert.equal(again.pending(10).length, 0, 'refused reports are not sent again after a restart');
    await again.close();

    // An account's session (not a terminal's) is refused as a whole.
    const stranger = await o.userWithRoles(['member']);
    const api = new Api(sideUrl, stranger.token);
    await assert.rejects(api.post('/edges/me/deliveries/reports', { reports: [] }), (err: AppError) => err.code === 'terminal_required');
  });

  test('the running reporter: sends on report, backs off after 5xx answers and network errors by the clock, resumes', async () => {
    const e = await edge('looping');
    const u = await customer(10_000);
    const d = await Promise.all([1, 2, 3].map(() => deliveries.open({ edgeId: e.edgeId, kind: 'rental', contentId, userId: u.userId, payer: 'wallet', maxFee: 100, terms: {} })));
    const clock = new ManualClock(T0);
    let reachable = false;
    // As the edge process opens it: the journal in its home, the reporter started (default timings: 10 s, backoff 1 s doubling).
    const reporting = await openDeliveryReporting({ home: tmp(), api: () => new Api(reachable ? sideUrl : 'http://127.0.0.1:9', e.token), clock });
    const { reporter } = reporting;
    const journal = { counts: () => reporter.status() };
    const until = async (what: string, ok: () => boolean) => {
      for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(ok(), what);
    };
    await reporter.report({ deliveryId: d[0].id, fee: 10, final: true });
    await until('the unreachable origin is noticed', () => reporter.status().lastError?.startsWith('origin_unreachable') ?? false);
    await until('it waits for its backoff', () => clock.isWaitingFor(T0 + 1000));
    reachable = true;
    failNext = 1;
    clock.set(T0 + 1000);
    await until('a 503 answer is a failure too', () => reporter.status().lastError?.startsWith('unavailable') ?? false);
    await until('the backoff doubles', () => clock.isWaitingFor(T0 + 3000));
    await reporter.report({ deliveryId: d[1].id, fee: 20, final: true });
    assert.equal(journal.counts().acknowledged, 0, 'a new report does not cut the backoff short');
    clock.set(T0 + 3000);
    await until('sent after the backoff', () => journal.counts().acknowledged === 2);
    assert.equal(reporter.status().lastError, null);
    await until('then it waits for the interval', () => clock.isWaitingFor(T0 + 13_000));
    await reporter.report({ deliveryId: d[2].id, fee: 30, final: true });
    await until('a new report wakes it', () => journal.counts().acknowledged === 3);
    await reporting.close();
    assert.equal(await posted(u.userId), 10_000 - 60);
    // What the origin says to the edge (cascade edge status) agrees with the edge's journal.
    const counts = await new Api(sideUrl, e.token).get('/edges/me/deliveries/counts');
    assert.deepEqual(counts, { opened: 3, open: 0, billed: 3, billedFees: 60 });
    assert.equal(reporter.status().acknowledged, counts.billed);
    const stranger = await edge('unregistered');
    edges.delete([...edges].find(([, v]) => v.id === stranger.edgeId)![0]);
    await assert.rejects(new Api(sideUrl, stranger.token).get('/edges/me/deliveries/counts'), (err: AppError) => err.code === 'not_an_edge' && err.status === 403);
    await assert.rejects(new Api(sideUrl, stranger.token).post('/edges/me/deliveries/reports', { reports: [] }), (err: AppError) => err.code === 'not_an_edge');
  });
});
