import type { WaitClock } from '../core/clock.ts';

// A token bucket for link-rate limits (agents' `--up-rate` / `--down-rate`, the origin's
// ORIGIN_UP_RATE). Tokens are bytes; the bucket holds at most `burst`. Time is read from
// and waited on through the injected clock, so tests drive the bucket with a ManualClock.

export class TokenBucket {
  private tokens: number;
  private last: number;
  private queue: Promise<void> = Promise.resolve();
  private readonly closing = new AbortController();

  constructor(
    readonly bytesPerSecond: number,
    private readonly burst: number,
    private readonly clock: WaitClock,
  ) {
    if (!(bytesPerSecond > 0)) throw new RangeError('rate must be positive');
    if (!(burst > 0)) throw new RangeError('burst must be positive');
    this.tokens = burst;
    this.last = clock.now();
  }

  /** Waits until `bytes` may pass. Callers are served in order. */
  take(bytes: number): Promise<void> {
    const turn = this.queue.then(() => this.wait(bytes));
    this.queue = turn;
    return turn;
  }

  private async wait(bytes: number) {
    this.refill();
    this.tokens -= bytes;
    if (this.tokens < 0 && !this.closing.signal.aborted) {
      // The debt is paid off once the clock has moved on by debt / rate.
      await this.clock.sleepUntil(this.last + Math.ceil((-this.tokens / this.bytesPerSecond) * 1000), this.closing.signal);
      this.refill();
    }
  }

  /** Lets every waiting caller through at once and stops limiting (on shutdown, so no timer outlives its owner). */
  close() {
    this.closing.abort();
  }

  private refill() {
    const now = this.clock.now();
    // A clock set back (NTP) adds nothing rather than taking tokens away.
    this.tokens = Math.min(this.burst, this.tokens + (Math.max(0, now - this.last) / 1000) * this.bytesPerSecond);
    this.last = now;
  }
}

/** Parses "8MB/s", "500k", "1.5M", "1000000" into bytes per second. */
export function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]i?)?b?(?:\/s)?$/i.exec(text.trim());
  if (!m) throw new RangeError(`cannot read rate "${text}" (try 8MB/s or 500k)`);
  const unit = (m[2] ?? '').toLowerCase();
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3 }[unit]!;
  const n = Math.floor(Number(m[1]) * mult);
  if (n <= 0) throw new RangeError(`rate must be positive: "${text}"`);
  return n;
}
