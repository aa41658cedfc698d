import { arrayLiteral } from '../db/array-literal.ts';
import { sql, type Db } from '../db/connection.ts';

// What other domains may ask of the `terminals` and `holdings` tables (ARCHITECTURE.md
// "Boundaries"): set-based reads that take the caller's Db or transaction.

const anyOf = (values: readonly string[]) => sql<string>`any(${arrayLiteral([...values])}::text[])`;

/** The owning user of each terminal among `ids` that exists; unknown IDs are absent. */
export async function terminalOwners(db: Db, ids: readonly string[]): Promise<Map<string, string>> {
  if (!ids.length) return new Map();
  const rows = await db.selectFrom('terminals').select(['id', 'user_id']).where('id', '=', anyOf(ids)).execute();
  return new Map(rows.map((r) => [r.id, r.user_id]));
}

/** Every terminal of the users, with its owner. */
export async function terminalsOfUsers(db: Db, userIds: readonly string[]): Promise<{ id: string; userId: string }[]> {
  if (!userIds.length) return [];
  const rows = await db.selectFrom('terminals').select(['id', 'user_id']).where('user_id', '=', anyOf(userIds)).execute();
  return rows.map((r) => ({ id: r.id, userId: r.user_id }));
}

/** What the terminals hold, whole (`pieces` null) or in part (piece ranges such as "0-9,12"). */
export async function holdingsOf(db: Db, terminalIds: readonly string[]): Promise<{ terminalId: string; contentId: string; pieces: string | null }[]> {
  if (!terminalIds.length) return [];
  const rows = await db.selectFrom('holdings').select(['terminal_id', 'content_id', 'pieces']).where('terminal_id', '=', anyOf(terminalIds)).execute();
  return rows.map((r) => ({ terminalId: r.terminal_id, contentId: r.content_id, pieces: r.pieces }));
}

/** Which of `terminalIds` hold the content whole. */
export async function wholeHolders(db: Db, contentId: string, terminalIds: readonly string[]): Promise<Set<string>> {
  if (!terminalIds.length) return new Set();
  const rows = await db
    .selectFrom('holdings')
    .select('terminal_id')
    .where('content_id', '=', contentId)
    .where('pieces', 'is', null)
    .where('terminal_id', '=', anyOf(terminalIds))
    .execute();
  return new Set(rows.map((r) => r.terminal_id));
}

/** Name and owner of each terminal among `ids` that exists (for labels: dashboards, listings); unknown IDs are absent. */
export async function terminalsByIds(db: Db, ids: readonly string[]): Promise<Map<string, { id: string; name: string; userId: string }>> {
  const wanted = [...new Set(ids)];
  if (!wanted.length) return new Map();
  const rows = await db.selectFrom('terminals').select(['id', 'name', 'user_id']).where('id', '=', anyOf(wanted)).execute();
  return new Map(rows.map((r) => [r.id, { id: r.id, name: r.name, userId: r.user_id }]));
}
