import { arrayLiteral } from '../db/array-literal.ts';
import { sql, type Db } from '../db/connection.ts';
import { stillToPay } from './purchase.ts';

// What other domains may ask of the ledger's tables (ARCHITECTURE.md "Boundaries"):
// set-based reads that take the caller's Db or transaction.

/** Where a member stands with a content it began to buy (#10 purchases). */
export interface PurchaseStanding {
  /** Its purchase of the content is complete (every byte paid for, in any round): it received it. */
  received: boolean;
  /** What the rest of its latest round can still cost (0 once complete). */
  stillToPay: number;
  /** Of that, already reserved by an open hold (so no longer in the available balance). */
  held: number;
}

/** The user's standing with each of `contentIds` it has a purchase of; the others are absent. One statement. */
export async function purchaseStandings(db: Db, userId: string, contentIds: readonly string[]): Promise<Map<string, PurchaseStanding>> {
  const ids = [...new Set(contentIds)];
  if (!ids.length) return new Map();
  const { rows } = await sql<{
    content_id: string; price: number; charged: number; paid_bytes: number; total_bytes: number; received: boolean; held: number;
  }>`
    select p.content_id, p.price, p.charged, p.paid_bytes, p.total_bytes,
           exists (select 1 from ledger_purchases x where x.user_id = p.user_id and x.content_id = p.content_id and x.completed_at is not null) as received,
           case when p.hold_id is not null and exists (
                  select 1 from ledger_transfers t where t.id = p.hold_id and t.kind = 'pending'
                     and not exists (select 1 from ledger_transfers r where r.pending_id = t.id))
                then p.hold_amount else 0 end as held
      from ledger_purchases p
     where p.user_id = ${userId} and p.content_id = any(${arrayLiteral(ids)}::text[])
       and p.round = (select max(l.round) from ledger_purchases l where l.user_id = p.user_id and l.content_id = p.content_id)`.execute(db);
  return new Map(
    rows.map((r) => {
      const totals = { price: Number(r.price), charged: Number(r.charged), paidBytes: Number(r.paid_bytes), totalBytes: Number(r.total_bytes) };
      return [r.content_id, { received: r.received, stillToPay: stillToPay(totals, totals.totalBytes - totals.paidBytes), held: Number(r.held) }];
    }),
  );
}

/** The contents the user received (a complete purchase), most recently completed first, at most `limit`. */
export async function receivedContents(db: Db, userId: string, limit = 1000): Promise<string[]> {
  const rows = await db
    .selectFrom('ledger_purchases')
    .select('content_id')
    .where('user_id', '=', userId)
    .where('completed_at', 'is not', null)
    .groupBy('content_id')
    .orderBy(sql`max(completed_at)`, 'desc')
    .orderBy('content_id')
    .limit(limit)
    .execute();
  return rows.map((r) => r.content_id);
}

/** Stored ledger transfers by ID (what a caller's charge came to): amount, posted balances after, time. */
export async function transfersByIds(
  db: Db,
  ids: readonly string[],
): Promise<Map<string, { amount: number; debitAccount: string; debitBalanceAfter: number; createdAt: Date }>> {
  if (!ids.length) return new Map();
  const rows = await db
    .selectFrom('ledger_transfers')
    .select(['id', 'amount', 'debit_account_id', 'debit_balance_after', 'created_at'])
    .where('id', '=', sql<string>`any(${arrayLiteral([...ids])}::text[])`)
    .execute();
  return new Map(rows.map((r) => [r.id, { amount: Number(r.amount), debitAccount: r.debit_account_id, debitBalanceAfter: Number(r.debit_balance_after), createdAt: new Date(r.created_at) }]));
}
