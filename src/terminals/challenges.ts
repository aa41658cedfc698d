import { randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.ts';

// S1.2 login challenges: random, single-use nonces that expire. They live in memory
// only: a challenge is worth nothing after a minute, and a restart merely makes a
// terminal ask again. With several origin processes a terminal must log in at the
// process that challenged it (sticky sessions), or ask again.

export const CHALLENGE_TTL_MS = 60_000;

/** What a terminal signs to log in; fixed and prefixed so the signature means nothing elsewhere. */
export const loginMessage = (terminalId: string, nonce: string) => `cascade-login:${terminalId}:${nonce}`;

interface Pending {
  terminalId: string;
  expiresAt: number;
}

export class ChallengeStore {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly clock: Clock,
    /** Bound on live nonces, so an unauthenticated caller cannot grow memory without limit. */
    private readonly max = 10_000,
    private readonly ttlMs = CHALLENGE_TTL_MS,
  ) {}

  issue(terminalId: string): { nonce: string; expiresAt: number } {
    if (this.pending.size >= this.max) this.evict();
    const nonce = randomBytes(24).toString('base64url');
    const expiresAt = this.clock.now() + this.ttlMs;
    this.pending.set(nonce, { terminalId, expiresAt });
    return { nonce, expiresAt };
  }

  /**
   * Removes the nonce whatever happens next (single use: a failed login burns it too)
   * and says whether it was live and issued to `terminalId`.
   */
  take(nonce: string, terminalId: string | null): boolean {
    const p = this.pending.get(nonce);
    if (!p) return false;
    this.pending.delete(nonce);
    return p.expiresAt > this.clock.now() && p.terminalId === terminalId;
  }

  get size(): number {
    return this.pending.size;
  }

  clear(): void {
    this.pending.clear();
  }

  /** Drops expired nonces; if still full, the oldest (Map keeps insertion order). */
  private evict(): void {
    const now = this.clock.now();
    for (const [nonce, p] of this.pending) if (p.expiresAt <= now) this.pending.delete(nonce);
    while (this.pending.size >= this.max) {
      const oldest = this.pending.keys().next().value as string;
      this.pending.delete(oldest);
    }
  }
}
