import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Api } from '../../src/core/http-client.ts';
import { PLATFORM_REVENUE, PLATFORM_ROUNDING, royaltyAccount, VOUCHERS_OUTSTANDING, walletAccount } from '../../src/ledger/accounts.ts';
import { DEFAULT_TARIFF } from '../../src/ledger/tariff.ts';
import { recordReason } from '../../src/ledger/records.ts';
import { Settlement, type StoredReceipt } from '../../src/ledger/settlement.ts';
import { PLATFORM_PROMOTIONS } from '../../src/ledger/wallets.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { download, fileTarget } from '../../src/transfer/downloader.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { runCli } from '../helpers/processes.ts';

// Wallet records (S1.12, docs/ledger.md "Records"): GET /wallet, GET /wallet/history
// and `cascade wallet`, after a real download, a voucher top-up and a reservation.

const PIECE = 64 * 1024;
const PIECES = 4;
// Not a round number: the split leaves a rounding remainder (499 + 399 + 99 + 2 = 999).
const PRICE = 999;
// No off-peak hours (an empty window): the real download's price does not depend on when the test runs.
const tariff = { ...DEFAULT_TARIFF, offPeakStartHour: 0, offPeakEndHour: 0 };
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

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
      contentId = await publish('Records');
    });
    after(async () => {
      await origin?.close();
      rmSync(work, { recursive: true, force: true });
    });

    async function publish(title: string) {
      const res = await origin.call('POST', `/contents?title=${title}&genre=test&price=${PRICE}`, {
        token: publisher.token,
        body: randomBytes(PIECE * PIECES),
        headers: { 'content-type': 'application/octet-stream' },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.id as string;
    }
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
    /** A member with a registered terminal (for receipts settled by hand below). */
    async function memberWithTerminal(name: string) {
      const user = await origin.userWithRoles(['member']);
      const device = await deviceSession(new Api(origin.url, user.token), path.join(work, name), { name });
      return { ...user, terminalId: device.terminalId, device };
    }
    /** Settles receipts as ReceiptService does (same transaction), with a tariff of the test's choosing. */
    async function settle(receipts: StoredReceipt[], withTariff = DEFAULT_TARIFF) {
      const settlement = new Settlement({ db: origin.db.db, ledger: origin.ledger, clock: origin.clock, tariff: withTariff, originSourceId: 'origin' });
      const result = await origin.db.db.transaction().execute((trx) => settlement.settleIn(trx, receipts));
      assert.equal(result.unpaid.length, 0, JSON.stringify(result));
    }
    let rc = 0;
    const receipt = (content: string, source: string, receiver: string, bytes: number, at: Date): StoredReceipt => ({
      id: `rc-wallet-${++rc}`,
      grant_id: 'g',
      content_id: content,
      source_id: source,
      receiver_id: receiver,
      bytes,
      received_at: at,
    });

    test('a new wallet: zero balance, no earnings, no records (sign-up credit: see the CLI test)', async () => {
      const member = await origin.userWithRoles(['member']);
      const res = await wallet(member.token);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, {
        account: walletAccount(member.userId).id,
        userId: member.userId,
        balance: { posted: 0, pending: 0, available: 0 },
        earnings: { uploads: 0, royalties: null },
      });
      assert.deepEqual((await history(member.token)).body, { account: walletAccount(member.userId).id, entries: [], nextCursor: null });
    });

    test('a real download in several receipts is one record: its reservations, releases and every receipt’s legs inside, the split adding up (S1.12)', async () => {
      const member = await origin.userWithRoles(['member']);
      const royaltiesBefore = (await wallet(publisher.token)).body.earnings.royalties?.earned ?? 0;
      const voucherId = await topup(member.token, 5000);
      const device = await deviceSession(new Api(origin.url, member.token), path.join(work, 'member'));
      const api = new Api(origin.url, device.token);
      // One receipt per piece: four receipts, each settled out of the reservation and reserving the rest again.
      await download({ api, originKey: origin.keys.publicKeyB64, device, contentId, files: fileTarget(path.join(work, 'records.bin')), receiptBatch: 1 });

      const receipts = await origin.db.db.selectFrom('receipts').select(['id']).where('receiver_id', '=', device.terminalId).execute();
      assert.equal(receipts.length, PIECES);
      const w = await wallet(member.token);
      assert.deepEqual(w.body.balance, { posted: 5000 - PRICE, pending: 0, available: 5000 - PRICE });

      const h = await history(member.token);
      assert.equal(h.status, 200, JSON.stringify(h.body));
      const entries: any[] = h.body.entries;
      assert.equal(h.body.nextCursor, null);
      assert.deepEqual(
        entries.map((e) => e.reason),
        ['download', 'top-up'],
        'one record for the download (holds and releases inside it), one for the top-up',
      );
      const [d, t] = entries;
      for (const e of entries) {
        for (const k of ['id', 'at', 'amount', 'balanceAfter', 'counterpart', 'reason', 'description', 'contentId', 'ref', 'transfers']) assert.ok(k in e, `${k} in ${JSON.stringify(e)}`);
      }
      assert.equal(d.id, `purchase:${member.userId}:${contentId}:1`);
      assert.deepEqual([d.amount, d.held, d.balanceAfter, d.receipts, d.contentId, d.contentTitle], [-PRICE, 0, 5000 - PRICE, PIECES, contentId, 'Records']);
      assert.deepEqual([d.counterpart, d.counterpartName], [PLATFORM_REVENUE.id, 'platform']);
      // The split: where the 999 went, summed exactly from the transfers moved.
      assert.equal(sum(d.split.map((p: any) => p.amount)), PRICE);
      assert.deepEqual([...new Set(d.split.map((p: any) => p.part))], ['source', 'royalty', 'fee', 'rounding'].filter((k) => d.split.some((p: any) => p.part === k)));
      const source = d.split.find((p: any) => p.part === 'source');
      assert.deepEqual([source.account, source.name], [PLATFORM_REVENUE.id, 'origin']);
      const royalty = d.split.find((p: any) => p.part === 'royalty');
      assert.deepEqual([royalty.account, royalty.name], [royaltyAccount(publisher.userId).id, publisher.username]);
      assert.match(d.description, new RegExp(`^Download of “Records”: paid 999 \\(source origin \\d+, royalty to ${publisher.username} \\d+, platform fee \\d+(, rounding \\d+)?\\), 4 receipts$`));
      assert.deepEqual(d.rules, []);
      // --json's full detail: the transfers behind it, holds and releases included.
      const kinds = new Set(d.transfers.map((x: any) => x.kind));
      assert.ok(kinds.has('pending') && kinds.has('void') && kinds.has('normal'), [...kinds].join());
      assert.equal(sum(d.transfers.filter((x: any) => x.kind === 'normal').map((x: any) => x.amount)), -PRICE);
      assert.deepEqual(new Set(d.transfers.filter((x: any) => x.kind === 'normal').map((x: any) => x.ref)), new Set(receipts.map((r) => r.id)));
      assert.deepEqual(
        { reason: t.reason, amount: t.amount, balanceAfter: t.balanceAfter, counterpart: t.counterpart, ref: t.ref, id: t.id, description: t.description },
        { reason: 'top-up', amount: 5000, balanceAfter: 5000, counterpart: VOUCHERS_OUTSTANDING.id, ref: voucherId, id: `voucher-redeem:${voucherId}`, description: `Top-up with voucher ${voucherId}: 5000` },
      );

      // The publisher sees the royalty of this download as one record of its royalty account, and as earnings.
      const r = await history(publisher.token, '?account=royalties');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.account, royaltyAccount(publisher.userId).id);
      const [mine] = r.body.entries;
      assert.deepEqual([mine.reason, mine.amount, mine.receipts, mine.counterpart, mine.contentTitle], ['royalty', 399, PIECES, walletAccount(member.userId).id, 'Records']);
      assert.equal(mine.description, `Royalty for “Records”, downloaded by ${member.username}: 399`);
      const earned = (await wallet(publisher.token)).body.earnings;
      assert.deepEqual(earned.royalties, { earned: royaltiesBefore + 399, paidOut: 0, balance: royaltiesBefore + 399 });
      assert.ok((await origin.ledger.checkConservation()).ok);
    });

    test('a reservation still open is part of its download’s record: held, not spent; released, the record says nothing was charged', async () => {
      const member = await origin.userWithRoles(['member']);
      await topup(member.token, 3000);
      const device = await deviceSession(new Api(origin.url, member.token), path.join(work, 'reserve'));
      const offer = await origin.call('POST', '/grants/auto', { token: device.token, json: { contentId } });
      assert.equal(offer.status, 200, JSON.stringify(offer.body));
      assert.deepEqual((await wallet(member.token)).body.balance, { posted: 3000, pending: -PRICE, available: 3000 - PRICE });
      const [open] = (await history(member.token)).body.entries;
      assert.deepEqual(
        { reason: open.reason, amount: open.amount, held: open.held, balanceAfter: open.balanceAfter, contentTitle: open.contentTitle },
        { reason: 'download', amount: 0, held: PRICE, balanceAfter: 3000, contentTitle: 'Records' },
      );
      assert.match(open.description, /999 still reserved for the rest$/);
      // Finished without receipts: the whole reservation comes back, in the same record.
      await origin.call('POST', `/transfers/${offer.body.transferId}/progress`, { token: device.token, json: { piecesDone: PIECES, done: true } });
      assert.deepEqual((await wallet(member.token)).body.balance, { posted: 3000, pending: 0, available: 3000 });
      const entries = (await history(member.token)).body.entries;
      assert.deepEqual(
        entries.map((e: any) => [e.reason, e.amount, e.held]),
        [
          ['download', 0, 0],
          ['top-up', 3000, 0],
        ],
      );
      assert.match(entries[0].description, /the reservation was released, nothing was charged$/);
      assert.deepEqual(
        entries[0].transfers.map((x: any) => x.kind),
        ['void', 'pending'],
      );
    });

    test('from two sources: the receiver sees one download with each source’s share, each uploader its earning, the publisher its royalty', async () => {
      const [a, c, b] = [await memberWithTerminal('src-a'), await memberWithTerminal('src-c'), await memberWithTerminal('recv-b')];
      await topup(b.token, 2000);
      const noon = new Date(Date.UTC(2026, 5, 1, 12));
      // 3 pieces from A in three receipts, 1 from C: 3/4 and 1/4 of the price.
      await settle([0, 1, 2].map(() => receipt(contentId, a.terminalId, b.terminalId, PIECE, noon)));
      await settle([receipt(contentId, c.terminalId, b.terminalId, PIECE, noon)]);

      const [d, ...rest] = (await history(b.token)).body.entries;
      assert.deepEqual(rest.map((e: any) => e.reason), ['top-up']);
      assert.deepEqual([d.reason, d.amount, d.receipts], ['download', -PRICE, 4]);
      const sources = d.split.filter((p: any) => p.part === 'source');
      assert.deepEqual(
        sources.map((p: any) => [p.account, p.name]),
        [
          [walletAccount(a.userId).id, a.username],
          [walletAccount(c.userId).id, c.username],
        ],
      );
      assert.equal(sum(d.split.map((p: any) => p.amount)), PRICE);
      assert.deepEqual([d.counterpart, d.counterpartName], [walletAccount(a.userId).id, a.username], 'the main source');
      assert.match(d.description, new RegExp(`^Download of “Records”: paid 999 \\(source ${a.username} \\d+, source ${c.username} \\d+, royalty to ${publisher.username} \\d+, platform fee \\d+`));

      // Each uploader: one earning record (its wallet), whatever the number of receipts, and the total as earnings.
      for (const [u, receipts] of [
        [a, 3],
        [c, 1],
      ] as const) {
        const entries = (await history(u.token)).body.entries;
        assert.equal(entries.length, 1, JSON.stringify(entries));
        const [e] = entries;
        const paid = sources.find((p: any) => p.account === walletAccount(u.userId).id).amount;
        // What the source earned may include a unit from rounding (the purchase's exact share): at least its part of the wallet's money.
        assert.ok(e.amount >= paid, `${e.amount} >= ${paid}`);
        assert.deepEqual([e.reason, e.receipts, e.counterpart, e.counterpartName, e.split], ['upload', receipts, walletAccount(b.userId).id, b.username, null]);
        assert.equal(e.description, `Earned ${e.amount} serving “Records” to ${b.username} (${receipts} receipt${receipts === 1 ? '' : 's'})`);
        assert.equal((await wallet(u.token)).body.earnings.uploads, e.amount);
      }
      // The shares are the purchase's exact totals: floor(999 × 3/4 × 50 %) and floor(999 × 1/4 × 50 %).
      const earned = await Promise.all([a, c].map(async (u) => (await history(u.token)).body.entries[0].amount));
      assert.deepEqual(earned, [Math.floor((999 * 3) / 8), Math.floor(999 / 8)]);
      const [royalty] = (await history(publisher.token, '?account=royalties')).body.entries;
      assert.deepEqual([royalty.reason, royalty.amount, royalty.receipts, royalty.counterpartName], ['royalty', 399, 4, b.username]);
    });

    test('a discounted download names the discount (S1.9): off-peak', async () => {
      const [a, b] = [await memberWithTerminal('offpeak-a'), await memberWithTerminal('offpeak-b')];
      await topup(b.token, 2000);
      const other = await publish('Night');
      // Delivered at 23:00 UTC under the default tariff: 80 % of the list price.
      await settle([receipt(other, a.terminalId, b.terminalId, PIECE * PIECES, new Date(Date.UTC(2026, 5, 1, 23)))]);
      const [d] = (await history(b.token)).body.entries;
      assert.deepEqual([d.reason, d.amount, d.rules], ['download', -Math.floor(PRICE * 0.8), ['off-peak (22:00–6:00 UTC): 80%']]);
      assert.match(d.description, /; priced off-peak \(22:00–6:00 UTC\): 80%$/);
      assert.equal(sum(d.split.map((p: any) => p.amount)), Math.floor(PRICE * 0.8));
      // Only part of a download off-peak: the rule says on how many receipts.
      const third = await publish('Dusk');
      await settle([receipt(third, a.terminalId, b.terminalId, PIECE * 2, new Date(Date.UTC(2026, 5, 1, 21)))]);
      await settle([receipt(third, a.terminalId, b.terminalId, PIECE * 2, new Date(Date.UTC(2026, 5, 1, 22)))]);
      const [dusk] = (await history(b.token)).body.entries;
      assert.deepEqual([dusk.contentTitle, dusk.receipts, dusk.rules], ['Dusk', 2, ['off-peak (22:00–6:00 UTC): 80% (1 of 2 receipts)']]);
    });

    test('paging: pages of any size read the same records as one page, and never split a record, even one whose transfers are far apart', async () => {
      const member = await origin.userWithRoles(['member']);
      const account = await origin.wallets.open(member.userId);
      await origin.ledger.ensureAccount(PLATFORM_PROMOTIONS);
      await origin.ledger.ensureAccount(PLATFORM_ROUNDING);
      await origin.ledger.ensureAccount(royaltyAccount(publisher.userId));
      await origin.ledger.apply([{ id: `test-fund:${member.userId}`, debit: PLATFORM_PROMOTIONS.id, credit: account, amount: 100_000, reason: 'topup' }]);
      // 40 downloads of 3 or 4 legs (130+ ledger entries: more than one internal chunk of 50), with top-ups
      // between some; every 5th download gets a second receipt much later (its record spans pages).
      const legsOf = (i: number, rcId: string, record: string) => {
        const legs = [
          { leg: 'upload', credit: PLATFORM_REVENUE.id, amount: 50 + i },
          { leg: 'royalty', credit: royaltyAccount(publisher.userId).id, amount: 40 },
          { leg: 'fee', credit: PLATFORM_REVENUE.id, amount: 10 },
          ...(i % 2 ? [{ leg: 'rounding', credit: PLATFORM_ROUNDING.id, amount: 1 }] : []),
        ];
        return legs.map((l, k) => ({ id: `${rcId}:${l.leg}`, debit: account, credit: l.credit, amount: l.amount, reason: l.leg, contentId, ref: rcId, record, linked: k < legs.length - 1 }));
      };
      const record = (i: number) => `purchase:${member.userId}:c${i}:1`;
      for (let i = 0; i < 40; i++) {
        const batch: any[] = legsOf(i, `rc-page-${member.userId}-${i}`, record(i));
        if (i % 7 === 3) batch.push({ id: `test-topup:${member.userId}:${i}`, debit: PLATFORM_PROMOTIONS.id, credit: account, amount: 3, reason: 'topup' });
        if (i >= 20 && i % 5 === 0) batch.push(...legsOf(i - 20, `rc-page-${member.userId}-${i - 20}-late`, record(i - 20)));
        const results = await origin.ledger.apply(batch);
        assert.ok(results.every((r) => r.status === 'created'));
      }
      const all = (await history(member.token, '?limit=1000')).body;
      assert.equal(all.nextCursor, null);
      const downloads = all.entries.filter((e: any) => e.reason === 'download');
      assert.equal(downloads.length, 40);
      assert.equal(all.entries.length, 40 + 6 + 1);
      for (const e of downloads) {
        const i = Number(e.id.split(':c')[1].split(':')[0]);
        const late = i < 20 && i % 5 === 0;
        const once = 100 + i + (i % 2);
        assert.equal(e.receipts, late ? 2 : 1);
        assert.equal(e.transfers.length, (i % 2 ? 4 : 3) * (late ? 2 : 1));
        assert.equal(e.amount, -(late ? 2 * once : once));
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
        } while (cursor);
        assert.deepEqual(pages, all.entries, `limit ${limit}`);
      }
      // Anything but a cursor from a previous page is refused.
      const other = await origin.userWithRoles(['member']);
      for (const before of ['nope', `test-fund:${member.userId}`, '0', '-1']) {
        const res = await history(other.token, `?before=${encodeURIComponent(before)}`);
        assert.equal(res.status, 400, before);
        assert.equal(res.body.error.code, 'invalid_cursor');
      }
      for (const limit of ['0', '1001', 'x']) assert.equal((await history(member.token, `?limit=${limit}`)).body.error.code, 'invalid_request');
    });

    test('another user’s wallet: operators may see it, anyone else is refused (403) and nothing changes', async () => {
      const member = await origin.userWithRoles(['member']);
      await topup(member.token, 700);
      const other = await origin.userWithRoles(['member', 'publisher', 'store']);
      const was = await snapshotTables(origin.db.db);
      for (const path of ['/wallet', '/wallet/history', '/wallet/history?account=royalties']) {
        const res = await origin.call('GET', `${path}${path.includes('?') ? '&' : '?'}user=${member.userId}`, { token: other.token });
        assert.equal(res.status, 403, path);
        assert.equal(res.body.error.code, 'forbidden');
      }
      assert.deepEqual(await snapshotTables(origin.db.db), was);
      // Your own ID is fine.
      assert.equal((await wallet(member.token, `?user=${member.userId}`)).body.balance.posted, 700);
      const operator = await origin.userWithRoles(['operator']);
      const w = await wallet(operator.token, `?user=${member.userId}`);
      assert.deepEqual(w.body, {
        account: walletAccount(member.userId).id,
        userId: member.userId,
        balance: { posted: 700, pending: 0, available: 700 },
        earnings: { uploads: 0, royalties: null },
      });
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
    assert.deepEqual(w.earnings, { uploads: 0, royalties: null });
    assert.equal(w.royalties, null);
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
    assert.equal(lines[1], 'earned serving others: 0 (credited to this wallet as it was earned)');
    assert.match(lines[2], /^time +amount +balance +reason +what +event$/);
    assert.match(lines[3], /\+223 +1000 +top-up +Top-up with voucher \S+: 223 +voucher-redeem:/);
    assert.match(lines[4], /\+777 +777 +top-up +Sign-up credit: 777 +signup:/);
    assert.equal(lines.length, 5, 'no royalty section: not a publisher');

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
