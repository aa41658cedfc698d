import type { Kysely, Migration } from 'kysely';

/** What a terminal last said about itself in a heartbeat (S1.2). */
export interface TerminalState {
  uptimeRatio: number;
  upBps: number;
  downBps: number;
  sendLoadBps: number;
  recvLoadBps: number;
  cpu: number;
  at: number;
}

export interface TerminalsTable {
  id: string;
  user_id: string;
  name: string;
  /** base64url raw Ed25519 public key; the terminal's own keypair. */
  public_key: string;
  region: string;
  network: string;
  /** Where the terminal serves pieces to others (peer serving, #3); null if it does not. */
  serve_url: string | null;
  created_at: Date;
  last_seen_at: Date | null;
  last_state: TerminalState | null;
}

export interface HoldingsTable {
  terminal_id: string;
  content_id: string;
  reported_at: Date;
  /** Piece ranges held, e.g. "0-9,12"; null means the whole content. */
  pieces: string | null;
}

export interface TerminalTables {
  terminals: TerminalsTable;
  holdings: HoldingsTable;
}

export const terminalsMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('terminals')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('public_key', 'text', (c) => c.notNull().unique())
      .addColumn('region', 'text', (c) => c.notNull())
      .addColumn('network', 'text', (c) => c.notNull())
      .addColumn('serve_url', 'text')
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('last_seen_at', 'timestamptz')
      .addColumn('last_state', 'jsonb')
      .execute();
    await db.schema
      .createTable('holdings')
      .addColumn('terminal_id', 'text', (c) => c.notNull().references('terminals.id').onDelete('cascade'))
      .addColumn('content_id', 'text', (c) => c.notNull().references('contents.id'))
      .addColumn('reported_at', 'timestamptz', (c) => c.notNull())
      .addPrimaryKeyConstraint('holdings_pk', ['terminal_id', 'content_id'])
      .execute();
    await db.schema.createIndex('holdings_content').on('holdings').column('content_id').execute();
  },
};

/** #3: partial holdings. A terminal fetching a content serves the pieces it already verified. */
export const holdingPiecesMigration: Migration = {
  async up(db: Kysely<any>) {
    // Piece ranges held ("0-9,12"); null means the whole content.
    await db.schema.alterTable('holdings').addColumn('pieces', 'text').execute();
  },
};
