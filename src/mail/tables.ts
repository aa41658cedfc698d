import { sql, type Kysely, type Migration } from 'kysely';
import type { MailStatus } from './status.ts';
import type { MailAttachment } from './types.ts';

export { MAIL_STATUSES, type MailStatus } from './status.ts';

// Tables the mail domain owns (S3.8): other domains queue through MailService.enqueue
// (boundaries.test.ts), in their own transaction.
export const OWNED_TABLES = ['mail_outbox'] as const;

/** One message, from queuing to its last attempt. */
export interface MailOutboxTable {
  id: string;
  /** What it is about, e.g. `live.booked`. */
  kind: string;
  /** The record it is about (a booking ID), or null. */
  ref: string | null;
  to: string[];
  subject: string;
  text: string;
  attachments: MailAttachment[];
  status: MailStatus;
  /** Attempts made so far (the successful one included). */
  attempts: number;
  /** A queued message is due from then; a sender that claims it moves it a lease ahead. */
  next_attempt_at: Date;
  /** The last failure's SMTP answer or error, as the operator sees it. */
  last_error: string | null;
  created_at: Date;
  sent_at: Date | null;
}

export interface MailTables {
  mail_outbox: MailOutboxTable;
}

export const mailOutboxMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('mail_outbox')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('ref', 'text')
      .addColumn('to', sql`text[]`, (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('text', 'text', (c) => c.notNull())
      .addColumn('attachments', 'jsonb', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('queued', 'sent', 'failed', 'held')`))
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('next_attempt_at', 'timestamptz', (c) => c.notNull())
      .addColumn('last_error', 'text')
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('sent_at', 'timestamptz')
      .execute();
    // The sender's "due" query: queued messages by next_attempt_at.
    await db.schema.createIndex('mail_outbox_due').on('mail_outbox').columns(['next_attempt_at', 'id']).where(sql.ref('status'), '=', 'queued').execute();
    // The operator's view: newest first, optionally of one record.
    await db.schema.createIndex('mail_outbox_created').on('mail_outbox').columns(['created_at', 'id']).execute();
    await db.schema.createIndex('mail_outbox_ref').on('mail_outbox').columns(['ref', 'created_at']).execute();
  },
};
