import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Agent } from '../../src/agent/agent.ts';
import { AppError } from '../../src/core/errors.ts';
import { Api } from '../../src/core/http-client.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { download } from '../../src/transfer/downloader.ts';
import { startTestAgent } from '../helpers/agents.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { recorder } from '../helpers/deliveries.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #13 operations dashboard (GET /ops/dashboard): the figures after real downloads — an
// agent fetching a content whole, then a receiver stopped halfway — on the origin's
// ManualClock: terminals online, holders per content, running transfers with receiver
// and sources, origin egress per minute (bucketed by the clock, kept across a restart),
// the ledger's conservation check, the schedule backlog; and the refusals.
//
// Downloads sign proofs with the real clock and the origin checks them within 2 minutes,
// so the manual clock stays near real time until the downloads are done; after that it
// moves freely.

const PIECE = 64 * 1024;
const MIN = 60_000;

const expectError = (res: { status: number; body: any }, status: number, code: string) => {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body?.error?.code, code, JSON.stringify(res.body));
  assert.equal(typeof res.body.error.message, 'string');
};

for (const engine of testEngines()) {
  describe(`operations dashboard (${engine.name})`, () => {
    let o: TestOrigin;
    let work: string;
    let operator: { token: string; userId: string };
    let contentId: string;
    let file: Buffer;
    let alpha: Agent;
    /** The start of the minute the first download lands in. */
    let m0: number;
    let receiverId: string;
    let originBytesM1 = 0;

    const dashboard = async () => {
      const res = await o.call('GET', '/ops/dashboard', { token: operator.token });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body;
    };
    const egressAt = (d: any, at: number) => d.egress.points.find((p: any) => p.at === new Date(at).toISOString())?.bytes;
    const originReceiptBytes = async (receiver: string) =>
      (await o.db.db.selectFrom('receipts').select('bytes').where('receiver_id', '=', receiver).where('source_id', '=', 'origin').execute()).reduce((s, r) => s + Number(r.bytes), 0);

    before(async () => {
      m0 = Math.floor(Date.now() / MIN) * MIN;
      o = await startTestOrigin({ engine, now: m0 + 10_000, config: { pieceSize: PIECE, holdingsSpotCheck: false, scheduler: false } });
      work = mkdtempSync(path.join(os.tmpdir(), 'cascade-dash-'));
      operator = await o.userWithRoles(['operator']);
      const publisher = await o.userWithRoles(['publisher']);
      file = randomBytes(PIECE * 20 + 999); // 21 pieces
      const res = await o.call('POST', '/contents?title=Harbour%20Lights&genre=drama&price=300', {
        token: publisher.token,
        body: file,
        headers: { 'content-type': 'application/octet-stream' },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      contentId = res.body.id;
    });
    after(async () => {
      await alpha?.close();
      await o.close();
      rmSync(work, { recursive: true, force: true });
    });

    test('before anything moved: zeros, a full hour of empty minutes, a balanced ledger', async () => {
      const d = await dashboard();
      assert.equal(d.at, new Date(m0 + 10_000).toISOString());
      assert.deepEqual(d.terminals, { online: 0, total: 0 });
      assert.deepEqual(d.holders, []);
      assert.deepEqual(d.transfers, []);
      assert.equal(d.egress.bucketSeconds, 60);
      assert.equal(d.egress.points.length, 60);
      assert.equal(d.egress.points[59].at, new Date(m0).toISOString(), 'the last point is the current minute');
      assert.equal(d.egress.points[0].at, new Date(m0 - 59 * MIN).toISOString());
      assert.ok(d.egress.points.every((p: any) => p.bytes === 0));
      assert.equal(d.ledger.ok, true);
      assert.equal(d.ledger.checkedAt, d.at);
      assert.match(d.ledger.message, /sum to zero/);
      assert.deepEqual(d.schedule, { backlog: 0, oldestDueAt: null });
    });

    test('after an agent fetched the content whole: one terminal online, one holder, its bytes in this minute’s egress', async () => {
      // Patient stall limits: the machine may be busy, and a stall is not what this test is about.
      alpha = await startTestAgent(o, work, 'alpha', { downloads: { stallMs: 10_000, refreshMs: 200 } });
      await alpha.fetch(contentId);
      await alpha.heartbeat();
      const d = await dashboard();
      assert.deepEqual(d.terminals, { online: 1, total: 1 });
      assert.deepEqual(d.holders, [{ contentId, title: 'Harbour Lights', holdersOnline: 1, holders: 1 }]);
      assert.deepEqual(d.transfers, [], 'a finished transfer is not running');
      // The agent was the first receiver: every byte came from the origin, in the minute of the clock.
      assert.equal(egressAt(d, m0), file.length);
      assert.equal(d.egress.points.reduce((s: number, p: any) => s + p.bytes, 0), file.length);
      assert.equal(d.ledger.ok, true, d.ledger.message);
    });

    test('a receiver stopped halfway: its transfer runs (receiver, sources, pieces) until nobody reported on it for the monitor’s limit', async () => {
      o.clock.set(m0 + MIN + 50_000); // the next minute
      await alpha.heartbeat();
      const member = await o.userWithRoles(['member']);
      const device = await deviceSession(new Api(o.url, member.token), path.join(work, 'beta-home'), { name: 'beta' });
      receiverId = device.terminalId;
      const stop = new AbortController();
      await assert.rejects(
        download({
          api: new Api(o.url, device.token),
          originKey: o.keys.publicKeyB64,
          device,
          contentId,
          files: { data: path.join(work, 'beta.bin'), journal: path.join(work, 'beta.journal') },
          concurrency: 1,
          receiptBatch: 1,
          stallMs: 10_000,
          signal: stop.signal,
          onProgress: (p) => {
            if (p.pieces >= 5) stop.abort();
          },
        }),
        (e: AppError) => e.code === 'aborted',
      );
      originBytesM1 = await originReceiptBytes(receiverId);

      const d = await dashboard();
      assert.deepEqual(d.terminals, { online: 1, total: 2 }, 'beta never sent a heartbeat');
      assert.equal(d.transfers.length, 1, JSON.stringify(d.transfers));
      const t = d.transfers[0];
      assert.equal(t.contentId, contentId);
      assert.equal(t.title, 'Harbour Lights');
      assert.deepEqual(t.receiver, { id: receiverId, name: 'beta' });
      assert.equal(t.pieces, 21);
      assert.ok(t.piecesDone >= 0 && t.piecesDone < 21, String(t.piecesDone));
      assert.ok(Date.parse(t.startedAt) === o.clock.now());
      // The origin is always offered (first); the holder alpha, online, as a peer by its name.
      assert.deepEqual(t.sources, [
        { id: 'origin', kind: 'origin', name: 'origin' },
        { id: alpha.terminalId, kind: 'peer', name: 'alpha' },
      ]);
      assert.equal(egressAt(d, m0), file.length, 'the first minute keeps its bytes');
      assert.equal(egressAt(d, m0 + MIN), originBytesM1, 'what beta got from the origin, in its own minute');

      // alpha's report of what it served beta keeps the transfer alive (S1.7): closing it sends the last one now.
      await alpha.close();
      o.clock.advance(o.config.transferDeadMs);
      assert.equal((await dashboard()).transfers.length, 1, 'reported on exactly the limit ago: still running');
      o.clock.advance(1);
      assert.deepEqual((await dashboard()).transfers, [], 'nobody reported on it for longer than the limit');
    });

    test('egress: 60 one-minute buckets on the clock; a minute leaves the window an hour after it began; the figures survive a restart', async () => {
      // At the last moment of the hour that began with m0, m0 is the first point.
      o.clock.set(m0 + 60 * MIN - 1);
      let d = await dashboard();
      assert.equal(d.egress.points[0].at, new Date(m0).toISOString());
      assert.equal(d.egress.points[0].bytes, file.length);
      assert.equal(egressAt(d, m0 + MIN), originBytesM1);
      o.clock.advance(1);
      d = await dashboard();
      assert.equal(d.egress.points[0].at, new Date(m0 + MIN).toISOString());
      assert.equal(d.egress.points[0].bytes, originBytesM1);
      assert.equal(d.egress.points.reduce((s: number, p: any) => s + p.bytes, 0), originBytesM1, 'm0 left the window');

      // Read from the stored receipts: a restarted origin (or another origin process) shows the same.
      o.clock.set(m0 + 2 * MIN);
      const beforeRestart = (await dashboard()).egress;
      await o.restart();
      assert.deepEqual((await dashboard()).egress, beforeRestart);
      assert.equal(egressAt({ egress: beforeRestart }, m0), file.length);
    });

    test('schedule backlog: open deliveries whose due time has come, and the oldest due time', async () => {
      const now = m0 + 2 * MIN;
      o.clock.set(now);
      const rec = recorder(o.schedules.deliveries, () => o.clock.now());
      // Due 10 minutes ago, not started; due 3 minutes ago and running; due in an hour (not yet); due and done.
      await rec.due({ terminalId: alpha.terminalId, contentId, dueAt: now - 10 * MIN });
      const running = await rec.due({ terminalId: receiverId, contentId, dueAt: now - 3 * MIN });
      await rec.start(running, 'origin');
      const pub = await o.userWithRoles(['publisher']);
      const other = (await o.content.publish({ id: pub.userId, username: pub.username }, { title: 'Short', genre: 'news', price: 0 }, Readable.from([randomBytes(500)]))).id;
      await rec.due({ terminalId: receiverId, contentId: other, dueAt: now + 60 * MIN });
      const done = await rec.due({ terminalId: alpha.terminalId, contentId: other, dueAt: now - 20 * MIN });
      await rec.end(done, 'done', { bytes: 500 });
      assert.deepEqual((await dashboard()).schedule, { backlog: 2, oldestDueAt: new Date(now - 10 * MIN).toISOString() });
      o.clock.set(now + 60 * MIN);
      assert.deepEqual((await dashboard()).schedule, { backlog: 3, oldestDueAt: new Date(now - 10 * MIN).toISOString() }, 'the future one fell due');
    });

    test('refusals: a member, a publisher, a terminal session (even an operator’s), no token — and nothing changed', async () => {
      const member = await o.userWithRoles(['member']);
      const publisher = await o.userWithRoles(['publisher']);
      const device = await deviceSession(new Api(o.url, operator.token), path.join(work, 'op-home'), { name: 'ops-box' });
      // The background jobs' work after the clock's jumps, done now, so that only the calls below could change a row.
      await o.ledger.expireHolds();
      await o.coordinator.reassignStalled();
      await o.terminals.flush();
      const before = await snapshotTables(o.db.db);
      expectError(await o.call('GET', '/ops/dashboard', { token: member.token }), 403, 'forbidden');
      expectError(await o.call('GET', '/ops/dashboard', { token: publisher.token }), 403, 'forbidden');
      expectError(await o.call('GET', '/ops/dashboard', { token: device.token }), 403, 'account_session_required');
      expectError(await o.call('GET', '/ops/dashboard'), 401, 'unauthenticated');
      assert.deepEqual(await snapshotTables(o.db.db), before);
    });

    test('the ledger figure is the conservation check: an account whose totals break Σ debits = Σ credits turns it false, with a message', async () => {
      assert.equal((await dashboard()).ledger.ok, true);
      // Break the invariant behind the ledger's back (only a bug or a hand edit could).
      const account = await o.db.db.selectFrom('ledger_accounts').select('id').orderBy('id').limit(1).executeTakeFirstOrThrow();
      await o.db.db.updateTable('ledger_accounts').set((eb) => ({ debits_posted: eb('debits_posted', '+', 7) })).where('id', '=', account.id).execute();
      const d = await dashboard();
      assert.equal(d.ledger.ok, false);
      assert.match(d.ledger.message, /Conservation broken: posted debits \d+ vs credits \d+/);
      assert.equal((await o.ledger.checkConservation()).ok, false, 'the full check agrees');
    });
  });
}
