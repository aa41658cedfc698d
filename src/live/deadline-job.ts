import type { Logger } from 'pino';
import type { WaitClock } from '../core/clock.ts';
import type { BookingService } from './bookings.ts';
import { ClockJob } from './clock-job.ts';

// S3.6: cancels unconfirmed bookings at their deadline and closes finished programs, on the
// injected clock (tests move a ManualClock; nothing sleeps in real time). It sleeps until the
// earliest thing due (at most a minute of clock time, so a booking made by another origin
// process is seen), and wakes early when a booking is made here. The sweep is a set of
// conditional updates, so a restart, or two origins, cancel each booking once.

const MAX_SLEEP_MS = 60_000;

export class DeadlineJob {
  private readonly job: ClockJob;

  constructor(deps: { clock: WaitClock; bookings: BookingService; logger: Logger }) {
    const { bookings, logger } = deps;
    this.job = new ClockJob({
      clock: deps.clock,
      maxSleepMs: MAX_SLEEP_MS,
      round: async () => {
        const r = await bookings.sweep();
        if (r.cancelled || r.done) logger.info(r, 'live bookings: deadlines and ends applied');
        return bookings.nextDue();
      },
      failed: (err) => logger.error({ err }, 'live bookings: sweep failed; trying again'),
    });
  }

  start() {
    this.job.start();
  }

  /** Look again now (a new booking may be due sooner than what the job sleeps for). */
  wake() {
    this.job.wake();
  }

  /**
   * A booking with this deadline was made: look again only if it is due before the job would look
   * anyway. While a sweep runs nothing is needed: the job looks again within a minute, and every
   * deadline is at least five minutes after its booking (slots.ts).
   */
  wakeFor(deadline: number) {
    this.job.wakeFor(deadline);
  }

  /** Resolves once a sweep has run after this call. */
  nextSweep(): Promise<void> {
    return this.job.nextRound();
  }

  stop() {
    return this.job.stop();
  }
}
