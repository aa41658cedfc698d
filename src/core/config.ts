import path from 'node:path';
import { DEFAULT_TARIFF, checkTariff, type Tariff } from './tariff-settings.ts';
import { PEER_ADDRESS_MODES, type PeerAddressMode } from './address-policy.ts';
import { badRequest } from './errors.ts';

// Everything an operator can set comes from the environment (docs/configuration.md).
export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** Real PostgreSQL when set; embedded PGlite in `dataDir/db` otherwise. */
  databaseUrl?: string;
  /** Embedded PGlite's shared_buffers in MB (#19: the largest part of an idle origin's memory). */
  pgliteSharedBuffersMb: number;
  /** Embedded PGlite's WebAssembly is compiled once by V8's baseline compiler (`baseline`, less memory) or also optimized (`optimized`). */
  pgliteWasm: 'baseline' | 'optimized';
  /** Cross-process events when set; in-process bus otherwise. */
  natsUrl?: string;
  pieceSize: number;
  maxUploadBytes: number;
  grantTtlMs: number;
  heartbeatFlushMs: number;
  /** A monitored transfer nobody reported on for this long is reassigned (S1.7). */
  transferDeadMs: number;
  /** Which addresses terminals may register for the origin to call (see address-policy.ts); default `private`. */
  peerAddresses: PeerAddressMode;
  /** Spot-check serving terminals' holdings claims by fetching a random piece (#3). */
  holdingsSpotCheck: boolean;
  /** Cap on the origin's piece upload rate, bytes/s; 0 = none (benchmarks model a limited origin link). */
  originUpRate: number;
  /** Piece requests the origin serves at once (#10.7). */
  originSlots: number;
  /** Piece requests that may wait for one of those slots; more are refused with 503 source_busy. */
  originQueue: number;
  /** Pricing rules (S1.8, S1.9, S1.13): DEFAULT_TARIFF overridden by the environment, checked. */
  tariff: Tariff;
  /** Minor units credited once to a new wallet as a promotion; 0 = none. */
  signupCredit: number;
  /** scrypt's N for new password hashes (a power of two; src/accounts/passwords.ts). */
  passwordScryptN: number;
  /** How often the origin settles stored receipts, ms. */
  settleIntervalMs: number;
  /** How long a reservation (hold) made before a download lasts, ms. */
  holdTimeoutMs: number;
  /** S1.4: what a publisher pays per day of preferred placement in members' content lists, minor units. */
  placementPricePerDay: number;
  /** #10: a content the user fully paid for is fetched again for free, or charged as a new purchase. */
  refetchPolicy: 'free' | 'charge';
  /** #5: whether this origin runs the scheduler (one per deployment; SCHEDULER=off on the others). */
  scheduler: boolean;
  /** S0.6: bytes/s the scheduler may spend on scheduled deliveries (default ORIGIN_UP_RATE, else 125 MB/s). */
  scheduleEgressBps: number;
  /** S0.6: the most one scheduled delivery is admitted at, bytes/s (default a quarter of the egress budget). */
  scheduleMaxRate: number;
  /** How often the scheduler steps, ms. */
  scheduleTickMs: number;
  /** The address people reach this origin at, for links in e-mails and settings (PUBLIC_URL; default http://HOST:PORT). */
  publicUrl: string;
  /** S3.9: the port live ingest listens on (RTMP_PORT). */
  rtmpPort: number;
  /** #15: length of a live program's HLS segments, seconds (LIVE_SEGMENT_SECONDS, 1–6). */
  liveSegmentSeconds: number;
  /** S3.12: a viewer who fetches nothing this long stops counting against capacity (LIVE_VIEWER_IDLE_SECONDS). */
  liveViewerIdleSeconds: number;
  /** S2.7: the largest file POST /marks/trace reads (TRACE_MAX_BYTES, default 2 GiB). */
  traceMaxBytes: number;
  /** #15: the ffmpeg that packages live programs (FFMPEG; default `ffmpeg` on PATH). */
  ffmpeg: string;
  /** S3.6: a booking must be reconfirmed this many hours before its start (LIVE_RECONFIRM_HOURS). */
  liveReconfirmHours: number;
  /** S3.5: a new channel's monthly slot quota per member unless the operator sets one (LIVE_MONTHLY_QUOTA_SLOTS). */
  liveMonthlyQuotaSlots: number;
  /** The longest one booking may be, minutes (LIVE_MAX_BOOKING_MINUTES). */
  liveMaxBookingMinutes: number;
  /** How far ahead a booking may start, days (LIVE_BOOK_AHEAD_DAYS). */
  liveBookAheadDays: number;
  /** S3.8: where mail goes out (`smtp://user:pass@host:587`, `smtps://…`); unset: mail is kept as 'held', never sent. */
  smtpUrl?: string;
  /** S3.8: the From of every message. */
  mailFrom: string;
  /** S3.8: attempts to send one message before it is marked 'failed'. */
  mailMaxAttempts: number;
  logLevel: string;
}

const MiB = 1024 * 1024;

function intFrom(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max?: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || (max !== undefined && n > max)) {
    throw badRequest('bad_config', `${name} must be an integer ${max === undefined ? `>= ${min}` : `from ${min} to ${max}`}, got "${raw}"`);
  }
  return n;
}

/** An integer power of two within [min, max] (scrypt's N must be one). */
function powerOfTwoFrom(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const n = intFrom(env, name, fallback, min, max);
  if ((n & (n - 1)) !== 0) throw badRequest('bad_config', `${name} must be a power of two from ${min} to ${max}, got "${env[name]}"`);
  return n;
}

/** OFF_PEAK_HOURS: "start-end", hours 0–23, e.g. "22-6" (wraps midnight). */
function hoursFrom(env: NodeJS.ProcessEnv, name: string, fallback: [number, number]): [number, number] {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const m = /^\s*(\d{1,2})\s*-\s*(\d{1,2})\s*$/.exec(raw);
  const hours = m ? [Number(m[1]), Number(m[2])] : [];
  if (hours.length !== 2 || hours.some((h) => h > 23)) throw badRequest('bad_config', `${name} must be "start-end" with hours from 0 to 23, e.g. "22-6", got "${raw}"`);
  return hours as [number, number];
}

/** #10: whether fetching again a content the user has fully paid for is charged (docs/ledger.md "Purchases"). */
function refetchFrom(env: NodeJS.ProcessEnv): 'free' | 'charge' {
  const v = env.REFETCH_POLICY || 'free';
  if (v !== 'free' && v !== 'charge') throw badRequest('bad_config', `REFETCH_POLICY must be "free" or "charge", got "${v}"`);
  return v;
}

/** S3.8: SMTP_URL is an smtp: or smtps: URL with a host. */
function smtpUrlFrom(env: NodeJS.ProcessEnv): string | undefined {
  const raw = env.SMTP_URL;
  if (raw === undefined || raw === '') return undefined;
  let url: URL | null = null;
  try {
    url = new URL(raw);
  } catch {
    // refused below
  }
  if (!url || (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') || !url.hostname) {
    throw badRequest('bad_config', 'SMTP_URL must be an smtp:// or smtps:// URL such as smtp://user:password@mail.example.org:587');
  }
  return raw;
}

function peerAddressesFrom(env: NodeJS.ProcessEnv): PeerAddressMode {
  const raw = env.PEER_ADDRESSES || 'private';
  if (!(PEER_ADDRESS_MODES as readonly string[]).includes(raw)) throw badRequest('bad_config', `PEER_ADDRESSES must be one of ${PEER_ADDRESS_MODES.join(', ')}, got "${raw}"`);
  return raw as PeerAddressMode;
}

function tariffFrom(env: NodeJS.ProcessEnv): Tariff {
  const d = DEFAULT_TARIFF;
  const pct = (name: string, fallback: number) => intFrom(env, name, fallback, 0, 100);
  const [offPeakStartHour, offPeakEndHour] = hoursFrom(env, 'OFF_PEAK_HOURS', [d.offPeakStartHour, d.offPeakEndHour]);
  const offPeakTimeZone = env.OFF_PEAK_TIME_ZONE || d.offPeakTimeZone;
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone: offPeakTimeZone });
  } catch {
    throw badRequest('bad_config', `OFF_PEAK_TIME_ZONE must be an IANA time zone such as "Europe/Berlin", got "${offPeakTimeZone}"`);
  }
  const t: Tariff = {
    uploaderPercent: pct('UPLOADER_SHARE_PERCENT', d.uploaderPercent),
    royaltyPercent: pct('ROYALTY_PERCENT', d.royaltyPercent),
    offPeakStartHour,
    offPeakEndHour,
    offPeakTimeZone,
    offPeakRatePercent: pct('OFF_PEAK_RATE_PERCENT', d.offPeakRatePercent),
    frequentReceiverBytes: intFrom(env, 'FREQUENT_RECEIVER_BYTES', d.frequentReceiverBytes, 0),
    frequentRatePercent: pct('FREQUENT_RATE_PERCENT', d.frequentRatePercent),
    distributorBytes: intFrom(env, 'DISTRIBUTOR_BYTES', d.distributorBytes, 0),
    distributorRatePercent: pct('DISTRIBUTOR_RATE_PERCENT', d.distributorRatePercent),
    playPricePercent: pct('PLAY_PRICE_PERCENT', d.playPricePercent),
  };
  if (t.uploaderPercent + t.royaltyPercent > 100) {
    throw badRequest('bad_config', `UPLOADER_SHARE_PERCENT (${t.uploaderPercent}) and ROYALTY_PERCENT (${t.royaltyPercent}) add up to more than 100`);
  }
  return checkTariff(t);
}

/** PUBLIC_URL, without a trailing slash; default the listening address (a port of 0 is filled in once listening). */
function publicUrlFrom(env: NodeJS.ProcessEnv): string {
  const raw = env.PUBLIC_URL;
  if (!raw) return '';
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw badRequest('bad_config', `PUBLIC_URL must be an http(s) URL such as "https://cascade.example.org", got "${raw}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw badRequest('bad_config', `PUBLIC_URL must be an http(s) URL, got "${raw}"`);
  return u.toString().replace(/\/+$/, '');
}

function pgliteWasmFrom(env: NodeJS.ProcessEnv): Config['pgliteWasm'] {
  const raw = env.PGLITE_WASM || 'baseline';
  if (raw !== 'baseline' && raw !== 'optimized') throw badRequest('bad_config', `PGLITE_WASM must be "baseline" or "optimized", got "${raw}"`);
  return raw;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const scheduleEgressBps = intFrom(env, 'SCHEDULE_EGRESS', intFrom(env, 'ORIGIN_UP_RATE', 0, 0) || 125_000_000, 1);
  return {
    host: env.HOST || '127.0.0.1',
    port: intFrom(env, 'PORT', 8080, 0),
    dataDir: path.resolve(env.DATA_DIR || './data'),
    databaseUrl: env.DATABASE_URL || undefined,
    pgliteSharedBuffersMb: intFrom(env, 'PGLITE_SHARED_BUFFERS_MB', 16, 1, 4096),
    pgliteWasm: pgliteWasmFrom(env),
    natsUrl: env.NATS_URL || undefined,
    pieceSize: intFrom(env, 'PIECE_SIZE', MiB, 16 * 1024),
    maxUploadBytes: intFrom(env, 'MAX_UPLOAD_BYTES', 64 * 1024 * MiB, 1),
    grantTtlMs: intFrom(env, 'GRANT_TTL_MS', 15 * 60_000, 1000),
    heartbeatFlushMs: intFrom(env, 'HEARTBEAT_FLUSH_MS', 5000, 10),
    transferDeadMs: intFrom(env, 'TRANSFER_DEAD_MS', 30_000, 100),
    originUpRate: intFrom(env, 'ORIGIN_UP_RATE', 0, 0),
    originSlots: intFrom(env, 'ORIGIN_SLOTS', 64, 1, 100_000),
    originQueue: intFrom(env, 'ORIGIN_QUEUE', 256, 0, 1_000_000),
    peerAddresses: peerAddressesFrom(env),
    holdingsSpotCheck: env.HOLDINGS_SPOT_CHECK !== '0',
    tariff: tariffFrom(env),
    signupCredit: intFrom(env, 'SIGNUP_CREDIT', 0, 0),
    passwordScryptN: powerOfTwoFrom(env, 'PASSWORD_SCRYPT_N', 32_768, 1024, 1_048_576),
    settleIntervalMs: intFrom(env, 'SETTLE_INTERVAL_MS', 1000, 10),
    holdTimeoutMs: intFrom(env, 'HOLD_TIMEOUT_MS', 3_600_000, 1000),
    refetchPolicy: refetchFrom(env),
    placementPricePerDay: intFrom(env, 'PLACEMENT_PRICE_PER_DAY', 500, 0, 1_000_000_000),
    scheduler: env.SCHEDULER !== 'off',
    scheduleEgressBps,
    scheduleMaxRate: intFrom(env, 'SCHEDULE_MAX_RATE', Math.max(1, Math.floor(scheduleEgressBps / 4)), 1),
    scheduleTickMs: intFrom(env, 'SCHEDULE_TICK_MS', 5000, 10),
    publicUrl: publicUrlFrom(env),
    rtmpPort: intFrom(env, 'RTMP_PORT', 1935, 0, 65535),
    liveSegmentSeconds: intFrom(env, 'LIVE_SEGMENT_SECONDS', 1, 1, 6),
    liveViewerIdleSeconds: intFrom(env, 'LIVE_VIEWER_IDLE_SECONDS', 15, 3, 600),
    ffmpeg: env.FFMPEG || 'ffmpeg',
    traceMaxBytes: intFrom(env, 'TRACE_MAX_BYTES', 2048 * MiB, 1),
    liveReconfirmHours: intFrom(env, 'LIVE_RECONFIRM_HOURS', 6, 0, 24 * 30),
    liveMonthlyQuotaSlots: intFrom(env, 'LIVE_MONTHLY_QUOTA_SLOTS', 60, 0, 1_000_000),
    liveMaxBookingMinutes: intFrom(env, 'LIVE_MAX_BOOKING_MINUTES', 240, 1, 7 * 1440),
    liveBookAheadDays: intFrom(env, 'LIVE_BOOK_AHEAD_DAYS', 90, 1, 3660),
    smtpUrl: smtpUrlFrom(env),
    mailFrom: env.MAIL_FROM || 'Cascade <cascade@localhost>',
    mailMaxAttempts: intFrom(env, 'MAIL_MAX_ATTEMPTS', 8, 1, 100),
    logLevel: env.LOG_LEVEL || 'info',
  };
}
