import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { contentsByIds, type ContentService } from '../content/index.ts';
import { CONTENT_ID, MAX_PRICE } from '../content/service.ts';
import type { WaitClock } from '../core/clock.ts';
import { AppError, badRequest, conflict, forbidden, notFound } from '../core/errors.ts';
import type { Principal } from '../core/http.ts';
import type { Db } from '../db/connection.ts';
import type { BookingRow, BookingService } from './bookings.ts';
import { ClockJob } from './clock-job.ts';
import { ffprobeOf, probeMedia } from './media-tools.ts';
import { assembleContent, assembleRecording, playAsFlv, RecordingProblem } from './recording-media.ts';
import type { SegmentLog, SignedSegmentEntry } from './segment-log.ts';
import { CONNECT_AFTER_MS, connectableWindow } from './slots.ts';
import type { LiveStreams } from './streams.ts';
import type { LiveRecordingsTable, RecordingStatus } from './tables.ts';

// S3.15 (#16 point 3; docs/live.md "Recording and rebroadcast"). A broadcaster asks for its
// program to be recorded (with the price of what it becomes); once the program is over the
// origin joins the takes of its signed segment log into one MP4 and publishes it through the
// content domain like any upload (manifest, pieces, price, catalogue; `cascade get` fetches it;
// issue #17 can package it for a store server, S2.6). A booking may instead name a content its
// member owns as its program: at the start the origin feeds that content into the same packaging
// path a publish takes (LiveStreams.feed), and refuses RTMP publishes to it.
// Everything is driven by the injected clock (RecordingJob); a recording is claimed by one
// conditional update before it is made, and made bit-exactly, so a second sweep, a second
// origin or a restart never publishes it twice.

/** Attempts at making a recording before it stays failed. */
export const MAX_ATTEMPTS = 3;
/** A failed attempt is tried again this long after (times the attempts so far). */
const RETRY_MS = 5 * 60_000;
/** A recording being made by an origin that stopped is taken over after this. */
const LEASE_MS = 30 * 60_000;
const TITLE_MAX = 200;

export interface Recording {
  programId: string;
  programTitle: string;
  programStart: string;
  programEnd: string;
  title: string;
  price: number;
  status: RecordingStatus;
  contentId: string | null;
  error: string | null;
  attempts: number;
  requestedAt: string;
  updatedAt: string;
}

export interface Rebroadcast {
  programId: string;
  contentId: string;
  title: string;
  durationSeconds: number;
  startedAt: string | null;
}

export interface RecordingDeps {
  db: Db;
  clock: WaitClock;
  logger: Logger;
  bookings: BookingService;
  segments: SegmentLog;
  streams: () => LiveStreams;
  content: ContentService;
  usernames: (ids: string[]) => Promise<Map<string, string>>;
  originKey: string;
  /** DATA_DIR/live: programs' segments; recordings are assembled beside them, rebroadcast sources under sources/. */
  dir: string;
  ffmpeg: string;
}


export class RecordingService {
  private readonly log: Logger;
  /** Rebroadcasts fed by this origin now. */
  private readonly feeding = new Map<string, Promise<void>>();

  constructor(private readonly deps: RecordingDeps) {
    this.log = deps.logger.child({ domain: 'live', part: 'recordings' });
  }

  // ---- the broadcaster's requests ----

  private async ownBooking(p: Principal, programId: string): Promise<BookingRow> {
    const row = await this.deps.bookings.rowForProgram(programId);
    // As elsewhere: another member's booking is not found (its existence is not told).
    if (!row || row.member_id !== p.userId) throw notFound('unknown_booking', `No booking ${programId} of yours.`);
    return row;
  }

  private over(row: BookingRow): boolean {
    return row.status === 'done' || this.deps.clock.now() >= connectableWindow(row.start_at.getTime(), row.end_at.getTime()).to;
  }

  /** Asks for the program to be recorded (before or during it; after it only if it has segments). Asking again changes price and title. */
  async request(p: Principal, programId: string, body: { price: number; title?: string }): Promise<Recording> {
    const row = await this.ownBooking(p, programId);
    if (row.status === 'cancelled') throw conflict('booking_cancelled', 'This booking was cancelled: there is no program to record.');
    const price = body.price;
    if (!Number.isSafeInteger(price) || price < 0 || price > MAX_PRICE) throw badRequest('invalid_price', `price is a whole number of minor units from 0 to ${MAX_PRICE}.`);
    const title = body.title === undefined ? null : body.title.trim();
    if (title !== null && ([...title].length === 0 || [...title].length > TITLE_MAX)) throw badRequest('invalid_title', `A recording's title is 1–${TITLE_MAX} characters.`);
    if (this.over(row) && (await this.deps.segments.takes(programId)) === 0) {
      throw conflict('nothing_recorded', `This program is over and nothing was broadcast: there is nothing to record.`);
    }
    const now = new Date(this.deps.clock.now());
    const existing = await this.rowOf(programId);
    if (existing && existing.status !== 'requested') {
      throw new AppError('recording_exists', `This program's recording is ${existing.status}${existing.content_id ? ` (content ${existing.content_id})` : ''}; it cannot be asked for again.`, 409, { status: existing.status });
    }
    const values = { price, title, updated_at: now };
    await this.deps.db
      .insertInto('live_recordings')
      .values({ program_id: programId, requested_by: p.userId, status: 'requested', attempts: 0, created_at: now, ...values })
      .onConflict((oc) => oc.column('program_id').doUpdateSet(values).where('live_recordings.status', '=', 'requested'))
      .execute();
    this.onRequested?.();
    return (await this.mineWhere(p.userId, programId))[0];
  }

  /** Set by the job: a recording asked for after its program is over is made without waiting. */
  onRequested?: () => void;

  /** Withdraws the request before the recording is being made. */
  async withdraw(p: Principal, programId: string): Promise<{ programId: string; withdrawn: true }> {
    await this.ownBooking(p, programId);
    const gone = await this.deps.db.deleteFrom('live_recordings').where('program_id', '=', programId).where('status', '=', 'requested').returning('program_id').executeTakeFirst();
    if (!gone) {
      const r = await this.rowOf(programId);
      if (!r) throw notFound('no_recording', 'This program has no recording requested.');
      throw conflict('recording_started', `The recording is already ${r.status}: it can no longer be withdrawn.`);
    }
    return { programId, withdrawn: true };
  }

  /** The caller's recordings, newest request first. */
  async mine(p: Principal): Promise<Recording[]> {
    return this.mineWhere(p.userId);
  }

  private async mineWhere(memberId: string, programId?: string): Promise<Recording[]> {
    let q = this.deps.db
      .selectFrom('live_recordings as r')
      .innerJoin('live_bookings as b', 'b.id', 'r.program_id')
      .selectAll('r')
      .select(['b.title as program_title', 'b.start_at', 'b.end_at'])
      .where('r.requested_by', '=', memberId);
    if (programId) q = q.where('r.program_id', '=', programId);
    const rows = await q.orderBy('r.created_at', 'desc').orderBy('r.program_id').limit(500).execute();
    return rows.map((r) => ({
      programId: r.program_id,
      programTitle: r.program_title,
      programStart: r.start_at.toISOString(),
      programEnd: r.end_at.toISOString(),
      title: r.title ?? r.program_title,
      price: Number(r.price),
      status: r.status,
      contentId: r.content_id,
      error: r.error,
      attempts: r.attempts,
      requestedAt: r.created_at.toISOString(),
      updatedAt: r.updated_at.toISOString(),
    }));
  }

  private rowOf(programId: string): Promise<LiveRecordingsTable | undefined> {
    return this.deps.db.selectFrom('live_recordings').selectAll().where('program_id', '=', programId).executeTakeFirst();
  }

  // ---- making recordings ----

  /** Makes every recording whose program is over (and not being logged any more). Returns how many were published. */
  async makeDue(): Promise<number> {
    const now = new Date(this.deps.clock.now());
    const due = await this.deps.db
      .selectFrom('live_recordings')
      .select('program_id')
      .where((eb) =>
        eb.or([
          eb('status', '=', 'requested'),
          eb.and([eb('status', '=', 'failed'), eb('attempts', '<', MAX_ATTEMPTS), eb('retry_at', '<=', now)]),
          eb.and([eb('status', '=', 'making'), eb('retry_at', '<=', now)]),
        ]),
      )
      .orderBy('created_at')
      .limit(100)
      .execute();
    let made = 0;
    for (const { program_id } of due) {
      const row = await this.deps.bookings.rowForProgram(program_id);
      if (!row || !this.over(row) || this.deps.streams().isBusy(program_id)) continue;
      if (await this.make(row)) made++;
    }
    return made;
  }

  /** Claims the recording (one conditional update), makes and publishes it; true if published. */
  private async make(booking: BookingRow): Promise<boolean> {
    const { db, clock } = this.deps;
    const now = clock.now();
    const claimed = await db
      .updateTable('live_recordings')
      .set((eb) => ({ status: 'making', attempts: eb('attempts', '+', 1), retry_at: new Date(now + LEASE_MS), updated_at: new Date(now) }))
      .where('program_id', '=', booking.id)
      .where((eb) =>
        eb.or([
          eb('status', '=', 'requested'),
          eb.and([eb('status', '=', 'failed'), eb('attempts', '<', MAX_ATTEMPTS), eb('retry_at', '<=', new Date(now))]),
          eb.and([eb('status', '=', 'making'), eb('retry_at', '<=', new Date(now))]),
        ]),
      )
      .returningAll()
      .executeTakeFirst();
    if (!claimed) return false; // another sweep or origin has it, or it is settled
    // Each attempt its own directory: a second maker (a lease taken over) never writes into the first's files.
    const work = path.join(this.deps.dir, booking.id, `recording-${randomBytes(6).toString('hex')}`);
    const out = path.join(work, 'recording.mp4');
    try {
      const entries: SignedSegmentEntry[] = [];
      for (let after = -1; ; ) {
        const page = await this.deps.segments.list(booking.id, after, 10_000);
        entries.push(...page);
        if (page.length < 10_000) break;
        after = page[page.length - 1].entry.seq;
      }
      const made = await assembleRecording({ dir: path.join(this.deps.dir, booking.id), entries, originKey: this.deps.originKey, work, out, ffmpeg: this.deps.ffmpeg });
      if (!made) {
        await this.settle(booking.id, { status: 'empty', error: 'nothing was broadcast: the program has no segments', retry_at: null });
        return false;
      }
      const username = (await this.deps.usernames([claimed.requested_by])).get(claimed.requested_by);
      if (!username) throw new RecordingProblem('the broadcaster’s account is gone');
      const published = await this.deps.content.publish(
        { id: claimed.requested_by, username },
        {
          title: claimed.title ?? booking.title,
          genre: booking.genre,
          price: Number(claimed.price),
          author: username,
          summary: `Recording of the live program “${booking.title}” on ${booking.channel_name}, ${booking.start_at.toISOString()} to ${booking.end_at.toISOString()}.`,
        },
        createReadStream(out),
      );
      await this.settle(booking.id, { status: 'made', content_id: published.id, error: null, retry_at: null });
      this.log.info({ program: booking.id, content: published.id, ...made }, 'live program recorded and published');
      return true;
    } catch (e) {
      const reason = e instanceof RecordingProblem || e instanceof AppError ? e.message : `unexpected: ${e instanceof Error ? e.message : String(e)}`;
      const final = claimed.attempts >= MAX_ATTEMPTS;
      await this.settle(booking.id, { status: 'failed', error: reason, retry_at: final ? null : new Date(this.deps.clock.now() + RETRY_MS * claimed.attempts) });
      this.log.warn({ program: booking.id, err: reason, attempt: claimed.attempts, final }, 'live program could not be recorded');
      return false;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  private async settle(programId: string, set: { status: RecordingStatus; error: string | null; retry_at: Date | null; content_id?: string }) {
    await this.deps.db
      .updateTable('live_recordings')
      .set({ ...set, updated_at: new Date(this.deps.clock.now()) })
      .where('program_id', '=', programId)
      .where('status', '=', 'making')
      .execute();
  }

  /** When something is next due: a recording's program ends, a failed one is retried, a rebroadcast starts. */
  async nextDue(): Promise<number | null> {
    // Only what is still to come: something already due but not ready (a take still logging, a
    // start missed while the origin was down) must not hide what comes next.
    const now = this.deps.clock.now();
    const ends = await this.deps.db
      .selectFrom('live_recordings as r')
      .innerJoin('live_bookings as b', 'b.id', 'r.program_id')
      .select((eb) => eb.fn.min('b.end_at').as('at'))
      .where('r.status', '=', 'requested')
      .where('b.end_at', '>', new Date(now - CONNECT_AFTER_MS))
      .executeTakeFirst();
    const retry = await this.deps.db
      .selectFrom('live_recordings')
      .select((eb) => eb.fn.min('retry_at').as('at'))
      .where('status', 'in', ['failed', 'making'])
      .where('retry_at', '>', new Date(now))
      .executeTakeFirst();
    const start = await this.deps.db
      .selectFrom('live_rebroadcasts as x')
      .innerJoin('live_bookings as b', 'b.id', 'x.program_id')
      .select((eb) => eb.fn.min('b.start_at').as('at'))
      .where('x.started_at', 'is', null)
      .where('b.status', '=', 'confirmed')
      .where('b.start_at', '>', new Date(now))
      .executeTakeFirst();
    const t = (d: unknown) => (d ? new Date(d as Date).getTime() : null);
    const end = t(ends?.at);
    const times = [end === null ? null : end + CONNECT_AFTER_MS, t(retry?.at), t(start?.at)].filter((x): x is number => x !== null);
    return times.length ? Math.min(...times) : null;
  }

  // ---- rebroadcasts ----

  private sourceFile(contentId: string) {
    return path.join(this.deps.dir, 'sources', `${contentId}.mp4`);
  }

  /** The content's file, assembled from its verified pieces once, and what ffprobe reads in it. */
  private async source(contentId: string) {
    const file = this.sourceFile(contentId);
    if (!existsSync(file)) await assembleContent(this.deps.content.pieceReader(), contentId, file);
    return { file, probe: await probeMedia(ffprobeOf(this.deps.ffmpeg), file) };
  }

  /** Names a content the member owns as the booking's program (before its start). */
  async setRebroadcast(p: Principal, programId: string, contentId: string): Promise<Rebroadcast> {
    const row = await this.ownBooking(p, programId);
    if (row.status === 'cancelled') throw conflict('booking_cancelled', 'This booking was cancelled.');
    if (row.status === 'live' || row.status === 'done' || this.deps.clock.now() >= row.start_at.getTime() || (await this.deps.segments.takes(programId)) > 0) {
      throw conflict('rebroadcast_too_late', `A rebroadcast is set before the program starts (${row.start_at.toISOString()}) and before anything was broadcast.`);
    }
    if (!CONTENT_ID.test(contentId)) throw badRequest('invalid_content_id', 'A content ID is 64 lower-case hex characters.');
    const facts = (await contentsByIds(this.deps.db, [contentId])).get(contentId);
    if (!facts) throw notFound('unknown_content', `No content ${contentId}.`);
    if (facts.publisherId !== p.userId) throw forbidden('not_your_content', 'Only a content you published can be rebroadcast in your booking.');
    let probe;
    try {
      probe = (await this.source(contentId)).probe;
    } catch (e) {
      throw new AppError('content_unavailable', `The content's pieces could not be read on this origin: ${e instanceof Error ? e.message : String(e)}`, 409);
    }
    if (!probe?.video) throw badRequest('not_a_video', 'That content is not a video ffmpeg can read: only a video can be rebroadcast.');
    const now = new Date(this.deps.clock.now());
    await this.deps.db
      .insertInto('live_rebroadcasts')
      .values({ program_id: programId, content_id: contentId, member_id: p.userId, started_at: null, created_at: now })
      .onConflict((oc) => oc.column('program_id').doUpdateSet({ content_id: contentId, created_at: now }).where('live_rebroadcasts.started_at', 'is', null))
      .execute();
    this.onRequested?.();
    return { programId, contentId, title: facts.title, durationSeconds: probe.durationSeconds, startedAt: null };
  }

  /** The booking's rebroadcast, if it has one (the owner only). */
  async rebroadcastOf(p: Principal, programId: string): Promise<Rebroadcast> {
    await this.ownBooking(p, programId);
    const r = await this.deps.db.selectFrom('live_rebroadcasts').selectAll().where('program_id', '=', programId).executeTakeFirst();
    if (!r) throw notFound('no_rebroadcast', 'This booking rebroadcasts nothing.');
    const facts = (await contentsByIds(this.deps.db, [r.content_id])).get(r.content_id);
    const file = this.sourceFile(r.content_id);
    const probe = existsSync(file) ? await probeMedia(ffprobeOf(this.deps.ffmpeg), file) : null;
    return { programId, contentId: r.content_id, title: facts?.title ?? '', durationSeconds: probe?.durationSeconds ?? 0, startedAt: r.started_at?.toISOString() ?? null };
  }

  /** The booking goes back to taking a live publish (before the start). */
  async clearRebroadcast(p: Principal, programId: string): Promise<{ programId: string; rebroadcast: null }> {
    await this.ownBooking(p, programId);
    const gone = await this.deps.db.deleteFrom('live_rebroadcasts').where('program_id', '=', programId).where('started_at', 'is', null).returning('program_id').executeTakeFirst();
    if (!gone) {
      const has = await this.deps.db.selectFrom('live_rebroadcasts').select('program_id').where('program_id', '=', programId).executeTakeFirst();
      if (!has) throw notFound('no_rebroadcast', 'This booking rebroadcasts nothing.');
      throw conflict('rebroadcast_too_late', 'The rebroadcast has started.');
    }
    return { programId, rebroadcast: null };
  }

  /** Whether the booking's program is a rebroadcast (RTMP publishes to it are refused). */
  async isRebroadcast(programId: string): Promise<boolean> {
    return !!(await this.deps.db.selectFrom('live_rebroadcasts').select('program_id').where('program_id', '=', programId).executeTakeFirst());
  }

  /** Starts feeding every rebroadcast whose slot has begun (once each). */
  async startDueRebroadcasts(): Promise<number> {
    const now = new Date(this.deps.clock.now());
    const due = await this.deps.db
      .selectFrom('live_rebroadcasts as x')
      .innerJoin('live_bookings as b', 'b.id', 'x.program_id')
      .select(['x.program_id', 'x.content_id'])
      .where('x.started_at', 'is', null)
      .where('b.status', '=', 'confirmed')
      .where('b.start_at', '<=', now)
      .where('b.end_at', '>', now)
      .execute();
    let started = 0;
    for (const d of due) {
      const claimed = await this.deps.db
        .updateTable('live_rebroadcasts')
        .set({ started_at: now })
        .where('program_id', '=', d.program_id)
        .where('started_at', 'is', null)
        .returning('program_id')
        .executeTakeFirst();
      if (!claimed) continue;
      const row = await this.deps.bookings.rowForProgram(d.program_id);
      if (!row) continue;
      started++;
      const running = this.feed(row, d.content_id).catch((e: unknown) => this.log.warn({ program: row.id, err: String(e) }, 'rebroadcast could not be fed'));
      this.feeding.set(row.id, running);
      void running.finally(() => this.feeding.delete(row.id));
    }
    return started;
  }

  private async feed(row: BookingRow, contentId: string) {
    const { file, probe } = await this.source(contentId);
    if (!probe?.video) throw new Error(`content ${contentId} is no longer a readable video`);
    const proc = playAsFlv({ ffmpeg: this.deps.ffmpeg, file, probe });
    let stopReason: string | null = null;
    let stderr = '';
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
    const ended = new Promise<{ detail: string }>((resolve) =>
      proc.on('close', (code) => resolve({ detail: stopReason ?? (code === 0 ? 'the content ended' : `ffmpeg exited with ${code}: ${stderr.trim().split('\n').pop() ?? ''}`) })),
    );
    this.log.info({ program: row.id, content: contentId }, 'rebroadcast on air');
    await this.deps.streams().feed(row, {
      flv: proc.stdout!,
      from: `the origin (rebroadcast of content ${contentId.slice(0, 12)})`,
      ended,
      end: (reason) => {
        stopReason ??= reason;
        proc.kill('SIGTERM');
      },
      cutAt: row.end_at.getTime(),
    });
  }

  /** Stops feeding rebroadcasts (the origin is stopping). */
  async close() {
    await Promise.allSettled([...this.feeding.values()]);
  }
}

/**
 * Makes recordings when programs end and starts rebroadcasts at their start, on the injected
 * clock: it sleeps until the next thing due (at most a minute) and wakes when a take ends or a
 * request arrives.
 */
export function recordingJob(deps: { clock: WaitClock; recordings: RecordingService; logger: Logger }): ClockJob {
  const { clock, recordings, logger } = deps;
  return new ClockJob({
    clock,
    maxSleepMs: 60_000,
    round: async () => {
      await recordings.startDueRebroadcasts();
      await recordings.makeDue();
      const due = await recordings.nextDue();
      // Something due now but not ready (a take still logging) waits for a wake or a minute.
      return due !== null && due > clock.now() ? due : null;
    },
    failed: (err) => logger.error({ err }, 'live recordings: round failed; trying again'),
  });
}
