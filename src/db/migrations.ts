import { Migrator, sql, type DatabaseIntrospector, type Kysely, type Migration } from 'kysely';
import { accountContactMigration, accountsMigration } from '../accounts/tables.ts';
import { contentMigration, thumbnailsMigration } from '../content/tables.ts';
import { discoveryMigration } from '../discovery/tables.ts';
import { edgesMigration } from '../edge/tables.ts';
import { liveBookFunctionMigration, liveFillersMigration, liveMigration, liveRecordingsMigration, liveStreamingMigration } from '../live/tables.ts';
import { ledgerMigration, ledgerRecordsMigration } from '../ledger/tables.ts';
import { vouchersMigration } from '../ledger/tables-vouchers.ts';
import { holdingPiecesMigration, terminalChallengesMigration, terminalsMigration } from '../terminals/tables.ts';
import { grantServedMigration, peersMigration, receiptsBySourceTimeMigration, transferMigration } from '../transfer/tables.ts';
import { purchasesMigration, settlementMigration } from '../ledger/tables-settlement.ts';
import { schedulePushMigration, schedulesMigration } from '../schedule/tables.ts';
import { mailOutboxMigration } from '../mail/tables.ts';
import { edgeDeliveriesMigration } from '../edge/tables-deliveries.ts';
import { edgeRentalsMigration } from '../edge/tables-rentals.ts';
import { edgeOrdersMigration } from '../edge/tables-orders.ts';

// One ordered list of migrations; the same SQL runs on PGlite and on PostgreSQL.
// Names sort in the order they must run. Never edit a landed migration: add one.
const migrations: Record<string, Migration> = {
  '0001_accounts': accountsMigration,
  '0002_content': contentMigration,
  '0003_terminals': terminalsMigration,
  '0004_transfer': transferMigration,
  '0005_holding_pieces': holdingPiecesMigration,
  '0006_peers': peersMigration,
  '0007_ledger': ledgerMigration,
  '0008_vouchers': vouchersMigration,
  '0009_settlement': settlementMigration,
  '0010_schedules': schedulesMigration,
  '0011_schedule_push': schedulePushMigration,
  '0012_purchases': purchasesMigration,
  '0013_grant_served': grantServedMigration,
  '0014_trust_terminal_challenges': terminalChallengesMigration,
  '0015_ledger_records': ledgerRecordsMigration,
  '0016_discovery': discoveryMigration,
  '0017_content_thumbnails': thumbnailsMigration,
  '0018_receipts_by_source_time': receiptsBySourceTimeMigration,
  '0019_account_contact': accountContactMigration,
  '0020_mail_outbox': mailOutboxMigration,
  '0021_live': liveMigration,
  '0022_live_book_function': liveBookFunctionMigration,
  '0023_live_streaming': liveStreamingMigration,
  '0024_live_fillers': liveFillersMigration,
  '0025_live_recordings': liveRecordingsMigration,
  '0026_edges': edgesMigration,
  '0027_edge_deliveries': edgeDeliveriesMigration,
  '0028_edge_rentals': edgeRentalsMigration,
  '0029_edge_orders': edgeOrdersMigration,
};

export async function migrateToLatest(db: Kysely<any>): Promise<void> {
  // Pin Kysely's bookkeeping tables to our own schema: without this its "does the lock
  // table exist?" check matches one in any schema (e.g. a parallel test run's) and skips
  // creating ours, so migrating fails with `relation "kysely_migration_lock" does not exist`.
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  if (await upToDate(db, rows[0].schema)) return;
  const migrator = new Migrator({ db: inSchemaOnly(db, rows[0].schema), provider: { getMigrations: async () => migrations }, migrationTableSchema: rows[0].schema });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    throw new Error(`migration ${failed?.migrationName ?? ''} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * True when exactly the migrations above are recorded: a restart then costs one query instead
 * of the migrator's catalog checks and lock, a good part of the origin's start-up on PGlite
 * (#12 point 1). Anything else (none yet, one missing, one this code does not know) goes
 * through the migrator, which applies or refuses as before.
 */
async function upToDate(db: Kysely<any>, schema: string): Promise<boolean> {
  const applied = await sql<{ name: string }>`select name from ${sql.id(schema, 'kysely_migration')}`.execute(db).then(
    (r) => r.rows.map((row) => row.name),
    () => null, // no bookkeeping table yet: a new database
  );
  const names = Object.keys(migrations);
  return applied !== null && applied.length === names.length && names.every((n) => applied.includes(n));
}

/**
 * `db` for the migrator, whose "does the bookkeeping table exist?" check then looks at our schema
 * only. Kysely's own check lists the tables of every schema and asks `has_schema_privilege` of
 * each by name: a schema another connection drops meanwhile (a parallel test file's) makes
 * that fail with `schema "…" does not exist`, and the migration with it.
 */
function inSchemaOnly(db: Kysely<any>, schema: string): Kysely<any> {
  const introspection: DatabaseIntrospector = {
    getSchemas: () => db.introspection.getSchemas(),
    async getTables() {
      const { rows } = await sql<{ name: string; kind: string }>`
        select c.relname as name, c.relkind as kind from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where n.nspname = ${schema} and c.relkind in ('r', 'v', 'p')`.execute(db);
      return rows.map((r) => ({ name: r.name, schema, isView: r.kind === 'v', columns: [] }));
    },
    async getMetadata() {
      return { tables: await this.getTables() };
    },
  };
  return new Proxy(db, {
    get(target, prop) {
      if (prop === 'introspection') return introspection;
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
