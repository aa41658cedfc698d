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

/**
 * A receiver's purchase of one content (#10; src/ledger/purchase.ts): exact running
 * totals that every receipt of that user for that content is charged against, and the
 * reservation standing for what is still to pay. `round` starts at 1; a new round
 * begins only when REFETCH_POLICY=charge and the last one is fully paid.
 */
export interface LedgerPurchasesTable {
  user_id: string;
  content_id: string;
  round: number;
  /** The list price and size when the purchase began. */
  price: number;
  total_bytes: number;
  paid_bytes: number;
  /** Exact charge numerator (numeric, as text): see PurchaseTotals.chargeNum. */
  charge_num: string;
  charged: number;
  royalty_paid: number;
  fee_paid: number;
  /** The open reservation (a pending ledger transfer `hold:<user>:<content>:<round>:<seq>`), if any. */
  hold_id: string | null;
  hold_amount: number;
  /** Number of holds this purchase has had; the next one's ID ends in it. */
  hold_seq: number;
  created_at: Date;
  updated_at: Date;
  /** When the last byte was paid for. */
  completed_at: Date | null;
}

/** One uploader account's part of a purchase: the exact numerator of its bytes' charge, and what it was paid. */
export interface LedgerPurchaseSharesTable {
  user_id: string;
  content_id: string;
  round: number;
  account_id: string;
  num: string;
  paid: number;
}

export interface SettlementTables {
  ledger_settlements: LedgerSettlementsTable;
  ledger_purchases: LedgerPurchasesTable;
  ledger_purchase_shares: LedgerPurchaseSharesTable;
}

/**
 * #10: charges on totals per purchase replace per-receipt pricing, and the reservation
 * belongs to the purchase (one per user and content, however many transfers or reruns)
 * instead of to each transfer. Open per-transfer holds are left to expire by their timeout.
 */
export const purchasesMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('ledger_purchases')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('content_id', 'text', (c) => c.notNull())
      .addColumn('round', 'integer', (c) => c.notNull())
      .addColumn('price', 'bigint', (c) => c.notNull())
      .addColumn('total_bytes', 'bigint', (c) => c.notNull())
      .addColumn('paid_bytes', 'bigint', (c) => c.notNull())
      .addColumn('charge_num', 'numeric', (c) => c.notNull())
      .addColumn('charged', 'bigint', (c) => c.notNull())
      .addColumn('royalty_paid', 'bigint', (c) => c.notNull())
      .addColumn('fee_paid', 'bigint', (c) => c.notNull())
      .addColumn('hold_id', 'text')
      .addColumn('hold_amount', 'bigint', (c) => c.notNull())
      .addColumn('hold_seq', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addColumn('completed_at', 'timestamptz')
      .addPrimaryKeyConstraint('ledger_purchases_pk', ['user_id', 'content_id', 'round'])
      .addCheckConstraint('ledger_purchases_paid_bytes', sql`paid_bytes >= 0 and paid_bytes <= total_bytes`)
      .addCheckConstraint('ledger_purchases_paid_out', sql`royalty_paid >= 0 and fee_paid >= 0 and charged >= royalty_paid + fee_paid`)
      .execute();
    await db.schema
      .createTable('ledger_purchase_shares')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('content_id', 'text', (c) => c.notNull())
      .addColumn('round', 'integer', (c) => c.notNull())
      .addColumn('account_id', 'text', (c) => c.notNull())
      .addColumn('num', 'numeric', (c) => c.notNull())
      .addColumn('paid', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('ledger_purchase_shares_pk', ['user_id', 'content_id', 'round', 'account_id'])
      .execute();
    await db.schema.dropTable('ledger_holds').execute();
  },
};

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
