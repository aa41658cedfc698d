import { AppError } from '../core/errors.ts';

// Upload slots of a piece server (agents' `--slots`, the origin's ORIGIN_SLOTS /
// ORIGIN_QUEUE; #10.7 bounded resources): at most `slots` pieces are served at once,
// up to `queue` more requests wait their turn in arrival order, and any request beyond
// that is refused at once with 503 `source_busy`. A waiting request holds no piece
// bytes, only its socket.

export class UploadSlots {
  private busy = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    readonly slots: number,
    readonly queue: number,
  ) {
    if (!(Number.isInteger(slots) && slots >= 1)) throw new RangeError('slots must be a positive integer');
    if (!(Number.isInteger(queue) && queue >= 0)) throw new RangeError('queue must be a non-negative integer');
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
      else this.busy--;
    };
  }
}
