import type { WaitClock } from '../core/clock.ts';

// A token bucket for link-rate limits (agents' `--up-rate` / `--down-rate`, the origin's
// ORIGIN_UP_RATE). Tokens are bytes; the bucket holds at most `burst`. Time is read from
// and waited on through the injected clock, so tests drive the bucket with a ManualClock.
//
// Who passes next (#19): callers that take once pass in the order they asked. A caller that
// takes again and again — a piece request sending its chunks — holds a `Turn`: the turn with
// the lowest rank goes first, and among equal ranks the oldest, so a source's capped link
// finishes requests one after another instead of splitting itself evenly among all of them.
// Split evenly, an origin at 16 MB/s with 32 slice requests of a swarm in flight finished its
// first 1 MiB piece after 2 s, and no peer had anything to pass on until then; oldest first,
// a piece is whole every 65 ms. (The piece server ranks a receiver's second request in
// service behind every receiver's first, and so on: each receiver gets a piece early.)
// So that no request goes silent (a receiver gives up on a source that sends nothing for
// seconds), a turn that has waited STARVED_MS since it last passed goes before the others —
// with a trickle (TRICKLE_BYTES) if it takes through `takeSome`, not a share of the link: with
// whole chunks, an origin at 4 MB/s with 32 slice requests went round-robin after a second
// (every turn starved, each let through 256 KiB in turn) and held no whole piece for 6 s.

/** A waiting turn that last passed this long ago goes before younger turns (see above). */
export const STARVED_MS = 1000;
/** What a starved turn taking through `takeSome` is let through: bytes that show the request is alive. */
export const TRICKLE_BYTES = 1024;

/** A caller's place in line: its rank, then its order (lower goes first), and when it last passed. */
export interface Turn {
  readonly rank: number;
  readonly order: number;
  lastAt: number;
}

interface Waiter {
  bytes: number;
  /** The least it takes when passed starved (`bytes` for callers of `take`). */
  least: number;
  turn: Turn;
  pass: (bytes: number) => void;
}

export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly waiting: Waiter[] = [];
  private pumping = false;
  private nextOrder = 0;
  private closed = false;
  /** Ends the pump's wait for tokens: a waiter left the line (the pump chooses again), or the bucket closed. */
  private rechoose = new AbortController();

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

  /** A place in line for a caller that will take several times: behind every turn of a lower rank, and every earlier one of its rank. */
  turn(rank = 0): Turn {
    return { rank, order: this.nextOrder++, lastAt: this.clock.now() };
  }

  /** Waits until `bytes` may pass: in the order asked, or by `turn` (see above). */
  async take(bytes: number, turn: Turn = this.turn()): Promise<void> {
    await this.wait(bytes, bytes, turn);
  }

  /**
   * Waits until some of `bytes` may pass, and says how many: all of them, or TRICKLE_BYTES when
   * the turn is let through only because it starved (see above). For a caller that sends the rest later.
   */
  takeSome(bytes: number, turn: Turn, signal?: AbortSignal): Promise<number> {
    return this.wait(bytes, Math.min(bytes, TRICKLE_BYTES), turn, signal);
  }

  /**
   * Queues a waiter. One whose `signal` aborts (its request hung up) leaves the line and passes
   * with 0 bytes: it spends no tokens, and the ones behind it do not wait for its share.
   */
  private wait(bytes: number, least: number, turn: Turn, signal?: AbortSignal): Promise<number> {
    return new Promise<number>((pass) => {
      if (signal?.aborted) return pass(0);
      const w: Waiter = { bytes, least, turn, pass };
      if (signal) {
        const leave = () => {
          const k = this.waiting.indexOf(w);
          if (k < 0) return; // passed already
          this.waiting.splice(k, 1);
          this.rechoose.abort(); // the pump may be waiting for this one's tokens
          pass(0);
        };
        signal.addEventListener('abort', leave, { once: true });
        w.pass = (n) => {
          signal.removeEventListener('abort', leave);
          pass(n);
        };
      }
      this.waiting.push(w);
      if (this.pumping) return;
      // Time nobody waited fills the bucket up to its burst only.
      this.refill(this.burst);
      void this.pump();
    });
  }

  /** Lets every waiting caller through at once and stops limiting (on shutdown, so no timer outlives its owner). */
  close() {
    this.closed = true;
    this.rechoose.abort();
  }

  /**
   * Lets waiters pass one at a time: the one due (see next) passes once the bucket holds its
   * bytes — tokens build up past `burst` for a caller taking more than the burst — and the choice
   * is made again after every wait, so a turn that came back meanwhile is not passed over.
   */
  private async pump() {
    this.pumping = true;
    while (this.waiting.length) {
      const { k, starved } = this.next();
      const w = this.waiting[k];
      const bytes = starved ? w.least : w.bytes;
      this.refill(Math.max(this.burst, bytes));
      if (this.tokens < bytes && !this.closed) {
        this.rechoose = new AbortController();
        await this.clock.sleepUntil(this.last + Math.ceil(((bytes - this.tokens) / this.bytesPerSecond) * 1000), this.rechoose.signal);
        continue;
      }
      this.waiting.splice(k, 1);
      this.tokens -= bytes;
      w.turn.lastAt = this.clock.now();
      w.pass(bytes);
    }
    this.pumping = false;
  }

  /** The waiter due now: the one starved longest if any waited STARVED_MS, else the first by rank, then age. */
  private next(): { k: number; starved: boolean } {
    const now = this.clock.now();
    let best = 0;
    for (let k = 1; k < this.waiting.length; k++) {
      const a = this.waiting[k].turn;
      const b = this.waiting[best].turn;
      const starvedA = now - a.lastAt >= STARVED_MS;
      const starvedB = now - b.lastAt >= STARVED_MS;
      if (starvedA !== starvedB ? starvedA : starvedA ? a.lastAt < b.lastAt : (a.rank - b.rank || a.order - b.order) < 0) best = k;
    }
    return { k: best, starved: now - this.waiting[best].turn.lastAt >= STARVED_MS };
  }

  /** Adds the tokens earned since the last refill, up to `cap`. */
  private refill(cap: number) {
    const now = this.clock.now();
    // A clock set back (NTP) adds nothing rather than taking tokens away.
    this.tokens = Math.min(Math.max(cap, this.tokens), this.tokens + (Math.max(0, now - this.last) / 1000) * this.bytesPerSecond);
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
