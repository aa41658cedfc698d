import { randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import type { Db } from '../db/connection.ts';
import type { ChallengePurpose } from './tables.ts';

// S1.2 challenges (issue 10 #9): random, single-use nonces a device signs with its own
// key — to log in, and to prove at registration that it holds the key it registers.
// They live in the database, so every origin process sharing it accepts a nonce any
// of them issued; taking one deletes it (one statement: two processes cannot both
// accept it). Expiry follows the injected clock.

export const CHALLENGE_TTL_MS = 60_000;
/** Live challenges at most: each new one evicts those issued this many challenges ago. */
export const MAX_LIVE_CHALLENGES = 10_000;

/** What a terminal signs to log in; fixed and prefixed so the signature means nothing elsewhere. */
export const loginMessage = (terminalId: string, nonce: string) => `cascade-login:${terminalId}:${nonce}`;

/** What a device signs to register its key: proof that it holds the private key (issue 10 #9). */
export const registerMessage = (publicKey: string, nonce: string) => `cascade-register:${publicKey}:${nonce}`;

export class ChallengeStore {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    /** Bound on live nonces, so an unauthenticated caller cannot grow the table without limit. */
    private readonly max = MAX_LIVE_CHALLENGES,
    private readonly ttlMs = CHALLENGE_TTL_MS,
  ) {}

  async issue(purpose: ChallengePurpose, subject: string): Promise<{ nonce: string; expiresAt: number }> {
    const now = this.clock.now();
    const nonce = randomBytes(24).toString('base64url');
    const expiresAt = now + this.ttlMs;
    const { seq } = await this.db
      .insertInto('terminal_challenges')
      .values({ nonce, purpose, subject, created_at: new Date(now), expires_at: new Date(expiresAt) })
      .returning('seq')
      .executeTakeFirstOrThrow();
    // The expired ones go, and those issued `max` or more challenges ago: a flood evicts the
    // oldest, and must outpace a device's own challenge-then-sign to evict its nonce.
    await this.db
      .deleteFrom('terminal_challenges')
      .where((eb) => eb.or([eb('expires_at', '<=', new Date(now)), eb('seq', '<=', Number(seq) - this.max)]))
      .execute();
    return { nonce, expiresAt };
  }

  /**
   * Removes the nonce whatever happens next (single use: a failed attempt burns it too)
   * and says whether it was live and issued for this purpose and subject.
   */
  async take(nonce: string, purpose: ChallengePurpose, subject: string | null): Promise<boolean> {
    const row = await this.db.deleteFrom('terminal_challenges').where('nonce', '=', nonce).returningAll().executeTakeFirst();
    if (!row) return false;
    return row.expires_at.getTime() > this.clock.now() && row.purpose === purpose && row.subject === subject;
  }
}
