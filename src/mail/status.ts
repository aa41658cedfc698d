// The states of an outbox message (S3.8), apart from the table so the CLI can name them
// without loading the database layer.
/**
 * - queued: to be sent (again) from next_attempt_at;
 * - sent: accepted by the SMTP server;
 * - failed: MAIL_MAX_ATTEMPTS attempts failed; kept for the operator, never tried again;
 * - held: queued while no SMTP_URL was set; kept, never sent.
 */
export const MAIL_STATUSES = ['queued', 'sent', 'failed', 'held'] as const;
export type MailStatus = (typeof MAIL_STATUSES)[number];
