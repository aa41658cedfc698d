import { hkdfSync } from 'node:crypto';
import path from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { AccountService } from '../accounts/service.ts';
import type { ContentService } from '../content/service.ts';
import { every, type WaitClock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import type { KeyPair } from '../core/crypto.ts';
import { AppError } from '../core/errors.ts';
import type { Db } from '../db/connection.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { Wallets } from '../ledger/wallets.ts';
import type { MailQueue } from '../mail/types.ts';
import { BookingService } from './bookings.ts';
import { Channels } from './channels.ts';
import { DeadlineJob } from './deadline-job.ts';
import { Fillers } from './fillers.ts';
import { Guide } from './guide.ts';
import { recordingJob as makeRecordingJob, RecordingService } from './recordings.ts';
import { liveRoutes } from './routes.ts';
import { SegmentLog } from './segment-log.ts';
import { LiveStreams } from './streams.ts';
import { ViewerSessions } from './viewers.ts';
import { MINUTE_MS } from './slots.ts';

// Live channels, the booking half (S3.1–S3.8, S3.11, S3.17; docs/live.md): channels, the slot
// calendar, quotes and bookings (double booking refused by the database), reconfirmation with
// the charge and a signed settings document, automatic cancellation at the deadline, e-mails
// through the mail queue, the program guide and each member's calendar feed. Owns the
// `live_*` tables. The streaming half (#15; docs/live.md, docs/rtmp.md): RTMP ingest keyed by
// the reservation ID, HLS packaging by ffmpeg into a signed segment log, viewer admission.

export { BookingService, reservationKeyHash, type Booking, type BookingRequest, type Quote } from './bookings.ts';
export { Channels, type Channel } from './channels.ts';
export { DeadlineJob } from './deadline-job.ts';
export { Guide, type Calendar, type Program } from './guide.ts';
export { verifySettings, type SignedSettings, type SettingsDocument } from './settings.ts';
export { OWNED_TABLES } from './tables.ts';
export { LiveStreams, type BroadcastStatus } from './streams.ts';
export { RecordingService, type Recording, type Rebroadcast } from './recordings.ts';
export { verifySegmentLog, type SegmentEntry, type SignedSegmentEntry } from './segment-log.ts';

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
  metrics: Registry;
  /** S3.15: recordings are published as content, and contents are rebroadcast. */
  content: ContentService;
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
    hashPassword: (password) => deps.accounts.hashPassword(password),
    limits: {
      reconfirmLeadMs: config.liveReconfirmHours * 60 * MINUTE_MS,
      maxBookingMs: config.liveMaxBookingMinutes * MINUTE_MS,
      bookAheadMs: config.liveBookAheadDays * 1440 * MINUTE_MS,
    },
    baseUrl: deps.baseUrl,
    rtmpPort: (): number => streams.rtmp.address()?.port ?? config.rtmpPort,
    onBooked: (deadline) => job?.wakeFor(deadline),
    onExtended: (id, end) => {
      streams.extended(id, end);
      job?.wakeFor(end);
    },
  });
  job = new DeadlineJob({ clock, bookings, logger: logger.child({ domain: 'live' }) });
  const guide = new Guide({ db, clock, channels, bookings, contact, usernames: (ids) => deps.accounts.usernames(ids), baseUrl: deps.baseUrl });
  // The streaming half (#15): ingest, packaging, the signed segment log, viewer sessions.
  const originSecret = deps.keys.privateKey.export({ format: 'der', type: 'pkcs8' }) as Buffer;
  const viewers = new ViewerSessions({
    db,
    clock,
    secret: Buffer.from(hkdfSync('sha256', originSecret, 'live viewer sessions', 'cascade live viewer session v1', 32)),
    idleMs: config.liveViewerIdleSeconds * 1000,
  });
  const segments = new SegmentLog({ db, key: deps.keys.privateKey });
  // S3.15: recordings of programs and rebroadcasts of contents (recordings.ts).
  const recordings: RecordingService = new RecordingService({
    db,
    clock,
    logger,
    bookings,
    segments,
    streams: () => streams,
    content: deps.content,
    usernames: (ids) => deps.accounts.usernames(ids),
    originKey: deps.keys.publicKeyB64,
    dir: path.join(config.dataDir, 'live'),
    ffmpeg: config.ffmpeg ?? 'ffmpeg',
  });
  const recordingJob = makeRecordingJob({ clock, recordings, logger: logger.child({ domain: 'live' }) });
  recordings.onRequested = () => recordingJob.wake();
  const streams: LiveStreams = new LiveStreams({
    clock,
    keys: deps.keys,
    logger,
    metrics: deps.metrics,
    bookings,
    segments,
    viewers,
    dir: path.join(config.dataDir, 'live'),
    segmentSeconds: config.liveSegmentSeconds,
    playlistSegments: 6,
    ffmpeg: config.ffmpeg,
    rebroadcasts: (id) => recordings.isRebroadcast(id),
    onTakeEnded: () => recordingJob.wake(),
  });
  const fillers = new Fillers({ db, clock, channels, dir: path.join(config.dataDir, 'live', 'filler'), ffmpeg: config.ffmpeg, logger: logger.child({ domain: 'live', part: 'filler' }) });
  const plugin: FastifyPluginAsync = liveRoutes({ clock, channels, bookings, guide, streams, fillers, recordings });
  const deadlines = job;
  const flushing = new AbortController();
  return {
    channels,
    bookings,
    guide,
    deadlines,
    streams,
    fillers,
    recordings,
    plugin,
    /** RTMP ingest on RTMP_PORT (before the HTTP server, so a port in use stops the start with a clear reason). */
    async listen() {
      try {
        const a = await streams.listen(config.rtmpPort, config.host);
        logger.info({ rtmp: `rtmp://${config.host}:${a.port}/live` }, 'live ingest listening');
      } catch (e) {
        if ((e as { code?: string }).code !== 'EADDRINUSE') throw e;
        throw new AppError('rtmp_port_in_use', `RTMP_PORT ${config.rtmpPort} is in use on ${config.host} (another origin or RTMP server?): stop it, or set RTMP_PORT to a free port (0 picks one).`, 500);
      }
    },
    /** Starts the deadline job and the viewer-session writer. */
    start() {
      deadlines.start();
      recordingJob.start();
      // Fetch times reach the table well inside the idle time, so a watching viewer always counts.
      void every(clock, Math.min(5000, config.liveViewerIdleSeconds * 333), flushing.signal, () =>
        viewers.flush().catch((e: unknown) => logger.warn({ err: String(e) }, 'viewer sessions not written')),
      );
    },
    async stop() {
      deadlines.stop();
      await recordingJob.stop();
      flushing.abort();
      await streams.close();
      await recordings.close();
    },
  };
}
