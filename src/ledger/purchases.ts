import type { Transaction } from 'kysely';
import { sql, type Db } from '../db/connection.ts';
import type { Database } from '../db/schema.ts';
import { arrayLiteral } from '../db/array-literal.ts';
import type { PurchaseTotals } from './purchase.ts';

// Reading and writing purchases (ledger_purchases, ledger_purchase_shares) for settlement
// and reservations: set-based, a few statements per batch whatever its size. Rows are
// locked (`for update`, in key order, so two batches never deadlock) before they are
// read, and written back inside the same transaction.

export interface PurchaseKey {
  userId: string;
  contentId: string;
}

/** A purchase as loaded for change: its totals and its reservation. */
export interface Purchase extends PurchaseKey {
  round: number;
  totals: PurchaseTotals;
  /** The open reservation, or null (none, already resolved, or about to expire). */
  hold: { id: string; amount: number; timeoutAt: number } | null;
  holdSeq: number;
  completedAt: Date | null;
}

export const purchaseKey = (k: PurchaseKey) => `${k.userId}|${k.contentId}`;
/** The record (S1.12) every transfer of a purchase belongs to: its reservations, their releases, its receipts' legs. */
export const purchaseRecord = (p: Pick<Purchase, 'userId' | 'contentId' | 'round'>) => `purchase:${p.userId}:${p.contentId}:${p.round}`;
/** The pending ledger transfer of a purchase's n-th reservation. */
export const holdId = (p: Pick<Purchase, 'userId' | 'contentId' | 'round'>, seq: number) => `hold:${p.userId}:${p.contentId}:${p.round}:${seq}`;

/** A hold with this little time left is treated as gone: settling against it could race its expiry. */
const HOLD_MARGIN_MS = 1000;

/**
 * Locks and loads the latest round of each purchase, creating round 1 (from `contents`)
 * for those that have none. `startNew` names purchases that must begin a new round if
 * their latest is fully paid (REFETCH_POLICY=charge).
 */
export async function lockPurchases(
  trx: Transaction<Database>,
  keys: PurchaseKey[],
  contents: Map<string, { price: number; totalSize: number }>,
  now: number,
  startNew: (p: Purchase) => boolean = () => false,
): Promise<Map<string, Purchase>> {
  const unique = [...new Map(keys.map((k) => [purchaseKey(k), k])).values()].sort((a, b) => (purchaseKey(a) < purchaseKey(b) ? -1 : 1));
  if (unique.length === 0) return new Map();
  const at = new Date(now);
  const users = arrayLiteral(unique.map((k) => k.userId));
  const contentIds = arrayLiteral(unique.map((k) => k.contentId));
  // Round 1 for purchases that have none (a no-op for the others).
  await sql`
    insert into ledger_purchases (user_id, content_id, round, price, total_bytes, paid_bytes, charge_num, charged, royalty_paid, fee_paid,
                                  hold_id, hold_amount, hold_seq, created_at, updated_at)
    select u, c, 1, p, t, 0, 0, 0, 0, 0, null, 0, 0, ${at}::timestamptz, ${at}::timestamptz
    from unnest(${users}::text[], ${contentIds}::text[], ${arrayLiteral(unique.map((k) => contents.get(k.contentId)?.price ?? null))}::int8[],
                ${arrayLiteral(unique.map((k) => contents.get(k.contentId)?.totalSize ?? null))}::int8[]) as v(u, c, p, t)
    where p is not null and not exists (select 1 from ledger_purchases x where x.user_id = v.u and x.content_id = v.c)
    on conflict do nothing`.execute(trx);
  let purchases = await load(trx, users, contentIds, now);
  const renew = [...purchases.values()].filter((p) => p.totals.paidBytes >= p.totals.totalBytes && startNew(p));
  if (renew.length) {
    await sql`
      insert into ledger_purchases (user_id, content_id, round, price, total_bytes, paid_bytes, charge_num, charged, royalty_paid, fee_paid,
                                    hold_id, hold_amount, hold_seq, created_at, updated_at)
      select u, c, r, p, t, 0, 0, 0, 0, 0, null, 0, 0, ${at}::timestamptz, ${at}::timestamptz
      from unnest(${arrayLiteral(renew.map((p) => p.userId))}::text[], ${arrayLiteral(renew.map((p) => p.contentId))}::text[],
                  ${arrayLiteral(renew.map((p) => p.round + 1))}::int4[], ${arrayLiteral(renew.map((p) => contents.get(p.contentId)?.price ?? p.totals.price))}::int8[],
                  ${arrayLiteral(renew.map((p) => contents.get(p.contentId)?.totalSize ?? p.totals.totalBytes))}::int8[]) as v(u, c, r, p, t)`.execute(trx);
    purchases = await load(trx, users, contentIds, now);
  }
  return purchases;
}

async function load(trx: Transaction<Database>, users: string, contentIds: string, now: number): Promise<Map<string, Purchase>> {
  // The latest round of each, locked in key order; then its shares and whether its hold is still open.
  const { rows } = await sql<{
    user_id: string; content_id: string; round: number; price: number; total_bytes: number; paid_bytes: number; charge_num: string;
    charged: number; royalty_paid: number; fee_paid: number; hold_id: string | null; hold_amount: number; hold_seq: number; completed_at: Date | null;
  }>`
    select p.* from unnest(${users}::text[], ${contentIds}::text[]) as v(u, c)
    cross join lateral (select round from ledger_purchases where user_id = v.u and content_id = v.c order by round desc limit 1) as latest
    join ledger_purchases p on p.user_id = v.u and p.content_id = v.c and p.round = latest.round
    order by p.user_id, p.content_id
    for update of p`.execute(trx);
  const out = new Map<string, Purchase>();
  if (rows.length === 0) return out;
  const shares = await sql<{ user_id: string; content_id: string; account_id: string; num: string; paid: number }>`
    select s.user_id, s.content_id, s.account_id, s.num::text as num, s.paid
    from unnest(${arrayLiteral(rows.map((r) => r.user_id))}::text[], ${arrayLiteral(rows.map((r) => r.content_id))}::text[], ${arrayLiteral(rows.map((r) => r.round))}::int4[]) as v(u, c, r)
    join ledger_purchase_shares s on s.user_id = v.u and s.content_id = v.c and s.round = v.r`.execute(trx);
  const holdIds = rows.map((r) => r.hold_id).filter((id): id is string => id !== null);
  const open = new Map<string, number>();
  if (holdIds.length) {
    const held = await sql<{ id: string; timeout_at: Date }>`
      select t.id, t.timeout_at from ledger_transfers t
      where t.id = any(${arrayLiteral(holdIds)}::text[]) and t.kind = 'pending' and t.timeout_at > ${new Date(now + HOLD_MARGIN_MS)}::timestamptz
        and not exists (select 1 from ledger_transfers r where r.pending_id = t.id)`.execute(trx);
    for (const h of held.rows) open.set(h.id, new Date(h.timeout_at).getTime());
  }
  for (const r of rows) {
    out.set(purchaseKey({ userId: r.user_id, contentId: r.content_id }), {
      userId: r.user_id,
      contentId: r.content_id,
      round: r.round,
      totals: {
        price: r.price,
        totalBytes: r.total_bytes,
        paidBytes: r.paid_bytes,
        chargeNum: BigInt(r.charge_num),
        charged: r.charged,
        royaltyPaid: r.royalty_paid,
        feePaid: r.fee_paid,
        shares: new Map(),
      },
      hold: r.hold_id && open.has(r.hold_id) ? { id: r.hold_id, amount: r.hold_amount, timeoutAt: open.get(r.hold_id)! } : null,
      holdSeq: r.hold_seq,
      completedAt: r.completed_at,
    });
  }
  for (const s of shares.rows) out.get(purchaseKey({ userId: s.user_id, contentId: s.content_id }))!.totals.shares.set(s.account_id, { num: BigInt(s.num), paid: s.paid });
  return out;
}

/** Writes purchases back (totals, reservation, shares): three statements. */
export async function savePurchases(trx: Transaction<Database>, purchases: Purchase[], now: number): Promise<void> {
  if (purchases.length === 0) return;
  const at = new Date(now);
  const col = (f: (p: Purchase) => string | number | boolean | null) => arrayLiteral(purchases.map(f));
  await sql`
    update ledger_purchases as p set
      paid_bytes = v.paid_bytes, charge_num = v.charge_num, charged = v.charged, royalty_paid = v.royalty_paid, fee_paid = v.fee_paid,
      hold_id = v.hold_id, hold_amount = v.hold_amount, hold_seq = v.hold_seq, updated_at = ${at}::timestamptz,
      completed_at = coalesce(p.completed_at, case when v.paid_bytes >= p.total_bytes then ${at}::timestamptz end)
    from unnest(${col((p) => p.userId)}::text[], ${col((p) => p.contentId)}::text[], ${col((p) => p.round)}::int4[],
                ${col((p) => p.totals.paidBytes)}::int8[], ${col((p) => p.totals.chargeNum.toString())}::numeric[], ${col((p) => p.totals.charged)}::int8[],
                ${col((p) => p.totals.royaltyPaid)}::int8[], ${col((p) => p.totals.feePaid)}::int8[], ${col((p) => p.hold?.id ?? null)}::text[],
                ${col((p) => p.hold?.amount ?? 0)}::int8[], ${col((p) => p.holdSeq)}::int4[])
      as v(user_id, content_id, round, paid_bytes, charge_num, charged, royalty_paid, fee_paid, hold_id, hold_amount, hold_seq)
    where p.user_id = v.user_id and p.content_id = v.content_id and p.round = v.round`.execute(trx);
  const shares = purchases.flatMap((p) => [...p.totals.shares].map(([account, s]) => ({ p, account, s })));
  if (shares.length === 0) return;
  const sc = (f: (x: (typeof shares)[number]) => string | number) => arrayLiteral(shares.map(f));
  await sql`
    insert into ledger_purchase_shares (user_id, content_id, round, account_id, num, paid)
    select * from unnest(${sc((x) => x.p.userId)}::text[], ${sc((x) => x.p.contentId)}::text[], ${sc((x) => x.p.round)}::int4[],
                         ${sc((x) => x.account)}::text[], ${sc((x) => x.s.num.toString())}::numeric[], ${sc((x) => x.s.paid)}::int8[])
    on conflict (user_id, content_id, round, account_id) do update set num = excluded.num, paid = excluded.paid`.execute(trx);
}

/** Whether the user has fully paid for the content (any round): S1.13's download record. */
export async function fullyPaid(db: Db, userId: string, contentId: string): Promise<boolean> {
  const row = await db
    .selectFrom('ledger_purchases')
    .select('user_id')
    .where('user_id', '=', userId)
    .where('content_id', '=', contentId)
    .where('completed_at', 'is not', null)
    .limit(1)
    .executeTakeFirst();
  return !!row;
}
