import type { Transaction } from 'kysely';
import type { Clock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import { sql, type Db } from '../db/connection.ts';
import type { Database } from '../db/schema.ts';
import { HOLDS, PLATFORM_REVENUE, PLATFORM_ROUNDING, royaltyAccount, walletAccount } from './accounts.ts';
import type { AccountSpec, Ledger, TransferInput } from './ledger.ts';
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
    const chains: { receipt: StoredReceipt; price: Price; transfers: TransferInput[] }[] = [];
    const holds = new Map(ctx.holds); // advanced chain by chain, in batch order
    for (const r of receipts) {
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
      const transfers: TransferInput[] = [];
      const transferId = ctx.grantTransfers.get(r.grant_id);
      const hold = transferId ? holds.get(transferId) : undefined;
      if (hold?.holdId && legs.length > 0) {
        const left = Math.max(0, hold.amount - price.charge);
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
      chains.push({ receipt: r, price, transfers });
    }

    await this.ensureAccounts(trx, ctx.accounts);
    const results = await this.deps.ledger.apply(
      chains.flatMap((c) => c.transfers),
      { trx },
    );
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
        rows.push({ receipt_id: c.receipt.id, status: 'settled', code: null, charge: c.price.charge, why: c.price.why.join('; ') });
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
      from unnest(${rows.map((r) => r.receipt_id)}::text[], ${rows.map((r) => r.status)}::text[], ${rows.map((r) => r.code)}::text[],
                  ${rows.map((r) => r.charge)}::int8[], ${rows.map((r) => r.why)}::text[]) as u(id, s, c, ch, w)
      on conflict (receipt_id) do update set status = excluded.status, code = excluded.code, charge = excluded.charge,
        why = excluded.why, attempts = ledger_settlements.attempts + 1, updated_at = excluded.updated_at
      where ledger_settlements.status = 'unpaid'`.execute(trx);
    // Reservations: follow the chains that went through (a failed chain left its hold as it was).
    const created = new Set(results.filter((r) => r.status !== 'failed').map((r) => r.id));
    for (const c of chains) {
      const release = c.transfers.find((t) => t.kind === 'void');
      if (!release || !created.has(release.id)) continue;
      const next = c.transfers.find((t) => t.kind === 'pending');
      await trx
        .updateTable('ledger_holds')
        .set((eb) => ({ hold_id: next?.id ?? null, amount: next && 'amount' in next ? next.amount : 0, seq: eb('seq', '+', 1), updated_at: now }))
        .where('hold_id', '=', (release as { pendingId: string }).pendingId)
        .execute();
    }
  }

  /** Wallets, royalty and platform accounts the batch needs, created in one statement. */
  private async ensureAccounts(trx: Transaction<Database>, specs: AccountSpec[]) {
    const unique = [...new Map(specs.map((s) => [s.id, s])).values()];
    const now = new Date(this.deps.clock.now());
    await trx
      .insertInto('ledger_accounts')
      .values(unique.map((s) => ({ id: s.id, kind: s.kind, owner_id: s.ownerId ?? null, no_overdraft: s.noOverdraft, created_at: now })))
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
  }

  /** Everything pricing needs for a batch of receipts, in a handful of queries. */
  private async load(trx: Transaction<Database>, receipts: StoredReceipt[]) {
    const now = this.deps.clock.now();
    const contentIds = [...new Set(receipts.map((r) => r.content_id))];
    const terminalIds = [...new Set(receipts.flatMap((r) => [r.receiver_id, r.source_id]))];
    const grantIds = [...new Set(receipts.map((r) => r.grant_id))];
    const contents = await trx.selectFrom('contents').select(['id', 'price', 'total_size', 'publisher_id']).where('id', 'in', contentIds).execute();
    const terminals = await trx.selectFrom('terminals').select(['id', 'user_id']).where('id', 'in', terminalIds).execute();
    const reputation = await trx.selectFrom('peer_reputation').select(['terminal_id', 'completed_uploads', 'bad_pieces', 'stalls']).where('terminal_id', 'in', terminalIds).execute();
    const grants = await trx.selectFrom('grants').select(['id', 'transfer_id']).where('id', 'in', grantIds).where('transfer_id', 'is not', null).execute();
    const owners = new Map(terminals.map((t) => [t.id, t.user_id]));
    const receiverUsers = [...new Set(receipts.map((r) => owners.get(r.receiver_id)).filter((u): u is string => !!u))];

    // S1.9: what each receiving user received and served in the 30 days before.
    const since = new Date(now - 30 * DAY);
    const traffic = new Map<string, { received: number; served: number }>();
    if (receiverUsers.length) {
      const sums = (column: 'receiver_id' | 'source_id') =>
        sql<{ user_id: string; bytes: number }>`
          select t.user_id, sum(r.bytes)::int8 as bytes from receipts r join terminals t on t.id = r.${sql.ref(column)}
          where t.user_id = any(${receiverUsers}::text[]) and r.received_at >= ${since} group by t.user_id`.execute(trx);
      for (const u of receiverUsers) traffic.set(u, { received: 0, served: 0 });
      for (const row of (await sums('receiver_id')).rows) traffic.get(row.user_id)!.received = row.bytes;
      for (const row of (await sums('source_id')).rows) traffic.get(row.user_id)!.served = row.bytes;
    }

    // Reservations of the transfers these receipts belong to, and whether each is still open.
    const grantTransfers = new Map(grants.map((g) => [g.id, g.transfer_id!]));
    const transferIds = [...new Set(grantTransfers.values())];
    const holds = new Map<string, { holdId: string | null; amount: number; seq: number; timeoutLeftMs: number }>();
    if (transferIds.length) {
      // Locked first: two batches for one transfer must not both release the same hold.
      await trx.selectFrom('ledger_holds').select('transfer_id').where('transfer_id', 'in', transferIds).orderBy('transfer_id').forUpdate().execute();
      const rows = await trx
        .selectFrom('ledger_holds as h')
        .leftJoin('ledger_transfers as p', 'p.id', 'h.hold_id')
        .select(['h.transfer_id', 'h.hold_id', 'h.amount', 'h.seq', 'p.timeout_at'])
        .select((eb) => eb.exists(eb.selectFrom('ledger_transfers as v').select('v.id').whereRef('v.pending_id', '=', 'h.hold_id')).as('resolved'))
        .where('h.transfer_id', 'in', transferIds)
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
