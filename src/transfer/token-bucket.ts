// A token bucket for link-rate limits (`--down-rate`, and upload slots in agents).
// Tokens are bytes; the bucket holds at most one second's worth (or one piece, if larger).

export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  private queue: Promise<void> = Promise.resolve();
  private readonly sleeping = new Map<NodeJS.Timeout, () => void>();
  private closed = false;

  constructor(
    private readonly bytesPerSecond: number,
    private readonly burst = bytesPerSecond,
  ) {
    if (!(bytesPerSecond > 0)) throw new RangeError('rate must be positive');
    this.tokens = burst;
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
    if (this.tokens < 0 && !this.closed) {
      const ms = (-this.tokens / this.bytesPerSecond) * 1000;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.sleeping.delete(timer);
          resolve();
        }, ms);
        this.sleeping.set(timer, resolve);
      });
      this.refill();
    }
  }

  /** Lets every waiting caller through at once and stops limiting (on shutdown, so no timer outlives its owner). */
  close() {
    this.closed = true;
    for (const [timer, resolve] of this.sleeping) {
      clearTimeout(timer);
      resolve();
    }
    this.sleeping.clear();
  }

  private refill() {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond);
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
