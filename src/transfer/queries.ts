import { arrayLiteral } from '../db/array-literal.ts';
import { sql, type Db } from '../db/connection.ts';
import type { ReceiptsTable } from './tables.ts';

// What other domains (the ledger, chiefly) may ask of the `receipts` and `transfers`
// tables (ARCHITECTURE.md "Boundaries"): set-based reads that take the caller's Db or
// transaction, so a settlement sees the receipts stored in its own transaction.

const anyOf = (values: readonly string[]) => sql<string>`any(${arrayLiteral([...values])}::text[])`;

export type ReceiptRow = Pick<ReceiptsTable, 'id' | 'grant_id' | 'content_id' | 'source_id' | 'receiver_id' | 'bytes' | 'received_at'>;

/** The stored receipts among `ids`, in the order of `ids`; unknown IDs are left out. */
export async function receiptsByIds(db: Db, ids: readonly string[]): Promise<ReceiptRow[]> {
  if (!ids.length) return [];
  const rows = await db
    .selectFrom('receipts')
    .select(['id', 'grant_id', 'content_id', 'source_id', 'receiver_id', 'bytes', 'received_at'])
    .where('id', '=', anyOf(ids))
    .execute();
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ids.flatMap((id) => byId.get(id) ?? []);
}

/** Which of the receipts `ids` the terminal is party to, as receiver or as source. */
export async function receiptsInvolving(db: Db, ids: readonly string[], terminalId: string): Promise<Set<string>> {
  if (!ids.length) return new Set();
  const rows = await db
    .selectFrom('receipts')
    .select('id')
    .where('id', '=', anyOf(ids))
    .where((eb) => eb.or([eb('receiver_id', '=', terminalId), eb('source_id', '=', terminalId)]))
    .execute();
  return new Set(rows.map((r) => r.id));
}

/** S1.9: bytes each terminal received and served (as a receipt's source) since `since`. Terminals with none are absent. */
export async function trafficSince(db: Db, terminalIds: readonly string[], since: Date): Promise<Map<string, { received: number; served: number }>> {
  const out = new Map<string, { received: number; served: number }>();
  if (!terminalIds.length) return out;
  // Both sums in one statement.
  const { rows } = await sql<{ terminal_id: string; received: number; served: number }>`
    with mine as (select unnest(${arrayLiteral([...terminalIds])}::text[]) as id)
    select m.id as terminal_id, sum(r.bytes)::int8 as received, 0::int8 as served
    from mine m join receipts r on r.receiver_id = m.id where r.received_at >= ${since} group by m.id
    union all
    select m.id, 0::int8, sum(r.bytes)::int8
    from mine m join receipts r on r.source_id = m.id where r.received_at >= ${since} group by m.id`.execute(db);
  for (const row of rows) {
    const t = out.get(row.terminal_id) ?? { received: 0, served: 0 };
    t.received += Number(row.received);
    t.served += Number(row.served);
    out.set(row.terminal_id, t);
  }
  return out;
}

/**
 * S1.13 "download record": the terminal received the content (a receipt it signed as
 * receiver, or a finished transfer to it).
 */
export async function receivedBy(db: Db, terminalId: string, contentId: string): Promise<boolean> {
  const receipt = await db.selectFrom('receipts').select('id').where('receiver_id', '=', terminalId).where('content_id', '=', contentId).limit(1).executeTakeFirst();
  if (receipt) return true;
  const done = await db
    .selectFrom('transfers')
    .select('id')
    .where('receiver_id', '=', terminalId)
    .where('content_id', '=', contentId)
    .where('state', '=', 'done')
    .limit(1)
    .executeTakeFirst();
  return !!done;
}

/**
 * #13 operations dashboard: the bytes that stored receipts naming `sourceId` as their
 * source acknowledge, per bucket of `bucketMs` of the time the origin stored them
 * (`received_at`), from `since` (inclusive) to `until` (exclusive). Keys are bucket starts
 * (ms since the epoch, multiples of `bucketMs`); buckets without receipts are absent.
 * Read from the database: it survives a restart and counts every origin process.
 */
export async function receiptBytesPerBucket(db: Db, sourceId: string, since: Date, until: Date, bucketMs: number): Promise<Map<number, number>> {
  const { rows } = await sql<{ bucket: number; bytes: number }>`
    select floor(extract(epoch from received_at) * 1000 / ${bucketMs}::numeric)::int8 as bucket, sum(bytes)::int8 as bytes
      from receipts
     where source_id = ${sourceId} and received_at >= ${since} and received_at < ${until}
     group by 1`.execute(db);
  return new Map(rows.map((r) => [Number(r.bucket) * bucketMs, Number(r.bytes)]));
}

/** S2.1 "most requested": transfers opened per content since `since`, most first (at most `limit` contents), not counting `excludeReceivers` (edges filling their caches). */
export async function requestCounts(db: Db, since: Date, limit: number, excludeReceivers: readonly string[] = []): Promise<{ contentId: string; requests: number }[]> {
  let q = db
    .selectFrom('transfers')
    .select(['content_id', (eb) => eb.fn.countAll<string>().as('n')])
    .where('created_at', '>=', since);
  if (excludeReceivers.length) q = q.where('receiver_id', '<>', sql<string>`all(${arrayLiteral([...excludeReceivers])}::text[])`);
  const rows = await q
    .groupBy('content_id')
    .orderBy('n', 'desc')
    .orderBy('content_id')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ contentId: r.content_id, requests: Number(r.n) }));
}
