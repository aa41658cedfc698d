import { Kysely, PostgresDialect, sql } from 'kysely';
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { PGliteDialect } from './pglite-dialect.ts';
import { migrateToLatest } from './migrations.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;

export interface DbHandle {
  db: Db;
  engine: 'pglite' | 'postgres';
  close(): Promise<void>;
  /** PGlite only: its whole data directory as an uncompressed tarball, to open copies of it with `pgliteTemplate`. */
  dumpDataDir?(): Promise<Blob>;
}

export interface OpenOptions {
  /** postgres://… for a real server; omitted for embedded PGlite. */
  databaseUrl?: string;
  /** PGlite data directory; omitted for an in-memory PGlite (tests). */
  pgliteDir?: string;
  /** PostgreSQL schema to work in (created if missing); tests use one per run. */
  schema?: string;
  migrate?: boolean;
  /**
   * PGlite only: start from this data directory (a `dumpDataDir()` tarball, e.g. of a migrated
   * database) instead of creating an empty one; migrations still run as usual from there.
   * Tests open their databases from one migrated template this way.
   */
  pgliteTemplate?: Blob;
}

const INT8 = 20;
// Sizes and money fit in 2^53; refuse silently wrong numbers instead of returning strings.
function parseInt8(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`int8 value ${v} exceeds the safe integer range`);
  return n;
}

export async function openDatabase(opts: OpenOptions): Promise<DbHandle> {
  let handle: DbHandle;
  // Each engine's driver loads only when it is the one in use (#12 point 1, start-up).
  if (opts.databaseUrl) {
    const { default: pg } = await import('pg');
    const types = { getTypeParser: (oid: number, format?: any) => (oid === INT8 ? parseInt8 : pg.types.getTypeParser(oid, format)) };
    if (opts.schema) await createSchema(opts.databaseUrl, opts.schema);
    const pool = new pg.Pool({
      connectionString: opts.databaseUrl,
      types: types as any,
      max: 10,
      ...(opts.schema ? { options: `-c search_path=${opts.schema}` } : {}),
    });
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    handle = { db, engine: 'postgres', close: () => db.destroy() };
  } else {
    const [{ PGlite }, { btree_gist }] = await Promise.all([import('@electric-sql/pglite'), import('@electric-sql/pglite/contrib/btree_gist')]);
    if (opts.pgliteDir) mkdirSync(path.dirname(opts.pgliteDir), { recursive: true });
    // btree_gist: the live bookings' exclusion constraint (S3.5) needs it on both engines.
    const client = await PGlite.create({ dataDir: opts.pgliteDir, parsers: { [INT8]: parseInt8 }, extensions: { btree_gist }, loadDataDir: opts.pgliteTemplate });
    if (opts.schema) {
      await client.exec(`create schema if not exists ${quoteIdent(opts.schema)}; set search_path to ${quoteIdent(opts.schema)}`);
    }
    const db = new Kysely<Database>({ dialect: new PGliteDialect(client) });
    handle = { db, engine: 'pglite', close: () => db.destroy(), dumpDataDir: () => client.dumpDataDir('none') };
  }
  if (opts.migrate !== false) await migrateToLatest(handle.db);
  return handle;
}

function quoteIdent(name: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`unsafe schema name ${name}`);
  return `"${name}"`;
}

async function createSchema(url: string, schema: string) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`create schema if not exists ${quoteIdent(schema)}`);
  } finally {
    await client.end();
  }
}

export async function dropSchema(url: string, schema: string) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`drop schema if exists ${quoteIdent(schema)} cascade`);
  } finally {
    await client.end();
  }
}

export { sql };
