import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { migrateToLatest } from '../../src/db/migrations.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';

// One schema, two engines: the same migrations run unchanged on PGlite and PostgreSQL.
for (const engine of testEngines()) {
  test(`migrations build the whole schema on ${engine.name}, and re-running them is a no-op`, async () => {
    const handle = await engine.open();
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
