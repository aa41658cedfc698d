import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { ManualClock } from '../../src/core/clock.ts';
import { generateKeyPair, signBytes } from '../../src/core/crypto.ts';
import { AppError } from '../../src/core/errors.ts';
import { Api } from '../../src/core/http-client.ts';
import { walletAccount } from '../../src/ledger/accounts.ts';
import { loginMessage } from '../../src/terminals/challenges.ts';
import type { DeliveryReport } from '../../src/edge/deliveries.ts';
import { DeliveryJournal, JOURNAL_FILE } from '../../src/edge/delivery-journal.ts';
import { startEdge, type EdgeNode } from '../../src/edge/node.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { waitFor } from '../helpers/wait.ts';

// The edge's side of S2.4: reports are journaled (fsynced) before they are sent, the reporter
// sends what is unacknowledged in batches, retries after network errors and 5xx answers by the
// edge's clock, and an edge started again over the same home (it was killed mid-way) finishes
// the job: every delivery billed exactly once, the edge's and the origin's counts equal. One real
// origin and real home edges (`startEdge`, as `cascade edge --kind home` runs it), some behind a
// proxy that can lose answers, answer 503 or be down.

const MiB = 1024 * 1024;
const T0 = Date.UTC(2026, 11, 1, 4, 0);

describe('delivery journal and reporter', () => {
  let o: TestOrigin;
  let work: string;
  let operator: { token: string; userId: string };
  let contentId: string;
  const nodes: EdgeNode[] = [];
  /** What the proxy in front of the origin does with report requests: pass them, lose the answer, answer 503, or be down. */
  let mode: 'pass' | 'pass-once' | 'lose' | '503' | 'down' = 'pass';
  /** Report requests that reached the proxy. */
  let reportPosts = 0;
  let proxy: http.Server;
  let proxyUrl: string;
  const tmp = () => mkdtempSync(path.join(work, 'j-'));

  before(async () => {
    o = await startTestOrigin({ now: T0, config: { signupCredit: 0 } });
    work = mkdtempSync(path.join(os.tmpdir(), 'cascade-deliveries-'));
    operator = await o.userWithRoles(['operator']);
    const publisher = await o.userWithRoles(['publisher']);
    const pub = await o.call('POST', '/contents?title=Film&genre=test&price=500', { token: publisher.token, body: randomBytes(64 * 1024), headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(pub.status, 201, JSON.stringify(pub.body));
    contentId = pub.body.id;
    // Forwards everything to the origin; report requests as `mode` says (the origin has processed a lost one).
    proxy = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', async () => {
        const reports = req.url === '/edges/me/deliveries/reports';
        if (reports) reportPosts++;
        // Decided when the request arrives: under load the next batch can go out before a test moves on.
        const lose = reports && mode === 'lose';
        if (reports && mode === 'pass-once') mode = 'lose'; // this one passes; the next ones lose their answers
        if (reports && mode === 'down') return void res.destroy();
        if (reports && mode === '503') return void res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"code":"unavailable","message":"try again"}}');
        try {
          const up = await fetch(o.url + req.url, {
            method: req.method,
            headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'host' && k !== 'content-length' && k !== 'connection')) as Record<string, string>,
            body: chunks.length ? Buffer.concat(chunks) : undefined,
          });
          const body = Buffer.from(await up.arrayBuffer());
          if (lose) return void res.destroy(); // processed by the origin, the answer lost
          res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'application/octet-stream' }).end(body);
        } catch {
          res.destroy();
        }
      });
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
  });
  after(async () => {
    for (const n of nodes) await n.close().catch(() => {});
    await new Promise((r) => {
      proxy.close(r);
      proxy.closeAllConnections();
    });
    await o.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** A home edge as `cascade edge --kind home` starts it, in `home`, reaching the origin directly or through the proxy. */
  async function homeEdge(home: string, via: 'direct' | 'proxy' = 'direct'): Promise<EdgeNode> {
    const node = await startEdge({
      origin: via === 'proxy' ? proxyUrl : o.url,
      token: operator.token,
      originKey: o.keys.publicKeyB64,
      home,
      kind: 'home',
      label: 'eu/home',
      cacheBytes: MiB,
      policy: 'manual',
      reportMs: 3_600_000,
      heartbeatMs: 3_600_000,
      clock: o.clock,
      logger: pino({ level: 'silent' }),
    });
    nodes.push(node);
    return node;
  }
  async function stopEdge(node: EdgeNode) {
    await node.close();
    nodes.splice(nodes.indexOf(node), 1);
  }
  async function customer(funds: number) {
    const u = await o.userWithRoles(['member']);
    await o.fund(u.userId, funds, `fund-${u.userId}`);
    return u;
  }
  const rental = (edgeId: string, userId: string, maxFee: number) => o.deliveries.open({ edgeId, kind: 'rental', contentId, userId, payer: 'wallet', maxFee, terms: { perHour: 100 } });
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

  test('killed mid-way and started again: every report delivered, every delivery billed exactly once, the counts agree', { timeout: 60_000 }, async () => {
    const home = path.join(work, 'home-killed');
    // The edge registers once (its terminal and edge row), then deliveries are opened on it.
    const first = await homeEdge(home, 'proxy');
    const edgeId = first.edgeId;
    await stopEdge(first);
    const u = await customer(1_000_000);
    const ids: string[] = [];
    for (let i = 0; i < 125; i++) ids.push((await rental(edgeId, u.userId, 1000)).id);
    const fees = ids.map((_, i) => 7 * i + 1);
    // What the home server journaled (progress, then final) before it could send anything.
    const journal = await DeliveryJournal.open(home, { clock: o.clock });
    for (const [i, id] of ids.entries()) {
      await journal.record({ deliveryId: id, fee: Math.floor(fees[i] / 2), viewedSeconds: 60, final: false });
      await journal.record({ deliveryId: id, fee: fees[i], viewedSeconds: 120, final: true });
    }
    await journal.close();

    // The first run sends at start, 100 reports a batch; the origin bills the second batch but its answer is lost; the edge dies.
    reportPosts = 0;
    mode = 'pass-once';
    const sent = reportPosts;
    const dying = await homeEdge(home, 'proxy');
    await waitFor(() => reportPosts >= sent + 1 && dying.deliveries.status().acknowledged === 100, 'the first batch');
    await waitFor(() => dying.deliveries.status().lastError !== null, 'the second batch’s answer is lost');
    assert.equal(dying.deliveries.status().pending, 150);
    await stopEdge(dying); // killed: the origin billed 50 more deliveries the edge never heard of
    mode = 'pass';
    assert.equal((await o.deliveries.counts(edgeId)).billed, 100);

    // Started again over the same home: it sends what is unacknowledged, and the origin answers duplicates for what it billed.
    const again = await homeEdge(home, 'proxy'); // the same origin address: the device's credential is kept per origin
    assert.equal(again.edgeId, edgeId, 'the same edge');
    await waitFor(() => again.deliveries.status().pending === 0, () => JSON.stringify(again.deliveries.status()));
    const status = again.deliveries.status();
    assert.deepEqual({ recorded: status.recorded, acknowledged: status.acknowledged, refused: status.refused }, { recorded: 250, acknowledged: 250, refused: 0 });
    assert.equal(status.lastError, null);
    assert.deepEqual({ accepted: status.accepted, duplicates: status.duplicates }, { accepted: 50, duplicates: 100 }, 'the lost batch comes back as duplicates');

    // The origin's view agrees with the edge's.
    const total = fees.reduce((s, f) => s + f, 0);
    const counts = await again.api().get('/edges/me/deliveries/counts');
    assert.deepEqual(counts, { opened: 125, open: 0, billed: 125, billedFees: total });
    assert.equal(await posted(u.userId), 1_000_000 - total, 'each delivery charged once');
    assert.ok((await o.ledger.checkConservation()).ok);
    const listed = await o.call('GET', `/edges/${edgeId}/deliveries?limit=1000`, { token: operator.token });
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    assert.equal(listed.body.deliveries.length, 125);
    assert.deepEqual(listed.body.counts, counts);
    assert.ok(listed.body.deliveries.every((d: { state: string; reports: number }) => d.state === 'billed' && d.reports === 2), 'a resent report changed nothing');
    const mine = await o.call('GET', '/deliveries/mine?limit=10', { token: u.token });
    assert.equal(mine.body.deliveries.length, 10);
    assert.equal(typeof mine.body.nextBefore, 'number');
    assert.deepEqual(mine.body.deliveries[0].split, { edge: 434, royalty: 347, fee: 86, rounding: 2 }, 'fee 869 split on its total');
    // Each delivery is one record in the wallet's history (S1.12), of exactly its fee.
    const history = await o.call('GET', '/wallet/history?limit=3', { token: u.token });
    assert.equal(history.status, 200, JSON.stringify(history.body));
    const record = history.body.entries.find((r: { id: string }) => r.id === `delivery:${ids[124]}`);
    assert.ok(record, JSON.stringify(history.body.entries.map((r: { id: string }) => r.id)));
    assert.equal(record.amount, -869);
    assert.equal(record.reason, 'delivery');
    assert.match(record.description, /^Delivery of “Film” by an edge: paid 869 \(source user\S+ 434, royalty to user\S+ 347, platform fee 86, rounding 2\)$/);
    // The edge's own page shows its journal's counts, and so does its report to the origin (cascade edge status <id>).
    const page = await fetch(`${again.url}/edge`).then((r) => r.json());
    assert.equal(page.deliveries.acknowledged, 250);
    await again.report();
    const detail = await o.call('GET', `/edges/${edgeId}`, { token: operator.token });
    assert.deepEqual(detail.body.stats.deliveries, { recorded: 250, acknowledged: 250, refused: 0, pending: 0 });
  });

  test('refused reports are journaled with their code and not sent again; the rest of the batch is billed', { timeout: 60_000 }, async () => {
    const e = await homeEdge(tmp());
    const other = await homeEdge(tmp());
    const u = await customer(10_000);
    // Opened in the home server's own transaction (as a rental row would be written): the edge is read through it.
    const mine = await o.db.db.transaction().execute((trx) => o.deliveries.open({ edgeId: e.edgeId, kind: 'rental', contentId, userId: u.userId, payer: 'wallet', maxFee: 100, terms: {} }, trx));
    const theirs = await rental(other.edgeId, u.userId, 100);
    const reports: DeliveryReport[] = [
      { deliveryId: theirs.id, fee: 10, final: true },
      { deliveryId: mine.id, fee: 101, final: true },
      { deliveryId: 'dlv_unknown', fee: 1, final: true },
      { deliveryId: mine.id, fee: 60, final: true },
      { deliveryId: mine.id, fee: 61, final: true },
    ];
    for (const r of reports) await e.deliveries.report(r);
    await waitFor(() => e.deliveries.status().pending === 0, 'all sent');
    assert.deepEqual(
      e.deliveries.status().refusals.map((x) => [x.deliveryId, x.code]),
      [
        [theirs.id, 'not_your_delivery'],
        [mine.id, 'fee_exceeds_terms'],
        ['dlv_unknown', 'unknown_delivery'],
        [mine.id, 'delivery_already_billed'],
      ],
    );
    assert.deepEqual(
      (({ recorded, acknowledged, refused }) => ({ recorded, acknowledged, refused }))(e.deliveries.status()),
      { recorded: 5, acknowledged: 1, refused: 4 },
    );
    assert.equal((await o.deliveries.get(theirs.id))!.state, 'open', 'another edge cannot bill it');
    assert.equal((await o.deliveries.get(mine.id))!.charged, 60);
    const home = e.home;
    await stopEdge(e);
    const reopened = await DeliveryJournal.open(home, { clock: o.clock });
    assert.equal(reopened.pending(10).length, 0, 'refused reports are not sent again after a restart');
    assert.equal(reopened.counts().refused, 4);
    await reopened.close();

    // A terminal that is not an edge, and an account's session, are refused as a whole.
    const keys = generateKeyPair();
    const reg = await o.registerTerminal(operator.token, keys, { name: 'not-an-edge' });
    const terminalId: string = reg.body.terminal.id;
    const { nonce } = (await o.call('POST', '/terminals/challenge', { json: { terminalId } })).body;
    const login = await o.call('POST', '/terminals/login', { json: { credential: reg.body.credential, nonce, signature: signBytes(keys.privateKey, loginMessage(terminalId, nonce)) } });
    const terminal = new Api(o.url, login.body.token);
    await assert.rejects(terminal.post('/edges/me/deliveries/reports', { reports: [] }), (err: AppError) => err.code === 'not_an_edge' && err.status === 403);
    await assert.rejects(terminal.get('/edges/me/deliveries/counts'), (err: AppError) => err.code === 'not_an_edge');
    await assert.rejects(new Api(o.url, u.token).post('/edges/me/deliveries/reports', { reports: [] }), (err: AppError) => err.code === 'terminal_required');
    const tooMany = await o.call('POST', '/edges/me/deliveries/reports', { token: login.body.token, json: { reports: Array.from({ length: 501 }, () => ({ deliveryId: 'dlv_x', fee: 1, final: true })) } });
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.body.error.code, 'invalid_request');
  });

  test('the running reporter: sends on report, backs off after network errors and 5xx answers by the clock, resumes', { timeout: 60_000 }, async () => {
    const e = await homeEdge(tmp(), 'proxy');
    const u = await customer(10_000);
    const d = [];
    for (let i = 0; i < 3; i++) d.push(await rental(e.edgeId, u.userId, 100));
    const t = o.clock.now();
    mode = 'down';
    await e.deliveries.report({ deliveryId: d[0].id, fee: 10, final: true });
    await waitFor(() => e.deliveries.status().lastError?.startsWith('origin_unreachable') ?? false, 'the unreachable origin is noticed');
    await waitFor(() => o.clock.isWaitingFor(t + 1000), 'it waits 1 s');
    mode = '503';
    o.clock.set(t + 1000);
    await waitFor(() => e.deliveries.status().lastError?.startsWith('unavailable') ?? false, 'a 503 answer is a failure too');
    await waitFor(() => o.clock.isWaitingFor(t + 3000), 'the backoff doubles');
    mode = 'pass';
    const posts = reportPosts;
    await e.deliveries.report({ deliveryId: d[1].id, fee: 20, final: true });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(reportPosts, posts, 'a new report does not cut the backoff short');
    o.clock.set(t + 3000);
    await waitFor(() => e.deliveries.status().acknowledged === 2, 'sent after the backoff');
    assert.equal(e.deliveries.status().lastError, null);
    await waitFor(() => o.clock.isWaitingFor(t + 13_000), 'then it waits for the interval (10 s)');
    await e.deliveries.report({ deliveryId: d[2].id, fee: 30, final: true });
    await waitFor(() => e.deliveries.status().acknowledged === 3, 'a new report wakes it');
    assert.equal(await posted(u.userId), 10_000 - 60);
    assert.deepEqual(await e.api().get('/edges/me/deliveries/counts'), { opened: 3, open: 0, billed: 3, billedFees: 60 });
    await stopEdge(e);
  });
});
