import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { randomBytes } from 'node:crypto';
import { dropSchema, openDatabase } from '../../src/db/connection.ts';
import { migrateToLatest } from '../../src/db/migrations.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';

// One schema, two engines: the same migrations run unchanged on PGlite and PostgreSQL.
for (const engine of testEngines()) {
  test(`migrations build the whole schema on ${engine.name}, and re-running them is a no-op`, async () => {
    // From an empty database: other PGlite tests open copies of an already migrated one.
    const handle = engine.name === 'pglite' ? await openDatabase({}) : await engine.open();
    try {
      assert.equal(handle.engine, engine.name);
      const tables = await sql<{ table_name: string }>`select table_name from information_schema.tables where table_schema = current_schema() order by 1`.execute(handle.db);
      const names = tables.rows.map((r) => r.table_name);
      for (const t of ['users', 'api_tokens', 'contents', 'terminals', 'holdings', 'grants', 'receipts', 'peer_reputation', 'peer_reports', 'transfers', 'kysely_migration']) assert.ok(names.includes(t), `${t} in ${names}`);
      const before = await sql<{ n: number }>`select count(*)::int as n from kysely_migration`.execute(handle.db);
      // #12 point 1: a restart with every migration applied costs two queries, not the migrator's catalog checks.
      let queries = 0;
      await migrateToLatest(handle.db.withPlugin({ transformQuery: (a) => (queries++, a.node), transformResult: async (a) => a.result }));
      assert.equal(queries, 2);
      const after = await sql<{ n: number }>`select count(*)::int as n from kysely_migration`.execute(handle.db);
      assert.equal(after.rows[0].n, before.rows[0].n);
      // int8 comes back as a JS number on both engines (sizes, prices).
      const big = await sql<{ v: number }>`select 9007199254740991::int8 as v`.execute(handle.db);
      assert.equal(big.rows[0].v, Number.MAX_SAFE_INTEGER);
      await assert.rejects(sql`select 9007199254740993::int8 as v`.execute(handle.db), /safe integer/);
    } finally {
      await handle.close();
    }
  });
  test(`on ${engine.name}, a migration recorded that this code does not know is refused, not skipped`, async () => {
    const handle = await engine.open();
    try {
      await sql`insert into kysely_migration (name, timestamp) values ('9999_from_newer_code', '2026-01-01T00:00:00Z')`.execute(handle.db);
      const before = await snapshotTables(handle.db);
      await assert.rejects(migrateToLatest(handle.db), /9999_from_newer_code/);
      assert.deepEqual(await snapshotTables(handle.db), before);
    } finally {
      await handle.close();
    }
  });
}

test('concurrent transactions on one PGlite do not interleave', async () => {
  const handle = await testEngines()[0].open();
  try {
    await sql`create table t (n int)`.execute(handle.db);
    // Without the serialising driver the second transaction's statements would run
    // inside the first one's BEGIN and be rolled back with it.
    const failing = handle.db.transaction().execute(async (trx) => {
      await sql`insert into t values (1)`.execute(trx);
      await new Promise((r) => setTimeout(r, 20));
      throw new Error('roll back');
    });
    const other = handle.db.insertInto('t' as any).values({ n: 2 }).execute();
    await assert.rejects(failing, /roll back/);
    await other;
    const rows = await sql<{ n: number }>`select n from t order by n`.execute(handle.db);
    assert.deepEqual(rows.rows.map((r) => r.n), [2]);
  } finally {
    await handle.close();
  }
});

test('migrating a new schema on PostgreSQL is not upset by other schemas being dropped meanwhile (parallel test files)', { skip: !process.env.DATABASE_URL && 'no DATABASE_URL' }, async () => {
  const url = process.env.DATABASE_URL!;
  const { default: pg } = await import('pg');
  const other = new pg.Client({ connectionString: url });
  await other.connect();
  let stop = false;
  // Kysely's own check for its bookkeeping tables listed every schema's tables and asked about each schema by
  // name: one dropped in between failed the migration with `schema "…" does not exist` (about one in three here).
  const churn = (async () => {
    for (let i = 0; !stop; i++) {
      const name = `t_${process.pid}_churn_${i}`;
      await other.query(`create schema ${name}; create table ${name}.a (x int); create table ${name}.b (y int)`);
      await other.query(`drop schema ${name} cascade`);
    }
  })();
  try {
    for (let i = 0; i < 6; i++) {
      const schema = `t_${process.pid}_${randomBytes(4).toString('hex')}`;
      try {
        await (await openDatabase({ databaseUrl: url, schema })).close();
      } finally {
        await dropSchema(url, schema);
      }
    }
  } finally {
    stop = true;
    await churn;
    await other.end();
  }
});
