import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { sql } from 'kysely';
import { openDatabase } from '../../src/db/connection.ts';

// #19 point 5: a new PGlite data directory is made (initdb, migrations) by a child process, so
// the origin does not keep initdb's memory; the directory it leaves is complete, and opening it
// again makes nothing anew. Settings: shared_buffers as configured.

const work = mkdtempSync(path.join(os.tmpdir(), 'cascade-pglite-dir-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('an empty data directory is prepared by a child process, migrated, and opened with the configured shared buffers', async () => {
  const dir = path.join(work, 'db');
  const first = await openDatabase({ pgliteDir: dir, pgliteSharedBuffersMb: 16 });
  try {
    assert.ok(existsSync(path.join(dir, 'PG_VERSION')));
    const migrations = await sql<{ n: number }>`select count(*)::int as n from kysely_migration`.execute(first.db);
    assert.ok(migrations.rows[0].n > 20, `${migrations.rows[0].n} migrations applied`);
    assert.equal((await sql<{ shared_buffers: string }>`show shared_buffers`.execute(first.db)).rows[0].shared_buffers, '16MB');
    await sql`insert into users (id, username, password_hash, roles, created_at) values ('u_kept', 'kept', 'x', '{member}', now())`.execute(first.db);
  } finally {
    await first.close();
  }
  const again = await openDatabase({ pgliteDir: dir, pgliteSharedBuffersMb: 24 });
  try {
    assert.equal((await sql<{ n: number }>`select count(*)::int as n from users where id = 'u_kept'`.execute(again.db)).rows[0].n, 1, 'the same database, not a new one');
    assert.equal((await sql<{ shared_buffers: string }>`show shared_buffers`.execute(again.db)).rows[0].shared_buffers, '24MB');
  } finally {
    await again.close();
  }
});

test('when the data directory cannot be made, the error says where and why', async () => {
  const dir = path.join(work, 'a-file');
  writeFileSync(dir, 'not a directory');
  await assert.rejects(openDatabase({ pgliteDir: dir }), /preparing the database in .*a-file failed \(exit code 1\): .+/s);
});
