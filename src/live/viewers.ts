import { createHmac, timingSafeEqual } from 'node:crypto';
import { sql } from 'kysely';
import type { Clock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Db } from '../db/connection.ts';

// S3.12, #15 point 3: viewer sessions. A viewer is admitted into a program with a session — a
// token bound to the program and the viewer, signed by the origin (HMAC under a key derived
// from its private key) — and counts against the channel's capacity from admission until it
// stops fetching for `idleMs`: the count is of people, not of HTTP requests. The capacity check
// and the new session are one transaction under a per-channel lock, so viewers joining at once
// cannot overfill the channel. Fetches only touch a map in memory; it is written to the table
// every few seconds (and before each admission), far inside the idle time.

export interface ViewerSession {
  id: string;
  token: string;
  programId: string;
  viewerId: string;
}

export interface AdmitInput {
  programId: string;
  channelId: string;
  capacity: number;
  viewerId: string;
}

interface Seen {
  programId: string;
  viewerId: string;
  lastSeen: number;
  /** lastSeen as last written to the table. */
  written: number;
  ended: boolean;
}

const MAX_TRACKED = 200_000;

export class ViewerSessions {
  private readonly seen = new Map<string, Seen>();

  constructor(private readonly deps: { db: Db; clock: Clock; secret: Buffer; idleMs: number }) {}

  /** How long a viewer may go without fetching before its place is free. */
  get idleMs(): number {
    return this.deps.idleMs;
  }

  private mac(id: string, programId: string, viewerId: string): string {
    return createHmac('sha256', this.deps.secret).update(`${id}\n${programId}\n${viewerId}`).digest('base64url').slice(0, 32);
  }

  /** Sessions still counting: open and fetched within idleMs (as of the table). */
  private freshSince(now: number) {
    return new Date(now - this.deps.idleMs);
  }

  /**
   * Admits `viewerId` to the program, replacing its own earlier session (one person counts once),
   * or refuses with `channel_full` while `capacity` others are watching the channel.
   */
  async admit(a: AdmitInput): Promise<{ session: ViewerSession; viewers: number; peak: number }> {
    await this.flush();
    const now = this.deps.clock.now();
    const id = newId('lvs', 16);
    const result = await this.deps.db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(hashtext(${`live-admit:${a.channelId}`}))`.execute(trx);
      // Has this person watched the program before (the total counts people once)?
      const before = await trx.selectFrom('live_viewer_sessions').select('id').where('program_id', '=', a.programId).where('viewer_id', '=', a.viewerId).limit(1).executeTakeFirst();
      const earlier = await trx
        .updateTable('live_viewer_sessions')
        .set({ ended_at: new Date(now) })
        .where('program_id', '=', a.programId)
        .where('viewer_id', '=', a.viewerId)
        .where('ended_at', 'is', null)
        .returning('id')
        .execute();
      // The channel's current viewers: open, fresh sessions of any of its programs (two programs'
      // windows overlap by a few minutes at a change-over; capacity is the channel's).
      const r = await trx
        .selectFrom('live_viewer_sessions as s')
        .innerJoin('live_bookings as b', 'b.id', 's.program_id')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('b.channel_id', '=', a.channelId)
        .where('s.ended_at', 'is', null)
        .where('s.last_seen_at', '>', this.freshSince(now))
        .executeTakeFirstOrThrow();
      const watching = Number(r.n);
      // Thrown inside: the transaction rolls back, so a refused viewer keeps any session it had.
      if (watching >= a.capacity) {
        throw new AppError(
          'channel_full',
          `This channel is full: ${watching} of ${a.capacity} viewers are watching. Try again in a little while — a place frees up when someone stops watching.`,
          503,
          { capacity: a.capacity, viewers: watching, retryAfterSeconds: Math.ceil(this.deps.idleMs / 1000) },
        );
      }
      await trx.insertInto('live_viewer_sessions').values({ id, program_id: a.programId, viewer_id: a.viewerId, admitted_at: new Date(now), last_seen_at: new Date(now), ended_at: null }).execute();
      // S3.10, S3.17: the program's peak, and its distinct viewers (one more if this one is new).
      const counted = await trx
        .updateTable('live_bookings')
        .set({
          viewer_peak: sql<number>`greatest(coalesce(viewer_peak, 0), ${watching + 1})`,
          viewer_total: sql<number>`coalesce(viewer_total, 0) + ${before ? 0 : 1}`,
        })
        .where('id', '=', a.programId)
        .returning(['viewer_peak'])
        .executeTakeFirstOrThrow();
      return { watching: watching + 1, peak: counted.viewer_peak ?? watching + 1, earlier: earlier.map((e) => e.id) };
    });
    for (const e of result.earlier) this.markEnded(e);
    this.track(id, { programId: a.programId, viewerId: a.viewerId, lastSeen: now, written: now, ended: false });
    return { session: { id, token: `${id}.${this.mac(id, a.programId, a.viewerId)}`, programId: a.programId, viewerId: a.viewerId }, viewers: result.watching, peak: result.peak };
  }

  /**
   * The session a playlist or segment request carries, touched (it keeps counting). Refusals:
   * 401 `viewer_session_required` (none), `viewer_session_invalid` (forged, or for another
   * program), `viewer_session_expired` (left, replaced, idle too long, program over: join again).
   */
  async use(token: string | undefined, programId: string): Promise<string> {
    if (!token) throw new AppError('viewer_session_required', 'Join the program first: POST /live/programs/{id}/viewers gives a viewer session.', 401);
    const [id, mac] = token.split('.');
    const known = id ? await this.lookup(id) : undefined;
    if (!known || known.programId !== programId || !mac || !safeEqual(mac, this.mac(id, known.programId, known.viewerId))) {
      throw new AppError('viewer_session_invalid', 'This viewer session is not valid for this program: join it again.', 401);
    }
    const now = this.deps.clock.now();
    if (known.ended || known.lastSeen <= now - this.deps.idleMs) {
      throw new AppError('viewer_session_expired', 'Your viewer session ended (you left, joined again elsewhere, or stopped watching for a while): join again.', 401);
    }
    known.lastSeen = Math.max(known.lastSeen, now);
    return id;
  }

  /** The viewer leaves: its place is free at once. */
  async leave(token: string, programId: string): Promise<void> {
    const id = await this.use(token, programId);
    await this.deps.db.updateTable('live_viewer_sessions').set({ ended_at: new Date(this.deps.clock.now()) }).where('id', '=', id).where('ended_at', 'is', null).execute();
    this.markEnded(id);
  }

  /** Ends every session of a program that is over. */
  async endProgram(programId: string): Promise<void> {
    await this.flush();
    const ended = await this.deps.db
      .updateTable('live_viewer_sessions')
      .set({ ended_at: new Date(this.deps.clock.now()) })
      .where('program_id', '=', programId)
      .where('ended_at', 'is', null)
      .returning('id')
      .execute();
    for (const e of ended) this.markEnded(e.id);
  }

  /** Viewers watching the program now. */
  async watching(programId: string): Promise<number> {
    await this.flush();
    const r = await this.deps.db
      .selectFrom('live_viewer_sessions')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('program_id', '=', programId)
      .where('ended_at', 'is', null)
      .where('last_seen_at', '>', this.freshSince(this.deps.clock.now()))
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /** Writes the fetch times seen since the last flush, in one statement. */
  async flush(): Promise<void> {
    const due: [string, number][] = [];
    for (const [id, s] of this.seen) if (!s.ended && s.lastSeen > s.written) due.push([id, s.lastSeen]);
    if (due.length === 0) return;
    const ids = due.map(([id]) => id);
    const times = due.map(([, t]) => new Date(t).toISOString());
    await sql`
      update live_viewer_sessions s set last_seen_at = greatest(s.last_seen_at, v.t)
      from (select unnest(${ids}::text[]) as id, unnest(${times}::timestamptz[]) as t) v
      where s.id = v.id and s.ended_at is null`.execute(this.deps.db);
    for (const [id, t] of due) {
      const s = this.seen.get(id);
      if (s) s.written = Math.max(s.written, t);
    }
    // Forget sessions long idle: the table has them, and a late request reads them back.
    const stale = this.deps.clock.now() - 2 * this.deps.idleMs;
    for (const [id, s] of this.seen) if (s.lastSeen < stale && s.written >= s.lastSeen) this.seen.delete(id);
  }

  private async lookup(id: string): Promise<Seen | undefined> {
    const s = this.seen.get(id);
    if (s) return s;
    if (!/^lvs_[A-Za-z0-9_-]{10,40}$/.test(id)) return undefined;
    const row = await this.deps.db.selectFrom('live_viewer_sessions').select(['program_id', 'viewer_id', 'last_seen_at', 'ended_at']).where('id', '=', id).executeTakeFirst();
    if (!row) return undefined;
    const t = row.last_seen_at.getTime();
    const seen = { programId: row.program_id, viewerId: row.viewer_id, lastSeen: t, written: t, ended: row.ended_at !== null };
    this.track(id, seen);
    return seen;
  }

  private track(id: string, s: Seen) {
    // Bounded: past the bound the oldest entries go (they are in the table).
    if (this.seen.size >= MAX_TRACKED) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    this.seen.set(id, s);
  }

  private markEnded(id: string) {
    const s = this.seen.get(id);
    if (s) s.ended = true;
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
