import type { InsertQueryBuilder, Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { WaitClock } from '../core/clock.ts';
import { decodeTimeCursor, encodeTimeCursor } from '../core/cursor.ts';
import { notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { sql, type Db } from '../db/connection.ts';
import type { Database } from '../db/schema.ts';
import { checkMail } from './check.ts';
import { describeSmtpError, smtpSender, type SmtpSender } from './smtp.ts';
import type { MailOutboxTable, MailStatus } from './tables.ts';
import type { MailAttachment, MailQueue, OutgoingMail } from './types.ts';

/*
 * # The outbox (S3.8, docs/mail.md)
 *
 * Other domains queue a message inside their own transaction (`enqueue(trx, mail)`): it
 * commits or rolls back with their change, and queuing never waits on a mail server. With
 * SMTP_URL set it is 'queued'; without, 'held' (kept for the operator, never sent).
 *
 * The sender claims due messages a batch at a time — one UPDATE that moves their
 * next_attempt_at a lease ahead, over rows locked with SKIP LOCKED — so that origin
 * processes sharing one PostgreSQL never take the same message at once; then it sends each
 * one and records the outcome. A failed attempt is tried again after a back-off (1 min,
 * doubling, at most 1 h); after MAIL_MAX_ATTEMPTS attempts the message is 'failed'. A process
 * that dies mid-batch leaves its messages claimed until the lease ends: they are sent then
 * (at least once — a message the server took just before the crash goes out again).
 *
 * The loop runs on the injected clock: it wakes when the next queued message is due, every
 * WAKE_MS at the latest, and at once on `wake()` (callers call it after their commit).
 */

/** Messages claimed per round. */
export const SEND_BATCH = 10;
/** A claimed message is another sender's again after this long (longer than a batch can take: 10 × the SMTP timeouts). */
export const CLAIM_LEASE_MS = 30 * 60_000;
/** The loop looks at the outbox at least this often (clock time). */
export const WAKE_MS = 30_000;
const BACKOFF_FIRST_MS = 60_000;
const BACKOFF_MAX_MS = 3_600_000;

/** How long to wait after the `attempts`-th failed attempt: 1 min × 2^(attempts−1), at most 1 h. */
export function backoffMs(attempts: number): number {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, attempts - 1));
}

/** A message as the operator's list shows it: no body, attachments by name, type and size. */
export interface OutboxItem {
  id: string;
  kind: string;
  ref: string | null;
  to: string[];
  subject: string;
  status: MailStatus;
  attempts: number;
  /** When a queued message is next tried (for the others, when it last was due). */
  nextAttemptAt: string;
  lastError: string | null;
  createdAt: string;
  sentAt: string | null;
  attachments: { filename: string; contentType: string; size: number }[];
}

/** One message whole. */
export interface OutboxMessage extends OutboxItem {
  from: string;
  text: string;
  attachments: (OutboxItem['attachments'][number] & { content: string })[];
}

export interface OutboxQuery {
  status?: MailStatus;
  kind?: string;
  ref?: string;
  limit?: number;
  /** nextCursor of the previous page. */
  after?: string;
}

export interface MailServiceDeps {
  db: Db;
  clock: WaitClock;
  logger: Logger;
  /** Unset: messages are held, nothing is sent. */
  smtpUrl?: string;
  from: string;
  maxAttempts: number;
  metrics?: Registry;
  /** Another sender (tests); default nodemailer over smtpUrl. */
  sender?: SmtpSender;
}

type Row = MailOutboxTable;

export class MailService implements MailQueue {
  private readonly sender: SmtpSender | null;
  private readonly sent?: Counter;
  private readonly failed?: Counter;
  private loop: Promise<void> | null = null;
  private stopped = false;
  /** Ends the loop's current sleep. */
  private sleeping: AbortController | null = null;
  /** A wake() came while a round was running: run another before sleeping. */
  private woken = false;

  constructor(private readonly deps: MailServiceDeps) {
    this.sender = deps.sender ?? (deps.smtpUrl ? smtpSender(deps.smtpUrl) : null);
    if (deps.metrics) {
      this.sent = new Counter({ name: 'cascade_mail_sent_total', help: 'Messages an SMTP server accepted (S3.8)', registers: [deps.metrics] });
      this.failed = new Counter({ name: 'cascade_mail_failed_total', help: 'Messages given up after MAIL_MAX_ATTEMPTS failed attempts (S3.8)', registers: [deps.metrics] });
    }
  }

  /** Whether messages are sent (SMTP_URL is set), or held. */
  get sending(): boolean {
    return this.sender !== null;
  }

  // ---- queuing (other domains) ----

  /**
   * S3.8: queues `mail` in `trx` — the caller's transaction, or the database. Refuses
   * `invalid_recipient`, `invalid_subject`, `invalid_attachment`, `mail_too_large`,
   * `invalid_mail`. Nothing is sent here: call `wake()` after the commit for a prompt send.
   */
  async enqueue(trx: Kysely<any>, mail: OutgoingMail): Promise<{ id: string }> {
    const { id, insert } = this.enqueueing(trx, mail);
    await insert.execute();
    return { id };
  }

  /**
   * `enqueue` as a statement not yet run, for a caller that runs it inside one of its own
   * statements (a data-modifying WITH): the message is queued exactly when that statement
   * commits. Same refusals as `enqueue`, thrown here.
   */
  enqueueing(db: Kysely<any>, mail: OutgoingMail): { id: string; insert: InsertQueryBuilder<any, any, any> } {
    const m = checkMail(mail);
    const now = new Date(this.deps.clock.now());
    const id = newId('mail');
    const insert = (db as Kysely<Database>).insertInto('mail_outbox').values({
      id,
      kind: m.kind,
      ref: m.ref ?? null,
      to: m.to,
      subject: m.subject,
      text: m.text,
      attachments: sql`${JSON.stringify(m.attachments)}::jsonb` as unknown as MailAttachment[],
      status: this.sender ? 'queued' : 'held',
      attempts: 0,
      next_attempt_at: now,
      last_error: null,
      created_at: now,
      sent_at: null,
    });
    return { id, insert };
  }

  /** Sends what is due soon instead of at the loop's next look; for callers, after their commit. */
  wake(): void {
    this.woken = true;
    this.sleeping?.abort();
  }

  // ---- the operator's views ----

  /** Messages newest first, without bodies; keyset paging on (created_at, id). */
  async list(q: OutboxQuery): Promise<{ items: OutboxItem[]; nextCursor: string | null }> {
    const limit = q.limit ?? 50;
    let query = this.deps.db.selectFrom('mail_outbox').select(summaryColumns);
    if (q.status) query = query.where('status', '=', q.status);
    if (q.kind) query = query.where('kind', '=', q.kind);
    if (q.ref) query = query.where('ref', '=', q.ref);
    if (q.after !== undefined) {
      const [at, id] = decodeTimeCursor(q.after);
      query = query.where((eb) => eb(eb.refTuple('created_at', 'id'), '<', eb.tuple(at, id)));
    }
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit + 1).execute();
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page.map(toItem),
      nextCursor: rows.length > limit && last ? encodeTimeCursor(last.created_at, last.id) : null,
    };
  }

  /** One message with its text and attachments. 404 `unknown_mail`. */
  async get(id: string): Promise<OutboxMessage> {
    const row = await this.deps.db.selectFrom('mail_outbox').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('unknown_mail', `No message ${id} in the outbox.`);
    return {
      ...toItem({ ...row, attachment_info: row.attachments.map(info) }),
      from: this.deps.from,
      text: row.text,
      attachments: row.attachments.map((a) => ({ ...info(a), content: a.content })),
    };
  }

  // ---- sending ----

  /** Sends every queued message that is due now, a batch at a time; the number the server accepted. */
  async sendDue(): Promise<number> {
    let sent = 0;
    for (;;) {
      const round = await this.sendBatch();
      sent += round.sent;
      if (round.claimed < SEND_BATCH || this.stopped) return sent;
    }
  }

  private async sendBatch(): Promise<{ claimed: number; sent: number }> {
    if (!this.sender) return { claimed: 0, sent: 0 };
    const now = this.deps.clock.now();
    const db = this.deps.db;
    // Claim: one statement, so two senders never hold the same message (SKIP LOCKED passes over the other's rows).
    const claimed = await db
      .updateTable('mail_outbox')
      .set({ next_attempt_at: new Date(now + CLAIM_LEASE_MS) })
      .where('id', 'in', (eb) =>
        eb
          .selectFrom('mail_outbox')
          .select('id')
          .where('status', '=', 'queued')
          .where('next_attempt_at', '<=', new Date(now))
          .orderBy('next_attempt_at')
          .orderBy('id')
          .limit(SEND_BATCH)
          .forUpdate()
          .skipLocked(),
      )
      // Checked again on the locked row: a message another sender claimed meanwhile is not due any more.
      .where('status', '=', 'queued')
      .where('next_attempt_at', '<=', new Date(now))
      .returningAll()
      .execute();
    let sent = 0;
    for (const row of claimed.sort((a, b) => a.next_attempt_at.getTime() - b.next_attempt_at.getTime() || a.id.localeCompare(b.id))) {
      if (await this.attempt(row)) sent++;
    }
    return { claimed: claimed.length, sent };
  }

  /** One attempt at `row` (claimed), and its outcome recorded; whether the server took it. */
  private async attempt(row: Row): Promise<boolean> {
    const attempts = row.attempts + 1;
    const db = this.deps.db;
    try {
      const { rejected } = await this.sender!.send({ from: this.deps.from, to: row.to, subject: row.subject, text: row.text, attachments: row.attachments });
      const note = rejected.length ? `accepted, but the server refused ${rejected.join(', ')}` : row.last_error;
      await db
        .updateTable('mail_outbox')
        .set({ status: 'sent', attempts, sent_at: new Date(this.deps.clock.now()), last_error: note })
        .where('id', '=', row.id)
        .where('status', '=', 'queued')
        .execute();
      this.sent?.inc();
      return true;
    } catch (err) {
      const lastError = describeSmtpError(err);
      const giveUp = attempts >= this.deps.maxAttempts;
      await db
        .updateTable('mail_outbox')
        .set({ attempts, last_error: lastError, ...(giveUp ? { status: 'failed' as const } : { next_attempt_at: new Date(this.deps.clock.now() + backoffMs(attempts)) }) })
        .where('id', '=', row.id)
        .where('status', '=', 'queued')
        .execute();
      if (giveUp) this.failed?.inc();
      this.deps.logger.warn({ mailId: row.id, kind: row.kind, attempts, giveUp, error: lastError }, giveUp ? 'mail failed for good' : 'mail attempt failed; trying again later');
      return false;
    }
  }

  /** When the next queued message is due (clock ms), or null with none. */
  private async nextDue(): Promise<number | null> {
    const row = await this.deps.db.selectFrom('mail_outbox').select((eb) => eb.fn.min('next_attempt_at').as('at')).where('status', '=', 'queued').executeTakeFirst();
    return row?.at ? new Date(row.at as Date).getTime() : null;
  }

  // ---- life ----

  /** Starts the sending loop (nothing to do without SMTP_URL). */
  start(): void {
    if (!this.sender || this.loop) return;
    this.stopped = false;
    this.loop = this.run();
  }

  /** Stops the loop, waiting for a running round: the database is never closed under it. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.sleeping?.abort();
    await this.loop;
    this.loop = null;
    this.sender?.close();
  }

  private async run(): Promise<void> {
    const { clock, logger } = this.deps;
    while (!this.stopped) {
      this.woken = false;
      let wakeAt = clock.now() + WAKE_MS;
      try {
        await this.sendDue();
        const due = await this.nextDue();
        if (due !== null) wakeAt = Math.min(wakeAt, due);
      } catch (err) {
        logger.error({ err }, 'mail sending round failed');
      }
      if (this.stopped) break;
      if (this.woken) continue;
      this.sleeping = new AbortController();
      await clock.sleepUntil(wakeAt, this.sleeping.signal);
      this.sleeping = null;
    }
  }
}

const summaryColumns = [
  'id',
  'kind',
  'ref',
  'to',
  'subject',
  'status',
  'attempts',
  'next_attempt_at',
  'last_error',
  'created_at',
  'sent_at',
  // The attachments' names, types and sizes, not their contents.
  sql<OutboxItem['attachments']>`(select coalesce(jsonb_agg(jsonb_build_object('filename', a->>'filename', 'contentType', a->>'contentType', 'size', octet_length(a->>'content')) order by n), '[]'::jsonb)
    from jsonb_array_elements(attachments) with ordinality as x(a, n))`.as('attachment_info'),
] as const;

function info(a: MailAttachment): OutboxItem['attachments'][number] {
  return { filename: a.filename, contentType: a.contentType, size: Buffer.byteLength(a.content, 'utf8') };
}

function toItem(r: Omit<Row, 'text' | 'attachments'> & { attachment_info: OutboxItem['attachments'] }): OutboxItem {
  return {
    id: r.id,
    kind: r.kind,
    ref: r.ref,
    to: r.to,
    subject: r.subject,
    status: r.status,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at.toISOString(),
    lastError: r.last_error,
    createdAt: r.created_at.toISOString(),
    sentAt: r.sent_at?.toISOString() ?? null,
    attachments: r.attachment_info,
  };
}
