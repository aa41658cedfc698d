import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.ts';
import { AppError } from '../../src/core/errors.ts';
import type { DbHandle } from '../../src/db/connection.ts';
import { DEFAULT_TARIFF } from '../../src/ledger/tariff.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { PLATFORM_REVENUE, PLATFORM_ROUNDING, royaltyAccount, storeAccount, walletAccount } from '../../src/ledger/accounts.ts';
import { PLATFORM_PROMOTIONS } from '../../src/ledger/wallets.ts';
import { DeliveryService, splitDeliveryFee, type DeliveryReport, type OpenDelivery } from '../../src/edge/deliveries.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';

// S2.4 on both engines: a delivery is billed exactly once through the ledger, whatever the
// retries (sequential or at once); every refusal changes nothing; the split adds up to the fee.

const T0 = Date.UTC(2026, 11, 1, 4, 0);

for (const engine of testEngines()) {
  describe(`edge deliveries (${engine.name})`, () => {
    let handle: DbHandle;
    let clock: ManualClock;
    let ledger: Ledger;
    let svc: DeliveryService;
    let n = 0;
    const owners = new Map<string, string>();
    let operator: string;
    let publisher: string;
    let contentId: string;

    async function user(): Promise<string> {
      const id = `usr_t${++n}${randomBytes(4).toString('hex')}`;
      await handle.db.insertInto('users').values({ id, username: `u${n}x${randomBytes(3).toString('hex')}`, password_hash: 'x', roles: ['member'], created_at: new Date(clock.now()) }).execute();
      return id;
    }
    async function fund(userId: string, amount: number) {
      await ledger.ensureAccounts([PLATFORM_PROMOTIONS, walletAccount(userId)]);
      const [r] = await ledger.apply([{ id: `fund:${userId}:${++n}`, debit: PLATFORM_PROMOTIONS.id, credit: walletAccount(userId).id, amount, reason: 'topup' }]);
      assert.equal(r.status, 'created');
    }
    const posted = async (account: string) => (await ledger.balance(account).catch(() => ({ posted: 0 }))).posted;
    const available = async (account: string) => (await ledger.balance(account)).available;
    async function refused(p: Promise<unknown>, code: string): Promise<AppError> {
      const err = await p.then(
        () => assert.fail(`expected ${code}`),
        (e) => e,
      );
      assert.ok(err instanceof AppError, String(err));
      assert.equal(err.code, code, err.message);
      return err;
    }
    /** Runs `call` and expects the refusal `code` with every table as it was before. */
    async function unchanged(call: () => Promise<unknown>, code: string) {
      const snap = await snapshotTables(handle.db);
      const err = await refused(call(), code);
      assert.deepEqual(await snapshotTables(handle.db), snap, `${code} changed nothing`);
      return err;
    }
    const edge = (name: string, owner: string) => {
      owners.set(name, owner);
      return name;
    };
    const rental = (edgeId: string, userId: string, maxFee: number, more: Partial<OpenDelivery> = {}): OpenDelivery => ({
      edgeId, kind: 'rental', contentId, userId, payer: 'wallet', maxFee, terms: { perHour: 10 }, ...more,
    });
    const final = (deliveryId: string, fee: number, more: Partial<DeliveryReport> = {}): DeliveryReport => ({ deliveryId, fee, bytes: 1000, viewedSeconds: 60, final: true, ...more });
    async function conservation() {
      const c = await ledger.checkConservation();
      assert.ok(c.ok, JSON.stringify(c));
    }

    before(async () => {
      handle = await engine.open();
      clock = new ManualClock(T0);
      ledger = new Ledger({ db: handle.db, clock });
      svc = new DeliveryService({ db: handle.db, clock, ledger, tariff: DEFAULT_TARIFF, edges: { ownerOf: async (id) => owners.get(id) ?? null } });
      operator = await user();
      publisher = await user();
      contentId = randomBytes(32).toString('hex');
      await handle.db
        .insertInto('contents')
        .values({ id: contentId, title: 'Film', summary: '', author: 'a', genre: 'g', price: 500, publisher_id: publisher, piece_size: 1024, piece_count: 1, total_size: 1000, manifest: {} as never, created_at: new Date(T0) })
        .execute();
      edge('edg_home', operator);
      edge('edg_other', await user());
    });
    after(() => handle.close());

    test('open: a serial allocated by the database (positive, < 2^31, unique); a wallet payer is held for the max fee', async () => {
      const u = await user();
      await fund(u, 1000);
      const a = await svc.open(rental('edg_home', u, 300));
      const b = await svc.open(rental('edg_home', u, 0));
      assert.match(a.id, /^dlv_[A-Za-z0-9_-]+$/);
      for (const s of [a.serial, b.serial]) assert.ok(Number.isInteger(s) && s > 0 && s <= 2 ** 31 - 1, String(s));
      assert.notEqual(a.serial, b.serial);
      assert.equal(await posted(walletAccount(u).id), 1000, 'a hold moves nothing yet');
      assert.equal(await available(walletAccount(u).id), 700, 'but the max fee is no longer available');
      const d = await svc.get(a.id);
      assert.equal(d?.state, 'open');
      assert.deepEqual(d?.terms, { perHour: 10 });
      await conservation();
    });

    test('the same final report three times, then five at once: billed once', async () => {
      const u = await user();
      await fund(u, 1000);
      const ownerBefore = await posted(walletAccount(operator).id);
      const royaltyBefore = await posted(royaltyAccount(publisher).id);
      const { id } = await svc.open(rental('edg_home', u, 400));
      const results = [];
      for (let i = 0; i < 3; i++) results.push((await svc.report('edg_home', final(id, 333))).status);
      assert.deepEqual(results, ['accepted', 'duplicate', 'duplicate']);
      const split = splitDeliveryFee(333, DEFAULT_TARIFF);
      assert.deepEqual(split, { edge: 166, royalty: 133, fee: 33, rounding: 1 });
      assert.equal(await posted(walletAccount(u).id), 1000 - 333);
      assert.equal(await available(walletAccount(u).id), 1000 - 333, 'the hold is released');
      assert.equal((await posted(walletAccount(operator).id)) - ownerBefore, 166);
      assert.equal((await posted(royaltyAccount(publisher).id)) - royaltyBefore, 133);
      const d = (await svc.get(id))!;
      assert.equal(d.state, 'billed');
      assert.equal(d.charged, 333);
      assert.deepEqual(d.split, split);

      const { id: id2 } = await svc.open(rental('edg_home', u, 100));
      const at = await Promise.all(Array.from({ length: 5 }, () => svc.report('edg_home', final(id2, 99))));
      assert.deepEqual(at.map((r) => r.status).sort(), ['accepted', 'duplicate', 'duplicate', 'duplicate', 'duplicate']);
      assert.equal(await posted(walletAccount(u).id), 1000 - 333 - 99, 'concurrent duplicates charge once');
      await conservation();
    });

    test('a different final report after the bill is refused; a late progress report is a duplicate', async () => {
      const u = await user();
      await fund(u, 1000);
      const { id } = await svc.open(rental('edg_home', u, 400));
      assert.equal((await svc.report('edg_home', final(id, 200))).status, 'accepted');
      const err = await unchanged(() => svc.report('edg_home', final(id, 201)), 'delivery_already_billed');
      assert.equal(err.status, 409);
      await unchanged(() => svc.report('edg_home', final(id, 200, { viewedSeconds: 61 })), 'delivery_already_billed');
      const snap = await snapshotTables(handle.db);
      assert.equal((await svc.report('edg_home', { deliveryId: id, fee: 100, viewedSeconds: 30, final: false })).status, 'duplicate');
      assert.deepEqual(await snapshotTables(handle.db), snap);
      await conservation();
    });

    test('progress reports update the running figures and bill nothing', async () => {
      const u = await user();
      await fund(u, 1000);
      const { id } = await svc.open(rental('edg_home', u, 400));
      clock.advance(60_000);
      await svc.report('edg_home', { deliveryId: id, fee: 50, viewedSeconds: 300, final: false });
      await svc.report('edg_home', { deliveryId: id, fee: 20, viewedSeconds: 120, final: false }); // late, out of order
      const d = (await svc.get(id))!;
      assert.equal(d.state, 'open');
      assert.equal(d.fee, 50);
      assert.equal(d.viewedSeconds, 300);
      assert.equal(d.reports, 2);
      assert.equal(d.lastReportAt, new Date(T0 + 60_000).toISOString());
      assert.equal(await posted(walletAccount(u).id), 1000);
      assert.equal((await svc.report('edg_home', final(id, 80, { viewedSeconds: 480 }))).status, 'accepted');
      assert.equal(await posted(walletAccount(u).id), 920);
    });

    test('refusals change nothing: another edge’s delivery, a fee above the terms, an unknown delivery', async () => {
      const u = await user();
      await fund(u, 1000);
      const { id } = await svc.open(rental('edg_home', u, 400));
      const mine = await unchanged(() => svc.report('edg_other', final(id, 100)), 'not_your_delivery');
      assert.equal(mine.status, 403);
      const over = await unchanged(() => svc.report('edg_home', final(id, 401)), 'fee_exceeds_terms');
      assert.deepEqual(over.details, { fee: 401, maxFee: 400 });
      await unchanged(() => svc.report('edg_home', { deliveryId: id, fee: 401, final: false }), 'fee_exceeds_terms');
      const unknown = await unchanged(() => svc.report('edg_home', final('dlv_nope', 1)), 'unknown_delivery');
      assert.equal(unknown.status, 404);
      // The right edge and fee still bill it.
      assert.equal((await svc.report('edg_home', final(id, 400))).status, 'accepted');
      assert.equal(await posted(walletAccount(u).id), 600);
    });

    test('open refusals change nothing: a wallet that cannot cover the max fee, an unknown edge or content, counter for a rental', async () => {
      const u = await user();
      await fund(u, 100);
      const err = await unchanged(() => svc.open(rental('edg_home', u, 101)), 'insufficient_balance');
      assert.equal(err.status, 402);
      assert.deepEqual(err.details, { needed: 101, available: 100 });
      await unchanged(() => svc.open(rental('edg_nope', u, 1)), 'unknown_edge');
      await unchanged(() => svc.open(rental('edg_home', u, 1, { contentId: 'f'.repeat(64) })), 'unknown_content');
      await unchanged(() => svc.open(rental('edg_home', u, 1, { payer: 'counter' })), 'counter_payment_not_allowed');
      // Inside a caller's transaction the refusal aborts the caller's writes too.
      await unchanged(
        () => handle.db.transaction().execute(async (trx) => {
          await trx.insertInto('users').values({ id: 'usr_rolledback', username: 'rolledback', password_hash: 'x', roles: ['member'], created_at: new Date(T0) }).execute();
          await svc.open(rental('edg_home', u, 101), trx);
        }),
        'insufficient_balance',
      );
      const ok = await svc.open(rental('edg_home', u, 100));
      assert.ok(ok.serial > 0);
    });

    test('counter payment: the shop’s account store:<owner> pays (it may go negative); its own share stays in the till', async () => {
      const shopOwner = await user();
      const shop = edge('edg_shop', shopOwner);
      const u = await user(); // no wallet money at all: the customer paid cash
      const royaltyBefore = await posted(royaltyAccount(publisher).id);
      const revenueBefore = await posted(PLATFORM_REVENUE.id);
      const { id } = await svc.open({ edgeId: shop, kind: 'order', contentId, userId: u, payer: 'counter', maxFee: 5000, terms: { medium: 'iso' } });
      assert.equal((await svc.report(shop, final(id, 999))).status, 'accepted');
      const split = splitDeliveryFee(999, DEFAULT_TARIFF);
      assert.deepEqual(split, { edge: 499, royalty: 399, fee: 99, rounding: 2 });
      assert.equal(await posted(storeAccount(shopOwner).id), -(999 - 499), 'the shop owes the platform the cash it took, less its share');
      assert.equal(await posted(walletAccount(shopOwner).id), 0, 'the shop’s share is not credited again');
      assert.equal((await posted(royaltyAccount(publisher).id)) - royaltyBefore, 399);
      assert.equal((await posted(PLATFORM_REVENUE.id)) - revenueBefore, 99);
      assert.equal((await svc.get(id))!.charged, 500);
      assert.equal((await svc.report(shop, final(id, 999))).status, 'duplicate');
      assert.equal(await posted(storeAccount(shopOwner).id), -500);
      await conservation();
    });

    test('the parts add up to the fee exactly, awkward amounts included', async () => {
      for (const fee of [0, 1, 2, 7, 99, 101, 99999, 1_000_000_000_001]) {
        const s = splitDeliveryFee(fee, DEFAULT_TARIFF);
        assert.equal(s.edge + s.royalty + s.fee + s.rounding, fee, String(fee));
        assert.ok(s.rounding >= 0 && s.rounding < 3, `rounding ${s.rounding} for ${fee}`);
      }
      for (const t of [{ ...DEFAULT_TARIFF, uploaderPercent: 0, royaltyPercent: 0 }, { ...DEFAULT_TARIFF, uploaderPercent: 33, royaltyPercent: 33 }]) {
        const s = splitDeliveryFee(99999, t);
        assert.equal(s.edge + s.royalty + s.fee + s.rounding, 99999);
      }
      // And through the ledger: every account gains exactly its part.
      const u = await user();
      await fund(u, 200_000);
      for (const fee of [1, 7, 99999]) {
        const accounts = [walletAccount(u).id, walletAccount(operator).id, royaltyAccount(publisher).id, PLATFORM_REVENUE.id, PLATFORM_ROUNDING.id];
        const before = await Promise.all(accounts.map(posted));
        const { id } = await svc.open(rental('edg_home', u, fee));
        await svc.report('edg_home', final(id, fee));
        const delta = (await Promise.all(accounts.map(posted))).map((v, i) => v - before[i]);
        const s = splitDeliveryFee(fee, DEFAULT_TARIFF);
        assert.deepEqual(delta, [-fee, s.edge, s.royalty, s.fee, s.rounding], `fee ${fee}`);
      }
      await conservation();
    });

    test('a fee of 0 releases the hold and moves nothing', async () => {
      const u = await user();
      await fund(u, 100);
      const { id } = await svc.open(rental('edg_home', u, 100));
      assert.equal(await available(walletAccount(u).id), 0);
      assert.equal((await svc.report('edg_home', final(id, 0))).status, 'accepted');
      assert.equal(await available(walletAccount(u).id), 100);
      assert.equal((await svc.get(id))!.charged, 0);
    });

    test('an expired hold: the wallet pays without it, or the report is refused and nothing changes', async () => {
      const u = await user();
      await fund(u, 300);
      const a = await svc.open(rental('edg_home', u, 200, { holdMs: 60_000 }));
      clock.advance(61_000);
      assert.equal((await svc.report('edg_home', final(a.id, 150))).status, 'accepted');
      assert.equal(await posted(walletAccount(u).id), 150);
      const b = await svc.open(rental('edg_home', u, 150, { holdMs: 60_000 }));
      clock.advance(61_000);
      assert.equal(await ledger.expireHolds(), 1);
      await ledger.apply([{ id: `spend:${u}`, debit: walletAccount(u).id, credit: PLATFORM_REVENUE.id, amount: 100, reason: 'fee' }]);
      const err = await unchanged(() => svc.report('edg_home', final(b.id, 150)), 'insufficient_balance');
      assert.equal(err.status, 402);
      assert.equal((await svc.get(b.id))!.state, 'open');
      await fund(u, 100);
      assert.equal((await svc.report('edg_home', final(b.id, 150))).status, 'accepted');
      assert.equal(await posted(walletAccount(u).id), 0);
      await conservation();
    });

    test('list and counts', async () => {
      const owner = await user();
      const e = edge('edg_counted', owner);
      const u = await user();
      await fund(u, 1000);
      const ids = [];
      for (let i = 0; i < 3; i++) ids.push((await svc.open(rental(e, u, 100))).id);
      await svc.report(e, final(ids[0], 10));
      await svc.report(e, final(ids[2], 30));
      assert.deepEqual(await svc.counts(e), { opened: 3, open: 1, billed: 2, billedFees: 40 });
      const page1 = await svc.list({ edgeId: e }, { limit: 2 });
      assert.deepEqual(page1.deliveries.map((d) => d.id), [ids[2], ids[1]]);
      const page2 = await svc.list({ edgeId: e }, { limit: 2, before: page1.nextBefore! });
      assert.deepEqual(page2.deliveries.map((d) => d.id), [ids[0]]);
      assert.equal(page2.nextBefore, null);
      assert.deepEqual((await svc.list({ userId: u })).deliveries.map((d) => d.id), [...ids].reverse());
    });
  });
}
