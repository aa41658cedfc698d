import type { Transaction } from 'kysely';
import type { Clock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import { sql, type Db } from '../db/connection.ts';
import type { Database } from '../db/schema.ts';
import { HOLDS, PLATFORM_REVENUE, PLATFORM_ROUNDING, royaltyAccount, walletAccount } from './accounts.ts';
import { arrayLiteral, type AccountSpec, type Ledger, type TransferInput, type TransferResult } from './ledger.ts';
import { priceReceipt, type Price, type Tariff } from './tariff.ts';

// Settlement of receipts (S1.8, #4.3). A stored receipt says: receiver R verified
// these bytes of content C from source S under grant G. Settling it moves money from
// R's wallet, as one linked chain of ledger transfers whose IDs derive from the
// receipt ID (so settling twice is impossible, and a retry is harmless):
//   <rc>:upload    R → S's owner (or platform revenue when S is the origin)
//   <rc>:royalty   R → C's publisher
//   <rc>:fee       R → platform revenue
//   <rc>:rounding  R → platform rounding (what rounding down left over, 0–2 units)
// If the transfer G belongs to holds a reservation, the chain first voids it and ends
// by reserving what is left (`hold:<transfer>:<n>`), so reserved money pays the
// receipts and nothing is counted twice.
//
// Receipts are settled in the transaction that stores them (ReceiptService calls
// `settleIn`), so a receipt is never stored without its settlement row: `settled`, or
// `unpaid` with the ledger's code (e.g. insufficient_balance), retried by `retryUnpaid`.
// Pricing reads the content, the terminals' owners, the source's reputation and the
// receiver's traffic of the last 30 days from their domains' tables, read-only, in a
// few batched queries.

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

interface Chain<H> {
  receipt: StoredReceipt;
  price: Price;
  /** What the chain takes from the receiver's wallet (the charge, less a self-paid uploader share). */
  charged: number;
  transfers: TransferInput[];
  /** The monitored transfer the receipt's grant belongs to. */
  transferId: string | null;
  /** The reservation this chain pays out of: its transfer, and the hold as it was before. */
  drawsOn: { transferId: string; before: H } | null;
}

/** A chain paying out of a reservation failed, and a later chain of the batch belongs to the same transfer. */
function misplanned(chains: Chain<unknown>[], results: TransferResult[]): boolean {
  const failedHolds = new Set<string>();
  let k = 0;
  for (const c of chains) {
    const mine = results.slice(k, (k += c.transfers.length));
    if (c.transferId === null) continue;
    if (failedHolds.has(c.transferId)) return true;
    if (c.drawsOn && mine.some((m) => m.status === 'failed')) failedHolds.add(c.transferId);
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
  async settleIn(trx: Transaction<Database>, receipts: StoredReceipt[]): Promise<SettleResult> {
    if (receipts.length === 0) return { settled: [], unpaid: [] };
    const ctx = await this.load(trx, receipts);
    type Hold = typeof ctx.holds extends Map<string, infer H> ? H : never;
    /** One chain per receipt; `holds` is advanced chain by chain, in batch order, as if each went through. */
    const plan = (batch: StoredReceipt[], holds: Map<string, Hold>) => batch.map((r): Chain<Hold> => {
      const content = ctx.contents.get(r.content_id);
      const receiverUser = ctx.owners.get(r.receiver_id);
      if (!content || !receiverUser) throw new AppError('settlement_inconsistent', `Receipt ${r.id} names an unknown content or receiver.`, 500);
      const isOrigin = r.source_id === this.deps.originSourceId;
      const rep = ctx.reputation.get(r.source_id) ?? { completedUploads: 0, badPieces: 0, stalls: 0 };
      const traffic = ctx.traffic.get(receiverUser) ?? { received: 0, served: 0 };
      const price = priceReceipt(
        {
          price: content.price,
          totalBytes: content.totalSize,
          bytes: r.bytes,
          at: r.received_at.getTime(),
          receiverReceived30d: traffic.received,
          receiverServed30d: traffic.served,
          source: isOrigin ? { isOrigin: true } : { isOrigin: false, ...rep },
        },
        this.deps.tariff,
      );
      const wallet = walletAccount(receiverUser).id;
      const uploaderAccount = isOrigin ? PLATFORM_REVENUE.id : walletAccount(ctx.owners.get(r.source_id)!).id;
      const legs: TransferInput[] = [
        { id: `${r.id}:upload`, debit: wallet, credit: uploaderAccount, amount: price.uploader, reason: 'upload' },
        { id: `${r.id}:royalty`, debit: wallet, credit: royaltyAccount(content.publisherId).id, amount: price.royalty, reason: 'royalty' },
        { id: `${r.id}:fee`, debit: wallet, credit: PLATFORM_REVENUE.id, amount: price.fee, reason: 'fee' },
        { id: `${r.id}:rounding`, debit: wallet, credit: PLATFORM_ROUNDING.id, amount: price.rounding, reason: 'rounding' },
      ].filter((t) => t.amount > 0 && t.debit !== t.credit);
      // What leaves the wallet: the charge, less the uploader share when the receiver fetched from its own terminal.
      const charged = legs.reduce((sum, t) => sum + (t as { amount: number }).amount, 0);
      const transfers: TransferInput[] = [];
      const transferId = ctx.grantTransfers.get(r.grant_id);
      const hold = transferId ? holds.get(transferId) : undefined;
      const drawsOn = hold?.holdId && legs.length > 0 ? { transferId: transferId!, before: hold } : null;
      if (hold?.holdId && legs.length > 0) {
        const left = Math.max(0, hold.amount - charged);
        transfers.push({ id: `${r.id}:release`, kind: 'void', pendingId: hold.holdId, reason: 'reservation' });
        transfers.push(...legs);
        const next = { ...hold, holdId: left > 0 ? `hold:${transferId}:${hold.seq}` : null, amount: left, seq: hold.seq + 1 };
        if (next.holdId) transfers.push({ id: next.holdId, kind: 'pending', debit: wallet, credit: HOLDS.id, amount: left, timeoutMs: hold.timeoutLeftMs, reason: 'reservation' });
        holds.set(transferId!, next);
      } else {
        transfers.push(...legs);
      }
      for (const t of transfers) Object.assign(t, { linked: true, contentId: r.content_id, ref: r.id });
      if (transfers.length) transfers[transfers.length - 1].linked = false;
      return { receipt: r, price, charged, transfers, transferId: transferId ?? null, drawsOn };
    });

    await this.deps.ledger.ensureAccounts(ctx.accounts, { trx });
    // One ledger batch for the whole lot, planned as if every chain paying out of a
    // reservation goes through. If one fails (its charge exceeded the reservation and the
    // wallet) while a later receipt of the same transfer was planned on what it would have
    // left, that plan is wrong (the later receipt would pay from the wallet and leave the
    // reservation standing): undo the batch and settle again in runs in which no
    // reservation is drawn on twice, each run planned on the outcome of the one before.
    await sql`savepoint settle_receipts`.execute(trx);
    let chains = plan(receipts, new Map(ctx.holds));
    let results = await this.deps.ledger.apply(
      chains.flatMap((c) => c.transfers),
      { trx },
    );
    if (misplanned(chains, results)) {
      await sql`rollback to savepoint settle_receipts`.execute(trx);
      const holds = new Map(ctx.holds);
      chains = [];
      results = [];
      for (let start = 0; start < receipts.length; ) {
        const drawn = new Set<string>();
        let end = start;
        for (; end < receipts.length; end++) {
          const t = ctx.grantTransfers.get(receipts[end].grant_id);
          if (t && holds.get(t)?.holdId) {
            if (drawn.has(t)) break;
            drawn.add(t);
          }
        }
        const run = plan(receipts.slice(start, end), holds);
        const got = await this.deps.ledger.apply(
          run.flatMap((c) => c.transfers),
          { trx },
        );
        let k = 0;
        for (const c of run) {
          const mine = got.slice(k, (k += c.transfers.length));
          if (c.drawsOn && mine.some((m) => m.status === 'failed')) holds.set(c.drawsOn.transferId, c.drawsOn.before);
        }
        chains.push(...run);
        results.push(...got);
        start = end;
      }
    }
    await sql`release savepoint settle_receipts`.execute(trx);
    const outcome: SettleResult = { settled: [], unpaid: [] };
    const rows: { receipt_id: string; status: 'settled' | 'unpaid'; code: string | null; charge: number; why: string }[] = [];
    let k = 0;
    for (const c of chains) {
      const mine = results.slice(k, k + c.transfers.length);
      k += c.transfers.length;
      const failed = mine.find((m) => m.status === 'failed' && m.code !== 'linked_event_failed') ?? mine.find((m) => m.status === 'failed');
      if (failed) {
        outcome.unpaid.push({ receiptId: c.receipt.id, code: failed.code! });
        rows.push({ receipt_id: c.receipt.id, status: 'unpaid', code: failed.code!, charge: 0, why: c.price.why.join('; ') });
      } else {
        outcome.settled.push(c.receipt.id);
        rows.push({ receipt_id: c.receipt.id, status: 'settled', code: null, charge: c.charged, why: c.price.why.join('; ') });
      }
    }
    await this.writeOutcome(trx, rows, chains, results);
    return outcome;
  }

  /** Tries unpaid receipts again (after a top-up, or once a hold was released). */
  async retryUnpaid(limit = 1000): Promise<SettleResult> {
    const now = this.deps.clock.now();
    return this.deps.db.transaction().execute(async (trx) => {
      const receipts = await trx
        .selectFrom('ledger_settlements as s')
        .innerJoin('receipts as r', 'r.id', 's.receipt_id')
        .select(['r.id', 'r.grant_id', 'r.content_id', 'r.source_id', 'r.receiver_id', 'r.bytes', 'r.received_at'])
        .where('s.status', '=', 'unpaid')
        .where('s.updated_at', '<=', new Date(now - UNPAID_RETRY_MS))
        .orderBy('s.updated_at')
        .limit(limit)
        .forUpdate()
        .execute();
      return this.settleIn(trx, receipts);
    });
  }

  private async writeOutcome(
    trx: Transaction<Database>,
    rows: { receipt_id: string; status: 'settled' | 'unpaid'; code: string | null; charge: number; why: string }[],
    chains: { receipt: StoredReceipt; transfers: TransferInput[] }[],
    results: { id: string; status: string }[],
  ) {
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
    // Reservations: follow the chains that went through (a failed chain left its hold as it
    // was). A chain that released hold X and reserved Y moves the row holding X on to Y; the
    // chains of one transfer are followed in batch order in memory, then every row that moved
    // is written by one statement (matched by the hold it had when the batch started).
    const created = new Set(results.filter((r) => r.status !== 'failed').map((r) => r.id));
    const moves = new Map<string, { from: string; to: string | null; amount: number; steps: number }>(); // by current hold
    const done: { from: string; to: string | null; amount: number; steps: number }[] = [];
    for (const c of chains) {
      const release = c.transfers.find((t) => t.kind === 'void');
      if (!release || !created.has(release.id)) continue;
      const next = c.transfers.find((t) => t.kind === 'pending');
      const pendingId = (release as { pendingId: string }).pendingId;
      const move = moves.get(pendingId) ?? { from: pendingId, to: null, amount: 0, steps: 0 };
      moves.delete(pendingId);
      move.to = next?.id ?? null;
      move.amount = next?.amount ?? 0;
      move.steps++;
      if (move.to) moves.set(move.to, move);
      else done.push(move);
    }
    done.push(...moves.values());
    if (done.length === 0) return;
    await sql`
      update ledger_holds as h set hold_id = v.hold_id, amount = v.amount, seq = h.seq + v.steps, updated_at = ${now}::timestamptz
      from unnest(${arrayLiteral(done.map((m) => m.from))}::text[], ${arrayLiteral(done.map((m) => m.to))}::text[],
                  ${arrayLiteral(done.map((m) => m.amount))}::int8[], ${arrayLiteral(done.map((m) => m.steps))}::int4[])
        as v(previous, hold_id, amount, steps)
      where h.hold_id = v.previous`.execute(trx);
  }

  /** Wallets, royalty and platform accounts the batch needs, created in one statement. */
  /** Everything pricing needs for a batch of receipts, in a handful of queries. */
  private async load(trx: Transaction<Database>, receipts: StoredReceipt[]) {
    const now = this.deps.clock.now();
    const contentIds = [...new Set(receipts.map((r) => r.content_id))];
    const terminalIds = [...new Set(receipts.flatMap((r) => [r.receiver_id, r.source_id]))];
    const grantIds = [...new Set(receipts.map((r) => r.grant_id))];
    // Lists bound as one array parameter each (`= any($1)`), not as thousands of `in (…)` parameters.
    const contents = await trx.selectFrom('contents').select(['id', 'price', 'total_size', 'publisher_id']).where('id', '=', anyOf(contentIds)).execute();
    const terminals = await trx.selectFrom('terminals').select(['id', 'user_id']).where('id', '=', anyOf(terminalIds)).execute();
    const reputation = await trx.selectFrom('peer_reputation').select(['terminal_id', 'completed_uploads', 'bad_pieces', 'stalls']).where('terminal_id', '=', anyOf(terminalIds)).execute();
    const grants = await trx.selectFrom('grants').select(['id', 'transfer_id']).where('id', '=', anyOf(grantIds)).where('transfer_id', 'is not', null).execute();
    const owners = new Map(terminals.map((t) => [t.id, t.user_id]));
    const receiverUsers = [...new Set(receipts.map((r) => owners.get(r.receiver_id)).filter((u): u is string => !!u))];

    // S1.9: what each receiving user received and served in the 30 days before.
    const since = new Date(now - 30 * DAY);
    const traffic = new Map<string, { received: number; served: number }>();
    if (receiverUsers.length) {
      // Both sums in one statement, over the users' terminals looked up once.
      const { rows } = await sql<{ user_id: string; received: number; served: number }>`
        with mine as (select id, user_id from terminals where user_id = any(${arrayLiteral(receiverUsers)}::text[]))
        select m.user_id, sum(r.bytes)::int8 as received, 0::int8 as served
        from mine m join receipts r on r.receiver_id = m.id where r.received_at >= ${since} group by m.user_id
        union all
        select m.user_id, 0::int8, sum(r.bytes)::int8
        from mine m join receipts r on r.source_id = m.id where r.received_at >= ${since} group by m.user_id`.execute(trx);
      for (const u of receiverUsers) traffic.set(u, { received: 0, served: 0 });
      for (const row of rows) {
        const t = traffic.get(row.user_id)!;
        t.received += row.received;
        t.served += row.served;
      }
    }

    // Reservations of the transfers these receipts belong to, and whether each is still open.
    const grantTransfers = new Map(grants.map((g) => [g.id, g.transfer_id!]));
    const transferIds = [...new Set(grantTransfers.values())];
    const holds = new Map<string, { holdId: string | null; amount: number; seq: number; timeoutLeftMs: number }>();
    if (transferIds.length) {
      // Locked first: two batches for one transfer must not both release the same hold.
      await trx.selectFrom('ledger_holds').select('transfer_id').where('transfer_id', '=', anyOf(transferIds)).orderBy('transfer_id').forUpdate().execute();
      const rows = await trx
        .selectFrom('ledger_holds as h')
        .leftJoin('ledger_transfers as p', 'p.id', 'h.hold_id')
        .select(['h.transfer_id', 'h.hold_id', 'h.amount', 'h.seq', 'p.timeout_at'])
        .select((eb) => eb.exists(eb.selectFrom('ledger_transfers as v').select('v.id').whereRef('v.pending_id', '=', 'h.hold_id')).as('resolved'))
        .where('h.transfer_id', '=', anyOf(transferIds))
        .execute();
      for (const h of rows) {
        const timeoutLeftMs = h.timeout_at ? new Date(h.timeout_at).getTime() - now : 0;
        // An expired or already released hold reserves nothing: settle from the wallet alone.
        const open = h.hold_id !== null && !h.resolved && timeoutLeftMs > 1000;
        holds.set(h.transfer_id, { holdId: open ? h.hold_id : null, amount: open ? h.amount : 0, seq: h.seq, timeoutLeftMs });
      }
    }

    const accounts: AccountSpec[] = [PLATFORM_REVENUE, PLATFORM_ROUNDING, HOLDS];
    for (const u of new Set(terminals.map((t) => t.user_id))) accounts.push(walletAccount(u));
    for (const c of contents) accounts.push(royaltyAccount(c.publisher_id));
    return {
      contents: new Map(contents.map((c) => [c.id, { price: c.price, totalSize: c.total_size, publisherId: c.publisher_id }])),
      owners,
      reputation: new Map(reputation.map((r) => [r.terminal_id, { completedUploads: r.completed_uploads, badPieces: r.bad_pieces, stalls: r.stalls }])),
      traffic,
      grantTransfers,
      holds,
      accounts,
    };
  }
}

/** `= any($1::text[])`: a list as one parameter. */
const anyOf = (values: string[]) => sql<string>`any(${arrayLiteral(values)}::text[])`;
