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
      // setTimeout cannot wait longer than ~24.8 days in one go.
      const arm = () => {
        const left = t - Date.now();
        if (left <= 0) return done();
        timer = setTimeout(arm, Math.min(left, MAX_TIMEOUT));
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
  /** How many waits are pending (tests wait for an agent to go to sleep). */
  get sleepers(): number {
    return this.waiters.length;
  }
}
