import type { Command } from 'commander';
import { AppError } from '../core/errors.ts';
import type { OutboxItem, OutboxMessage } from '../mail/service.ts';
import { MAIL_STATUSES } from '../mail/status.ts';
import { apiFromProfile } from './profile.ts';
import { table, timeToSecond } from './table.ts';

// The mail outbox on the command line (S3.8, operators): `cascade outbox` lists messages
// newest first with their status and last error; `cascade outbox show ID` prints one whole.

const write = (line: string): void => void process.stdout.write(line + '\n');

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

export function registerOutbox(program: Command) {
  const outbox = program
    .command('outbox')
    .description('operators: the mail outbox, newest first — queued, sent, held (no SMTP_URL) and failed messages with their last errors')
    .option('--status <status>', `only messages in this state: ${MAIL_STATUSES.join(', ')}`)
    .option('--kind <kind>', 'only messages of this kind (e.g. live.booked)')
    .option('--ref <ref>', 'only messages about this record (a booking ID)')
    .option('--limit <n>', 'how many, 1–200', '50')
    .option('--after <cursor>', 'the next page: the cursor the previous one printed')
    .action(async (opts: { status?: string; kind?: string; ref?: string; limit: string; after?: string }) => {
      if (opts.status !== undefined && !(MAIL_STATUSES as readonly string[]).includes(opts.status)) {
        throw new AppError('invalid_argument', `--status is one of ${MAIL_STATUSES.join(', ')}; got "${opts.status}".`);
      }
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 200) throw new AppError('invalid_argument', `--limit is a whole number from 1 to 200; got "${opts.limit}".`);
      const query = new URLSearchParams({ limit: String(limit) });
      for (const k of ['status', 'kind', 'ref', 'after'] as const) if (opts[k] !== undefined) query.set(k, opts[k]!);
      const page = await apiFromProfile({ origin: program.opts().origin }).get<{ items: OutboxItem[]; nextCursor: string | null }>(`/mail/outbox?${query}`);
      if (program.opts().json) return write(JSON.stringify(page));
      if (page.items.length === 0) return write('no messages');
      const rows = page.items.map((m) => [m.id, timeToSecond(m.createdAt), m.status, String(m.attempts), m.kind, clip(m.to.join(','), 40), clip(m.subject, 50), clip(m.lastError ?? '', 60)]);
      for (const line of table(['id', 'created', 'status', 'attempts', 'kind', 'to', 'subject', 'last error'], rows, [3])) write(line);
      if (page.nextCursor) process.stderr.write(`more: cascade outbox --after ${page.nextCursor}\n`);
    });

  outbox
    .command('show')
    .description('one message whole: headers, text and attachments')
    .argument('<id>', 'a message ID from `cascade outbox`')
    .action(async (id: string) => {
      const m = await apiFromProfile({ origin: program.opts().origin }).get<OutboxMessage>(`/mail/outbox/${encodeURIComponent(id)}`);
      if (program.opts().json) return write(JSON.stringify(m));
      write(`id:        ${m.id}`);
      write(`kind:      ${m.kind}${m.ref ? ` (about ${m.ref})` : ''}`);
      write(`status:    ${m.status}, ${m.attempts} attempt${m.attempts === 1 ? '' : 's'}`);
      write(`created:   ${timeToSecond(m.createdAt)}`);
      if (m.sentAt) write(`sent:      ${timeToSecond(m.sentAt)}`);
      else if (m.status === 'queued') write(`next try:  ${timeToSecond(m.nextAttemptAt)}`);
      if (m.lastError) write(`error:     ${m.lastError}`);
      write(`From:      ${m.from}`);
      write(`To:        ${m.to.join(', ')}`);
      write(`Subject:   ${m.subject}`);
      write('');
      write(m.text);
      if (m.attachments.length) {
        write('');
        write('attachments:');
        for (const a of m.attachments) write(`  ${a.filename}  ${a.contentType}  ${a.size} bytes`);
      }
    });
}
