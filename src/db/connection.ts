import { Kysely, PostgresDialect, sql } from 'kysely';
import path from 'node:path';
import { existsSync, mkdirSync } from 'node:fs';
import { spawn } from 'node:child_process';
import v8 from 'node:v8';
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
  /** PGlite only: PostgreSQL's shared_buffers, in MB (PostgreSQL's own default is 128). */
  pgliteSharedBuffersMb?: number;
  /**
   * PGlite only: `baseline` compiles its WebAssembly with V8's baseline compiler alone (Liftoff):
   * V8 otherwise compiles it a second time, optimized, in the background, and holds both.
   * A process-wide V8 setting, taken before the first PGlite of the process is compiled.
   */
  pgliteWasm?: 'baseline' | 'optimized';
  /** Set in the child process that makes a new PGlite data directory (see prepareInChild). */
  preparing?: boolean;
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
    if (opts.pgliteWasm === 'baseline') v8.setFlagsFromString('--liftoff-only');
    // wal_init_zero=off (#19): a new 16 MB WAL segment is created at its size (last byte written)
    // instead of written full of zeros, which PGlite does through 1 MB buffers that the allocator
    // keeps resident: an 11–16 MB jump each time. Records are found by their CRCs either way; the
    // cost is that a full disk shows when WAL is written rather than when the segment is made.
    const startParams = [
      ...PGlite.defaultStartParams,
      '-c', 'wal_init_zero=off',
      ...(opts.pgliteSharedBuffersMb ? ['-c', `shared_buffers=${opts.pgliteSharedBuffersMb}MB`] : []),
    ];
    if (opts.pgliteDir && !opts.pgliteTemplate && !opts.preparing && !existsSync(path.join(opts.pgliteDir, 'PG_VERSION'))) await prepareInChild(opts);
    const client = await PGlite.create({ dataDir: opts.pgliteDir, parsers: { [INT8]: parseInt8 }, extensions: { btree_gist }, loadDataDir: opts.pgliteTemplate, startParams });
    if (opts.schema) {
      await client.exec(`create schema if not exists ${quoteIdent(opts.schema)}; set search_path to ${quoteIdent(opts.schema)}`);
    }
    const db = new Kysely<Database>({ dialect: new PGliteDialect(client) });
    handle = { db, engine: 'pglite', close: () => db.destroy(), dumpDataDir: () => client.dumpDataDir('none') };
  }
  if (opts.migrate !== false) await migrateToLatest(handle.db);
  return handle;
}

/**
 * Makes a new PGlite data directory (initdb, then the migrations) in a child process. Creating
 * one takes a few hundred MB that a process keeps long after (#19: an idle origin on an empty
 * data directory held 866 MB; a worker thread still left 190 MB behind in the allocator's
 * arenas); a process's memory goes back to the system when it ends.
 */
async function prepareInChild(opts: OpenOptions) {
  const child = { pgliteDir: opts.pgliteDir, pgliteSharedBuffersMb: opts.pgliteSharedBuffersMb, pgliteWasm: opts.pgliteWasm, migrate: opts.migrate, preparing: true } satisfies OpenOptions;
  const code = `const { openDatabase } = await import(${JSON.stringify(import.meta.url)}); await (await openDatabase(${JSON.stringify(child)})).close();`;
  // Run from the TypeScript source (tests, development), the child needs tsx to load this module.
  // The parent's Node options, but not a debugger or profiler (`--inspect-brk` would stop the child).
  const nodeArgs = process.execArgv.filter((a) => !/^--(inspect|cpu-prof|heap-prof|prof)/.test(a));
  const loader = import.meta.url.endsWith('.ts') && !nodeArgs.some((a) => a.includes('tsx')) ? ['--import', import.meta.resolve('tsx')] : [];
  const proc = spawn(process.execPath, [...nodeArgs, ...loader, '--input-type=module', '-e', code], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
  const exitCode = await new Promise<number | null>((resolve, reject) => proc.once('error', reject).once('exit', resolve));
  if (exitCode !== 0) throw new Error(`preparing the database in ${opts.pgliteDir} failed (exit code ${exitCode}): ${stderr.trim()}`);
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
