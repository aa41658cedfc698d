import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { dropSchema, openDatabase, type DbHandle } from '../../src/db/connection.ts';

// Storage tests run on both engines: embedded PGlite always, real PostgreSQL when
// DATABASE_URL is set. Each PostgreSQL test database lives in its own schema, so
// parallel runs (and parallel files) never collide; the schema is dropped after.

export interface TestEngine {
  name: 'pglite' | 'postgres';
  open(): Promise<DbHandle>;
}

export function testEngines(): TestEngine[] {
  const engines: TestEngine[] = [{ name: 'pglite', open: () => openDatabase({}) }];
  const url = process.env.DATABASE_URL;
  if (url) {
    engines.push({
      name: 'postgres',
      async open() {
        const schema = `t_${process.pid}_${randomBytes(4).toString('hex')}`;
        const handle = await openDatabase({ databaseUrl: url, schema });
        return {
          ...handle,
          async close() {
            await handle.close();
            await dropSchema(url, schema);
          },
        };
      },
    });
  }
  return engines;
}

/**
 * Every row of every table in the handle's schema, as sorted JSON lines per table: compare
 * two snapshots to show a refused call changed nothing at all.
 */
export async function snapshotTables(db: Kysely<any>): Promise<Record<string, string[]>> {
  const { rows } = await sql<{ table_name: string }>`
    select table_name from information_schema.tables where table_schema = current_schema() and table_type = 'BASE TABLE' order by table_name`.execute(db);
  const out: Record<string, string[]> = {};
  for (const { table_name } of rows) {
    const r = await sql<Record<string, unknown>>`select * from ${sql.table(table_name)}`.execute(db);
    out[table_name] = r.rows.map((row) => JSON.stringify(row, (_k, v) => (typeof v === 'bigint' ? String(v) : v))).sort();
  }
  return out;
}
