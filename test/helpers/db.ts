import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sql, type Kysely } from 'kysely';
import { dropSchema, openDatabase, type DbHandle } from '../../src/db/connection.ts';

// Storage tests run on both engines: embedded PGlite always, real PostgreSQL when
// DATABASE_URL is set. Each PostgreSQL test database lives in its own schema, so
// parallel runs (and parallel files) never collide; the schema is dropped after. Each PGlite
// test database is a copy of one migrated template (pgliteTemplate below).

export interface TestEngine {
  name: 'pglite' | 'postgres';
  open(): Promise<DbHandle>;
}

export function testEngines(): TestEngine[] {
  const engines: TestEngine[] = [{ name: 'pglite', open: async () => openDatabase({ pgliteTemplate: await pgliteTemplate() }) }];
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

let template: Promise<Blob> | undefined;

/**
 * An empty PGlite database with every migration applied, as a data directory tarball: opening a
 * copy of it takes about a second, creating a database and migrating it about three. Made once
 * per test process, or once per test run when CASCADE_TEST_TEMPLATE_DIR names a directory that
 * lives for that run only (scripts/run-tests.mjs makes a new one each run, so a changed migration
 * is always in it). A copy still goes through migrateToLatest, which applies any migration the
 * template lacks.
 */
export function pgliteTemplate(): Promise<Blob> {
  return (template ??= makePgliteTemplate());
}

async function makePgliteTemplate(): Promise<Blob> {
  const dir = process.env.CASCADE_TEST_TEMPLATE_DIR;
  const file = dir ? path.join(dir, 'pglite-migrated.tar') : undefined;
  if (file && existsSync(file)) return new Blob([readFileSync(file)], { type: 'application/x-tar' });
  const handle = await openDatabase({});
  try {
    const blob = await handle.dumpDataDir!();
    if (file) {
      // Whole or not at all: parallel test files may make it at the same time, and read it.
      const partial = `${file}.${process.pid}`;
      writeFileSync(partial, new Uint8Array(await blob.arrayBuffer()));
      renameSync(partial, file);
    }
    return blob;
  } finally {
    await handle.close();
  }
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
