import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { sql } from 'kysely';
import { ManualClock } from '../../src/core/clock.ts';
import { AppError } from '../../src/core/errors.ts';
import type { DbHandle } from '../../src/db/connection.ts';
import { HOLDS, PLATFORM_PAYOUTS, PLATFORM_REVENUE, PLATFORM_ROUNDING, VOUCHERS_OUTSTANDING, royaltyAccount, storeAccount, walletAccount } from '../../src/ledger/accounts.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { newPurchase, stepPurchase, type PurchaseTotals } from '../../src/ledger/purchase.ts';
import { Reservations, type RefetchPolicy, type Reservation } from '../../src/ledger/reservations.ts';
import { Settlement, UNPAID_RETRY_MS, type SettleResult, type StoredReceipt } from '../../src/ledger/settlement.ts';
import { StatementService } from '../../src/ledger/statements.ts';
import { DEFAULT_TARIFF, type Tariff } from '../../src/ledger/tariff.ts';
import { FAILED_REDEMPTION_WINDOW_MS, MAX_FAILED_REDEMPTIONS, newVoucherCode, VoucherService } from '../../src/ledger/vouchers.ts';
import { PLATFORM_PROMOTIONS, Wallets } from '../../src/ledger/wallets.ts';
import { testEngines } from '../helpers/db.ts';

// Properties of settlement (#4 point 8, #10 point 1; docs/ledger.md "Purchases",
// "Settlement", "Reservations", "Vouchers", "Payouts") under random interleavings of
// reservations, receipts stored and settled in one transaction (as ReceiptService does,
// batches included), re-settling stored receipts, crashes mid-transaction, releases,
// clock jumps past hold timeouts, expiry sweeps, retries of unpaid receipts, voucher issue
// and redemption (twice, typed differently, unknown, expired; the attempt limit is
// modelled too) and publisher payouts (retried, altered), under either REFETCH_POLICY.
//
// The world is built directly on the database: users, terminals, two priced contents and
// grants are inserted as rows; money moves only through Ledger, Settlement, Reservations,
// VoucherService, Wallets and StatementService. A plain model written from docs/ledger.md
// predicts every outcome. A receiver pays for a content as one purchase (per user and
// content; a new round only under REFETCH_POLICY=charge), each receipt charged against the
// purchase's running totals — the arithmetic of one step is stepPurchase's (it has its own
// exact property test, test/ledger/purchase.test.ts); everything around it is the model's
// own: which reservation a receipt draws on (the purchase's, if open and more than a second
// from its timeout, whatever grant the receipt came under), the hold chained for what is
// left and released when the purchase completes, an unpaid receipt leaving its purchase as
// it was (a later receipt of the same purchase in the batch is charged as if the unpaid one
// had never come), a content paid in full fetched again for free, no leg from a receiver
// to itself, the rounding legs through platform:rounding, and `reserve` reusing an open
// hold that covers what is still to pay or replacing it. After every step:
//   - conservation holds and no no-overdraft account is overdrawn (available ≥ 0);
//   - every account of the world (posted), every wallet's held amount, every pending hold
//     and every purchase row (totals, uploader shares, reservation, completion) equals the model;
//   - every stored receipt has exactly one ledger_settlements row, as predicted;
//   - the transfers naming a receipt are exactly the predicted ones (IDs, kinds, accounts,
//     amounts; the reservation's release and re-reserve included), none for an unpaid one;
//   - per purchase, what its receipts put into platform:rounding less what they took out
//     equals charged − paid out, and is ≥ 0 and less than one unit per party;
//   - re-settling a settled receipt, or a transaction that crashes after settling, changes nothing.
// At the end: each wallet's posted balance = funding + vouchers redeemed − its settled
// charges + the upload shares its terminals earned; royalties − payouts; a content bought
// whole at the list price cost exactly its price.

const GiB = 1024 ** 3;
const DAY = 86_400_000;
const HOUR = 3_600_000;
const HOLD_MS = 15 * 60_000;
/** Settlement and reservations treat a hold with this little time left as gone. */
const HOLD_MARGIN_MS = 1000;
const ORIGIN = 'origin';
// Lower thresholds than the defaults, so that a run's few receipts make frequent receivers and distributors.
const tariff = { ...DEFAULT_TARIFF, frequentReceiverBytes: 6 * GiB, distributorBytes: 4 * GiB };
// The split of a charge: the default (50/40/10, whose parts' floors mostly move with the charge's),
// or one whose parts' floors move between the charge's, so that what is owed often exceeds a
// receipt's charge and is paid out of rounding.
const SPLITS = [
  { uploaderPercent: DEFAULT_TARIFF.uploaderPercent, royaltyPercent: DEFAULT_TARIFF.royaltyPercent },
  { uploaderPercent: 47, royaltyPercent: 33 },
];
const PARTS = ['uploader', 'royalty', 'fee'] as const;
const LEG = { uploader: 'upload', royalty: 'royalty', fee: 'fee' } as const;
// ≈ 0.5 s a run on PGlite; SETTLEMENT_PROPERTY_RUNS=400 to hunt for bugs.
const NUM_RUNS = Number(process.env.SETTLEMENT_PROPERTY_RUNS) || 20;

// Receivers: user 0 has two terminals (it can download from itself), users 1 and 2 also
// serve others; user 3 never has money unless it redeems a voucher. The seeder only serves.
const RECEIVER_TERMINALS = ['t0a', 't0b', 't1', 't2', 't3'] as const;
const TERMINAL_USER: Record<string, string> = { t0a: 'u0', t0b: 'u0', t1: 'u1', t2: 'u2', t3: 'u3', ts: 'seed' };
const SOURCES = [ORIGIN, 't0a', 't0b', 't1', 't2', 'ts'] as const;
const PAYERS = ['u0', 'u1', 'u2', 'u3'] as const;
// Sizes in GiB so that a few receipts cross the frequent-receiver and distributor thresholds.
const CONTENTS = [
  { key: 'c0', price: 1000, total: 4 * GiB },
  { key: 'c1', price: 777, total: 3 * GiB + 12_345 },
];

// ---- abstract steps, resolved against the world while running ----
const pct = fc.integer({ min: 1, max: 100 });
// Mostly for a content the receiver reserved (when there is one), else under an explicit origin grant.
// Its bytes: `pct` percent of the content (a few bytes off, so that charges have fractions),
// `pct` × 42,943 bytes (about pct/100 of a unit of c0: parts owed before the charge
// moves), or exactly what the purchase still lacks (the last receipt of a transfer).
const receiptItem = fc.record({
  explicit: fc.boolean().chain((b) => (b ? fc.boolean() : fc.constant(false))),
  target: fc.nat(),
  source: fc.integer({ min: 0, max: SOURCES.length - 1 }),
  pct,
  size: fc.oneof({ weight: 4, arbitrary: fc.constant('pct' as const) }, { weight: 4, arbitrary: fc.constant('tiny' as const) }, { weight: 2, arbitrary: fc.constant('rest' as const) }),
});
const step = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('reserve' as const),
      recv: fc.integer({ min: 0, max: RECEIVER_TERMINALS.length - 1 }),
      content: fc.integer({ min: 0, max: 1 }),
      // The same receiver and content as the last reservation asked for (`cascade get` run again, another device of the user).
      again: fc.boolean(),
      // Percent of the content the transfer still lacks (0: nothing, e.g. a transfer that is about to end).
      missing: fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 9, arbitrary: pct }),
    }),
  },
  { weight: 8, arbitrary: fc.record({ t: fc.constant('receipts' as const), items: fc.array(receiptItem, { minLength: 1, maxLength: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('resettle' as const), ref: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('crash' as const), item: receiptItem }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('release' as const), ref: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('advance' as const),
      ms: fc.oneof(
        { weight: 3, arbitrary: fc.integer({ min: 1, max: 3000 }) },
        { weight: 4, arbitrary: fc.integer({ min: 60_000, max: HOLD_MS + 60_000 }) },
        { weight: 2, arbitrary: fc.integer({ min: HOUR, max: 12 * HOUR }) },
        { weight: 1, arbitrary: fc.constant(20 * DAY) },
      ),
    }),
  },
  // late: jump past the hold timeout first.
  { weight: 3, arbitrary: fc.record({ t: fc.constant('expire' as const), late: fc.boolean() }) },
  // To just around the earliest open hold's timeout (a hold with ≤ 1 s left counts as gone).
  { weight: 2, arbitrary: fc.record({ t: fc.constant('to-timeout' as const), before: fc.constantFrom(-1, 0, 1, 999, 1000, 1001, 1500, 5000) }) },
  // wait: let UNPAID_RETRY_MS pass first, so that the unpaid receipts are due.
  { weight: 3, arbitrary: fc.record({ t: fc.constant('retry' as const), wait: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('issue' as const),
      amount: fc.integer({ min: 1, max: 3000 }),
      count: fc.integer({ min: 1, max: 2 }),
      expiresInMs: fc.option(fc.integer({ min: 1000, max: 2 * HOUR }), { nil: undefined, freq: 3 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('redeem' as const), voucher: fc.nat(), user: fc.integer({ min: 0, max: PAYERS.length - 1 }), form: fc.constantFrom('as-issued' as const, 'typed' as const, 'unknown' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('payout' as const), id: fc.integer({ min: 0, max: 2 }), amount: fc.integer({ min: 1, max: 1500 }) }) },
);
const world = fc.record({
  funding: fc.tuple(fc.integer({ min: 1500, max: 6000 }), fc.integer({ min: 300, max: 3000 }), fc.integer({ min: 0, max: 400 })),
  startHour: fc.integer({ min: 0, max: 23 }),
  refetch: fc.constantFrom<RefetchPolicy>('free', 'charge'),
  split: fc.integer({ min: 0, max: SPLITS.length - 1 }),
  steps: fc.array(step, { minLength: 6, maxLength: 24, size: '+1' }),
});
type Step = typeof step extends fc.Arbitrary<infer S> ? S : never;
type World = typeof world extends fc.Arbitrary<infer W> ? W : never;
type Item = typeof receiptItem extends fc.Arbitrary<infer I> ? I : never;
/** A fixed example: a run from these steps, by default in a world with funding 1500/300/0 at 10:00 UTC. */
const example = (steps: Step[], w: Partial<Omit<World, 'steps'>> = {}): [World] => [{ funding: [1500, 300, 0], startHour: 10, refetch: 'free', split: 0, ...w, steps }];
/** A receipt item of a fixed example: by default for the first reservation, from the origin, 1 % of the content. */
const item = (i: Partial<Item>): Item => ({ explicit: false, target: 0, source: 0, pct: 1, size: 'pct', ...i });

// ---- the model (docs/ledger.md) ----
interface MPending {
  user: string;
  amount: number;
  timeoutAt: number;
  /** Neither posted, voided nor swept (an expired hold stays open until the sweep). */
  open: boolean;
}
/** One round of a user's purchase of a content: a ledger_purchases row and its shares. */
interface MPurchase {
  user: string;
  content: number;
  round: number;
  totals: PurchaseTotals;
  /** The row's reservation (hold_id, hold_amount): kept after the hold expired, until the purchase is next saved. */
  hold: string | null;
  holdAmount: number;
  holdSeq: number;
  completedAt: number | null;
  /** What its receipts put into platform:rounding less what they took out of it. */
  rounding: number;
  /** Every byte it charged was charged at the list price (no S1.9 rule applied). */
  fullRate: boolean;
}
/** A ledger transfer as the checks compare it (a void's amount is the pending's, not compared). */
interface MTransfer {
  id: string;
  kind: string;
  amount: number | null;
  debit: string;
  credit: string;
  pending: string | null;
  reason: string;
}
interface MReceipt {
  row: StoredReceipt;
  content: number;
  recvUser: string;
  /** Owner of the source terminal; null for the origin. */
  sourceUser: string | null;
  status: 'settled' | 'unpaid';
  code: string | null;
  /** What left the receiver's wallet. */
  charge: number;
  attempts: number;
  /** The purchase round it was charged against, once settled. */
  round: number | null;
  /** Its own terminal's upload share, which never left the receiver's wallet (a self-download). */
  selfShare: number;
  /** Every ledger transfer naming it: legs and reservation transfers. */
  transfers: MTransfer[];
}
interface MVoucher {
  id: string;
  code: string;
  amount: number;
  expiresAt: number | null;
  redeemedBy: string | null;
}

const isSettled = (r: MReceipt) => r.status === 'settled';
/** Sorted in JS: the database's collation need not order IDs like `<` does. */
const byKey = <T,>(xs: T[], key: (x: T) => string) => [...xs].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
const byId = <T extends { id: string }>(xs: T[]) => byKey(xs, (x) => x.id);
const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);
const isComplete = (P: MPurchase) => P.totals.paidBytes >= P.totals.totalBytes;

/** The most the rest of a purchase can cost for `missing` bytes: at the list price, rounded up, at most the price less what was charged. */
function stillToPay(t: PurchaseTotals, missing: number): number {
  const unpaid = Math.min(missing, t.totalBytes - t.paidBytes);
  if (unpaid <= 0) return 0;
  const atList = Number((BigInt(t.price) * BigInt(unpaid) + BigInt(t.totalBytes) - 1n) / BigInt(t.totalBytes));
  return Math.min(t.price - t.charged, atList);
}

/** S1.9 rules of a receipt delivered at `at` to a user with this traffic, as percents. */
function ratesOf(at: number, traffic: { received: number; served: number }): number[] {
  const hour = new Date(at).getUTCHours();
  const rates: number[] = [];
  if (hour >= tariff.offPeakStartHour || hour < tariff.offPeakEndHour) rates.push(tariff.offPeakRatePercent); // 22–6 UTC
  if (traffic.received >= tariff.frequentReceiverBytes) rates.push(tariff.frequentRatePercent);
  if (traffic.served >= tariff.distributorBytes) rates.push(tariff.distributorRatePercent);
  return rates;
}

for (const engine of testEngines()) {
  describe(`settlement properties (${engine.name})`, () => {
    let handle: DbHandle;
    let clock: ManualClock;
    let ledger: Ledger;
    let reservations: Record<RefetchPolicy, Reservations>;
    let wallets: Wallets;
    let statements: StatementService;
    let run = 0;

    before(async () => {
      handle = await engine.open();
      clock = new ManualClock(Date.UTC(2026, 0, 1));
      ledger = new Ledger({ db: handle.db, clock });
      wallets = new Wallets({ ledger, signupCredit: 0 });
      const reservationsWith = (refetch: RefetchPolicy) => new Reservations({ db: handle.db, ledger, wallets, clock, holdTimeoutMs: HOLD_MS, refetch });
      reservations = { free: reservationsWith('free'), charge: reservationsWith('charge') };
      statements = new StatementService({ db: handle.db, ledger, clock, content: { titles: async () => new Map() }, accounts: { usernames: async () => new Map() } });
      await ledger.ensureAccount(PLATFORM_PROMOTIONS);
    });
    after(() => handle.close());

    test('random receipts, retries, holds, voids and vouchers keep the books right', async () => {
      await fc.assert(
        fc.asyncProperty(world, async ({ funding, startHour, refetch, split, steps }) => {
          const p = `sp${++run}`;
          try {
            await oneRun(p, funding, startHour, refetch, { ...tariff, ...SPLITS[split] }, steps);
          } finally {
            // Unpaid receipts of this run must not be retried (and paid) during later runs.
            await handle.db.deleteFrom('ledger_settlements').where('receipt_id', 'like', `${p}:r%`).where('status', '=', 'unpaid').execute();
          }
        }),
        {
          numRuns: NUM_RUNS,
          includeErrorInReport: true,
          examples: [
            // Found by this property (per-transfer reservations, #4): two receipts of one reserved
            // purchase in one batch; the first (309) exceeds reservation (10) + wallet (290) and
            // stays unpaid, so the second (9) must be paid out of the reservation, not from the
            // wallet while the reservation stays held — and charged as if the first never came.
            example([
              { t: 'reserve', recv: 2, content: 0, again: false, missing: 1 },
              { t: 'receipts', items: [item({ pct: 31 }), item({ pct: 1 })] },
            ]),
            // Found by this property (#10): a receipt that could not be paid, alone in its batch,
            // left its purchase charged for its bytes; the retry after a top-up then cost less.
            example([
              { t: 'receipts', items: [item({ explicit: true, target: 30, pct: 40 })] },
              { t: 'issue', amount: 3000, count: 1, expiresInMs: undefined },
              { t: 'redeem', voucher: 0, user: 3, form: 'as-issued' },
              { t: 'retry', wait: true },
              { t: 'receipts', items: [item({ explicit: true, target: 30, pct: 60 })] },
            ]),
            // Found by this property (#10): settling a settled receipt again charged its purchase again.
            example([
              { t: 'receipts', items: [item({ explicit: true, pct: 10 })] },
              { t: 'resettle', ref: 0 },
            ]),
            // A self-download completing its purchase: the last receipt costs nothing (its bytes at
            // the distributor rate leave the charge's floor where it was), yet it completes the
            // purchase, so it releases the reservation's 500 left rather than reserving them again.
            example([
              { t: 'reserve', recv: 1, content: 0, again: false, missing: 100 },
              { t: 'receipts', items: [item({ source: 1, pct: 100 })] },
              { t: 'receipts', items: [item({ source: 1, size: 'rest' })] },
            ]),
            // Parts owed beyond a receipt's charge, paid out of what the purchase left in rounding
            // before: the uploader's (third receipt), the royalty and the fee (fourth).
            example([
              { t: 'reserve', recv: 0, content: 0, again: false, missing: 100 },
              { t: 'receipts', items: [item({ pct: 42 }), item({ source: 3, pct: 22 })] },
              { t: 'receipts', items: [item({ source: 3, pct: 63, size: 'tiny' }), item({ pct: 9, size: 'tiny' })] },
            ]),
            // `cascade get` run again: the open reservation covers exactly what is still to pay and is
            // reused; released, then reserved anew; the content bought whole, then fetched again
            // under REFETCH_POLICY=charge: a second round, reserved and paid in full again.
            example(
              [
                { t: 'reserve', recv: 0, content: 1, again: false, missing: 50 },
                { t: 'reserve', recv: 0, content: 0, again: true, missing: 50 },
                { t: 'release', ref: 0 },
                { t: 'reserve', recv: 0, content: 0, again: true, missing: 100 },
                { t: 'receipts', items: [item({ source: 4, size: 'rest' })] },
                { t: 'reserve', recv: 0, content: 0, again: true, missing: 100 },
                { t: 'receipts', items: [item({ size: 'rest' })] },
              ],
              { funding: [3000, 300, 0], refetch: 'charge' },
            ),
            // A reservation one second from its timeout counts as gone: the receipt is paid from the
            // wallet, the purchase forgets the hold, and the sweep voids it once it is due.
            example([
              { t: 'reserve', recv: 0, content: 0, again: false, missing: 50 },
              { t: 'to-timeout', before: 1000 },
              { t: 'receipts', items: [item({ pct: 10 })] },
              { t: 'expire', late: false },
              { t: 'to-timeout', before: 0 },
              { t: 'expire', late: false },
            ]),
            // Asked again for more than its open reservation (100) and the wallet (200) cover: refused,
            // saying what the wallet could cover with the old hold released (300); both stay as they were.
            example([
              { t: 'reserve', recv: 2, content: 0, again: false, missing: 10 },
              { t: 'reserve', recv: 0, content: 1, again: true, missing: 100 },
            ]),
          ],
          // To replay a failure: SETTLEMENT_PROPERTY_SEED=<seed> SETTLEMENT_PROPERTY_PATH=<path> (from the report).
          ...(process.env.SETTLEMENT_PROPERTY_SEED ? { seed: Number(process.env.SETTLEMENT_PROPERTY_SEED), path: process.env.SETTLEMENT_PROPERTY_PATH, endOnFailure: true } : {}),
        },
      );
    });

    async function oneRun(p: string, funding: [number, number, number], startHour: number, refetch: RefetchPolicy, runTariff: Tariff, steps: Step[]) {
      const db = handle.db;
      const settlement = new Settlement({ db, ledger, clock, tariff: runTariff, originSourceId: ORIGIN });
      // A new day at `startHour` (so that a failing run replays alone, off-peak hours
      // included). Earlier runs' holds are past due by then: sweep them, so that the
      // sweeps below count this run's holds alone.
      clock.set((Math.floor(clock.now() / DAY) + 2) * DAY + startHour * HOUR);
      await ledger.expireHolds();

      // ---- the world ----
      const user = (u: string) => `${p}-${u}`;
      const term = (t: string) => (t === ORIGIN ? ORIGIN : `${p}-${t}`);
      const termUser = (terminalId: string) => (terminalId === ORIGIN ? null : user(TERMINAL_USER[terminalId.slice(p.length + 1)]));
      const wallet = (u: string) => walletAccount(u).id;
      const publisher = user('pub');
      const store = user('store');
      const contentId = (i: number) => `${p}-${CONTENTS[i].key}`;
      const now = () => clock.now();
      const at = new Date(now());

      await db
        .insertInto('users')
        .values(['pub', 'store', 'seed', ...PAYERS].map((u) => ({ id: user(u), username: user(u), password_hash: 'x', roles: u === 'pub' ? ['publisher' as const] : u === 'store' ? ['store' as const] : ['member' as const], created_at: at })))
        .execute();
      await db
        .insertInto('terminals')
        .values(Object.entries(TERMINAL_USER).map(([t, u]) => ({ id: term(t), user_id: user(u), name: t, public_key: `${p}-key-${t}`, region: 'eu', network: 'test', serve_url: null, created_at: at, last_seen_at: null, last_state: null })))
        .execute();
      await db
        .insertInto('contents')
        .values(CONTENTS.map((c, i) => ({ id: contentId(i), title: c.key, summary: '', author: 'a', genre: 'test', price: c.price, publisher_id: publisher, piece_size: 1 << 20, piece_count: Math.ceil(c.total / (1 << 20)), total_size: c.total, manifest: {} as never, created_at: at })))
        .execute();
      const fundingOf: Record<string, number> = { [user('u0')]: funding[0], [user('u1')]: funding[1], [user('u2')]: funding[2], [user('u3')]: 0, [user('seed')]: 0 };
      for (const [u, amount] of Object.entries(fundingOf)) {
        await wallets.open(u);
        if (amount > 0) {
          const [r] = await ledger.apply([{ id: `${p}:fund:${u}`, debit: PLATFORM_PROMOTIONS.id, credit: wallet(u), amount, reason: 'topup' }]);
          assert.equal(r.status, 'created');
        }
      }
      const vouchers = new VoucherService({ db, ledger, clock }); // its attempt limiter is this run's alone

      // ---- model state ----
      const walletUsers = Object.keys(fundingOf);
      const tracked = [...walletUsers.map(wallet), royaltyAccount(publisher).id, storeAccount(store).id, PLATFORM_REVENUE.id, PLATFORM_ROUNDING.id, VOUCHERS_OUTSTANDING.id, PLATFORM_PAYOUTS.id];
      const baseline = await postedOf(tracked);
      const delta = new Map(tracked.map((id) => [id, 0]));
      const move = (from: string, to: string, amount: number) => {
        delta.set(from, delta.get(from)! - amount);
        delta.set(to, delta.get(to)! + amount);
      };
      const pendings = new Map<string, MPending>();
      /** Rounds of each purchase, oldest first, by `user|content index`. */
      const purchases = new Map<string, MPurchase[]>();
      /** (terminal, content) pairs whose receiver asked for a reservation: where most receipts go. */
      const reserved: { terminal: string; content: number }[] = [];
      const receipts = new Map<string, MReceipt>();
      const vouchersIssued: MVoucher[] = [];
      const redeemed = new Map<string, number>();
      const failures = new Map<string, number[]>();
      const payouts = new Map<string, number>();
      const grants = new Set<string>();
      let n = 0;

      const pendingOf = (u: string) => sum([...pendings.values()].filter((h) => h.open && h.user === u).map((h) => h.amount));
      const available = (u: string) => fundingOf[u] + delta.get(wallet(u))! - pendingOf(u);

      const latest = (u: string, c: number) => purchases.get(`${u}|${c}`)?.at(-1);
      const newRound = (u: string, c: number, round: number): MPurchase => ({
        user: u,
        content: c,
        round,
        totals: newPurchase(CONTENTS[c].price, CONTENTS[c].total),
        hold: null,
        holdAmount: 0,
        holdSeq: 0,
        completedAt: null,
        rounding: 0,
        fullRate: true,
      });
      const addRound = (P: MPurchase) => {
        purchases.set(`${P.user}|${P.content}`, [...(purchases.get(`${P.user}|${P.content}`) ?? []), P]);
        return P;
      };
      const holdName = (P: MPurchase, seq: number) => `hold:${P.user}:${contentId(P.content)}:${P.round}:${seq}`;
      /** The purchase's reservation as settlement and reservations see it: open, and more than the margin before its timeout. */
      function liveHold(P: MPurchase) {
        const h = P.hold ? pendings.get(P.hold)! : null;
        return h && h.open && h.timeoutAt > now() + HOLD_MARGIN_MS ? { id: P.hold!, amount: P.holdAmount, timeoutAt: h.timeoutAt } : null;
      }

      function traffic(u: string, t: number) {
        const since = t - 30 * DAY;
        let received = 0;
        let served = 0;
        for (const r of receipts.values()) {
          if (r.row.received_at.getTime() < since) continue;
          if (r.recvUser === u) received += r.row.bytes;
          if (r.sourceUser === u) served += r.row.bytes;
        }
        return { received, served };
      }

      /** docs/ledger.md "Purchases", "Settlement", "Reservations": receipt by receipt in batch order. */
      // Traffic (frequent receiver, distributor) counts as of settling, as Settlement computes it:
      // the receipts of the 30 days before now, this batch's included.
      function settleModel(batch: MReceipt[]): SettleResult {
        const t = now();
        const snapshot = new Map(batch.map((r) => [r.recvUser, traffic(r.recvUser, t)])); // loaded once per batch
        // Every purchase of the batch is loaded (round 1 begun for those that have none) and
        // saved: a reservation that is no longer live is forgotten then, paid or not.
        for (const r of batch) {
          const P = latest(r.recvUser, r.content) ?? addRound(newRound(r.recvUser, r.content, 1));
          if (!liveHold(P)) Object.assign(P, { hold: null, holdAmount: 0 });
        }
        const out: SettleResult = { settled: [], unpaid: [] };
        for (const r of batch) {
          r.attempts++;
          const P = latest(r.recvUser, r.content)!;
          const payer = wallet(r.recvUser);
          const uploader = r.sourceUser === null ? PLATFORM_REVENUE.id : wallet(r.sourceUser);
          const rates = ratesOf(r.row.received_at.getTime(), snapshot.get(r.recvUser)!);
          const { amounts, after } = stepPurchase(P.totals, { bytes: r.row.bytes, ratePercents: rates, uploader }, runTariff);
          const payee = { uploader, royalty: royaltyAccount(publisher).id, fee: PLATFORM_REVENUE.id };
          const legs: MTransfer[] = [];
          const leg = (id: string, debit: string, credit: string, amount: number, reason: string) => {
            // Legs of 0 are left out, and so is a receiver paying its own terminal's share.
            if (amount > 0 && debit !== credit) legs.push({ id: `${r.row.id}:${id}`, kind: 'normal', amount, debit, credit, pending: null, reason });
          };
          for (const part of PARTS) leg(LEG[part], payer, payee[part], amounts.fromWallet[part], LEG[part]);
          leg('rounding', payer, PLATFORM_ROUNDING.id, amounts.fromWallet.rounding, 'rounding');
          for (const part of PARTS) leg(`${LEG[part]}:rounding`, PLATFORM_ROUNDING.id, payee[part], amounts.fromRounding[part], LEG[part]);
          const charge = sum(legs.filter((l) => l.debit === payer).map((l) => l.amount!));
          const complete = after.paidBytes >= after.totalBytes;
          // The purchase's reservation pays first, when there is something to pay or to release.
          const hold = liveHold(P);
          const fromHold = hold !== null && (charge > 0 || complete);
          if (charge > available(r.recvUser) + (fromHold ? hold.amount : 0)) {
            // Unpaid: nothing moves, the purchase stays as it was.
            Object.assign(r, { status: 'unpaid', code: 'insufficient_balance', charge: 0, round: null, selfShare: 0, transfers: [] });
            out.unpaid.push({ receiptId: r.row.id, code: 'insufficient_balance' });
            continue;
          }
          for (const l of legs) move(l.debit, l.credit, l.amount!);
          const transfers = [...legs];
          if (fromHold) {
            pendings.get(hold.id)!.open = false;
            transfers.push({ id: `${r.row.id}:release`, kind: 'void', amount: null, debit: payer, credit: HOLDS.id, pending: hold.id, reason: 'reservation' });
            const left = hold.amount - charge;
            if (left > 0 && !complete) {
              // What is left is reserved again, until the same moment; the completing receipt releases it all.
              const seq = P.holdSeq + 1;
              const next = holdName(P, seq);
              pendings.set(next, { user: r.recvUser, amount: left, timeoutAt: hold.timeoutAt, open: true });
              transfers.push({ id: next, kind: 'pending', amount: left, debit: payer, credit: HOLDS.id, pending: null, reason: 'reservation' });
              Object.assign(P, { hold: next, holdAmount: left, holdSeq: seq });
            } else {
              Object.assign(P, { hold: null, holdAmount: 0 });
            }
          }
          if (amounts.chargedBytes > 0 && rates.length > 0) P.fullRate = false;
          P.totals = after;
          if (complete && P.completedAt === null) P.completedAt = t;
          P.rounding += amounts.fromWallet.rounding - sum(PARTS.map((x) => amounts.fromRounding[x]));
          const selfShare = uploader === payer ? amounts.fromWallet.uploader : 0;
          Object.assign(r, { status: 'settled', code: null, charge, round: P.round, selfShare, transfers });
          out.settled.push(r.row.id);
        }
        return out;
      }

      // ---- checks ----
      async function postedOf(ids: string[]) {
        const rows = await db.selectFrom('ledger_accounts').selectAll().where('id', 'in', ids).execute();
        return new Map(rows.map((a) => [a.id, a.credits_posted - a.debits_posted]));
      }

      const purchaseRows = () => db.selectFrom('ledger_purchases').selectAll().where('user_id', 'like', `${p}-%`).execute();
      const shareRows = () => db.selectFrom('ledger_purchase_shares').selectAll().where('user_id', 'like', `${p}-%`).execute();

      async function snapshot() {
        const accounts = await db.selectFrom('ledger_accounts').selectAll().orderBy('id').execute();
        const count = await sql<{ n: number }>`select count(*)::int8 as n from ledger_transfers`.execute(db);
        const purchaseKey = (x: { user_id: string; content_id: string; round: number }) => `${x.user_id}|${x.content_id}|${x.round}`;
        const bought = byKey(await purchaseRows(), purchaseKey);
        const shares = byKey(await shareRows(), (s) => `${purchaseKey(s)}|${s.account_id}`);
        const settlements = await db.selectFrom('ledger_settlements').selectAll().where('receipt_id', 'like', `${p}:r%`).orderBy('receipt_id').execute();
        const stored = await db.selectFrom('receipts').select('id').where('id', 'like', `${p}:r%`).orderBy('id').execute();
        return { accounts, transfers: count.rows[0].n, purchases: bought, shares, settlements, receipts: stored.map((r) => r.id) };
      }

      const allRounds = () => [...purchases.values()].flat();
      const roundKey = (user: string, content: string, round: number) => `${user}|${content}|${round}`;

      async function verify(label: string) {
        const c = await ledger.checkConservation();
        assert.equal(c.ok, true, `${label}: conservation ${JSON.stringify(c)}`);
        const overdrawn = await sql<{ id: string }>`select id from ledger_accounts where no_overdraft and credits_posted - debits_posted - debits_pending < 0`.execute(db);
        assert.deepEqual(overdrawn.rows, [], `${label}: overdrawn no-overdraft accounts`);

        // Every balance of the world, posted and held.
        const accounts = await db.selectFrom('ledger_accounts').selectAll().where('id', 'in', tracked).execute();
        const posted = new Map(accounts.map((a) => [a.id, a.credits_posted - a.debits_posted]));
        const got = Object.fromEntries(tracked.map((id) => [id, (posted.get(id) ?? 0) - (baseline.get(id) ?? 0)]));
        assert.deepEqual(got, Object.fromEntries(tracked.map((id) => [id, delta.get(id)!])), `${label}: posted balances (change since the run began)`);
        for (const u of walletUsers) {
          const a = accounts.find((x) => x.id === wallet(u))!;
          assert.equal(a.debits_pending, pendingOf(u), `${label}: held from ${u}`);
          assert.ok(a.credits_posted - a.debits_posted - a.debits_pending >= 0, `${label}: ${u} available`);
        }

        // Every pending hold of the world: amount, timeout, still open or not.
        const holdRows = await sql<{ id: string; debit_account_id: string; amount: number; timeout_at: Date | null; open: boolean }>`
          select t.id, t.debit_account_id, t.amount, t.timeout_at,
                 not exists (select 1 from ledger_transfers r where r.pending_id = t.id) as open
          from ledger_transfers t where t.kind = 'pending' and t.debit_account_id = any(${walletUsers.map(wallet)}::text[]) order by t.id`.execute(db);
        assert.deepEqual(
          byId(holdRows.rows).map((h) => ({ id: h.id, user: h.debit_account_id.slice('wallet:'.length), amount: h.amount, timeoutAt: h.timeout_at ? new Date(h.timeout_at).getTime() : null, open: h.open })),
          byKey([...pendings.entries()], ([id]) => id).map(([id, h]) => ({ id, user: h.user, amount: h.amount, timeoutAt: h.timeoutAt, open: h.open })),
          `${label}: pending holds`,
        );

        // Every purchase: its running totals, its reservation, when it was completed; its uploaders' shares.
        const rounds = byKey(allRounds(), (P) => roundKey(P.user, contentId(P.content), P.round));
        assert.deepEqual(
          byKey(await purchaseRows(), (r) => roundKey(r.user_id, r.content_id, r.round)).map((r) => ({
            key: roundKey(r.user_id, r.content_id, r.round),
            price: r.price,
            totalBytes: r.total_bytes,
            paidBytes: r.paid_bytes,
            chargeNum: String(r.charge_num),
            charged: r.charged,
            royaltyPaid: r.royalty_paid,
            feePaid: r.fee_paid,
            hold: r.hold_id,
            holdAmount: r.hold_amount,
            holdSeq: r.hold_seq,
            completedAt: r.completed_at ? new Date(r.completed_at).getTime() : null,
          })),
          rounds.map((P) => ({
            key: roundKey(P.user, contentId(P.content), P.round),
            price: P.totals.price,
            totalBytes: P.totals.totalBytes,
            paidBytes: P.totals.paidBytes,
            chargeNum: P.totals.chargeNum.toString(),
            charged: P.totals.charged,
            royaltyPaid: P.totals.royaltyPaid,
            feePaid: P.totals.feePaid,
            hold: P.hold,
            holdAmount: P.holdAmount,
            holdSeq: P.holdSeq,
            completedAt: P.completedAt,
          })),
          `${label}: purchases`,
        );
        assert.deepEqual(
          byKey(
            (await shareRows()).map((s) => ({ key: `${roundKey(s.user_id, s.content_id, s.round)}|${s.account_id}`, num: String(s.num), paid: s.paid })),
            (s) => s.key,
          ),
          byKey(
            rounds.flatMap((P) => [...P.totals.shares].map(([account, s]) => ({ key: `${roundKey(P.user, contentId(P.content), P.round)}|${account}`, num: s.num.toString(), paid: s.paid }))),
            (s) => s.key,
          ),
          `${label}: uploader shares`,
        );

        // Every stored receipt has exactly one settlement row, as predicted.
        const rows = await sql<{ id: string; status: string | null; code: string | null; charge: number | null; attempts: number | null; n: number }>`
          select r.id, s.status, s.code, s.charge, s.attempts,
                 (select count(*) from ledger_settlements s2 where s2.receipt_id = r.id)::int8 as n
          from receipts r left join ledger_settlements s on s.receipt_id = r.id where r.id like ${`${p}:r%`} order by r.id`.execute(db);
        assert.deepEqual(
          byId(rows.rows),
          byKey([...receipts.values()], (r) => r.row.id).map((r) => ({ id: r.row.id, status: r.status, code: r.code, charge: r.charge, attempts: r.attempts, n: 1 })),
          `${label}: settlement rows`,
        );

        // The transfers naming each receipt: exactly the predicted legs and reservation transfers; none for unpaid receipts.
        const named = await sql<{ id: string; ref: string; reason: string; kind: string; amount: number; debit_account_id: string; credit_account_id: string; pending_id: string | null }>`
          select id, ref, reason, kind, amount, debit_account_id, credit_account_id, pending_id from ledger_transfers where ref like ${`${p}:r%`}`.execute(db);
        const byRef = new Map<string, MTransfer[]>();
        for (const l of named.rows) {
          const t = { id: l.id, kind: l.kind, amount: l.kind === 'void' ? null : l.amount, debit: l.debit_account_id, credit: l.credit_account_id, pending: l.pending_id, reason: l.reason };
          byRef.set(l.ref, [...(byRef.get(l.ref) ?? []), t]);
        }
        const roundingOf = new Map<string, number>();
        for (const r of receipts.values()) {
          const mine = byId(byRef.get(r.row.id) ?? []);
          byRef.delete(r.row.id);
          assert.deepEqual(mine, byId(r.transfers), `${label}: transfers of ${r.row.id} (${r.status})`);
          // What left the wallet is the charge recorded (a receiver fetching from its own terminal pays itself nothing).
          assert.equal(sum(mine.filter((l) => l.kind === 'normal' && l.debit === wallet(r.recvUser)).map((l) => l.amount!)), r.charge, `${label}: legs of ${r.row.id} vs its charge`);
          if (r.round === null) continue;
          const key = roundKey(r.recvUser, contentId(r.content), r.round);
          const into = sum(mine.filter((l) => l.kind === 'normal' && l.credit === PLATFORM_ROUNDING.id).map((l) => l.amount!));
          const outOf = sum(mine.filter((l) => l.kind === 'normal' && l.debit === PLATFORM_ROUNDING.id).map((l) => l.amount!));
          roundingOf.set(key, (roundingOf.get(key) ?? 0) + into - outOf);
        }
        assert.deepEqual([...byRef.keys()], [], `${label}: transfers naming receipts that do not exist`);

        // Per purchase, platform:rounding holds what was charged and not paid out: never below 0,
        // less than a unit per party (publisher, platform, each uploader).
        for (const P of rounds) {
          const key = roundKey(P.user, contentId(P.content), P.round);
          const kept = P.totals.charged - P.totals.royaltyPaid - P.totals.feePaid - sum([...P.totals.shares.values()].map((s) => s.paid));
          assert.equal(roundingOf.get(key) ?? 0, kept, `${label}: rounding of purchase ${key}: its legs vs charged − paid out`);
          assert.equal(P.rounding, kept, `${label}: rounding of purchase ${key} (model)`);
          assert.ok(kept >= 0 && kept <= 1 + P.totals.shares.size, `${label}: rounding of purchase ${key} is ${kept}`);
        }
      }

      // ---- steps ----
      /** A receipt row for an abstract item: for a content its receiver reserved, from any source, or under an explicit origin grant. */
      async function receiptFor(item: { explicit: boolean; target: number; source: number; pct: number; size: 'pct' | 'tiny' | 'rest' }): Promise<MReceipt> {
        let receiver: string;
        let content: number;
        let source: string;
        if (!item.explicit && reserved.length > 0) {
          ({ terminal: receiver, content } = reserved[item.target % reserved.length]);
          source = term(SOURCES[item.source]);
          if (source === receiver) source = ORIGIN;
        } else {
          // An explicit origin grant (POST /grants) reserves nothing; its receipts are charged against the same purchase.
          receiver = term(RECEIVER_TERMINALS[Math.floor(item.target / 7) % RECEIVER_TERMINALS.length]);
          content = Math.floor(item.target / 3) % 2;
          source = ORIGIN;
        }
        const grantId = `${p}:g:${receiver}:${source}:${content}`;
        if (!grants.has(grantId)) {
          await db
            .insertInto('grants')
            .values({ id: grantId, transfer_id: null, content_id: contentId(content), receiver_id: receiver, source_id: source, pieces: '0-99', expires_at: new Date(now() + DAY), created_at: new Date(now()) })
            .execute();
          grants.add(grantId);
        }
        const id = `${p}:r${++n}`;
        const { total } = CONTENTS[content];
        const lacking = total - (latest(termUser(receiver)!, content)?.totals.paidBytes ?? 0);
        const bytes =
          item.size === 'tiny' ? item.pct * 42_943 : item.size === 'rest' && lacking > 0 ? lacking : Math.max(1, Math.floor((total * item.pct) / 100) - (item.pct % 7));
        const row: StoredReceipt = { id, grant_id: grantId, content_id: contentId(content), source_id: source, receiver_id: receiver, bytes, received_at: new Date(now()) };
        return { row, content, recvUser: termUser(receiver)!, sourceUser: termUser(source), status: 'unpaid', code: null, charge: 0, attempts: 0, round: null, selfShare: 0, transfers: [] };
      }
      const insertReceipt = (trx: typeof db, r: StoredReceipt) => trx.insertInto('receipts').values({ ...r, pieces: r.id, signature: 'sig', body: r.id }).execute();

      await verify('start');
      for (const [i, s] of steps.entries()) {
        const label = `step ${i} ${s.t}`;
        if (s.t === 'reserve') {
          const { terminal, content } = s.again && reserved.length > 0 ? reserved[reserved.length - 1] : { terminal: term(RECEIVER_TERMINALS[s.recv]), content: s.content };
          const c = CONTENTS[content];
          const u = termUser(terminal)!;
          const missing = Math.floor((c.total * s.missing) / 100);
          const req = { userId: u, contentId: contentId(content), price: c.price, totalBytes: c.total, missingBytes: missing };
          // The latest round of the purchase; a new one (not kept if refused) once it is paid in full under REFETCH_POLICY=charge.
          const last = latest(u, content);
          const P = !last || (isComplete(last) && refetch === 'charge') ? newRound(u, content, (last?.round ?? 0) + 1) : last;
          const hold = liveHold(P);
          const need = stillToPay(P.totals, missing);
          let expected: Omit<Reservation, 'why'> | null = null;
          if (isComplete(P)) expected = { held: 0, heldUntil: null, paid: true, reused: false };
          else if (hold && hold.amount >= need) expected = { held: hold.amount, heldUntil: hold.timeoutAt, paid: false, reused: true };
          else if (need === 0) expected = { held: 0, heldUntil: null, paid: false, reused: false };
          else if (need <= available(u) + (hold?.amount ?? 0)) expected = { held: need, heldUntil: now() + HOLD_MS, paid: false, reused: false };
          if (expected === null) {
            // The old hold would have been released for the new one: what the wallet could cover with it.
            await assert.rejects(reservations[refetch].reserve(req), (err: unknown) => {
              assert.ok(err instanceof AppError && err.code === 'insufficient_balance' && err.status === 402, String(err));
              assert.deepEqual(err.details, { needed: need, available: available(u) + (hold?.amount ?? 0) });
              return true;
            });
          } else {
            const { why, ...got } = await reservations[refetch].reserve(req);
            assert.deepEqual(got, expected, label);
            assert.ok(why.length > 10, `${label}: a reason in words`);
            if (P !== last) addRound(P);
            if (expected.held > 0 && !expected.reused) {
              // A new hold for what is still to pay, replacing the purchase's open one.
              if (hold) pendings.get(hold.id)!.open = false;
              const seq = P.holdSeq + 1;
              pendings.set(holdName(P, seq), { user: u, amount: need, timeoutAt: now() + HOLD_MS, open: true });
              Object.assign(P, { hold: holdName(P, seq), holdAmount: need, holdSeq: seq });
            }
            reserved.push({ terminal, content });
          }
        } else if (s.t === 'receipts') {
          const batch: MReceipt[] = [];
          for (const item of s.items) batch.push(await receiptFor(item));
          // As ReceiptService.submit: store the rows and settle them in one transaction.
          const result = await db.transaction().execute(async (trx) => {
            for (const r of batch) await insertReceipt(trx, r.row);
            return settlement.settleIn(trx, batch.map((r) => r.row));
          });
          for (const r of batch) receipts.set(r.row.id, r);
          assert.deepEqual(result, settleModel(batch), label);
        } else if (s.t === 'resettle') {
          // Settling a stored receipt again (a reconcile, a retry out of turn): a settled one is
          // answered settled and nothing changes; an unpaid one is tried again.
          const stored = [...receipts.values()];
          if (stored.length === 0) continue;
          const r = stored[s.ref % stored.length];
          if (isSettled(r)) {
            const was = await snapshot();
            const result = await db.transaction().execute((trx) => settlement.settleIn(trx, [r.row]));
            assert.deepEqual(result, { settled: [r.row.id], unpaid: [] }, label);
            assert.deepEqual(await snapshot(), was, `${label}: re-settling ${r.row.id} changed something`);
          } else {
            const result = await db.transaction().execute((trx) => settlement.settleIn(trx, [r.row]));
            assert.deepEqual(result, settleModel([r]), label);
          }
        } else if (s.t === 'crash') {
          // The storing transaction fails after settling: neither the receipt nor any money stays.
          const r = await receiptFor(s.item);
          const was = await snapshot();
          await assert.rejects(
            db.transaction().execute(async (trx) => {
              await insertReceipt(trx, r.row);
              await settlement.settleIn(trx, [r.row]);
              throw new Error('crash after settling');
            }),
            /crash after settling/,
          );
          assert.deepEqual(await snapshot(), was, `${label}: a rolled back settlement left something`);
        } else if (s.t === 'release') {
          // The receiver's transfer ended or was given up: the purchase's live reservation is released.
          if (reserved.length === 0) continue;
          const { terminal, content } = reserved[s.ref % reserved.length];
          const u = termUser(terminal)!;
          await reservations[refetch].release({ userId: u, contentId: contentId(content) });
          const P = latest(u, content);
          const hold = P ? liveHold(P) : null;
          if (hold) {
            pendings.get(hold.id)!.open = false;
            Object.assign(P!, { hold: null, holdAmount: 0 });
          }
        } else if (s.t === 'advance') {
          clock.advance(s.ms);
        } else if (s.t === 'to-timeout') {
          const due = [...pendings.values()].filter((h) => h.open).map((h) => h.timeoutAt - s.before).filter((t) => t > now());
          if (due.length === 0) continue;
          clock.set(Math.min(...due));
        } else if (s.t === 'expire') {
          if (s.late) clock.advance(HOLD_MS);
          let expected = 0;
          for (const h of pendings.values()) {
            if (h.open && h.timeoutAt <= now()) {
              h.open = false;
              expected++;
            }
          }
          assert.equal(await ledger.expireHolds(), expected, label);
        } else if (s.t === 'retry') {
          if (s.wait) clock.advance(UNPAID_RETRY_MS);
          // The receipts retryUnpaid takes, in the order it takes them (ties on updated_at are the database's to order).
          const due = await db
            .selectFrom('ledger_settlements as s')
            .innerJoin('receipts as r', 'r.id', 's.receipt_id')
            .select(['r.id', 's.updated_at'])
            .where('s.status', '=', 'unpaid')
            .where('s.updated_at', '<=', new Date(now() - UNPAID_RETRY_MS))
            .orderBy('s.updated_at')
            .limit(1000)
            .execute();
          const ids = due.map((d) => d.id);
          assert.ok(ids.every((id) => id.startsWith(`${p}:r`)), `${label}: another run's unpaid receipt is due`);
          const result = await settlement.retryUnpaid();
          const batch = ids.map((id) => receipts.get(id)!);
          assert.deepEqual(result, settleModel(batch), label);
        } else if (s.t === 'issue') {
          const expiresAt = s.expiresInMs === undefined ? null : new Date(now() + s.expiresInMs);
          const issued = await vouchers.issue(store, { amount: s.amount, count: s.count, expiresAt });
          assert.equal(issued.length, s.count);
          for (const v of issued) {
            vouchersIssued.push({ id: v.id, code: v.code, amount: s.amount, expiresAt: expiresAt?.getTime() ?? null, redeemedBy: null });
            move(storeAccount(store).id, VOUCHERS_OUTSTANDING.id, s.amount);
          }
        } else if (s.t === 'redeem') {
          const u = user(PAYERS[s.user]);
          const v = vouchersIssued.length && s.form !== 'unknown' ? vouchersIssued[s.voucher % vouchersIssued.length] : null;
          const code = v === null ? newVoucherCode() : s.form === 'typed' ? ` ${v.code.toLowerCase().replace(/-/g, ' ')} ` : v.code;
          const recent = (failures.get(u) ?? []).filter((t) => t > now() - FAILED_REDEMPTION_WINDOW_MS);
          let refusal: string | null = null;
          if (recent.length >= MAX_FAILED_REDEMPTIONS) refusal = 'too_many_attempts';
          else if (!v) refusal = 'voucher_unknown';
          else if (v.redeemedBy !== null) refusal = 'voucher_used';
          else if (v.expiresAt !== null && v.expiresAt <= now()) refusal = 'voucher_expired';
          if (refusal) {
            await assert.rejects(vouchers.redeem(u, code), (err: unknown) => err instanceof AppError && err.code === refusal, `${label}: expected ${refusal}`);
            if (refusal !== 'too_many_attempts') failures.set(u, [...recent, now()]);
          } else {
            const got = await vouchers.redeem(u, code);
            v!.redeemedBy = u;
            redeemed.set(u, (redeemed.get(u) ?? 0) + v!.amount);
            move(VOUCHERS_OUTSTANDING.id, wallet(u), v!.amount);
            assert.deepEqual(got, { voucherId: v!.id, amount: v!.amount, balance: fundingOf[u] + delta.get(wallet(u))! });
          }
        } else if (s.t === 'payout') {
          const id = `${p}:po${s.id}`;
          const royalty = royaltyAccount(publisher).id;
          const input = { id, publisherId: publisher, amount: s.amount, reference: `bank ${s.id}` };
          const prior = payouts.get(id);
          const exists = await db.selectFrom('ledger_accounts').select('id').where('id', '=', royalty).executeTakeFirst();
          if (!exists) {
            // No receipt was settled yet, so the publisher has no royalty account to pay out of.
            await assert.rejects(statements.payout(input), (err: unknown) => err instanceof AppError && err.code === 'account_not_found');
          } else if (prior !== undefined && prior !== s.amount) {
            await assert.rejects(statements.payout(input), (err: unknown) => err instanceof AppError && err.code === 'transfer_id_conflict');
          } else if (prior === undefined && s.amount > delta.get(royalty)!) {
            await assert.rejects(statements.payout(input), (err: unknown) => err instanceof AppError && err.code === 'insufficient_balance');
          } else {
            if (prior === undefined) {
              payouts.set(id, s.amount);
              move(royalty, PLATFORM_PAYOUTS.id, s.amount);
            }
            const got = await statements.payout(input);
            assert.equal(got.created, prior === undefined);
            assert.equal(got.balance, delta.get(royalty)!);
          }
        }
        await verify(label);
      }

      // ---- the end: every wallet from first principles ----
      const settledRows = new Map((await db.selectFrom('ledger_settlements').select(['receipt_id', 'status', 'charge']).where('receipt_id', 'like', `${p}:r%`).execute()).map((s) => [s.receipt_id, s]));
      const posted = await postedOf([...walletUsers.map(wallet), royaltyAccount(publisher).id, PLATFORM_ROUNDING.id]);
      const rounds = allRounds();
      for (const u of walletUsers) {
        let expected = fundingOf[u] + (redeemed.get(u) ?? 0);
        for (const r of receipts.values()) {
          const row = settledRows.get(r.row.id)!;
          if (row.status === 'settled' && r.recvUser === u) expected -= row.charge + r.selfShare; // a self-download's share never left
        }
        // Upload shares: what every purchase has paid this user's wallet as an uploader.
        expected += sum(rounds.map((P) => P.totals.shares.get(wallet(u))?.paid ?? 0));
        assert.equal(posted.get(wallet(u)), expected, `wallet of ${u}: funding + vouchers − charges + upload shares`);
      }
      const royalties = sum(rounds.map((P) => P.totals.royaltyPaid));
      assert.equal(posted.get(royaltyAccount(publisher).id) ?? 0, royalties - sum([...payouts.values()]), 'royalties − payouts');
      assert.equal((posted.get(PLATFORM_ROUNDING.id) ?? 0) - (baseline.get(PLATFORM_ROUNDING.id) ?? 0), sum(rounds.map((P) => P.rounding)), 'platform:rounding: what the purchases kept');
      for (const P of rounds) {
        if (!isComplete(P)) continue;
        // Charged on totals: a content bought whole costs its price at the list price, less with rules applied.
        const key = roundKey(P.user, contentId(P.content), P.round);
        if (P.fullRate) assert.equal(P.totals.charged, P.totals.price, `purchase ${key} at the list price`);
        else assert.ok(P.totals.charged <= P.totals.price, `purchase ${key}: at most the price`);
      }
    }
  });
}
