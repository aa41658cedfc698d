import type { InsertQueryBuilder, Kysely } from 'kysely';

// What other domains hand the mail domain (S3.8): a message to queue. Queuing happens inside
// the caller's transaction, so a refused or rolled-back change leaves no message behind, and a
// committed one is never lost; sending happens later, retried with back-off (docs/mail.md).

export interface MailAttachment {
  filename: string;
  contentType: string;
  /** UTF-8 text (an iCalendar file, a JSON document). */
  content: string;
}

export interface OutgoingMail {
  /** What the message is about, for the operator's outbox view: e.g. `live.booked`, `live.friends.confirmed`. */
  kind: string;
  to: string[];
  subject: string;
  text: string;
  attachments?: MailAttachment[];
  /** The record it is about (a booking ID), for finding its messages. */
  ref?: string;
}

export interface MailQueue {
  /** Queues `mail` in the transaction `trx` (or the database); returns the outbox ID. */
  enqueue(trx: Kysely<any>, mail: OutgoingMail): Promise<{ id: string }>;
  /** The same, as a statement to run inside one of the caller's own (a data-modifying WITH). */
  enqueueing(db: Kysely<any>, mail: OutgoingMail): { id: string; insert: InsertQueryBuilder<any, any, any> };
}
