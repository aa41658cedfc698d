import { AppError } from '../core/errors.ts';
import { monotonicMs } from '../core/clock.ts';

// Upload slots of a piece server (agents' `--slots`, the origin's ORIGIN_SLOTS /
// ORIGIN_QUEUE; #10.7 bounded resources): at most `slots` pieces are served at once,
// up to `queue` more requests wait their turn in arrival order, and any request beyond
// that is refused at once with 503 `source_busy`. A waiting request holds no piece
// bytes, only its socket.
//
// It also keeps the time-weighted number of slots in use, which agents report in
// heartbeats (S1.5 "not overloaded": a holder whose slots are all in use cannot serve more).

export class UploadSlots {
  private busy = 0;
  private readonly waiting: (() => void)[] = [];
  /** Slot-milliseconds in use since `windowStart`, counted up to `changedAt`. */
  private busyMs = 0;
  private changedAt: number;
  private windowStart: number;

  constructor(
    readonly slots: number,
    readonly queue: number,
    /** Milliseconds for the average in use (the agent's transfer clock; default: real time). */
    private readonly now: () => number = monotonicMs,
  ) {
    if (!(Number.isInteger(slots) && slots >= 1)) throw new RangeError('slots must be a positive integer');
    if (!(Number.isInteger(queue) && queue >= 0)) throw new RangeError('queue must be a non-negative integer');
    this.changedAt = this.windowStart = now();
  }

  /**
   * Slots in use on average since the previous call (or since creation), 0..slots, and
   * starts a new window. With no time gone by, the number in use now.
   */
  averageBusy(): number {
    this.account();
    const span = this.changedAt - this.windowStart;
    const avg = span > 0 ? this.busyMs / span : this.busy;
    this.busyMs = 0;
    this.windowStart = this.changedAt;
    return Math.min(this.slots, Math.max(0, avg));
  }

  /** Adds the time since the last change at the current number in use; call before changing `busy`. */
  private account(): void {
    const t = this.now();
    if (t > this.changedAt) this.busyMs += this.busy * (t - this.changedAt);
    this.changedAt = Math.max(this.changedAt, t);
  }

  /** Requests being served and waiting now (metrics, tests). */
  get load(): { serving: number; waiting: number } {
    return { serving: this.busy, waiting: this.waiting.length };
  }

  /**
   * Resolves with the slot's release once one is free, or null if `gone` aborts first
   * (the requester hung up while waiting). Throws `source_busy` when the queue is full.
   */
  async enter(gone: AbortSignal): Promise<(() => void) | null> {
    if (this.busy < this.slots) {
      this.account();
      this.busy++;
      return this.releaser();
    }
    if (this.waiting.length >= this.queue) {
      const waiting = this.queue ? ` and ${this.queue} requests are waiting` : '';
      throw new AppError('source_busy', `All ${this.slots} upload slots are in use${waiting}; try another source or again shortly.`, 503);
    }
    if (gone.aborted) return null;
    return new Promise((resolve) => {
      // Handed a slot by a release: the slot stays counted as busy, now on our behalf.
      const take = () => {
        gone.removeEventListener('abort', leave);
        resolve(this.releaser());
      };
      const leave = () => {
        const at = this.waiting.indexOf(take);
        if (at >= 0) this.waiting.splice(at, 1);
        resolve(null);
      };
      this.waiting.push(take);
      gone.addEventListener('abort', leave, { once: true });
    });
  }

  /** A release that frees the slot once, handing it to the longest-waiting request if any. */
  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else {
        this.account();
        this.busy--;
      }
    };
  }
}
