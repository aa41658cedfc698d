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
  /** Set by wake(): look again before sleeping. */
  private dirty = false;
  /** When the job next looks by itself (clock ms). */
  private sleepingUntil = -Infinity;
  /** Resolves after the next completed sweep (tests wait on it). */
  private swept: (() => void)[] = [];

  constructor(private readonly deps: { clock: WaitClock; bookings: BookingService; logger: Logger }) {}

  start() {
    this.loop ??= this.run();
  }

  /** Look again now (a new booking may be due sooner than what the job sleeps for). */
  wake() {
    this.dirty = true;
    this.nap?.abort();
  }

  /**
   * A booking with this deadline was made: look again only if it is due before the job would look
   * anyway. While a sweep runs nothing is needed: the job looks again within a minute, and every
   * deadline is at least five minutes after its booking (slots.ts).
   */
  wakeFor(deadline: number) {
    if (deadline < this.sleepingUntil) this.wake();
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
      this.nap = new AbortController();
      this.sleepingUntil = next;
      const both = AbortSignal.any([this.nap.signal, this.stopping.signal]);
      await clock.sleepUntil(next, both);
      this.sleepingUntil = -Infinity; // awake: anything new is seen by the next sweep
    }
    for (const done of this.swept.splice(0)) done();
  }
}
