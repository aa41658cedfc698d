// Time is injected so that expiries, schedules and deadlines are tested without sleeping.
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** A clock one can wait on: the agent's scheduled wake-ups (S0.3) run on one, so tests move time instead of sleeping. */
export interface WaitClock extends Clock {
  /** Resolves once the clock reads `t` or later, or when `signal` aborts (whichever first; never rejects). */
  sleepUntil(t: number, signal?: AbortSignal): Promise<void>;
}

const MAX_TIMEOUT = 2 ** 31 - 1;

/**
 * Real elapsed time in ms on the monotonic clock, for pacing work (at most one step per
 * 100 ms) and showing rates — never for what a schedule, an expiry or a bill depends on:
 * those read a Clock, which tests move. Stepping the system clock does not move this one.
 */
export function monotonicMs(): number {
  return performance.now();
}

/**
 * Runs `task` every `periodMs` by `clock` until `signal` aborts: the agent's heartbeats and
 * progress reports, which tests drive by moving a ManualClock. The next run is due one period
 * after the previous one ended (runs never overlap; a clock that jumps several periods runs it
 * once). `task` handles its own errors. Resolves once the signal aborts.
 */
export async function every(clock: WaitClock, periodMs: number, signal: AbortSignal, task: () => Promise<void>): Promise<void> {
  while (!signal.aborted) {
    await clock.sleepUntil(clock.now() + periodMs, signal);
    if (!signal.aborted) await task();
  }
}

export const systemClock: WaitClock = {
  now: () => Date.now(),
  sleepUntil(t, signal) {
    return new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      let timer: NodeJS.Timeout;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      // setTimeout cannot wait longer than ~24.8 days in one go. A wait never keeps the
      // process alive by itself (an agent's server does; a forgotten heartbeat loop must not).
      const arm = () => {
        const left = t - Date.now();
        if (left <= 0) return done();
        timer = setTimeout(arm, Math.min(left, MAX_TIMEOUT)).unref();
      };
      signal?.addEventListener('abort', done, { once: true });
      arm();
    });
  },
};

/** A clock that only moves when told to; for tests. Waits end when it is moved past them. */
export class ManualClock implements WaitClock {
  private waiters: { t: number; resolve: () => void }[] = [];
  constructor(private t = Date.UTC(2026, 0, 1)) {}
  now() {
    return this.t;
  }
  advance(ms: number) {
    this.set(this.t + ms);
  }
  set(ms: number) {
    this.t = ms;
    const due = this.waiters.filter((w) => w.t <= ms);
    this.waiters = this.waiters.filter((w) => w.t > ms);
    for (const w of due) w.resolve();
  }
  sleepUntil(t: number, signal?: AbortSignal): Promise<void> {
    if (t <= this.t || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const w = {
        t,
        resolve: () => {
          signal?.removeEventListener('abort', w.resolve);
          this.waiters = this.waiters.filter((x) => x !== w);
          resolve();
        },
      };
      this.waiters.push(w);
      signal?.addEventListener('abort', w.resolve, { once: true });
    });
  }
  /** Whether something waits for the clock to read `t` (tests wait for an agent to go to sleep until its window). */
  isWaitingFor(t: number): boolean {
    return this.waiters.some((w) => w.t === t);
  }
}
