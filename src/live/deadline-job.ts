import type { Logger } from 'pino';
import type { WaitClock } from '../core/clock.ts';
import type { BookingService } from './bookings.ts';

// S3.6: cancels unconfirmed bookings at their deadline and closes finished programs, on the
// injected clock (tests move a ManualClock; nothing sleeps in real time). It sleeps until the
// earliest thing due (at most a minute of clock time, so a booking made by another origin
// process is seen), and wakes early when a booking is made here. The sweep is a set of
// conditional updates, so a restart, or two origins, cancel each booking once.

const MAX_SLEEP_MS = 60_000;

export class DeadlineJob {
  private stopping = new AbortController();
  private nap: AbortController | null = null;
  private loop: Promise<void> | null = null;
  /** Set by wake() without a time: look again before sleeping. */
  private dirty = false;
  /** The earliest deadline told by wake(dueAt) since the current sweep began. */
  private told = Infinity;
  /** Until when the job sleeps; null while it sweeps. */
  private sleepsUntil: number | null = null;
  /** Resolves after the next completed sweep (tests wait on it). */
  private swept: (() => void)[] = [];

  constructor(private readonly deps: { clock: WaitClock; bookings: BookingService; logger: Logger }) {}

  start() {
    this.loop ??= this.run();
  }

  /**
   * Look again now; with `dueAt` (a new booking's deadline), only if that is sooner than the job
   * would look anyway: bookings made many at a time do not each start a sweep.
   */
  wake(dueAt?: number) {
    if (dueAt === undefined) this.dirty = true;
    else {
      this.told = Math.min(this.told, dueAt);
      if (this.sleepsUntil === null || dueAt >= this.sleepsUntil) return;
    }
    this.nap?.abort();
  }

  /** Resolves once a sweep has run after this call. */
  nextSweep(): Promise<void> {
    return new Promise((resolve) => {
      this.swept.push(resolve);
      this.wake();
    });
  }

  async stop() {
    this.stopping.abort();
    this.nap?.abort();
    await this.loop;
    this.loop = null;
  }

  private async run() {
    const { clock, bookings, logger } = this.deps;
    while (!this.stopping.signal.aborted) {
      let next = clock.now() + MAX_SLEEP_MS;
      this.dirty = false;
      this.sleepsUntil = null;
      this.told = Infinity;
      const waiting = this.swept.splice(0); // only waits that began before this sweep
      try {
        const r = await bookings.sweep();
        if (r.cancelled || r.done) logger.info(r, 'live bookings: deadlines and ends applied');
        const due = await bookings.nextDue();
        if (due !== null) next = Math.min(next, due);
      } catch (err) {
        if (this.stopping.signal.aborted) break;
        logger.error({ err }, 'live bookings: sweep failed; trying again');
      }
      for (const done of waiting) done();
      if (this.dirty) continue;
      // A booking committed during the sweep may not have been seen by nextDue().
      next = Math.min(next, this.told);
      this.sleepsUntil = next;
      this.nap = new AbortController();
      const both = AbortSignal.any([this.nap.signal, this.stopping.signal]);
      await clock.sleepUntil(next, both);
    }
    for (const done of this.swept.splice(0)) done();
  }
}
