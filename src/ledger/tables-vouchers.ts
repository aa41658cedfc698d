import { sql, type Kysely, type Migration } from 'kysely';

// Prepaid vouchers sold by stores (S1.11, docs/ledger.md "Vouchers"). The code itself
// is never stored: only its SHA-256, so a copy of the database redeems nothing.

export interface VouchersTable {
  /** A prefix of code_hash: names the voucher in ledger transfer IDs and refs. */
  id: string;
  /** Hex SHA-256 of the normalised code. */
  code_hash: string;
  /** The store user that issued (and sold) it. */
  store_id: string;
  /** Face value in minor units. */
  amount: number;
  issued_at: Date;
  expires_at: Date | null;
  /** Set once, by the redemption that credited a wallet. */
  redeemed_by: string | null;
  redeemed_at: Date | null;
}

export interface VoucherTables {
  vouchers: VouchersTable;
}

export const vouchersMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('vouchers')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('code_hash', 'text', (c) => c.notNull().unique())
      .addColumn('store_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('amount', 'bigint', (c) => c.notNull())
      .addColumn('issued_at', 'timestamptz', (c) => c.notNull())
      .addColumn('expires_at', 'timestamptz')
      .addColumn('redeemed_by', 'text', (c) => c.references('users.id'))
      .addColumn('redeemed_at', 'timestamptz')
      .addCheckConstraint('vouchers_amount_positive', sql`amount > 0`)
      // Redeemed means both who and when; never one without the other.
      .addCheckConstraint('vouchers_redeemed_pair', sql`(redeemed_by is null) = (redeemed_at is null)`)
      .execute();
    // A store's vouchers, newest first (reconciling what it sold).
    await db.schema.createIndex('vouchers_store').on('vouchers').columns(['store_id', 'issued_at']).execute();
  },
};
