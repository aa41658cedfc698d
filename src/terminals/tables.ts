import type { Generated, Kysely, Migration } from 'kysely';

// Tables the terminals domain owns: other domains ask TerminalService or its query functions (boundaries.test.ts).
export const OWNED_TABLES = ['terminals', 'holdings', 'terminal_challenges'] as const;

/** What a terminal last said about itself in a heartbeat (S1.2). */
export interface TerminalState {
  uptimeRatio: number;
  upBps: number;
  downBps: number;
  sendLoadBps: number;
  recvLoadBps: number;
  cpu: number;
  /** Upload slots (pieces served at once) and how many were in use on average since the previous beat (S1.5 "not overloaded"); absent from terminals that do not say. */
  slots?: number;
  slotsBusy?: number;
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

/**
 * Issue 10 #9: single-use nonces a device signs, in the database so that every origin
 * process sharing it accepts them (challenge at one, log in at another).
 */
export interface TerminalChallengesTable {
  nonce: string;
  /** Issue order across processes: the bound on live challenges evicts by it. */
  seq: Generated<number>;
  /** `login`: `subject` is the terminal; `register`: the account registering a device. */
  purpose: ChallengePurpose;
  subject: string;
  created_at: Date;
  expires_at: Date;
}

export type ChallengePurpose = 'login' | 'register';

export interface TerminalTables {
  terminals: TerminalsTable;
  holdings: HoldingsTable;
  terminal_challenges: TerminalChallengesTable;
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

/** Issue 10 #9: login and registration challenges shared by every origin process. */
export const terminalChallengesMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('terminal_challenges')
      .addColumn('nonce', 'text', (c) => c.primaryKey())
      .addColumn('seq', 'bigserial', (c) => c.notNull().unique())
      .addColumn('purpose', 'text', (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('terminal_challenges_expiry').on('terminal_challenges').column('expires_at').execute();
  },
};
