import { createTransport } from 'nodemailer';
import type { MailAttachment } from './types.ts';

// The one way mail leaves the origin (S3.8): nodemailer over SMTP_URL. Network timeouts are
// real time (they bound a conversation with another machine); what is due when is not.

export interface SmtpMessage {
  from: string;
  to: string[];
  subject: string;
  text: string;
  attachments: MailAttachment[];
}

export interface SmtpSender {
  /** Resolves once the server accepted the message for at least one recipient; the others are in `rejected`. */
  send(message: SmtpMessage): Promise<{ rejected: string[] }>;
  close(): void;
}

/** A sender over `smtpUrl` (`smtp://user:pass@host:587`, `smtps://…`); one connection per message. */
export function smtpSender(smtpUrl: string): SmtpSender {
  const transport = createTransport({ url: smtpUrl, connectionTimeout: 20_000, greetingTimeout: 20_000, socketTimeout: 60_000 });
  return {
    async send(m) {
      const info = await transport.sendMail({
        from: m.from,
        to: m.to,
        subject: m.subject,
        text: m.text,
        // An iCalendar invitation keeps its MIME type with its parameters (`text/calendar; method=REQUEST`).
        attachments: m.attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, content: a.content })),
      });
      return { rejected: (info.rejected ?? []).map((r: string | { address: string }) => (typeof r === 'string' ? r : r.address)) };
    },
    close: () => transport.close(),
  };
}

/** What the operator sees of a failed attempt: the SMTP server's answer when there is one. */
export function describeSmtpError(err: unknown): string {
  const e = err as { code?: string; response?: string; responseCode?: number; message?: string };
  const text = e?.response ?? e?.message ?? String(err);
  return (e?.code ? `${e.code}: ${text}` : text).slice(0, 1000);
}
