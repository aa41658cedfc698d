import type { Transaction } from 'kysely';
import type { Clock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import { sql, type Db } from '../db/connection.ts';
import type { Database } from '../db/schema.ts';
import { HOLDS, PLATFORM_REVENUE, PLATFORM_ROUNDING, royaltyAccount, walletAccount } from './accounts.ts';
import { arrayLiteral } from '../db/array-literal.ts';
import { type AccountSpec, type Ledger, type MoveInput, type TransferInput, type TransferResult } from './ledger.ts';
import { isFullyPaid, stepPurchase } from './purchase.ts';
import { holdId, lockPurchases, purchaseKey, purchaseRecord, savePurchases, type Purchase } from './purchases.ts';
import { rateRules, type Tariff } from './tariff.ts';
import { contentsByIds } from '../content/queries.ts';
import { terminalOwners, terminalsOfUsers } from '../terminals/queries.ts';
import { receiptsByIds, trafficSince } from '../transfer/queries.ts';
import { edgeTerminalsIn } from '../edge/queries.ts';

// Settlement of receipts (S1.8, #4.3, #10). A stored receipt says: receiver R verified
// these bytes of content C from source S under grant G. It is charged against R's
// purchase of C (purchase.ts: exact running totals, so how receipts are grouped,
// retried or ordered changes nothing that is paid), as one linked chain of ledger
// transfers whose IDs derive from the receipt ID (settling twice is impossible, a
// retry is harmless):
//   <rc>:upload    R → S's owner (or platform revenue when S is the origin)
//   <rc>:royalty   R → C's publisher
//   <rc>:fee       R → platform revenue
//   <rc>:rounding  R → platform rounding (the part of the charge nobody is owed yet)
//   <rc>:<part>:rounding  platform rounding → the payee, for what this purchase's earlier
//                  receipts left in rounding and is owed now (a unit or two, at times)
// If the purchase holds a reservation, the chain first voids it and ends by reserving
// what is left (`hold:<user>:<content>:<round>:<n>`), so reserved money pays the
// receipts and nothing is counted twice; the receipt that completes the purchase
// releases the rest at once.
//
// Receipts are settled in the transaction that stores them (ReceiptService calls
// `settleIn`), so a receipt is never stored without its settlement row: `settled`, or
// `unpaid` with the ledger's code (e.g. insufficient_balance), retried by `retryUnpaid`
// against the purchase as it is then.

export interface StoredReceipt {
  id: string;
  grant_id: string;
  content_id: string;
  source_id: string;
  receiver_id: string;
  bytes: number;
  received_at: Date;
}

export interface SettleResult {
  settled: string[];
  unpaid: { receiptId: string; code: string }[];
}

const DAY = 86_400_000;
/** An unpaid receipt is tried again after this long (a top-up may have come in). */
export const UNPAID_RETRY_MS = 60_000;

interface Chain {
  receipt: StoredReceipt;
  key: string;
  /** The purchase before this chain, and after it if it goes through. */
  before: Purchase;
  after: Purchase;
  /** What the chain takes from the receiver's wallet (the charge, less a self-paid uploader share). */
  charged: number;
  why: string[];
  transfers: TransferInput[];
}

/**
 * Puts back the purchase of every failed chain as it was before that chain: a receipt that
 * could not be paid leaves its purchase unchanged. Right only when no later chain of the
 * same purchase was planned on the failed one (see `misplanned`).
 */
function undoFailed(chains: Chain[], results: TransferResult[], purchases: Map<string, Purchase>) {
  let k = 0;
  for (const c of chains) {
    const mine = results.slice(k, (k += c.transfers.length));
    if (mine.some((m) => m.status === 'failed')) purchases.set(c.key, c.before);
  }
}

/** A chain failed, and a later chain of the batch belongs to the same purchase (it was planned on the failed one's outcome). */
function misplanned(chains: Chain[], results: TransferResult[]): boolean {
  const failed = new Set<string>();
  let k = 0;
  for (const c of chains) {
    if (failed.has(c.key)) return true;
    const mine = results.slice(k, (k += c.transfers.length));
    if (mine.some((m) => m.status === 'failed')) failed.add(c.key);
  }
  return false;
}

export class Settlement {
  constructor(
    private readonly deps: {
      db: Db;
      ledger: Ledger;
      clock: Clock;
      tariff: Tariff;
      /** The origin's ID as a source in grants and receipts. */
      originSourceId: string;
    },
  ) {}

  /** Settles receipts inside the caller's transaction (the one that stored them). */
  async settleIn(trx: Transaction<Database>, given: StoredReceipt[]): Promise<SettleResult> {
    // A receipt is settled once. Its purchase has counted its bytes, so planning it again
    // would charge the purchase for bytes nobody pays (its transfer IDs alone cannot catch
    // that when the amounts come out the same): it is answered settled and left alone.
    const done = given.length ? await this.settledAlready(trx, given) : new Set<string>();
    const receipts = given.filter((r) => !done.has(r.id));
    if (receipts.length === 0) return { settled: given.map((r) => r.id), unpaid: [] };
    const ctx = await this.load(trx, receipts);
    await this.deps.ledger.ensureAccounts(ctx.accounts, { trx });
    // One ledger batch for the whole lot, planned as if every chain goes through. If one
    // fails (the wallet could not pay) while a later receipt of the same purchase was
    // planned on its outcome, that plan is wrong: undo the batch and settle again in runs
    // in which no purchase appears twice, each run planned on the outcome of the one before.
    await sql`savepoint settle_receipts`.execute(trx);
    let purchases = new Map(ctx.purchases);
    let chains = this.plan(receipts, ctx, purchases);
    let results = await this.deps.ledger.apply(
      chains.flatMap((c) => c.transfers),
      { trx },
    );
    if (misplanned(chains, results)) {
      await sql`rollback to savepoint settle_receipts`.execute(trx);
      purchases = new Map(ctx.purchases);
      chains = [];
      results = [];
      for (let start = 0; start < receipts.length; ) {
        const keys = new Set<string>();
        let end = start;
        for (; end < receipts.length; end++) {
          const key = ctx.keyOf(receipts[end]);
          if (keys.has(key)) break;
          keys.add(key);
        }
        const run = this.plan(receipts.slice(start, end), ctx, purchases);
        const got = await this.deps.ledger.apply(
          run.flatMap((c) => c.transfers),
          { trx },
        );
        undoFailed(run, got, purchases);
        chains.push(...run);
        results.push(...got);
        start = end;
      }
    } else {
      undoFailed(chains, results, purchases);
    }
    await sql`release savepoint settle_receipts`.execute(trx);

    const outcome: SettleResult = { settled: given.filter((r) => done.has(r.id)).map((r) => r.id), unpaid: [] };
    const rows: { receipt_id: string; status: 'settled' | 'unpaid'; code: string | null; charge: number; why: string }[] = [];
    let k = 0;
    for (const c of chains) {
      const mine = results.slice(k, (k += c.transfers.length));
      const failed = mine.find((m) => m.status === 'failed' && m.code !== 'linked_event_failed') ?? mine.find((m) => m.status === 'failed');
      if (failed) {
        outcome.unpaid.push({ receiptId: c.receipt.id, code: failed.code! });
        rows.push({ receipt_id: c.receipt.id, status: 'unpaid', code: failed.code!, charge: 0, why: c.why.join('; ') });
      } else {
        outcome.settled.push(c.receipt.id);
        rows.push({ receipt_id: c.receipt.id, status: 'settled', code: null, charge: c.charged, why: c.why.join('; ') });
      }
    }
    await this.writeOutcome(trx, rows);
    await savePurchases(trx, [...purchases.values()], this.deps.clock.now());
    return outcome;
  }

  /** Tries unpaid receipts again (after a top-up, or once a hold was released). */
  async retryUnpaid(limit = 1000): Promise<SettleResult> {
    const now = this.deps.clock.now();
    return this.deps.db.transaction().execute(async (trx) => {
      // The settlement rows are locked (another origin process skips nothing and pays nothing twice); receipts never change.
      const unpaid = await trx
        .selectFrom('ledger_settlements')
        .select('receipt_id')
        .where('status', '=', 'unpaid')
        .where('updated_at', '<=', new Date(now - UNPAID_RETRY_MS))
        .orderBy('updated_at')
        .limit(limit)
        .forUpdate()
        .execute();
      return this.settleIn(trx, await receiptsByIds(trx, unpaid.map((u) => u.receipt_id)));
    });
  }

  /** One chain per receipt, in order; `purchases` is advanced chain by chain as if each went through. */
  private plan(batch: StoredReceipt[], ctx: Awaited<ReturnType<Settlement['load']>>, purchases: Map<string, Purchase>): Chain[] {
    const { tariff, clock } = this.deps;
    const now = clock.now();
    return batch.map((r): Chain => {
      const content = ctx.contents.get(r.content_id);
      const receiverUser = ctx.owners.get(r.receiver_id);
      const key = ctx.keyOf(r);
      const before = purchases.get(key);
      if (!content || !receiverUser || !before) throw new AppError('settlement_inconsistent', `Receipt ${r.id} names an unknown content or receiver.`, 500);
      // S2.1: what an edge receives fills its cache; it is not a sale (users pay when the edge delivers).
      if (ctx.edges.has(r.receiver_id)) return { receipt: r, key, before, after: before, charged: 0, why: ['cache fill by an edge (S2.1): not charged'], transfers: [] };
      const traffic = ctx.traffic.get(receiverUser) ?? { received: 0, served: 0 };
      const rules = rateRules({ at: r.received_at.getTime(), receiverReceived30d: traffic.received, receiverServed30d: traffic.served }, tariff);
      const wallet = walletAccount(receiverUser).id;
      const uploader = r.source_id === this.deps.originSourceId ? PLATFORM_REVENUE.id : walletAccount(ctx.owners.get(r.source_id)!).id;
      const { amounts, after: totals } = stepPurchase(before.totals, { bytes: r.bytes, ratePercents: rules.map((x) => x.percent), uploader }, tariff);
      const payee = { uploader, royalty: royaltyAccount(content.publisherId).id, fee: PLATFORM_REVENUE.id };
      const leg = { uploader: 'upload', royalty: 'royalty', fee: 'fee' } as const;
      const legs: MoveInput[] = [];
      for (const part of ['uploader', 'royalty', 'fee'] as const) {
        legs.push({ id: `${r.id}:${leg[part]}`, debit: wallet, credit: payee[part], amount: amounts.fromWallet[part], reason: leg[part] });
      }
      legs.push({ id: `${r.id}:rounding`, debit: wallet, credit: PLATFORM_ROUNDING.id, amount: amounts.fromWallet.rounding, reason: 'rounding' });
      for (const part of ['uploader', 'royalty', 'fee'] as const) {
        legs.push({ id: `${r.id}:${leg[part]}:rounding`, debit: PLATFORM_ROUNDING.id, credit: payee[part], amount: amounts.fromRounding[part], reason: leg[part] });
      }
      // A receiver that fetched from its own terminal pays itself nothing: that leg is left out.
      const moving = legs.filter((t) => t.amount > 0 && t.debit !== t.credit);
      const charged = moving.reduce((sum, t) => sum + (t.debit === wallet ? t.amount : 0), 0);

      // The reservation pays first; what is left of it is reserved again, unless the purchase is complete.
      const complete = isFullyPaid(totals);
      const transfers: TransferInput[] = [];
      let hold = before.hold;
      let holdSeq = before.holdSeq;
      if (hold && (charged > 0 || complete)) {
        transfers.push({ id: `${r.id}:release`, kind: 'void', pendingId: hold.id, reason: 'reservation' });
        transfers.push(...moving);
        const left = hold.amount - charged;
        if (left > 0 && !complete) {
          holdSeq++;
          const next = { id: holdId(before, holdSeq), amount: left, timeoutAt: hold.timeoutAt };
          transfers.push({ id: next.id, kind: 'pending', debit: wallet, credit: HOLDS.id, amount: left, timeoutMs: hold.timeoutAt - now, reason: 'reservation' });
          hold = next;
        } else {
          hold = null;
        }
      } else {
        transfers.push(...moving);
      }
      for (const t of transfers) Object.assign(t, { linked: true, contentId: r.content_id, ref: r.id, record: purchaseRecord(before) });
      if (transfers.length) transfers[transfers.length - 1].linked = false;
      const after: Purchase = { ...before, totals, hold, holdSeq };
      purchases.set(key, after);
      const why = rules.map((x) => x.why);
      if (amounts.chargedBytes < r.bytes) why.push(`${r.bytes - amounts.chargedBytes} bytes already paid for: a content is paid once`);
      return { receipt: r, key, before, after, charged, why, transfers };
    });
  }

  private async settledAlready(trx: Transaction<Database>, receipts: StoredReceipt[]): Promise<Set<string>> {
    const rows = await trx
      .selectFrom('ledger_settlements')
      .select('receipt_id')
      .where('receipt_id', '=', anyOf(receipts.map((r) => r.id)))
      .where('status', '=', 'settled')
      .execute();
    return new Set(rows.map((r) => r.receipt_id));
  }

  private async writeOutcome(trx: Transaction<Database>, rows: { receipt_id: string; status: 'settled' | 'unpaid'; code: string | null; charge: number; why: string }[]) {
    const now = new Date(this.deps.clock.now());
    await sql`
      insert into ledger_settlements (receipt_id, status, code, charge, why, attempts, updated_at)
      select id, s, c, ch, w, 1, ${now}::timestamptz
      from unnest(${arrayLiteral(rows.map((r) => r.receipt_id))}::text[], ${arrayLiteral(rows.map((r) => r.status))}::text[],
                  ${arrayLiteral(rows.map((r) => r.code))}::text[], ${arrayLiteral(rows.map((r) => r.charge))}::int8[],
                  ${arrayLiteral(rows.map((r) => r.why))}::text[]) as u(id, s, c, ch, w)
      on conflict (receipt_id) do update set status = excluded.status, code = excluded.code, charge = excluded.charge,
        why = excluded.why, attempts = ledger_settlements.attempts + 1, updated_at = excluded.updated_at
      where ledger_settlements.status = 'unpaid'`.execute(trx);
  }

  /** Everything pricing needs for a batch of receipts, in a handful of queries; the purchases locked. */
  private async load(trx: Transaction<Database>, receipts: StoredReceipt[]) {
    const now = this.deps.clock.now();
    const contentIds = [...new Set(receipts.map((r) => r.content_id))];
    const terminalIds = [...new Set(receipts.flatMap((r) => [r.receiver_id, r.source_id]))];
    // Lists bound as one array parameter each (`= any($1)`), not as thousands of `in (…)` parameters.
    const contentMap = await contentsByIds(trx, contentIds);
    const owners = await terminalOwners(trx, terminalIds);
    const edges = await edgeTerminalsIn(trx, receipts.map((r) => r.receiver_id));
    const receiverUsers = [...new Set(receipts.map((r) => owners.get(r.receiver_id)).filter((u): u is string => !!u))];
    // S1.9: what each receiving user received and served in the 30 days before, over all of the user's terminals.
    const traffic = new Map<string, { received: number; served: number }>(receiverUsers.map((u) => [u, { received: 0, served: 0 }]));
    const theirs = await terminalsOfUsers(trx, receiverUsers);
    const byTerminal = await trafficSince(trx, theirs.map((t) => t.id), new Date(now - 30 * DAY));
    for (const t of theirs) {
      const sums = byTerminal.get(t.id);
      if (!sums) continue;
      traffic.get(t.userId)!.received += sums.received;
      traffic.get(t.userId)!.served += sums.served;
    }

    const keyOf = (r: StoredReceipt) => purchaseKey({ userId: owners.get(r.receiver_id) ?? '', contentId: r.content_id });
    const purchases = await lockPurchases(
      trx,
      receipts.filter((r) => owners.has(r.receiver_id)).map((r) => ({ userId: owners.get(r.receiver_id)!, contentId: r.content_id })),
      contentMap,
      now,
    );

    const accounts: AccountSpec[] = [PLATFORM_REVENUE, PLATFORM_ROUNDING, HOLDS];
    for (const u of new Set(owners.values())) accounts.push(walletAccount(u));
    for (const c of contentMap.values()) accounts.push(royaltyAccount(c.publisherId));
    return { contents: contentMap, owners, traffic, purchases, keyOf, accounts, edges };
  }
}

/** What a receipt cost its receiver, as settled (for other domains showing receipts, #12). */
export interface ReceiptCharge {
  status: 'settled' | 'unpaid';
  /** What the receiver was charged for it (0 while unpaid, or when the content was already paid for). */
  charge: number;
  /** The pricing rules that applied, in words (S1.9). */
  why: string;
  /** Why it is unpaid (a ledger code), else null. */
  code: string | null;
}

/** The settlement of each of these receipts that has one (an exported query: ledger_settlements is the ledger's). */
export async function receiptCharges(db: Db, receiptIds: string[]): Promise<Map<string, ReceiptCharge>> {
  if (receiptIds.length === 0) return new Map();
  const rows = await db.selectFrom('ledger_settlements').select(['receipt_id', 'status', 'charge', 'why', 'code']).where('receipt_id', '=', anyOf(receiptIds)).execute();
  return new Map(rows.map((r) => [r.receipt_id, { status: r.status, charge: r.charge, why: r.why, code: r.code }]));
}

/** `= any($1::text[])`: a list as one parameter. */
const anyOf = (values: string[]) => sql<string>`any(${arrayLiteral(values)}::text[])`;
