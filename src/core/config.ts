import path from 'node:path';
import { badRequest } from './errors.ts';

// Everything an operator can set comes from the environment (docs/configuration.md).
export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** Real PostgreSQL when set; embedded PGlite in `dataDir/db` otherwise. */
  databaseUrl?: string;
  /** Cross-process events when set; in-process bus otherwise. */
  natsUrl?: string;
  pieceSize: number;
  maxUploadBytes: number;
  grantTtlMs: number;
  heartbeatFlushMs: number;
  /** A monitored transfer nobody reported on for this long is reassigned (S1.7). */
  transferDeadMs: number;
  /** Spot-check serving terminals' holdings claims by fetching a random piece (#3). */
  holdingsSpotCheck: boolean;
  /** Cap on the origin's piece upload rate, bytes/s; 0 = none (benchmarks model a limited origin link). */
  originUpRate: number;
  logLevel: string;
}

const MiB = 1024 * 1024;

function intFrom(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) throw badRequest('bad_config', `${name} must be an integer >= ${min}, got "${raw}"`);
  return n;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  return {
    host: env.HOST || '127.0.0.1',
    port: intFrom(env, 'PORT', 8080, 0),
    dataDir: path.resolve(env.DATA_DIR || './data'),
    databaseUrl: env.DATABASE_URL || undefined,
    natsUrl: env.NATS_URL || undefined,
    pieceSize: intFrom(env, 'PIECE_SIZE', MiB, 16 * 1024),
    maxUploadBytes: intFrom(env, 'MAX_UPLOAD_BYTES', 64 * 1024 * MiB, 1),
    grantTtlMs: intFrom(env, 'GRANT_TTL_MS', 15 * 60_000, 1000),
    heartbeatFlushMs: intFrom(env, 'HEARTBEAT_FLUSH_MS', 5000, 10),
    transferDeadMs: intFrom(env, 'TRANSFER_DEAD_MS', 30_000, 100),
    originUpRate: intFrom(env, 'ORIGIN_UP_RATE', 0, 0),
    holdingsSpotCheck: env.HOLDINGS_SPOT_CHECK !== '0',
    logLevel: env.LOG_LEVEL || 'info',
  };
}
