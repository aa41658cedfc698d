import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { WaitClock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import type { Db } from '../db/connection.ts';
import { mailRoutes } from './routes.ts';
import { MailService } from './service.ts';

// Mail (S3.8, docs/mail.md): the outbox other domains queue messages in, inside their own
// transaction (MailQueue, types.ts), and the sender that hands them to SMTP_URL with retries
// and back-off. Owns `mail_outbox`.

export { MailService, backoffMs, type OutboxItem, type OutboxMessage, type OutboxQuery } from './service.ts';
export type { MailAttachment, MailQueue, OutgoingMail } from './types.ts';
export { OWNED_TABLES, type MailStatus } from './tables.ts';

export function mailDomain(deps: { db: Db; clock: WaitClock; config: Config; logger: Logger; metrics?: Registry }) {
  const { config } = deps;
  const mail = new MailService({
    db: deps.db,
    clock: deps.clock,
    logger: deps.logger.child({ domain: 'mail' }),
    smtpUrl: config.smtpUrl,
    from: config.mailFrom,
    maxAttempts: config.mailMaxAttempts,
    metrics: deps.metrics,
  });
  const plugin: FastifyPluginAsync = mailRoutes({ mail });
  return {
    mail,
    plugin,
    /** Starts sending (with SMTP_URL; without, messages are held). */
    start: () => mail.start(),
    /** Stops sending and waits for a running round. */
    stop: () => mail.stop(),
  };
}
