import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { AccountService } from '../accounts/service.ts';
import type { WaitClock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import type { KeyPair } from '../core/crypto.ts';
import type { Db } from '../db/connection.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { Wallets } from '../ledger/wallets.ts';
import type { MailQueue } from '../mail/types.ts';
import { BookingService } from './bookings.ts';
import { Channels } from './channels.ts';
import { DeadlineJob } from './deadline-job.ts';
import { Guide } from './guide.ts';
import { liveRoutes } from './routes.ts';
import { MINUTE_MS } from './slots.ts';

// Live channels, the booking half (S3.1–S3.8, S3.11, S3.17; docs/live.md): channels, the slot
// calendar, quotes and bookings (double booking refused by the database), reconfirmation with
// the charge and a signed settings document, automatic cancellation at the deadline, e-mails
// through the mail queue, the program guide and each member's calendar feed. Owns the
// `live_*` tables. The streaming half (ingest keyed by the reservation ID, admission) builds on
// BookingService.

export { BookingService, reservationKeyHash, type Booking, type BookingRequest, type Quote } from './bookings.ts';
export { Channels, type Channel } from './channels.ts';
export { DeadlineJob } from './deadline-job.ts';
export { Guide, type Calendar, type Program } from './guide.ts';
export { verifySettings, type SignedSettings, type SettingsDocument } from './settings.ts';
export { OWNED_TABLES } from './tables.ts';

export function liveDomain(deps: {
  db: Db;
  clock: WaitClock;
  config: Config;
  keys: KeyPair;
  logger: Logger;
  accounts: AccountService;
  ledger: Ledger;
  wallets: Wallets;
  mail: MailQueue & { wake(): void };
  /** Where the origin is reached (PUBLIC_URL, else its listening address once known). */
  baseUrl: () => string;
}) {
  const { db, clock, config, logger } = deps;
  const contact = (userId: string) => deps.accounts.contact(userId);
  const channels = new Channels({ db, clock, defaultQuota: config.liveMonthlyQuotaSlots });
  let job: DeadlineJob | null = null;
  const bookings = new BookingService({
    db,
    clock,
    keys: deps.keys,
    logger,
    channels,
    ledger: deps.ledger,
    wallets: deps.wallets,
    mail: deps.mail,
    contact,
    limits: {
      reconfirmLeadMs: config.liveReconfirmHours * 60 * MINUTE_MS,
      maxBookingMs: config.liveMaxBookingMinutes * MINUTE_MS,
      bookAheadMs: config.liveBookAheadDays * 1440 * MINUTE_MS,
    },
    baseUrl: deps.baseUrl,
    rtmpPort: config.rtmpPort,
    onBooked: (deadline) => job?.wakeFor(deadline),
  });
  job = new DeadlineJob({ clock, bookings, logger: logger.child({ domain: 'live' }) });
  const guide = new Guide({ db, clock, channels, bookings, contact, usernames: (ids) => deps.accounts.usernames(ids), baseUrl: deps.baseUrl });
  const plugin: FastifyPluginAsync = liveRoutes({ clock, channels, bookings, guide });
  const deadlines = job;
  return { channels, bookings, guide, deadlines, plugin, start: () => deadlines.start(), stop: () => deadlines.stop() };
}
