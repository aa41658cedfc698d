import { arrayLiteral } from '../db/array-literal.ts';
import { sql, type Db } from '../db/connection.ts';

// What other domains may ask of the edge tables (ARCHITECTURE.md "Boundaries").

/**
 * Which of these terminals are edges. The ledger charges nothing for what an edge receives
 * (S2.1: filling its cache is the platform's own traffic; users pay when it delivers).
 */
export async function edgeTerminalsIn(db: Db, terminalIds: readonly string[]): Promise<Set<string>> {
  const ids = [...new Set(terminalIds)];
  if (!ids.length) return new Set();
  const rows = await db.selectFrom('edges').select('terminal_id').where('terminal_id', '=', sql<string>`any(${arrayLiteral(ids)}::text[])`).execute();
  return new Set(rows.map((r) => r.terminal_id));
}

/** The operator (owner) of an edge, or null if there is no such edge; through `db`, which may be a transaction. */
export async function edgeOwner(edgeId: string, db: Db): Promise<string | null> {
  const row = await db.selectFrom('edges').select('owner_id').where('id', '=', edgeId).executeTakeFirst();
  return row?.owner_id ?? null;
}
