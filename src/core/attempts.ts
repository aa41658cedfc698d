import type { Clock } from './clock.ts';
import { AppError } from './errors.ts';

/**
 * Failed attempts per key within a sliding window, in memory: enough to make guessing a
 * secret (a voucher code, a program's password) by one account pointless; it resets on restart.
 */
export class AttemptLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly clock: Clock,
    private readonly max: number,
    private readonly windowMs: number,
    /** What is counted, for the refusal: "failed voucher redemptions". */
    private readonly what: string,
  ) {}

  check(key: string) {
    const recent = this.recent(key);
    if (recent.length >= this.max) {
      const retryAfterSeconds = Math.ceil((recent[0] + this.windowMs - this.clock.now()) / 1000);
      throw new AppError('too_many_attempts', `Too many ${this.what}; try again in ${retryAfterSeconds} s.`, 429, { retryAfterSeconds });
    }
  }

  fail(key: string) {
    const recent = this.recent(key);
    recent.push(this.clock.now());
    this.failures.set(key, recent);
    // Keys that stopped failing are dropped now and then, so the map stays small.
    if (this.failures.size > 10_000) for (const k of [...this.failures.keys()]) this.recent(k);
  }

  private recent(key: string): number[] {
    const since = this.clock.now() - this.windowMs;
    const recent = (this.failures.get(key) ?? []).filter((t) => t > since);
    if (recent.length) this.failures.set(key, recent);
    else this.failures.delete(key);
    return recent;
  }
}
