import { sql, type Kysely, type Migration } from 'kysely';

// Settlement of receipts (#4.3) and reservations before downloads (#4.1 holds).

/** One row per stored receipt: settled, or unpaid (retried) with the reason. */
export interface LedgerSettlementsTable {
  receipt_id: string;
  status: 'settled' | 'unpaid';
  /** Why it is unpaid (a ledger code such as insufficient_balance). */
  code: string | null;
  /** What the receiver was charged (0 while unpaid). */
  charge: number;
  /** The pricing rules that applied, in words (S1.9), for the records. */
  why: string;
  attempts: number;
  updated_at: Date;
}

/** The reservation (a pending ledger transfer) standing for one monitored transfer. */
export interface LedgerHoldsTable {
  transfer_id: string;
  user_id: string;
  /** The current pending transfer; null once nothing is reserved any more. */
  hold_id: string | null;
  amount: number;
  /** How many holds this transfer has had: the next one's ID is `hold:<transfer>:<seq>`. */
  seq: number;
  updated_at: Date;
}

export interface SettlementTables {
  ledger_settlements: LedgerSettlementsTable;
  ledger_holds: LedgerHoldsTable;
}

export const settlementMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('ledger_settlements')
      .addColumn('receipt_id', 'text', (c) => c.primaryKey())
      .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('settled', 'unpaid')`))
      .addColumn('code', 'text')
      .addColumn('charge', 'bigint', (c) => c.notNull())
      .addColumn('why', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('ledger_settlements_unpaid').on('ledger_settlements').column('updated_at').where(sql.ref('status'), '=', 'unpaid').execute();
    await db.schema
      .createTable('ledger_holds')
      .addColumn('transfer_id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('hold_id', 'text')
      .addColumn('amount', 'bigint', (c) => c.notNull())
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .execute();
    // Pricing sums a user's traffic of the last 30 days (S1.9) from the receipts; carrying
    // `bytes` in the index lets PostgreSQL answer from the index alone (index-only scan).
    await sql`create index receipts_receiver_time on receipts (receiver_id, received_at) include (bytes)`.execute(db);
    await sql`create index receipts_source_time on receipts (source_id, received_at) include (bytes)`.execute(db);
  },
};
