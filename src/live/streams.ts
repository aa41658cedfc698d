import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { verifyPassword } from '../accounts/passwords.ts';
import { AttemptLimiter } from '../core/attempts.ts';
import { monotonicMs, type WaitClock } from '../core/clock.ts';
import { sha256Hex, type KeyPair } from '../core/crypto.ts';
import { AppError, conflict, notFound } from '../core/errors.ts';
import type { Principal } from '../core/http.ts';
import type { BookingRow, BookingService } from './bookings.ts';
import type { ExtensionOffer } from './extension-rules.ts';
import { ingestDecision, type IngestRefusal } from './ingest-rules.ts';
import { startPackager } from './packager.ts';
import { createRtmpServer, type PublishStart, type RtmpServer } from './rtmp/index.ts';
import { renderPlaylist, SegmentLog, type SegmentEntry, type SignedSegmentEntry } from './segment-log.ts';
import { connectableWindow } from './slots.ts';
import { ViewerSessions } from './viewers.ts';

// The streaming half of live channels (S3.9–S3.12, #15): RTMP ingest keyed by the reservation ID,
// each program packaged to HLS by ffmpeg and logged segment by segment as signed entries, viewers
// admitted by capacity and password with sessions, and the broadcaster's live figures.

export interface StreamsDeps {
  clock: WaitClock;
  keys: KeyPair;
  logger: Logger;
  metrics: Registry;
  bookings: BookingService;
  segments: SegmentLog;
  viewers: ViewerSessions;
  /** Where programs' segments are written (DATA_DIR/live). */
  dir: string;
  segmentSeconds: number;
  /** Media segments a live playlist lists. */
  playlistSegments: number;
  /** The ffmpeg program (default: `ffmpeg` on PATH). */
  ffmpeg?: string;
  /** S3.15: whether the booking's program is a rebroadcast (then RTMP publishes are refused). */
  rebroadcasts?: (programId: string) => Promise<boolean>;
  /** Called when a take is over and its last segment logged (recordings wait for it, S3.15). */
  onTakeEnded?: (programId: string) => void;
}

/** Whether `ffmpeg -version` runs: null if so, else the reason. */
function ffmpegProblem(ffmpeg: string): Promise<string | null> {
  return new Promise((resolve) =>
    execFile(ffmpeg, ['-hide_banner', '-version'], { timeout: 10_000 }, (err) => resolve(err ? `${ffmpeg} does not run: ${err.message}` : null)),
  );
}

/** Where a take's media comes from: an RTMP publish, or the origin itself (a rebroadcast, S3.15). */
export interface TakeSource {
  /** The media as FLV. */
  flv: Readable;
  /** Who sends it, for the booking's history ("on air (take 2) from …"). */
  from: string;
  /** Settles when the source has stopped sending. */
  ended: Promise<{ detail: string }>;
  /** Stops the source, with the reason. */
  end(reason: string): void;
  /** Set for a take the origin feeds (S3.15): it stops at the slot's end, moved by an extension; unset: a broadcaster, cut at the window's end. */
  cutAt?: number;
}

/** One program being published on this origin now. */
interface OnAir {
  programId: string;
  take: number;
  source: TakeSource;
  since: number;
  last: SegmentEntry | null;
  /** The media entries a live playlist lists, newest last: playlists of a program on air are made from memory. */
  recent: SegmentEntry[];
  /** Bytes received, by second on the monotonic clock: the current bitrate. */
  meter: { t: number; bytes: number }[];
  stop: AbortController;
  /** The slot's end (moved by an extension, S3.13): distribution stops here. */
  endAt: number;
  /** Wakes the end timers when the end moves. */
  moved: AbortController;
}

export interface BroadcastStatus {
  programId: string;
  title: string;
  status: string;
  /** S3.10: the origin's clock; the client compares with its own for the offset. */
  now: string;
  epochMs: number;
  start: string;
  end: string;
  windowEnd: string;
  elapsedSeconds: number;
  remainingSeconds: number;
  channel: { id: string; name: string; capacity: number; bitrateKbps: number };
  ingest: { live: boolean; since: string | null; take: number | null; bitrateKbps: number; segments: number };
  /** S3.13: whether what is received reaches viewers — stopped once the slot has ended. */
  distribution: 'before_start' | 'on' | 'stopped';
  viewers: { now: number; peak: number; total: number; capacity: number };
  /** S3.13: the extension offer in the slot's last ten minutes, or why there is none. */
  extension: ExtensionOffer;
}

const METER_SECONDS = 5;

export class LiveStreams {
  readonly rtmp: RtmpServer;
  private readonly closer = new AbortController();
  /** Aborts when the origin stops: held connections (the status stream) end. */
  readonly closing = this.closer.signal;
  private readonly onAir = new Map<string, OnAir>();
  /** Per program, the take being handled (settles when its last segment is logged). */
  private readonly takes = new Map<string, Promise<void>>();
  private readonly refused: Counter<'reason'>;
  private readonly accepted: Counter;
  private readonly segmentsLogged: Counter;
  private readonly admissions: Counter<'result'>;
  private readonly passwordAttempts: AttemptLimiter;
  /** Segments as logged, by program/name: the live edge is asked for by every viewer at once. Bounded by bytes. */
  private readonly served = new LRUCache<string, Buffer>({ maxSize: 64 * 1024 * 1024, sizeCalculation: (b) => Math.max(1, b.length) });
  /** Publishes being handled: closing waits for them to write their last segment and status. */
  private readonly running = new Set<Promise<void>>();

  /** null when ffmpeg answers; else why not (checked once, at start). */
  private readonly ffmpegReady: Promise<string | null>;

  constructor(private readonly deps: StreamsDeps) {
    this.ffmpegReady = ffmpegProblem(deps.ffmpeg ?? 'ffmpeg');
    const log = deps.logger.child({ domain: 'live', part: 'ingest' });
    this.refused = new Counter({ name: 'cascade_live_ingest_refused_total', help: 'Publishes refused before acknowledgement, by reason (S3.9)', labelNames: ['reason'], registers: [deps.metrics] });
    this.accepted = new Counter({ name: 'cascade_live_ingest_accepted_total', help: 'Publishes accepted (S3.9)', registers: [deps.metrics] });
    this.admissions = new Counter({ name: 'cascade_live_admissions_total', help: 'Viewers joining programs, by result: admitted or the refusal code (S3.11, S3.12)', labelNames: ['result'], registers: [deps.metrics] });
    this.segmentsLogged = new Counter({ name: 'cascade_live_segments_total', help: 'HLS segments signed into programs’ live manifests', registers: [deps.metrics] });
    const onAir = this.onAir;
    new Gauge({
      name: 'cascade_live_programs_on_air',
      help: 'Programs being published on this origin',
      registers: [deps.metrics],
      collect() {
        this.set(onAir.size);
      },
    });
    this.passwordAttempts = new AttemptLimiter(deps.clock, 5, 60_000, 'wrong passwords for this program');
    this.rtmp = createRtmpServer<BookingRow>({
      log,
      authorize: (key, app) => this.authorize(key, app),
      onPublish: (p) => this.track(this.publish(p, log)),
      onRefused: (code) => this.refused.inc({ reason: code }),
    });
  }

  private track(p: Promise<void>): Promise<void> {
    this.running.add(p);
    return p.finally(() => this.running.delete(p));
  }

  // ---- S3.9 ingest ----

  private async authorize(key: string, app: string) {
    const row = await this.deps.bookings.forIngest(key);
    const d = ingestDecision(app, row && { status: row.status, startAt: row.start_at.getTime(), endAt: row.end_at.getTime() }, this.deps.clock.now());
    if (!d.ok) return { ok: false as const, reason: d.reason, tell: d.tell, code: d.code };
    // S3.15: a booking that rebroadcasts a content is fed by the origin; it takes no publish.
    if (await this.deps.rebroadcasts?.(row!.id)) {
      return { ok: false as const, reason: 'the booking rebroadcasts a content', tell: 'This booking rebroadcasts a recording: the origin feeds it, so it takes no live publish.', code: 'rebroadcast_booking' };
    }
    // Accepting a publish nobody can package would show the broadcaster a live stream no one sees.
    const ffmpeg = await this.ffmpegReady;
    if (ffmpeg !== null) return { ok: false as const, reason: ffmpeg, tell: 'The server cannot package live video right now; tell its operator.', code: 'packager_unavailable' };
    return { ok: true as const, session: row! };
  }

  private async publish(p: PublishStart<BookingRow>, log: Logger) {
    this.accepted.inc();
    await this.take(p.session, { flv: p.flv, from: p.remote, ended: p.ended, end: (reason) => this.rtmp.end(p.key, reason) }, log);
  }

  /**
   * One take of a program from any source (an RTMP publish, or the origin feeding a content for a
   * rebroadcast, S3.15): the same packaging, signed log, playlist and live/off_air marks.
   * A quick reconnect: the previous take may still be logging its last segment; the new take's
   * entries go after it (two appenders at one position would collide on the log's key).
   */
  private async take(row: BookingRow, source: TakeSource, log: Logger) {
    const previous = this.takes.get(row.id);
    const finished = this.startTake(row.id);
    try {
      await previous;
      await this.onAirTake(source, row, log);
    } finally {
      finished();
      this.deps.onTakeEnded?.(row.id);
    }
  }

  /**
   * S3.15: the origin feeds a program itself (a rebroadcast): `source` is FLV it makes. Returns
   * when the take is over. The cut comes at `cutAt` (the slot's end) instead of the window's end.
   */
  feed(row: BookingRow, source: TakeSource): Promise<void> {
    const log = this.deps.logger.child({ domain: 'live', part: 'rebroadcast' });
    return this.track(this.take(row, source, log));
  }

  /** Whether a take of the program is on air or still logging its last segments. */
  isBusy(programId: string): boolean {
    return this.onAir.has(programId) || this.takes.has(programId);
  }

  /** Marks the program's current take as running; the returned function marks it over. */
  private startTake(programId: string): () => void {
    let done!: () => void;
    const running = new Promise<void>((resolve) => (done = resolve));
    this.takes.set(programId, running);
    return () => {
      if (this.takes.get(programId) === running) this.takes.delete(programId);
      done();
    };
  }

  private async onAirTake(p: TakeSource, row: BookingRow, log: Logger) {
    const last = await this.deps.segments.last(row.id);
    const take = (await this.deps.segments.takes(row.id)) + 1;
    if (!(await this.deps.bookings.markLive(row.id, `on air (take ${take}) from ${p.from}`))) {
      p.end('the booking can no longer go live');
      return;
    }
    const recent = await this.deps.segments.tail(row.id, this.deps.playlistSegments);
    const air: OnAir = { programId: row.id, take, source: p, since: this.deps.clock.now(), last, recent, meter: [], stop: new AbortController(), endAt: row.end_at.getTime(), moved: new AbortController() };
    this.onAir.set(row.id, air);
    p.flv.on('data', (chunk: Buffer) => this.meter(air, chunk.length));
    const dir = path.join(this.deps.dir, row.id);
    mkdirSync(dir, { recursive: true });
    const prefix = `t${take}_`;
    const packager = startPackager({
      dir,
      prefix,
      flv: p.flv,
      bitrateKbps: row.channel_bitrate_kbps,
      segmentSeconds: this.deps.segmentSeconds,
      ffmpeg: this.deps.ffmpeg,
      log,
      onSegment: async (seg) => {
        // S3.13: distribution stops at the slot's end; what arrives after it reaches no one.
        if (this.deps.clock.now() >= air.endAt) {
          await rm(seg.file, { force: true });
          return;
        }
        const bytes = await readFile(seg.file);
        const signed = await this.deps.segments.append(row.id, air.last, { name: seg.name, init: `${prefix}init.mp4`, sha256: sha256Hex(bytes), bytes: bytes.length, durationMs: seg.durationMs }, this.deps.clock.now());
        air.last = signed.entry;
        if (signed.entry.durationMs > 0) air.recent = [...air.recent, signed.entry].slice(-this.deps.playlistSegments);
        this.served.set(`${row.id}/${seg.name}`, bytes);
        this.segmentsLogged.inc();
      },
    });
    // S3.13: at the slot's end the program's viewers are let go (their playlist ends); at the
    // window's end a broadcaster's connection is cut, at the slot's end an origin-fed rebroadcast
    // (S3.15) stops. An extension moves them (`extended`).
    const fed = p.cutAt !== undefined;
    void this.untilEnd(air, () => air.endAt).then(async (reached) => {
      if (reached) await this.deps.viewers.endProgram(row.id).catch((e: unknown) => log.warn({ program: row.id, err: String(e) }, 'viewer sessions not ended'));
    });
    void this.untilEnd(air, () => (fed ? air.endAt : connectableWindow(row.start_at.getTime(), air.endAt).to)).then((reached) => {
      if (reached) p.end(fed ? 'the slot ended' : 'the connectable window closed');
    });
    // ffmpeg stopping on its own (a stream it cannot read) ends the publish: nothing would reach viewers.
    void packager.done.then((r) => {
      if (!air.stop.signal.aborted) p.end(`packaging stopped: ${r.error ?? `ffmpeg exited with ${r.exitCode}`}`);
    });
    const ended = await p.ended;
    air.stop.abort();
    const packaged = await packager.done;
    if (packaged.error) log.warn({ program: row.id, err: packaged.error }, 'live packaging stopped with an error');
    this.onAir.delete(row.id);
    await this.deps.bookings.markOffAir(row.id, `off air (take ${take}): ${ended.detail}`);
    if (this.deps.clock.now() >= air.endAt) await this.deps.viewers.endProgram(row.id);
  }

  /** Sleeps until `at()` on the clock, again each time the end moves; false if the take ended first. */
  private async untilEnd(air: OnAir, at: () => number): Promise<boolean> {
    for (;;) {
      const moved = air.moved.signal;
      const stop = AbortSignal.any([air.stop.signal, moved]);
      await this.deps.clock.sleepUntil(at(), stop).catch(() => {});
      if (air.stop.signal.aborted) return false;
      if (moved.aborted) continue;
      // Another origin may have extended the booking: the row has the last word.
      const row = await this.deps.bookings.rowForProgram(air.programId);
      if (row && row.end_at.getTime() > air.endAt) {
        air.endAt = row.end_at.getTime();
        continue;
      }
      if (this.deps.clock.now() >= at()) return true;
    }
  }

  /** S3.13: the booking was extended to `end`; the program on air runs on. */
  extended(programId: string, end: number) {
    const air = this.onAir.get(programId);
    if (!air || end <= air.endAt) return;
    air.endAt = end;
    const moved = air.moved;
    air.moved = new AbortController();
    moved.abort();
  }

  private meter(air: OnAir, bytes: number) {
    const t = Math.floor(monotonicMs() / 1000);
    const lastBucket = air.meter[air.meter.length - 1];
    if (lastBucket && lastBucket.t === t) lastBucket.bytes += bytes;
    else air.meter.push({ t, bytes });
    while (air.meter.length > METER_SECONDS + 1) air.meter.shift();
  }

  /** Incoming bitrate over the last full seconds (kbit/s). */
  private bitrate(air: OnAir | undefined): number {
    if (!air) return 0;
    const now = Math.floor(monotonicMs() / 1000);
    const full = air.meter.filter((b) => b.t < now && b.t >= now - METER_SECONDS);
    if (full.length === 0) return 0;
    const span = Math.min(METER_SECONDS, now - full[0].t);
    return Math.round((full.reduce((s, b) => s + b.bytes, 0) * 8) / 1000 / Math.max(1, span));
  }

  isOnAir(programId: string): boolean {
    return this.onAir.has(programId);
  }

  // ---- S3.11, S3.12 admission ----

  /** Admits the caller to a program that is on air: its password where it has one, then a place in the channel. */
  async admit(p: Principal, programId: string, password: string | undefined) {
    try {
      const r = await this.admitOnce(p, programId, password);
      this.admissions.inc({ result: 'admitted' });
      return r;
    } catch (e) {
      this.admissions.inc({ result: e instanceof AppError ? e.code : 'error' });
      throw e;
    }
  }

  private async admitOnce(p: Principal, programId: string, password: string | undefined) {
    const row = await this.deps.bookings.rowForProgram(programId);
    // A Secret program is not found by anyone who does not have its ID; a cancelled one is gone.
    if (!row || row.status === 'cancelled') throw notFound('unknown_program', `No program ${programId}.`);
    // S3.13: distribution stops at the slot's end, even while the broadcaster is still connected.
    if (row.status === 'done' || this.deps.clock.now() >= row.end_at.getTime()) throw conflict('program_over', `This program ended at ${row.end_at.toISOString()}.`);
    if (!this.onAir.has(programId)) {
      throw new AppError('not_live', `The program is not on air${this.deps.clock.now() < row.start_at.getTime() ? `: it starts at ${row.start_at.toISOString()}` : ' right now (the broadcaster is not sending)'}. Try again then.`, 409, { start: row.start_at.toISOString() });
    }
    if (row.password_hash) {
      const attemptKey = `${programId}:${p.userId}`;
      this.passwordAttempts.check(attemptKey);
      if (!password) throw new AppError('viewer_password_required', 'This program needs its password.', 401);
      if (!(await verifyPassword(password, row.password_hash))) {
        this.passwordAttempts.fail(attemptKey);
        throw new AppError('wrong_password', 'That is not the program’s password.', 403);
      }
    }
    const admitted = await this.deps.viewers.admit({ programId, channelId: row.channel_id, capacity: row.channel_capacity, viewerId: p.userId });
    return {
      session: admitted.session.token,
      playlist: `/live/programs/${programId}/index.m3u8?s=${encodeURIComponent(admitted.session.token)}`,
      viewers: admitted.viewers,
      capacity: row.channel_capacity,
      idleSeconds: Math.round(this.deps.viewers.idleMs / 1000),
    };
  }

  /** The program's playlist for a viewer holding `token`: from memory while on air, else from the log. */
  async playlist(programId: string, token: string | undefined): Promise<string> {
    await this.deps.viewers.use(token, programId);
    const air = this.onAir.get(programId);
    let media: SegmentEntry[];
    let ended = false;
    if (air && this.deps.clock.now() < air.endAt) media = air.recent;
    else {
      const row = await this.deps.bookings.rowForProgram(programId);
      if (!row) throw notFound('unknown_program', `No program ${programId}.`);
      // S3.13: the playlist ends with the slot (ENDLIST), whether or not the broadcaster still sends.
      ended = row.status === 'done' || this.deps.clock.now() >= row.end_at.getTime();
      media = await this.deps.segments.tail(programId, ended ? 100_000 : this.deps.playlistSegments);
    }
    if (media.length === 0) throw new AppError('no_segments_yet', 'The first segment is being made; ask again in a second.', 503, { retryAfterSeconds: 1 });
    const s = encodeURIComponent(token!);
    return renderPlaylist({ media, ended, targetSeconds: this.deps.segmentSeconds, uri: (name) => `segments/${name}?s=${s}` });
  }

  /**
   * A segment of the program for a viewer holding `token`: one the program's log holds, with the
   * bytes it signed. Recent segments come from memory (every viewer asks for the same few);
   * others are read from disk and checked against their logged SHA-256 first.
   */
  async segment(programId: string, name: string, token: string | undefined): Promise<Buffer> {
    await this.deps.viewers.use(token, programId);
    const cached = this.served.get(`${programId}/${name}`);
    if (cached) return cached;
    if (!/^t\d{1,6}_(init\.mp4|seg_\d{6,9}\.m4s)$/.test(name)) throw notFound('unknown_segment', `No segment ${name}.`);
    const logged = await this.deps.segments.has(programId, name);
    if (!logged) throw notFound('unknown_segment', `No segment ${name} in this program.`);
    const bytes = await readFile(path.join(this.deps.dir, programId, name));
    // What is served is what was signed: a file changed on disk is not sent.
    if (sha256Hex(bytes) !== logged.sha256) throw new AppError('segment_corrupt', `Segment ${name} does not match the program's signed log.`, 500);
    this.served.set(`${programId}/${name}`, bytes);
    return bytes;
  }

  async leave(programId: string, token: string) {
    await this.deps.viewers.leave(token, programId);
  }

  /** The signed live manifest (entries after `after`), for relays and checkers. */
  async manifest(programId: string, after: number): Promise<{ programId: string; originKey: string; entries: SignedSegmentEntry[] }> {
    const row = await this.deps.bookings.rowForProgram(programId);
    if (!row || row.status === 'cancelled') throw notFound('unknown_program', `No program ${programId}.`);
    return { programId, originKey: this.deps.keys.publicKeyB64, entries: await this.deps.segments.list(programId, after, 1000) };
  }

  /** Viewers now, peak and total: public figures of a program. */
  async audience(programId: string) {
    const row = await this.deps.bookings.rowForProgram(programId);
    if (!row || row.status === 'cancelled') throw notFound('unknown_program', `No program ${programId}.`);
    return { programId, onAir: this.onAir.has(programId), viewers: await this.deps.viewers.watching(programId), capacity: row.channel_capacity, peak: row.viewer_peak ?? 0, total: row.viewer_total ?? 0 };
  }

  // ---- S3.14 the channel's URL ----

  /**
   * What the channel carries now: the program whose slot holds `now` (null between programs,
   * or when it is Secret: that one is watched from its own page), whether it is on air, and the
   * next one. Players of the channel's page show the filler whenever `program` is null or not
   * on air, and switch at the slot's start and end.
   */
  async channelNow(channelId: string) {
    const now = this.deps.clock.now();
    const rows = (await this.deps.bookings.onChannel(channelId, now, now + 86_400_000)).filter((r) => r.open_level !== 'secret');
    const program = (r: BookingRow | undefined) =>
      r && { id: r.id, title: r.title, start: r.start_at.toISOString(), end: r.end_at.toISOString(), openLevel: r.open_level, onAir: this.onAir.has(r.id) && now >= r.start_at.getTime() };
    const current = rows.find((r) => r.start_at.getTime() <= now && now < r.end_at.getTime());
    const next = rows.find((r) => r.start_at.getTime() > now);
    return { channelId, now: new Date(now).toISOString(), program: program(current) ?? null, next: program(next) ?? null, filler: `/live/channels/${channelId}/filler.m3u8` };
  }

  // ---- S3.10 the broadcaster's view ----

  async status(p: Principal, programId: string): Promise<BroadcastStatus> {
    // One read a second per watching broadcaster: the row, with the same refusal as GET /live/bookings/{id}.
    const row = await this.deps.bookings.rowForProgram(programId);
    if (!row || (row.member_id !== p.userId && !p.roles.includes('operator'))) throw notFound('unknown_booking', `No booking ${programId} of yours.`);
    const now = this.deps.clock.now();
    const air = this.onAir.get(programId);
    const start = row.start_at.getTime();
    const end = row.end_at.getTime();
    const segments = air?.last ? air.last.media - (air.last.durationMs > 0 ? 0 : 1) : 0;
    const extension = await this.deps.bookings.extensionFor(row);
    return {
      programId,
      title: row.title,
      status: row.status,
      now: new Date(now).toISOString(),
      epochMs: now,
      start: row.start_at.toISOString(),
      end: row.end_at.toISOString(),
      windowEnd: new Date(connectableWindow(start, end).to).toISOString(),
      elapsedSeconds: Math.max(0, Math.floor((now - start) / 1000)),
      remainingSeconds: Math.max(0, Math.ceil((end - now) / 1000)),
      channel: { id: row.channel_id, name: row.channel_name, capacity: row.channel_capacity, bitrateKbps: row.channel_bitrate_kbps },
      ingest: { live: !!air, since: air ? new Date(air.since).toISOString() : null, take: air?.take ?? null, bitrateKbps: this.bitrate(air), segments },
      distribution: now < start ? 'before_start' : now < end ? 'on' : 'stopped',
      viewers: { now: await this.deps.viewers.watching(programId), peak: row.viewer_peak ?? 0, total: row.viewer_total ?? 0, capacity: row.channel_capacity },
      extension,
    };
  }

  // ---- running ----

  async listen(port: number, host: string) {
    const a = await this.rtmp.listen(port, host);
    const problem = await this.ffmpegReady;
    if (problem) this.deps.logger.warn({ err: problem }, 'live ingest will refuse publishes: install ffmpeg (Debian: apt-get install ffmpeg)');
    return a;
  }

  async close() {
    this.closer.abort();
    for (const air of this.onAir.values()) {
      air.stop.abort();
      air.source.end('the origin is stopping');
    }
    await this.rtmp.close();
    await Promise.allSettled([...this.running]);
    await this.deps.viewers.flush().catch(() => {});
  }
}

export type { IngestRefusal };
