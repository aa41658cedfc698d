import type { Kysely } from 'kysely';
import { Migrator, type Migration } from 'kysely/migration';
import { accountsMigration } from '../accounts/tables.ts';
import { contentMigration } from '../content/tables.ts';
import { terminalsMigration } from '../terminals/tables.ts';
import { transferMigration } from '../transfer/tables.ts';

// One ordered list of migrations; the same SQL runs on PGlite and on PostgreSQL.
// Names sort in the order they must run. Never edit a landed migration: add one.
const migrations: Record<string, Migration> = {
  '0001_accounts': accountsMigration,
  '0002_content': contentMigration,
  '0003_terminals': terminalsMigration,
  '0004_transfer': transferMigration,
};

export async function migrateToLatest(db: Kysely<any>): Promise<void> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    throw new Error(`migration ${failed?.migrationName ?? ''} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}
