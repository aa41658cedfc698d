import type { Kysely, Migration } from 'kysely';

// Tables the transfer domain owns: other domains ask its services or query functions (boundaries.test.ts).
export const OWNED_TABLES = ['grants', 'receipts', 'peer_reputation', 'peer_reports', 'transfers', 'grant_served'] as const;

/** Every grant the origin issued: who may fetch which pieces of what from whom, until when. */
export interface GrantsTable {
  id: string;
  /** The monitored transfer this grant belongs to (#3), if any. */
  transfer_id: string | null;
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

/** What receivers have reported about a source (S1.5 reliability, bad peers). */
export interface PeerReputationTable {
  terminal_id: string;
  completed_uploads: number;
  bytes_uploaded: number;
  bad_pieces: number;
  stalls: number;
  updated_at: Date;
}

/** One report by a receiver about a source: the evidence behind reputation and bans. */
export interface PeerReportsTable {
  id: string;
  reporter_id: string;
  source_id: string;
  content_id: string;
  transfer_id: string | null;
  kind: 'bad_piece' | 'stalled' | 'refused' | 'completed';
  pieces: string | null;
  bytes: number;
  created_at: Date;
}

/** A receiver's fetch of one content, monitored by the origin (S1.7). */
export interface TransfersTable {
  id: string;
  receiver_id: string;
  content_id: string;
  state: 'active' | 'stalled' | 'done' | 'abandoned';
  pieces_done: number;
  pieces_total: number;
  created_at: Date;
  last_report_at: Date;
  /** Set when the origin reassigned the transfer on its own (no reports for too long). */
  reassigned_at: Date | null;
}

/** #10 point 6: the pieces a source reported sending in full under a grant (their union, as ranges). */
export interface GrantServedTable {
  grant_id: string;
  pieces: string;
  updated_at: Date;
}

export interface TransferTables {
  grants: GrantsTable;
  grant_served: GrantServedTable;
  receipts: ReceiptsTable;
  peer_reputation: PeerReputationTable;
  peer_reports: PeerReportsTable;
  transfers: TransfersTable;
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

/** #3: peer transfers — reputation, reports, monitored transfers. */
export const peersMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('peer_reputation')
      .addColumn('terminal_id', 'text', (c) => c.primaryKey().references('terminals.id').onDelete('cascade'))
      .addColumn('completed_uploads', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('bytes_uploaded', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('bad_pieces', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('stalls', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('peer_reports')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('reporter_id', 'text', (c) => c.notNull().references('terminals.id').onDelete('cascade'))
      .addColumn('source_id', 'text', (c) => c.notNull())
      .addColumn('content_id', 'text', (c) => c.notNull().references('contents.id'))
      .addColumn('transfer_id', 'text')
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('pieces', 'text')
      .addColumn('bytes', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('peer_reports_content_source').on('peer_reports').columns(['content_id', 'source_id']).execute();
    await db.schema
      .createTable('transfers')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('receiver_id', 'text', (c) => c.notNull().references('terminals.id').onDelete('cascade'))
      .addColumn('content_id', 'text', (c) => c.notNull().references('contents.id'))
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('pieces_done', 'integer', (c) => c.notNull())
      .addColumn('pieces_total', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('last_report_at', 'timestamptz', (c) => c.notNull())
      .addColumn('reassigned_at', 'timestamptz')
      .execute();
    await db.schema.createIndex('transfers_state').on('transfers').columns(['state', 'last_report_at']).execute();
    await db.schema.alterTable('grants').addColumn('transfer_id', 'text').execute();
  },
};

/** #10 point 6: what each source reported serving, per grant (src/transfer/served-log.ts). */
export const grantServedMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('grant_served')
      .addColumn('grant_id', 'text', (c) => c.primaryKey().references('grants.id').onDelete('cascade'))
      .addColumn('pieces', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .execute();
  },
};

/** The dashboard's origin egress per minute (#13) reads receipts by source and time. */
export const receiptsBySourceTimeMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.createIndex('receipts_source_received').on('receipts').columns(['source_id', 'received_at']).execute();
  },
};
