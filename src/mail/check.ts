import { badRequest } from '../core/errors.ts';
import { normalizeEmail } from '../core/email-address.ts';
// No control characters in what goes into a header (nothing may break its line); text may hold tab and line breaks.
import { CONTROL_CHARACTERS as CONTROL, CONTROL_CHARACTERS_BUT_LINE_BREAKS as CONTROL_BUT_LINE_BREAKS } from '../core/validation.ts';
import type { MailAttachment, OutgoingMail } from './types.ts';

// What a queued message may be (S3.8): checked when it is queued, so that a message in the
// outbox is one an SMTP server can take. A refusal is an AppError the caller's transaction
// carries back (and rolls back with).

export const MAX_RECIPIENTS = 100;
export const MAX_SUBJECT_LENGTH = 200;
export const MAX_ATTACHMENTS = 10;
/** Subject, text and attachments' contents together, UTF-8 bytes. */
export const MAX_MAIL_BYTES = 256 * 1024;

const KIND = /^[a-z][a-z0-9._-]{0,79}$/;
/** A MIME type with optional parameters: `text/calendar; method=REQUEST; charset=utf-8`. */
const CONTENT_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*(\s*;\s*[a-z0-9_-]+=("[^"]*"|[A-Za-z0-9!#$&^_.+-]+))*$/i;

/** `mail` checked, its recipients normalised (domain lower-cased, duplicates dropped). */
export function checkMail(mail: OutgoingMail): OutgoingMail & { attachments: MailAttachment[] } {
  if (typeof mail.kind !== 'string' || !KIND.test(mail.kind)) {
    throw badRequest('invalid_mail', 'A mail’s kind is 1–80 lower-case letters, digits, ".", "_" or "-", starting with a letter (e.g. live.booked).');
  }
  if (mail.ref !== undefined && (typeof mail.ref !== 'string' || mail.ref.length < 1 || mail.ref.length > 200 || CONTROL.test(mail.ref))) {
    throw badRequest('invalid_mail', 'A mail’s ref is 1–200 characters without control characters.');
  }
  if (!Array.isArray(mail.to) || mail.to.length < 1 || mail.to.length > MAX_RECIPIENTS) {
    throw badRequest('invalid_recipient', `A mail goes to 1–${MAX_RECIPIENTS} recipients.`);
  }
  const to: string[] = [];
  for (const address of mail.to) {
    const normal = typeof address === 'string' ? normalizeEmail(address) : null;
    if (!normal) throw badRequest('invalid_recipient', `"${String(address).slice(0, 300)}" is not an e-mail address.`, { address: String(address).slice(0, 300) });
    if (!to.includes(normal)) to.push(normal);
  }
  if (typeof mail.subject !== 'string' || mail.subject.trim() === '' || mail.subject.length > MAX_SUBJECT_LENGTH || CONTROL.test(mail.subject)) {
    throw badRequest('invalid_subject', `A subject is 1–${MAX_SUBJECT_LENGTH} characters on one line.`);
  }
  if (typeof mail.text !== 'string' || CONTROL_BUT_LINE_BREAKS.test(mail.text)) {
    throw badRequest('invalid_mail', 'A mail’s text is text: no control characters but tab and line breaks.');
  }
  const attachments = mail.attachments ?? [];
  if (!Array.isArray(attachments) || attachments.length > MAX_ATTACHMENTS) throw badRequest('invalid_attachment', `A mail has at most ${MAX_ATTACHMENTS} attachments.`);
  for (const a of attachments) {
    const named = typeof a?.filename === 'string' && a.filename.length >= 1 && a.filename.length <= 200 && !CONTROL.test(a.filename) && !/[/\\"]/.test(a.filename);
    if (!named || typeof a.contentType !== 'string' || !CONTENT_TYPE.test(a.contentType) || typeof a.content !== 'string') {
      throw badRequest('invalid_attachment', 'An attachment has a file name (1–200 characters, no "/", "\\" or quotes), a MIME type such as text/calendar, and text content.');
    }
  }
  const bytes = [mail.subject, mail.text, ...attachments.map((a) => a.content)].reduce((n, s) => n + Buffer.byteLength(s, 'utf8'), 0);
  if (bytes > MAX_MAIL_BYTES) throw badRequest('mail_too_large', `A mail’s subject, text and attachments are at most ${MAX_MAIL_BYTES / 1024} KiB together; this one is ${bytes} bytes.`, { bytes });
  return {
    kind: mail.kind,
    to,
    subject: mail.subject,
    text: mail.text,
    attachments: attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, content: a.content })),
    ...(mail.ref !== undefined ? { ref: mail.ref } : {}),
  };
}
