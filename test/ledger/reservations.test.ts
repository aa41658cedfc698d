import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { Api } from '../../src/core/http-client.ts';
import { walletAccount } from '../../src/ledger/accounts.ts';
import { DEFAULT_TARIFF } from '../../src/ledger/tariff.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { PieceClient } from '../../src/transfer/piece-client.ts';
import { makeReceipt } from '../../src/transfer/receipt.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { submitReceipts } from '../helpers/receipts.ts';

// #10 points 2 and 3: one reservation per purchase whatever the number of transfers,
// reruns or devices; a content fully paid for is not charged again; nothing is reserved
// before the request is validated, and a refusal leaves nothing behind; holds are
// released as soon as the purchase is complete or the transfer is done. Balances to the unit.

const PIECE = 16 * 1024;
const PIECES = 10;
const PRICE = 120;
const tariff = { ...DEFAULT_TARIFF, offPeakRatePercent: 100 };

for (const engine of testEngines()) {
  describe(`reservations per purchase on ${engine.name}`, () => {
    let origin: TestOrigin;
    let work: string;
    let contentId: string;
    let n = 0;

    before(async () => {
      origin = await startTestOrigin({ engine, config: { pieceSize: PIECE, signupCredit: 0, holdingsSpotCheck: false, tariff } });
      work = mkdtempSync(path.join(os.tmpdir(), 'cascade-reserve-'));
      const publisher = await origin.userWithRoles(['publisher']);
      const res = await origin.call('POST', `/contents?title=Once&genre=test&price=${PRICE}`, {
        token: publisher.token,
        body: randomBytes(PIECE * PIECES),
        headers: { 'content-type': 'application/octet-stream' },
      });
      assert.equal(res.status, 201);
      contentId = res.body.id;
    });
    after(async () => {
      await origin.close();
      rmSync(work, { recursive: true, force: true });
    });

    async function member(funds: number) {
      const user = await origin.userWithRoles(['member']);
      if (funds > 0) await origin.fund(user.userId, funds, `fund:${user.userId}`);
      return user;
    }
    async function device(user: { token: string }) {
      const session = await deviceSession(new Api(origin.url, user.token), path.join(work, `d${++n}`));
      return { ...session, api: new Api(origin.url, session.token), call: (method: string, url: string, json?: unknown) => origin.call(method, url, { token: session.token, json }) };
    }
    const wallet = (userId: string) => origin.ledger.balance(walletAccount(userId).id);
    /** Everything a refused request could have written, for before/after comparisons. */
    async function state(userId: string, terminalId: string) {
      const db = origin.db.db;
      return {
        wallet: await wallet(userId),
        transfers: await db.selectFrom('transfers').selectAll().where('receiver_id', '=', terminalId).orderBy('id').execute(),
        purchases: await db.selectFrom('ledger_purchases').selectAll().where('user_id', '=', userId).execute(),
        grants: (await sql<{ n: number }>`select count(*)::int8 as n from grants where receiver_id = ${terminalId}`.execute(db)).rows[0].n,
        ledger: (await sql<{ n: number }>`select count(*)::int8 as n from ledger_transfers`.execute(db)).rows[0].n,
      };
    }
    /** Fetches the pieces from the origin under the offer's grant and hands in one receipt. */
    async function receive(d: Awaited<ReturnType<typeof device>>, offer: { sources: { sourceId: string; grant: { id: string; token: string } }[] }, pieces: number[]) {
      const s = offer.sources.find((x) => x.sourceId === 'origin')!;
      const client = new PieceClient({ sourceUrl: origin.url, grant: { id: s.grant.id, token: s.grant.token, contentId }, receiverKey: d.keys.privateKey, clock: origin.clock, connections: 1 });
      const served: string[] = [];
      for (const i of pieces) served.push((await client.fetch(i, Buffer.alloc(PIECE))).served!);
      await client.close();
      const receipt = makeReceipt({ grant: s.grant.id, content: contentId, source: 'origin', receiver: d.terminalId, pieces: `${pieces[0]}-${pieces.at(-1)}`, bytes: pieces.length * PIECE, served }, d.keys.privateKey);
      const res = await submitReceipts(d.api, [receipt]);
      assert.equal(res.accepted.length, 1, JSON.stringify(res));
    }

    test('asked again and again for the same content, a receiver keeps one transfer and one reservation', async () => {
      const user = await member(291);
      const d = await device(user);
      const first = await d.call('POST', '/grants/auto', { contentId });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.deepEqual(first.body.reservation, { held: PRICE, heldUntil: origin.clock.now() + origin.config.holdTimeoutMs, paid: false, reused: false, why: first.body.reservation.why });
      // Two reruns (`cascade get` after Ctrl-C): the same transfer, the same single hold.
      for (let i = 0; i < 2; i++) {
        const again = await d.call('POST', '/grants/auto', { contentId });
        assert.equal(again.status, 200);
        assert.equal(again.body.transferId, first.body.transferId);
        assert.equal(again.body.reservation.reused, true);
      }
      assert.deepEqual(await wallet(user.userId), { posted: 291, pending: -PRICE, available: 291 - PRICE });
      // 40 % received and paid out of the hold, then a rerun: still one hold, for the rest.
      await receive(d, first.body, [0, 1, 2, 3]);
      assert.deepEqual(await wallet(user.userId), { posted: 291 - 48, pending: -(PRICE - 48), available: 291 - PRICE });
      const rerun = await d.call('POST', '/grants/auto', { contentId, have: '0-3' });
      assert.equal(rerun.body.transferId, first.body.transferId);
      assert.deepEqual(await wallet(user.userId), { posted: 291 - 48, pending: -(PRICE - 48), available: 291 - PRICE });
      // The last receipt completes the purchase: the hold is gone at once, before any done report.
      await receive(d, rerun.body, [4, 5, 6, 7, 8, 9]);
      assert.deepEqual(await wallet(user.userId), { posted: 291 - PRICE, pending: 0, available: 291 - PRICE });
      assert.ok((await origin.ledger.checkConservation()).ok);
    });

    test('a content fully paid for is fetched again for free, on a new device too; plays of it are free there once received', async () => {
      const user = await member(500);
      const d1 = await device(user);
      const offer = await d1.call('POST', '/grants/auto', { contentId });
      // One piece received: a receipt exists but the content is not paid for — a play is charged.
      await receive(d1, offer.body, [0]);
      const play = await d1.call('POST', '/plays', { contentId, playId: 'p1' });
      assert.equal(play.status, 200, JSON.stringify(play.body));
      assert.equal(play.body.reason, 'charged');
      assert.equal(play.body.charged, 12); // 10 % of 120
      await receive(d1, offer.body, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.equal((await d1.call('POST', '/plays', { contentId, playId: 'p2' })).body.reason, 'owned');
      const paid = await wallet(user.userId);
      assert.deepEqual(paid, { posted: 500 - PRICE - 12, pending: 0, available: 500 - PRICE - 12 });

      // A new device (or a deleted copy): nothing reserved, the receipts cost nothing.
      const d2 = await device(user);
      const again = await d2.call('POST', '/grants/auto', { contentId });
      assert.equal(again.status, 200);
      assert.equal(again.body.reservation.paid, true);
      assert.equal(again.body.reservation.held, 0);
      assert.match(again.body.reservation.why, /already paid/);
      await receive(d2, again.body, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.deepEqual(await wallet(user.userId), paid);
      const settled = await origin.db.db.selectFrom('ledger_settlements as s').innerJoin('receipts as r', 'r.id', 's.receipt_id').select(['s.charge', 's.why']).where('r.receiver_id', '=', d2.terminalId).execute();
      assert.deepEqual(settled.map((s) => s.charge), [0]);
      assert.match(settled[0].why, /already paid for/);
      assert.equal((await d2.call('POST', '/plays', { contentId, playId: 'p3' })).body.reason, 'owned');
      assert.ok((await origin.ledger.checkConservation()).ok);
    });

    test('a second device of the same user, while the first is still fetching, shares its reservation', async () => {
      const user = await member(200);
      const d1 = await device(user);
      const d2 = await device(user);
      assert.equal((await d1.call('POST', '/grants/auto', { contentId })).status, 200);
      const second = await d2.call('POST', '/grants/auto', { contentId });
      assert.equal(second.status, 200, JSON.stringify(second.body));
      assert.equal(second.body.reservation.reused, true);
      assert.deepEqual(await wallet(user.userId), { posted: 200, pending: -PRICE, available: 200 - PRICE });
    });

    test('refusals before anything is reserved or written: piecesDone beyond the content or int4, bad ranges, poor wallet', async () => {
      const user = await member(100);
      const d = await device(user);
      const before = await state(user.userId, d.terminalId);
      const refused = async (body: Record<string, unknown>, status: number, code: string) => {
        const res = await d.call('POST', '/grants/auto', { contentId, ...body });
        assert.equal(res.status, status, JSON.stringify(res.body));
        assert.equal(res.body.error.code, code);
        assert.deepEqual(await state(user.userId, d.terminalId), before, `${code} changed nothing`);
      };
      await refused({ piecesDone: 2147483648 }, 400, 'invalid_request');
      await refused({ piecesDone: 2147483647 }, 400, 'invalid_progress');
      await refused({ piecesDone: PIECES + 1 }, 400, 'invalid_progress');
      await refused({ have: '9-3' }, 400, 'invalid_pieces');
      await refused({ have: `0-${PIECES}` }, 400, 'invalid_pieces');
      await refused({}, 402, 'insufficient_balance'); // 100 < 120
      // A receiver claiming everything done without proving it opens an active transfer (and holds), never a done one.
      await origin.fund(user.userId, 100, `fund2:${user.userId}`);
      const claim = await d.call('POST', '/grants/auto', { contentId, piecesDone: PIECES });
      assert.equal(claim.status, 200);
      const t = await origin.db.db.selectFrom('transfers').selectAll().where('id', '=', claim.body.transferId).executeTakeFirstOrThrow();
      assert.equal(t.state, 'active');
      // Its progress reports are bounded the same way, before anything is recorded.
      const reports = await origin.db.db.selectFrom('peer_reports').selectAll().execute();
      const bad = await d.call('POST', `/transfers/${t.id}/progress`, { piecesDone: PIECES + 1, reports: [{ sourceId: 'origin', kind: 'stalled' }] });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'invalid_progress');
      assert.deepEqual(await origin.db.db.selectFrom('peer_reports').selectAll().execute(), reports);
      // Done: what it held is released at once, not after the hold's timeout.
      assert.equal((await wallet(user.userId)).pending, -PRICE);
      assert.equal((await d.call('POST', `/transfers/${t.id}/progress`, { piecesDone: PIECES, done: true })).status, 200);
      assert.deepEqual(await wallet(user.userId), { posted: 200, pending: 0, available: 200 });
    });

    test('a receiver that proves it has every piece opens a done transfer and holds nothing', async () => {
      const user = await member(500);
      const d = await device(user);
      const res = await d.call('POST', '/grants/auto', { contentId, have: `0-${PIECES - 1}`, piecesDone: PIECES });
      assert.equal(res.status, 200);
      const t = await origin.db.db.selectFrom('transfers').selectAll().where('id', '=', res.body.transferId).executeTakeFirstOrThrow();
      assert.equal(t.state, 'done');
      assert.deepEqual(await wallet(user.userId), { posted: 500, pending: 0, available: 500 });
    });

    test('a reservation that expired is made again on the next call, under a new ID', async () => {
      const user = await member(300);
      const d = await device(user);
      const first = await d.call('POST', '/grants/auto', { contentId });
      origin.clock.advance(origin.config.holdTimeoutMs + 1);
      await origin.ledger.expireHolds();
      assert.deepEqual(await wallet(user.userId), { posted: 300, pending: 0, available: 300 });
      const again = await d.call('POST', '/grants/auto', { contentId });
      assert.equal(again.body.transferId, first.body.transferId);
      assert.equal(again.body.reservation.reused, false);
      assert.deepEqual(await wallet(user.userId), { posted: 300, pending: -PRICE, available: 300 - PRICE });
      const holds = await origin.db.db.selectFrom('ledger_transfers').select('id').where('kind', '=', 'pending').where('debit_account_id', '=', walletAccount(user.userId).id).orderBy('seq').execute();
      assert.deepEqual(holds.map((h) => h.id.split(':').at(-1)), ['1', '2']);
    });
  });
}

describe('REFETCH_POLICY=charge', () => {
  test('a content fetched again after it was fully paid for is a new purchase, reserved and charged again', async () => {
    const origin = await startTestOrigin({ config: { pieceSize: PIECE, signupCredit: 0, holdingsSpotCheck: false, tariff, refetchPolicy: 'charge' } });
    const work = mkdtempSync(path.join(os.tmpdir(), 'cascade-refetch-'));
    try {
      const publisher = await origin.userWithRoles(['publisher']);
      const contentId = (await origin.call('POST', `/contents?title=Twice&genre=test&price=${PRICE}`, { token: publisher.token, body: randomBytes(PIECE * 2), headers: { 'content-type': 'application/octet-stream' } })).body.id;
      const user = await origin.userWithRoles(['member']);
      await origin.fund(user.userId, 1000, 'fund:refetch');
      const session = await deviceSession(new Api(origin.url, user.token), path.join(work, 'd'));
      const api = new Api(origin.url, session.token);
      for (const round of [1, 2]) {
        const offer = await api.post<any>('/grants/auto', { contentId });
        assert.equal(offer.reservation.held, PRICE, `round ${round}`);
        const s = offer.sources[0];
        const client = new PieceClient({ sourceUrl: origin.url, grant: { id: s.grant.id, token: s.grant.token, contentId }, receiverKey: session.keys.privateKey, clock: origin.clock, connections: 1 });
        const served = [(await client.fetch(0, Buffer.alloc(PIECE))).served!, (await client.fetch(1, Buffer.alloc(PIECE))).served!];
        await client.close();
        const receipt = makeReceipt({ grant: s.grant.id, content: contentId, source: 'origin', receiver: session.terminalId, pieces: '0-1', bytes: 2 * PIECE, served }, session.keys.privateKey);
        assert.equal((await submitReceipts(api, [receipt])).accepted.length, 1);
        await api.post(`/transfers/${offer.transferId}/progress`, { piecesDone: 2, done: true });
        assert.deepEqual(await origin.ledger.balance(walletAccount(user.userId).id), { posted: 1000 - round * PRICE, pending: 0, available: 1000 - round * PRICE });
      }
    } finally {
      await origin.close();
      rmSync(work, { recursive: true, force: true });
    }
  });
});
