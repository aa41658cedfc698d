import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.ts';
import type { DbHandle } from '../../src/db/connection.ts';
import { walletAccount } from '../../src/ledger/accounts.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { Settlement, UNPAID_RETRY_MS, type StoredReceipt } from '../../src/ledger/settlement.ts';
import { DEFAULT_TARIFF } from '../../src/ledger/tariff.ts';
import { PLATFORM_PROMOTIONS, Wallets } from '../../src/ledger/wallets.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';

// Settlement against a purchase (docs/ledger.md "Settlement", #10 point 1): a receipt
// that could not be paid leaves its purchase as it was (it is charged against the
// purchase as it is when it is paid), and settling a settled receipt again changes
// nothing at all — the purchase's totals included, not only the ledger transfers whose
// IDs derive from the receipt ID.

const PRICE = 1000;
const SIZE = 1000;

for (const engine of testEngines()) {
  describe(`settlement against a purchase (${engine.name})`, () => {
    let handle: DbHandle;
    let clock: ManualClock;
    let ledger: Ledger;
    let settlement: Settlement;
    let n = 0;

    before(async () => {
      handle = await engine.open();
      clock = new ManualClock(Date.UTC(2026, 0, 5, 12)); // noon UTC: the list price (no off-peak rate)
      ledger = new Ledger({ db: handle.db, clock });
      settlement = new Settlement({ db: handle.db, ledger, clock, tariff: DEFAULT_TARIFF, originSourceId: 'origin' });
      await ledger.ensureAccount(PLATFORM_PROMOTIONS);
    });
    after(() => handle.close());

    /** A receiver (its own user, wallet and terminal), a content priced PRICE of SIZE bytes, an origin grant. */
    async function world() {
      const p = `sp${++n}`;
      const at = new Date(clock.now());
      const db = handle.db;
      await db
        .insertInto('users')
        .values(['pub', 'recv'].map((u) => ({ id: `${p}-${u}`, username: `${p}-${u}`, password_hash: 'x', roles: [u === 'pub' ? ('publisher' as const) : ('member' as const)], created_at: at })))
        .execute();
      await db.insertInto('terminals').values({ id: `${p}-t`, user_id: `${p}-recv`, name: 't', public_key: `${p}-key`, region: 'eu', network: 'test', serve_url: null, created_at: at, last_seen_at: null, last_state: null }).execute();
      await db
        .insertInto('contents')
        .values({ id: `${p}-c`, title: 'c', summary: '', author: 'a', genre: 'test', price: PRICE, publisher_id: `${p}-pub`, piece_size: 100, piece_count: 10, total_size: SIZE, manifest: {} as never, created_at: at })
        .execute();
      await db.insertInto('grants').values({ id: `${p}-g`, transfer_id: null, content_id: `${p}-c`, receiver_id: `${p}-t`, source_id: 'origin', pieces: '0-9', expires_at: new Date(clock.now() + 86_400_000), created_at: at }).execute();
      await new Wallets({ ledger, signupCredit: 0 }).open(`${p}-recv`);
      let k = 0;
      return {
        user: `${p}-recv`,
        fund: async (amount: number) => {
          const [r] = await ledger.apply([{ id: `${p}:fund:${++k}`, debit: PLATFORM_PROMOTIONS.id, credit: walletAccount(`${p}-recv`).id, amount, reason: 'topup' }]);
          assert.equal(r.status, 'created');
        },
        /** Stores a receipt of `bytes` from the origin and settles it in the same transaction, as ReceiptService does. */
        receive: (bytes: number) => {
          const row: StoredReceipt = { id: `${p}:r${++k}`, grant_id: `${p}-g`, content_id: `${p}-c`, source_id: 'origin', receiver_id: `${p}-t`, bytes, received_at: new Date(clock.now()) };
          return db.transaction().execute(async (trx) => {
            await trx.insertInto('receipts').values({ ...row, pieces: row.id, signature: 'sig', body: row.id }).execute();
            return { row, result: await settlement.settleIn(trx, [row]) };
          });
        },
        purchase: () => db.selectFrom('ledger_purchases').select(['paid_bytes', 'charged', 'completed_at']).where('user_id', '=', `${p}-recv`).executeTakeFirst(),
        posted: async () => (await ledger.balance(walletAccount(`${p}-recv`).id)).posted,
      };
    }

    test('a receipt that could not be paid leaves its purchase as it was; paid later, the content costs its price', async () => {
      const w = await world();
      const first = await w.receive(500);
      assert.deepEqual(first.result, { settled: [], unpaid: [{ receiptId: first.row.id, code: 'insufficient_balance' }] });
      // Nothing was paid, so nothing of the purchase is paid for.
      assert.deepEqual(await w.purchase(), { paid_bytes: 0, charged: 0, completed_at: null });

      await w.fund(2000);
      clock.advance(UNPAID_RETRY_MS);
      assert.deepEqual(await settlement.retryUnpaid(), { settled: [first.row.id], unpaid: [] });
      assert.deepEqual(await w.purchase(), { paid_bytes: 500, charged: 500, completed_at: null });
      const second = await w.receive(500);
      assert.deepEqual(second.result, { settled: [second.row.id], unpaid: [] });
      // The whole content, in two receipts, one of them paid late: exactly its price.
      assert.equal(await w.posted(), 2000 - PRICE);
      assert.equal((await w.purchase())?.charged, PRICE);
    });

    test('settling a settled receipt again changes nothing, its purchase included', async () => {
      const w = await world();
      await w.fund(2000);
      const { row, result } = await w.receive(100);
      assert.deepEqual(result, { settled: [row.id], unpaid: [] });
      const was = await snapshotTables(handle.db);
      clock.advance(1000);
      const again = await handle.db.transaction().execute((trx) => settlement.settleIn(trx, [row]));
      assert.deepEqual(again, { settled: [row.id], unpaid: [] });
      assert.deepEqual(await snapshotTables(handle.db), was);
      // The rest of the content still costs the rest of the price.
      await w.receive(900);
      assert.equal(await w.posted(), 2000 - PRICE);
    });
  });
}
