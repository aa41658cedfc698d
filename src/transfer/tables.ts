import type { Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';

/** Every grant the origin issued: who may fetch which pieces of what from whom, until when. */
export interface GrantsTable {
  id: string;
  content_id: string;
  receiver_id: string;
  source_id: string;
  /** Piece indices as compact ranges, e.g. "0-9,12". */
  pieces: string;
  expires_at: Date;
  created_at: Date;
}

/** A receiver's signed acknowledgement of verified pieces from one source (settled by the ledger, #4). */
export interface ReceiptsTable {
  id: string;
  grant_id: string;
  content_id: string;
  source_id: string;
  receiver_id: string;
  pieces: string;
  bytes: number;
  signature: string;
  /** The exact signed text, kept so anyone can re-verify it later. */
  body: string;
  received_at: Date;
}

export interface TransferTables {
  grants: GrantsTable;
  receipts: ReceiptsTable;
}

export const transferMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('grants')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('content_id', 'text', (c) => c.notNull().references('contents.id'))
      .addColumn('receiver_id', 'text', (c) => c.notNull().references('terminals.id'))
      .addColumn('source_id', 'text', (c) => c.notNull())
      .addColumn('pieces', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('receipts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('grant_id', 'text', (c) => c.notNull().references('grants.id'))
      .addColumn('content_id', 'text', (c) => c.notNull())
      .addColumn('source_id', 'text', (c) => c.notNull())
      .addColumn('receiver_id', 'text', (c) => c.notNull())
      .addColumn('pieces', 'text', (c) => c.notNull())
      .addColumn('bytes', 'bigint', (c) => c.notNull())
      .addColumn('signature', 'text', (c) => c.notNull())
      .addColumn('body', 'text', (c) => c.notNull())
      .addColumn('received_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('receipts_grant').on('receipts').column('grant_id').execute();
  },
};
