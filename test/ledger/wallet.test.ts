import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Api } from '../../src/core/http-client.ts';
import { HOLDS, PLATFORM_REVENUE, PLATFORM_ROUNDING, royaltyAccount, VOUCHERS_OUTSTANDING, walletAccount } from '../../src/ledger/accounts.ts';
import { DEFAULT_TARIFF } from '../../src/ledger/tariff.ts';
import { recordReason } from '../../src/ledger/wallet-routes.ts';
import { PLATFORM_PROMOTIONS } from '../../src/ledger/wallets.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { download, fileTarget } from '../../src/transfer/downloader.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { runCli } from '../helpers/processes.ts';

// Wallet records (S1.12, docs/ledger.md "Records"): GET /wallet, GET /wallet/history
// and `cascade wallet`, after a real download, a voucher top-up and a reservation.

const PIECE = 64 * 1024;
const PIECES = 4;
// Not a round number: the split leaves a rounding remainder (499 + 399 + 99 + 2 = 999).
const PRICE = 999;
// Full rate at every hour: the records should not depend on when the test runs.
const tariff = { ...DEFAULT_TARIFF, offPeakRatePercent: 100 };

test('record reasons: the ledger’s reasons in the spec’s words', () => {
  const r = (reason: string, amount: number, kind: 'normal' | 'pending' | 'void' = 'normal') => recordReason({ reason, amount, kind });
  assert.equal(r('upload', -5), 'download');
  assert.equal(r('royalty', -5), 'download');
  assert.equal(r('fee', -5), 'download');
  assert.equal(r('rounding', -1), 'download');
  assert.equal(r('upload', 5), 'upload');
  assert.equal(r('royalty', 5), 'royalty');
  assert.equal(r('topup', 5), 'top-up');
  assert.equal(r('voucher', -5), 'voucher');
  assert.equal(r('play', -5), 'play');
  assert.equal(r('reservation', -5, 'pending'), 'reservation');
  assert.equal(r('reservation', -5, 'void'), 'reservation');
  assert.equal(r('expired', -5, 'void'), 'reservation');
  assert.equal(r('refund', 5), 'refund');
});

for (const engine of testEngines()) {
  describe(`wallet records on ${engine.name}`, () => {
    let origin: TestOrigin;
    let work: string;
    let contentId: string;
    let publisher: { token: string; userId: string; username: string };
    let store: { token: string; userId: string };

    before(async () => {
      origin = await startTestOrigin({ engine, config: { pieceSize: PIECE, signupCredit: 0, tariff } });
      work = mkdtempSync(path.join(os.tmpdir(), 'cascade-wallet-'));
      publisher = await origin.userWithRoles(['publisher']);
      store = await origin.userWithRoles(['store']);
      const res = await origin.call('POST', `/contents?title=Records&genre=test&price=${PRICE}`, {
        token: publisher.token,
        body: randomBytes(PIECE * PIECES),
        headers: { 'content-type': 'application/octet-stream' },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      contentId = res.body.id;
    });
    after(async () => {
      await origin?.close();
      rmSync(work, { recursive: true, force: true });
    });

    async function topup(token: string, amount: number) {
      const issued = await origin.call('POST', '/vouchers', { token: store.token, json: { amount } });
      assert.equal(issued.status, 201);
      const [v] = issued.body.vouchers;
      const res = await origin.call('POST', '/wallet/topup', { token, json: { code: v.code } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return v.id as string;
    }
    const wallet = (token: string, query = '') => origin.call('GET', `/wallet${query}`, { token });
    const history = (token: string, query = '') => origin.call('GET', `/wallet/history${query}`, { token });

    test('a new wallet: zero balance, no records (sign-up credit: see the CLI test)', async () => {
      const member = await origin.userWithRoles(['member']);
      const res = await wallet(member.token);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, { account: walletAccount(member.userId).id, userId: member.userId, balance: { posted: 0, pending: 0, available: 0 } });
      assert.deepEqual((await history(member.token)).body, { account: walletAccount(member.userId).id, entries: [], nextCursor: null });
    });

    test('after a voucher top-up and a real download: balance, and one record each for top-up, reservation, release and download', async () => {
      const member = await origin.userWithRoles(['member']);
      const voucherId = await topup(member.token, 5000);
      const device = await deviceSession(new Api(origin.url, member.token), path.join(work, 'member'));
      const api = new Api(origin.url, device.token);
      await download({ api, originKey: origin.keys.publicKeyB64, device, contentId, files: fileTarget(path.join(work, 'records.bin')), receiptBatch: 64 });

      const receipts = await origin.db.db.selectFrom('receipts').select(['id']).where('receiver_id', '=', device.terminalId).execute();
      assert.ok(receipts.length >= 1);
      const settled = await origin.db.db.selectFrom('ledger_settlements').selectAll().where('receipt_id', 'in', receipts.map((r) => r.id)).execute();
      assert.ok(settled.every((s) => s.status === 'settled'));
      assert.equal(settled.reduce((s, r) => s + r.charge, 0), PRICE);

      const w = await wallet(member.token);
      assert.deepEqual(w.body.balance, { posted: 5000 - PRICE, pending: 0, available: 5000 - PRICE });

      const h = await history(member.token);
      assert.equal(h.status, 200, JSON.stringify(h.body));
      const entries: any[] = h.body.entries;
      assert.equal(h.body.nextCursor, null);
      // Newest first; every record has the S1.12 fields.
      for (const e of entries) {
        for (const k of ['id', 'at', 'amount', 'balanceAfter', 'counterpart', 'reason', 'contentId', 'ref']) assert.ok(k in e, `${k} in ${JSON.stringify(e)}`);
      }
      assert.deepEqual(
        entries.map((e) => e.at),
        [...entries.map((e) => e.at)].sort().reverse(),
      );

      const downloads = entries.filter((e) => e.reason === 'download');
      assert.equal(downloads.length, receipts.length, 'one download record per receipt, not one per leg');
      assert.equal(downloads.reduce((s, e) => s + e.amount, 0), -PRICE);
      for (const d of downloads) {
        assert.ok(receipts.some((r) => r.id === d.ref));
        assert.equal(d.counterpart, PLATFORM_REVENUE.id, 'the source: the origin');
        assert.equal(d.counterpartName, 'platform');
        assert.equal(d.contentId, contentId);
        assert.equal(d.contentTitle, 'Records');
        assert.deepEqual(Object.keys(d.parts), ['upload', 'royalty', 'fee', 'rounding'].filter((k) => k in d.parts));
        assert.equal(Object.values<number>(d.parts).reduce((a, b) => a + b, 0), -d.amount);
        assert.equal(d.id, `${d.ref}:upload`);
        assert.deepEqual(d.transfers, ['rounding', 'fee', 'royalty', 'upload'].filter((k) => k in d.parts).map((k) => `${d.ref}:${k}`));
      }
      if (receipts.length === 1) assert.deepEqual(downloads[0].parts, { upload: 499, royalty: 399, fee: 99, rounding: 2 });

      // The newest record is the last download: its balance after is the balance now.
      assert.equal(entries[0].reason, 'download');
      assert.equal(entries[0].balanceAfter, 5000 - PRICE);
      // The reservation made before the transfer (− held), released as the receipts were settled (+).
      const reservations = entries.filter((e) => e.reason === 'reservation');
      const held = reservations.find((e) => e.kind === 'pending' && /^hold:.*:1:1$/.test(e.id))!; // the purchase's first hold (round 1, hold 1)
      assert.deepEqual([held.amount, held.balanceAfter, held.counterpart, held.contentId], [-PRICE, 5000, HOLDS.id, contentId]);
      assert.equal(reservations.reduce((s, e) => s + e.amount, 0), 0, 'everything held was released');
      // The oldest: the top-up.
      const last = entries[entries.length - 1];
      assert.deepEqual(
        { reason: last.reason, amount: last.amount, balanceAfter: last.balanceAfter, counterpart: last.counterpart, ref: last.ref, id: last.id, contentId: last.contentId },
        { reason: 'top-up', amount: 5000, balanceAfter: 5000, counterpart: VOUCHERS_OUTSTANDING.id, ref: voucherId, id: `voucher-redeem:${voucherId}`, contentId: null },
      );
      // Records add up: each balance after = the next older one's + this amount (reservations move no posted money).
      for (let i = 0; i < entries.length - 1; i++) {
        const posted = entries[i].kind === 'pending' || entries[i].kind === 'void' ? 0 : entries[i].amount;
        assert.equal(entries[i].balanceAfter, entries[i + 1].balanceAfter + posted, JSON.stringify(entries[i]));
      }
      assert.ok((await origin.ledger.checkConservation()).ok);
    });

    test('a reservation still open shows in pending and available, and as a record', async () => {
      const member = await origin.userWithRoles(['member']);
      await topup(member.token, 3000);
      const device = await deviceSession(new Api(origin.url, member.token), path.join(work, 'reserve'));
      const offer = await origin.call('POST', '/grants/auto', { token: device.token, json: { contentId } });
      assert.equal(offer.status, 200, JSON.stringify(offer.body));
      assert.deepEqual((await wallet(member.token)).body.balance, { posted: 3000, pending: -PRICE, available: 3000 - PRICE });
      const [held] = (await history(member.token)).body.entries;
      assert.deepEqual(
        { reason: held.reason, kind: held.kind, amount: held.amount, balanceAfter: held.balanceAfter, counterpart: held.counterpart, contentId: held.contentId, contentTitle: held.contentTitle },
        { reason: 'reservation', kind: 'pending', amount: -PRICE, balanceAfter: 3000, counterpart: HOLDS.id, contentId, contentTitle: 'Records' },
      );
      // Finished without receipts: the whole reservation comes back, as a record of its own.
      await origin.call('POST', `/transfers/${offer.body.transferId}/progress`, { token: device.token, json: { piecesDone: PIECES, done: true } });
      assert.deepEqual((await wallet(member.token)).body.balance, { posted: 3000, pending: 0, available: 3000 });
      const [released] = (await history(member.token)).body.entries;
      assert.deepEqual([released.reason, released.kind, released.amount, released.balanceAfter], ['reservation', 'void', PRICE, 3000]);
    });

    test('an upload earning is a credit record of its own; a publisher’s royalties stay out of its wallet', async () => {
      const member = await origin.userWithRoles(['member']);
      await origin.ledger.ensureAccount(PLATFORM_PROMOTIONS);
      await origin.wallets.open(member.userId);
      const other = await origin.userWithRoles(['member']);
      await origin.wallets.open(other.userId);
      await origin.ledger.apply([{ id: `test-fund:${other.userId}`, debit: PLATFORM_PROMOTIONS.id, credit: walletAccount(other.userId).id, amount: 500, reason: 'topup' }]);
      // A settlement as settlement.ts writes it, with `member` as the source.
      await origin.ledger.ensureAccount(royaltyAccount(publisher.userId));
      const rc = `rc-test-${member.userId}`;
      const legs = [
        { leg: 'upload', credit: walletAccount(member.userId).id, amount: 50 },
        { leg: 'royalty', credit: royaltyAccount(publisher.userId).id, amount: 40 },
        { leg: 'fee', credit: PLATFORM_REVENUE.id, amount: 10 },
      ];
      const results = await origin.ledger.apply(
        legs.map((l, i) => ({ id: `${rc}:${l.leg}`, debit: walletAccount(other.userId).id, credit: l.credit, amount: l.amount, reason: l.leg, contentId, ref: rc, linked: i < legs.length - 1 })),
      );
      assert.ok(results.every((r) => r.status === 'created'));
      const [earned] = (await history(member.token)).body.entries;
      assert.deepEqual(
        { reason: earned.reason, amount: earned.amount, counterpart: earned.counterpart, counterpartName: earned.counterpartName, ref: earned.ref, parts: earned.parts },
        { reason: 'upload', amount: 50, counterpart: walletAccount(other.userId).id, counterpartName: other.username, ref: rc, parts: null },
      );
      // The receiver's side: one download, whose counterpart is the source (member).
      const [paid] = (await history(other.token)).body.entries;
      assert.deepEqual(
        { reason: paid.reason, amount: paid.amount, balanceAfter: paid.balanceAfter, counterpart: paid.counterpart, counterpartName: paid.counterpartName, parts: paid.parts },
        { reason: 'download', amount: -100, balanceAfter: 400, counterpart: walletAccount(member.userId).id, counterpartName: member.username, parts: { upload: 50, royalty: 40, fee: 10 } },
      );
    });

    test('paging: pages of any size read the same records as one page, and never split a download', async () => {
      const member = await origin.userWithRoles(['member']);
      const account = await origin.wallets.open(member.userId);
      await origin.ledger.ensureAccount(PLATFORM_PROMOTIONS);
      await origin.ledger.ensureAccount(PLATFORM_ROUNDING);
      await origin.ledger.ensureAccount(royaltyAccount(publisher.userId));
      await origin.ledger.apply([{ id: `test-fund:${member.userId}`, debit: PLATFORM_PROMOTIONS.id, credit: account, amount: 100_000, reason: 'topup' }]);
      // 40 downloads of 3 or 4 legs (130+ ledger entries: more than one internal chunk of 50), with top-ups between some.
      for (let i = 0; i < 40; i++) {
        const rc = `rc-page-${member.userId}-${i}`;
        const legs = [
          { leg: 'upload', credit: PLATFORM_REVENUE.id, amount: 50 + i },
          { leg: 'royalty', credit: royaltyAccount(publisher.userId).id, amount: 40 },
          { leg: 'fee', credit: PLATFORM_REVENUE.id, amount: 10 },
          ...(i % 2 ? [{ leg: 'rounding', credit: PLATFORM_ROUNDING.id, amount: 1 }] : []),
        ];
        const batch = legs.map((l, k) => ({ id: `${rc}:${l.leg}`, debit: account, credit: l.credit, amount: l.amount, reason: l.leg, contentId, ref: rc, linked: k < legs.length - 1 }));
        if (i % 7 === 3) batch.push({ id: `test-topup:${member.userId}:${i}`, debit: PLATFORM_PROMOTIONS.id, credit: account, amount: 3, reason: 'topup', linked: false } as any);
        const results = await origin.ledger.apply(batch);
        assert.ok(results.every((r) => r.status === 'created'));
      }
      const all = (await history(member.token, '?limit=1000')).body;
      assert.equal(all.nextCursor, null);
      assert.equal(all.entries.filter((e: any) => e.reason === 'download').length, 40);
      assert.equal(all.entries.length, 40 + 6 + 1);
      for (const e of all.entries.filter((e: any) => e.reason === 'download')) {
        const i = Number(e.ref.split('-').pop());
        assert.equal(e.transfers.length, i % 2 ? 4 : 3);
        assert.equal(e.amount, -(100 + i + (i % 2)));
      }
      for (const limit of [1, 2, 3, 7, 20]) {
        const pages: any[] = [];
        let cursor: string | null = null;
        do {
          const res = await history(member.token, `?limit=${limit}${cursor ? `&before=${encodeURIComponent(cursor)}` : ''}`);
          assert.equal(res.status, 200, JSON.stringify(res.body));
          assert.ok(res.body.entries.length <= limit);
          pages.push(...res.body.entries);
          cursor = res.body.nextCursor;
          if (cursor) assert.equal(cursor, res.body.entries[res.body.entries.length - 1].id);
        } while (cursor);
        assert.deepEqual(pages, all.entries, `limit ${limit}`);
      }
      // A cursor from another wallet, or nothing at all, is refused.
      const other = await origin.userWithRoles(['member']);
      for (const before of ['nope', `test-fund:${member.userId}`]) {
        const res = await history(other.token, `?before=${encodeURIComponent(before)}`);
        assert.equal(res.status, 400, before);
        assert.equal(res.body.error.code, 'invalid_cursor');
      }
      for (const limit of ['0', '1001', 'x']) assert.equal((await history(member.token, `?limit=${limit}`)).body.error.code, 'invalid_request');
    });

    test('another user’s wallet: operators may see it, anyone else is refused (403)', async () => {
      const member = await origin.userWithRoles(['member']);
      await topup(member.token, 700);
      const other = await origin.userWithRoles(['member', 'publisher', 'store']);
      for (const path of ['/wallet', '/wallet/history']) {
        const res = await origin.call('GET', `${path}?user=${member.userId}`, { token: other.token });
        assert.equal(res.status, 403, path);
        assert.equal(res.body.error.code, 'forbidden');
      }
      // Your own ID is fine.
      assert.equal((await wallet(member.token, `?user=${member.userId}`)).body.balance.posted, 700);
      const operator = await origin.userWithRoles(['operator']);
      const w = await wallet(operator.token, `?user=${member.userId}`);
      assert.deepEqual(w.body, { account: walletAccount(member.userId).id, userId: member.userId, balance: { posted: 700, pending: 0, available: 700 } });
      const h = await history(operator.token, `?user=${member.userId}`);
      assert.deepEqual(h.body.entries.map((e: any) => [e.reason, e.amount]), [['top-up', 700]]);
      // A user without a wallet yet: zeros, and looking does not open one.
      const fresh = await origin.userWithRoles(['member']);
      assert.deepEqual((await wallet(operator.token, `?user=${fresh.userId}`)).body.balance, { posted: 0, pending: 0, available: 0 });
      assert.deepEqual((await history(operator.token, `?user=${fresh.userId}`)).body.entries, []);
      await assert.rejects(origin.ledger.balance(walletAccount(fresh.userId).id), { code: 'account_not_found' });
      const unknown = await wallet(operator.token, '?user=usr_nobody');
      assert.deepEqual([unknown.status, unknown.body.error.code], [404, 'unknown_user']);
    });
  });
}

describe('cascade wallet (the real CLI)', () => {
  let origin: TestOrigin;
  const homes: string[] = [];

  before(async () => {
    origin = await startTestOrigin({ config: { signupCredit: 777 } });
  });
  after(async () => {
    await origin?.close();
    for (const h of homes) rmSync(h, { recursive: true, force: true });
  });
  // runCli passes this process's environment on: a token or origin from it would win over the profile.
  delete process.env.CASCADE_TOKEN;
  delete process.env.CASCADE_ORIGIN;

  test('balance and records as JSON and as a table; history pages; topup still works', async () => {
    const user = await origin.userWithRoles(['member']);
    const home = mkdtempSync(path.join(os.tmpdir(), 'cascade-home-'));
    homes.push(home);
    writeFileSync(path.join(home, 'profile.json'), JSON.stringify({ origin: origin.url, token: user.token, username: user.username }));

    const json = await runCli(['wallet', '--json'], { home });
    assert.equal(json.code, 0, json.stderr);
    const w = JSON.parse(json.stdout);
    assert.equal(w.account, walletAccount(user.userId).id);
    assert.deepEqual(w.balance, { posted: 777, pending: 0, available: 777 });
    assert.equal(w.nextCursor, null);
    assert.deepEqual(
      w.entries.map((e: any) => [e.id, e.reason, e.amount, e.balanceAfter, e.counterpart, e.counterpartName]),
      [[`signup:${user.userId}`, 'top-up', 777, 777, PLATFORM_PROMOTIONS.id, 'platform']],
    );

    // A voucher top-up through the CLI, then the table.
    const store = await origin.userWithRoles(['store']);
    const issued = await origin.call('POST', '/vouchers', { token: store.token, json: { amount: 223 } });
    const topup = await runCli(['wallet', 'topup', issued.body.vouchers[0].code], { home });
    assert.equal(topup.code, 0, topup.stderr);
    assert.equal(topup.stdout, 'credited 223; your balance is now 1000\n');
    const text = await runCli(['wallet'], { home });
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trimEnd().split('\n');
    assert.equal(lines[0], `${walletAccount(user.userId).id}: balance 1000, available 1000`);
    assert.match(lines[1], /^time +amount +balance +reason +counterpart +content +event$/);
    assert.match(lines[2], /\+223 +1000 +top-up +platform \(vouchers:outstanding\) +voucher-redeem:/);
    assert.match(lines[3], /\+777 +777 +top-up +platform \(platform:promotions\) +signup:/);

    const page = await runCli(['wallet', 'history', '--limit', '1', '--json'], { home });
    assert.equal(page.code, 0, page.stderr);
    const p1 = JSON.parse(page.stdout);
    assert.equal(p1.entries.length, 1);
    assert.equal(p1.entries[0].amount, 223);
    const p2 = JSON.parse((await runCli(['wallet', 'history', '--before', p1.nextCursor, '--json'], { home })).stdout);
    assert.deepEqual(p2.entries.map((e: any) => e.amount), [777]);
    assert.equal(p2.nextCursor, null);

    const bad = await runCli(['wallet', 'history', '--limit', '0'], { home });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^error \(invalid_argument\): /);
    const forbidden = await runCli(['wallet', '--user', 'usr_someone', '--json'], { home });
    assert.equal(forbidden.code, 1);
    assert.equal(JSON.parse(forbidden.stdout).error.code, 'forbidden');
  });
});
