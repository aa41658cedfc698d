import { signal } from '@preact/signals';
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.ts';
import type { OriginTime } from '../types.ts';

// S3.10: the origin's clock is the one that counts (deadlines, "today", what is past). The pages
// read it from GET /time and keep the browser's offset from it: offset = origin's time − the
// midpoint of the request (half the round trip is the best guess of when the origin answered).

export interface OriginReading {
  /** Origin minus browser, ms. */
  offsetMs: number;
  roundTripMs: number;
  /** The origin's time as it answered. */
  origin: number;
}

export const originClock = signal<OriginReading | null>(null);
let pending: Promise<OriginReading> | null = null;

/** Measures the offset (again when `fresh`). */
export function measureOrigin(fresh = false): Promise<OriginReading> {
  if (pending && !fresh) return pending;
  const run = (async () => {
    const t0 = Date.now();
    const r = await api<OriginTime>('GET', '/time', undefined, { anonymous: true });
    const t1 = Date.now();
    const reading = { offsetMs: r.epochMs - (t0 + t1) / 2, roundTripMs: t1 - t0, origin: r.epochMs };
    originClock.value = reading;
    return reading;
  })();
  pending = run;
  run.catch(() => {
    if (pending === run) pending = null;
  });
  return run;
}

/** The origin's "now", from the browser's clock and the measured offset. */
export function originNow(): number {
  return Date.now() + (originClock.value?.offsetMs ?? 0);
}

/**
 * The origin's clock in a component: null until measured; with `tickMs`, re-rendered that often
 * (countdowns). `error` when GET /time failed.
 */
export function useOriginNow(tickMs = 0): { now: number | null; reading: OriginReading | null; error: string | null } {
  const [error, setError] = useState<string | null>(null);
  const [, setTick] = useState(0);
  const reading = originClock.value;
  useEffect(() => {
    if (!originClock.value) measureOrigin().catch((e) => setError((e as Error).message));
  }, []);
  useEffect(() => {
    if (!tickMs) return;
    const id = setInterval(() => setTick((t) => t + 1), tickMs);
    return () => clearInterval(id);
  }, [tickMs]);
  return { now: reading ? originNow() : null, reading, error };
}
