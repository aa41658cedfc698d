import { arrayLiteral } from '../db/array-literal.ts';
import { sql, type Db } from '../db/connection.ts';
import type { Role } from '../core/roles.ts';

// What other domains may ask of the `users` table (ARCHITECTURE.md "Boundaries"):
// set-based reads that take the caller's Db or transaction.

/** The roles of each user among `ids` that exists. */
export async function rolesOf(db: Db, ids: readonly string[]): Promise<Map<string, Role[]>> {
  if (!ids.length) return new Map();
  const rows = await db
    .selectFrom('users')
    .select(['id', 'roles'])
    .where('id', '=', sql<string>`any(${arrayLiteral([...ids])}::text[])`)
    .execute();
  return new Map(rows.map((r) => [r.id, r.roles]));
}

/** A user by ID or by username (lower-cased here), or null. */
export async function findUser(db: Db, by: { id: string } | { username: string }): Promise<{ id: string; username: string; roles: Role[] } | null> {
  const q = db.selectFrom('users').select(['id', 'username', 'roles']);
  const row = await ('id' in by ? q.where('id', '=', by.id) : q.where('username', '=', by.username.toLowerCase())).executeTakeFirst();
  return row ?? null;
}
