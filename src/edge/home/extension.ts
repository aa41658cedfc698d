import { open, rename, readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { AppError } from '../../core/errors.ts';
import type { Api } from '../../core/http-client.ts';
import { ClockJob } from '../../live/clock-job.ts';
import { deliveryMark, type DeliveryMark } from '../delivery-hook.ts';
import { variantOf } from '../../marks/video.ts';
import type { EdgeContext, EdgeExtension } from '../node.ts';
import { checkRentalTicket, SYNC_GRACE_MS, ticketTerms, type RentalTicket } from '../rental-ticket.ts';
import { DAY_MS, rentalReport } from './rental-rules.ts';
import { SegmentCorrupt, VodPackager, type VodPackage } from './vod-packager.ts';

// S2.5 (docs/edge.md "Home server"): what a home edge adds to the edge process. A member rents a
// content through the origin, which answers with a ticket it signed; the member's player shows
// the ticket here and plays the content from this edge's copy:
//   GET /play/<ticket>/file             the content's bytes, HTTP Range (206/416)
//   GET /play/<ticket>/index.m3u8       VOD HLS of a video (packaged once, vod-packager.ts)
//   GET /play/<ticket>/seg/<name>       its init and media segments
// Every byte sent goes through the delivery hook with the rental's mark (S2.3 seam). Viewing time
// is counted from the segments actually fetched (each once per rental) and, for a video played
// as a file, from the share of its bytes fetched. A clock-driven job ends each rental at its end:
// the final report (viewing plan), then the copy and its package are deleted unless another
// rental still plays it. S2.3 (#18): when the edge has the origin's pattern key (ctx.markKey), a
// video is packaged in A/B variants and each media segment is the variant the rental's 64-bit
// video codeword selects (bit k mod 64 for segment k): a file picked, no work on its bytes.

/** What the home server uses of the edge process's context (node.ts): the real EdgeContext fits it. */
export type HomeEdgeContext = Pick<EdgeContext, 'edgeId' | 'home' | 'originKey' | 'clock' | 'logger' | 'ensureContent' | 'dropContent' | 'hook' | 'deliveries'> & { api?: EdgeContext['api']; markKey?: Buffer | null };

/** One report of a delivery to the origin (the "bill" part's shape: POST /edges/me/deliveries/reports). */
export interface DeliveryReportItem {
  deliveryId: string;
  fee: number;
  bytes?: number;
  viewedSeconds?: number;
  final: boolean;
}

export interface HomeOptions {
  /**
   * Takes the final reports; resolves once they are safe. Default: the edge's delivery journal
   * (`ctx.deliveries.report`, fsynced, then sent by the reporter and billed once by delivery ID).
   */
  report?: (items: DeliveryReportItem[]) => Promise<void>;
  /** The edge's rental tickets from the origin (default GET /edges/me/rentals); null: only tickets players show. */
  fetchRentals?: (() => Promise<string[]>) | null;
  ffmpeg?: string;
  /** How often, in clock time, the job looks even when nothing is due (default 60 s). */
  maxSleepMs?: number;
}

const CHUNK = 256 * 1024;
const MAX_RENTALS = 10_000;
const MAX_INTERVALS = 4096;
/** How long after a rental's end the edge keeps asking to delete its copy (the origin's plan follows within a report). */
export const DROP_RETRY_MS = 60 * 60_000;
const CORS = {
  'access-control-allow-origin': '*',
  'access-control-expose-headers': 'content-range, accept-ranges, content-length',
};

/** What this edge knows of one rental, from its ticket and what it served (kept in <home>/home/rentals.json). */
export interface RentalState {
  ticket: RentalTicket;
  /** Media segments counted (each once). */
  segments: string[];
  segmentMs: number;
  /** Byte intervals [start, end) of the file served, merged. */
  intervals: [number, number][];
  fileSize: number | null;
  /** The video's duration (ms), when the file served is a video. */
  durationMs: number | null;
  bytesSent: number;
  /** Set once the rental is over and its final report (if any) was taken by the origin. */
  closed: boolean;
  /** Closed, and its copy still to be deleted. */
  dropPending?: boolean;
}

const newState = (ticket: RentalTicket): RentalState => ({ ticket, segments: [], segmentMs: 0, intervals: [], fileSize: null, durationMs: null, bytesSent: 0, closed: false });

/** Merges [start, end) into sorted disjoint intervals. */
export function addInterval(list: [number, number][], start: number, end: number): [number, number][] {
  const out: [number, number][] = [];
  let s = start;
  let e = end;
  for (const [a, b] of list) {
    if (b < s || a > e) out.push([a, b]);
    else {
      s = Math.min(s, a);
      e = Math.max(e, b);
    }
  }
  out.push([s, e]);
  return out.sort((x, y) => x[0] - y[0]);
}

/** Viewing seconds so far: segments' durations plus the fetched share of a video played as a file. */
export function viewedSeconds(r: RentalState): number {
  let ms = r.segmentMs;
  if (r.durationMs && r.fileSize) {
    const covered = r.intervals.reduce((t, [a, b]) => t + (b - a), 0);
    ms += (covered / r.fileSize) * r.durationMs;
  }
  return Math.floor(ms / 1000);
}

export type ByteRange = { start: number; end: number } | 'unsatisfiable' | null;

/** One `bytes=` range of a `size`-byte file (inclusive end), null without a Range header. */
export function parseRange(header: string | undefined, size: number): ByteRange {
  if (header === undefined) return null;
  // Bounded by the pattern itself: at most 16 digits a side (a longer header simply does not match).
  const m = /^bytes=(\d{0,16})-(\d{0,16})$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'unsatisfiable'; // also several ranges: one at a time
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (end < start) return 'unsatisfiable'; // also a start at or past the end (end is clamped to size - 1)
  return { start, end };
}

export class HomeServer {
  readonly packager: VodPackager;
  private readonly rentals = new Map<string, RentalState>();
  private readonly file: string;
  private loaded: Promise<void> | null = null;
  private saving: Promise<void> = Promise.resolve();
  private preparing: Promise<void> = Promise.resolve();
  readonly job: ClockJob;

  constructor(
    private readonly ctx: HomeEdgeContext,
    private readonly opts: HomeOptions = {},
  ) {
    const dir = path.join(ctx.home, 'home');
    this.file = path.join(dir, 'rentals.json');
    this.packager = new VodPackager({ dir: path.join(dir, 'vod'), ffmpeg: opts.ffmpeg, logger: ctx.logger, markKey: () => ctx.markKey });
    this.job = new ClockJob({
      clock: ctx.clock,
      maxSleepMs: opts.maxSleepMs ?? 60_000,
      round: () => this.round(),
      failed: (err) => ctx.logger.warn({ err }, 'home rental round failed'),
    });
  }

  private load() {
    this.loaded ??= readFile(this.file, 'utf8').then(
      (text) => {
        for (const r of JSON.parse(text) as RentalState[]) this.rentals.set(r.ticket.rentalId, r);
      },
      () => {},
    );
    return this.loaded;
  }

  /** Writes the rentals (in order; a temporary file renamed, so a crash leaves the old or the new). */
  private save() {
    const text = JSON.stringify([...this.rentals.values()]);
    this.saving = this.saving.then(async () => {
      await mkdir(path.dirname(this.file), { recursive: true });
      await writeFile(this.file + '.tmp', text);
      await rename(this.file + '.tmp', this.file);
    });
    return this.saving;
  }

  /** Contents the edge must keep now: those of rentals still playing (never evicted or dropped meanwhile). */
  inUse(): Set<string> {
    return new Set([...this.rentals.values()].filter((r) => !r.closed).map((r) => r.ticket.contentId));
  }

  list(): RentalState[] {
    return [...this.rentals.values()];
  }

  /** The rental a ticket names, checked; the edge learns of a rental from its first ticket. */
  async admit(token: string): Promise<RentalState> {
    await this.load();
    const c = checkRentalTicket(token, this.ctx.originKey, this.ctx.edgeId, this.ctx.clock.now());
    if (!c.ok) throw new AppError(c.code, c.message, c.status);
    let r = this.rentals.get(c.ticket.rentalId);
    if (r?.closed) throw new AppError('rental_over', 'This rental has ended; rent it again to watch.', 403);
    if (!r) {
      if (this.rentals.size >= MAX_RENTALS) throw new AppError('home_busy', `This home server plays at most ${MAX_RENTALS} rentals at once.`, 503);
      r = newState(c.ticket);
      this.rentals.set(c.ticket.rentalId, r);
      await this.save();
      this.job.wakeFor(c.ticket.endsAt);
    }
    return r;
  }

  /** Learns the rentals the origin lists for this edge (a failure is logged: the next round asks again). */
  private async sync(): Promise<void> {
    const fetch = this.opts.fetchRentals === undefined ? (this.ctx.api ? () => this.ticketsFromOrigin() : null) : this.opts.fetchRentals;
    if (!fetch) return;
    let tickets: string[];
    try {
      tickets = await fetch();
    } catch (err) {
      this.ctx.logger.warn({ err }, 'could not ask the origin for this edge’s rentals');
      return;
    }
    let learnt = false;
    for (const token of tickets.slice(0, MAX_RENTALS)) {
      const c = checkRentalTicket(token, this.ctx.originKey, this.ctx.edgeId, this.ctx.clock.now(), { ended: true });
      if (!c.ok || this.rentals.has(c.ticket.rentalId) || this.rentals.size >= MAX_RENTALS) continue;
      const r = newState(c.ticket);
      this.rentals.set(c.ticket.rentalId, r);
      learnt = true;
      if (c.ticket.endsAt > this.ctx.clock.now()) this.prepare(r);
    }
    if (learnt) await this.save();
  }

  /**
   * Gets a rental ready before its first play, one content at a time in the background: the copy
   * fetched over the fast link (ctx.ensureContent) and a video packaged. Failures are logged; the
   * first play tries again.
   */
  private prepare(r: RentalState) {
    this.preparing = this.preparing.then(async () => {
      if (r.closed || this.rentals.get(r.ticket.rentalId) !== r) return;
      try {
        const { dataPath } = await this.ctx.ensureContent(r.ticket.contentId);
        if (!r.closed) await this.packager.get(r.ticket.contentId, dataPath);
      } catch (err) {
        this.ctx.logger.warn({ err, content: r.ticket.contentId }, 'could not get a rented content ready');
      }
    });
  }

  /** Resolves once the rentals learnt so far are ready (tests). */
  ready(): Promise<void> {
    return this.preparing;
  }

  private async ticketsFromOrigin(): Promise<string[]> {
    const answer = await this.ctx.api!().request<{ tickets: string[] }>('GET', '/edges/me/rentals');
    return Array.isArray(answer.tickets) ? answer.tickets.filter((t): t is string => typeof t === 'string') : [];
  }

  /** The rental's mark, its codewords computed once (not per segment: serving stays a file pick). */
  private readonly marks = new WeakMap<RentalTicket, { key: Buffer | null | undefined; mark: DeliveryMark }>();
  private mark(t: RentalTicket): DeliveryMark {
    const known = this.marks.get(t);
    if (known && known.key === this.ctx.markKey) return known.mark;
    const mark = deliveryMark(t, this.ctx.edgeId, this.ctx.markKey);
    this.marks.set(t, { key: this.ctx.markKey, mark });
    return mark;
  }

  /** The content's package (made once); `rental_not_video` when it is not a video. */
  async package(r: RentalState): Promise<VodPackage> {
    const { dataPath } = await this.ctx.ensureContent(r.ticket.contentId);
    const pkg = await this.packager.get(r.ticket.contentId, dataPath);
    if (!pkg.video) throw new AppError('not_video', 'This content is not a video: play it as a file (…/file).', 404);
    return pkg;
  }

  async playlist(r: RentalState): Promise<string> {
    return VodPackager.playlist(await this.package(r), (name) => `seg/${name}`);
  }

  async segment(r: RentalState, name: string): Promise<Buffer> {
    await this.package(r);
    const mark = this.mark(r.ticket);
    // S2.3: the A/B variant this rental's codeword selects for the segment (a for init.mp4, unmarked rentals and unmarked packages).
    const index = /^seg_(\d{5})\.m4s$/.exec(name);
    const variant = index && mark.videoBits && mark.videoBits.length > 0 ? variantOf(mark.videoBits, Number(index[1])) : 'a';
    const got = await this.packager.file(r.ticket.contentId, name, variant).catch((e) => {
      if (e instanceof SegmentCorrupt) throw new AppError('segment_corrupt', `Segment ${name} no longer matches what was packaged.`, 500);
      throw e;
    });
    if (!got) throw new AppError('unknown_segment', `No segment ${name} in this content's package.`, 404);
    if (this.rentals.get(r.ticket.rentalId) !== r || r.closed) throw new AppError('rental_over', 'This rental has ended.', 403);
    const bytes = await this.ctx.hook.transform(mark, { name, offset: 0 }, got.bytes);
    // Viewing time: each media segment's duration, once per rental.
    if (got.file.durationMs > 0 && !r.segments.includes(name)) {
      r.segments.push(name);
      r.segmentMs += got.file.durationMs;
    }
    r.bytesSent += bytes.length;
    await this.save();
    return bytes;
  }

  /** The content's file (or one range of it), through the hook in chunks. */
  async fileStream(r: RentalState, rangeHeader: string | undefined): Promise<{ status: 200 | 206 | 416; size: number; range: { start: number; end: number } | null; body: Readable | null; mark: string }> {
    const { dataPath } = await this.ctx.ensureContent(r.ticket.contentId);
    // S2.3: the renter's own marked copy (made once per rental; ranges are read from it). A video's
    // is its package's init and the A/B variants the rental's codeword picks (one fMP4 file).
    const mark = this.mark(r.ticket);
    const pkg = mark.videoBits ? await this.packager.get(r.ticket.contentId, dataPath).catch(() => null) : null;
    const video = pkg?.video && pkg.marked && mark.videoBits ? (out: string) => this.packager.writeMarked(r.ticket.contentId, mark.videoBits!, out).then(() => true) : undefined;
    const copy = await this.ctx.hook.fileFor(mark, dataPath, { video });
    const fh = await open(copy.path, 'r');
    let size: number;
    try {
      size = (await fh.stat()).size;
    } catch (e) {
      await fh.close();
      throw e;
    }
    const range = parseRange(rangeHeader, size);
    if (range === 'unsatisfiable') {
      await fh.close();
      return { status: 416, size, range: null, body: null, mark: copy.note };
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    if (r.ticket.plan === 'viewing' && r.durationMs === null) {
      // A viewing-time rental counts a file's bytes as viewing time only for a video (its share of
      // the duration); anything else has no viewing time to charge, so it is not played that way.
      const pkg = await this.packager.get(r.ticket.contentId, dataPath).catch(() => null);
      if (!pkg?.video) {
        await fh.close();
        throw new AppError('rental_plan_unsuited', 'This content is not a video: it is rented by days, not by viewing time.', 409);
      }
      r.durationMs = pkg.totalMs;
    }
    r.fileSize = size;
    const self = this;
    async function* chunks() {
      try {
        for (let at = start; at <= end; ) {
          const len = Math.min(CHUNK, end + 1 - at);
          const buf = Buffer.alloc(len);
          const { bytesRead } = await fh.read(buf, 0, len, at);
          if (bytesRead === 0) break;
          const out = buf.subarray(0, bytesRead);
          yield out;
          // Counted as it is sent: a player that stops reading is charged for what it got.
          if (r.intervals.length < MAX_INTERVALS) r.intervals = addInterval(r.intervals, at, at + bytesRead);
          r.bytesSent += out.length;
          at += bytesRead;
        }
      } finally {
        await fh.close();
        await self.save().catch(() => {});
      }
    }
    return { status: range ? 206 : 200, size, range: { start, end }, body: size === 0 ? null : Readable.from(chunks()), mark: copy.note };
  }

  /** Journals the final reports (fsynced, in order): the edge's reporter sends them, again after a restart if need be. */
  private async journal(items: DeliveryReportItem[]): Promise<void> {
    for (const item of items) await this.ctx.deliveries.report(item);
  }

  /** One round of the expiry job: ends the rentals that are over; answers when the next one ends. */
  async round(): Promise<number | null> {
    await this.load();
    await this.sync();
    const now = this.ctx.clock.now();
    const reports: DeliveryReportItem[] = [];
    const ending: RentalState[] = [];
    for (const r of this.rentals.values()) {
      if (r.closed || now < r.ticket.endsAt) continue;
      const rep = rentalReport(ticketTerms(r.ticket), viewedSeconds(r), now);
      if (rep) reports.push({ deliveryId: r.ticket.deliveryId, fee: rep.fee, viewedSeconds: rep.viewedSeconds, bytes: r.bytesSent, final: true });
      ending.push(r);
    }
    if (ending.length > 0) {
      // The final reports first: a rental is closed (and its copy deleted) only once they are journaled (a failure is retried next round).
      if (reports.length > 0) await (this.opts.report ?? ((items) => this.journal(items)))(reports);
      for (const r of ending) {
        r.closed = true;
        r.dropPending = true;
      }
      await this.save();
      for (const r of ending) await this.ctx.hook.release(r.ticket.deliveryId).catch((err) => this.ctx.logger.warn({ err: String(err), delivery: r.ticket.deliveryId }, 'could not delete a rental’s marked copy'));
    }
    // The copies of ended rentals go once no open rental plays them. The edge keeps a copy the
    // origin's last plan still wants (it reported the rental in use until now): asked again each
    // round for DROP_RETRY_MS after the end — the next plan lets it go — then it stays as cache.
    let changed = false;
    for (const contentId of new Set([...this.rentals.values()].filter((r) => r.dropPending).map((r) => r.ticket.contentId))) {
      const same = [...this.rentals.values()].filter((o) => o.ticket.contentId === contentId);
      const pending = same.filter((o) => o.dropPending);
      const settle = () => {
        for (const o of pending) o.dropPending = false;
        changed = true;
      };
      if (same.some((o) => !o.closed)) {
        settle(); // rented again: the new rental's end decides
        continue;
      }
      await this.packager.remove(contentId); // the HLS package is ours: it goes whatever the plan says
      if (await this.ctx.dropContent(contentId)) {
        this.ctx.logger.info({ content: contentId }, 'rentals over: copy deleted');
        settle();
      } else if (pending.every((o) => now >= o.ticket.endsAt + DROP_RETRY_MS)) {
        this.ctx.logger.info({ content: contentId }, 'rentals over: the origin’s plan keeps the copy as cache');
        settle();
      }
    }
    if (changed) await this.save();
    // Closed rentals are remembered while the origin may still list them (so they are not ended twice), then forgotten.
    let pruned = false;
    for (const r of this.rentals.values()) {
      if (r.closed && now >= r.ticket.endsAt + SYNC_GRACE_MS + DAY_MS) {
        this.rentals.delete(r.ticket.rentalId);
        pruned = true;
      }
    }
    if (pruned) await this.save();
    const next = [...this.rentals.values()].filter((r) => !r.closed).map((r) => r.ticket.endsAt);
    return next.length ? Math.min(...next) : null;
  }
}

const sendError = (reply: FastifyReply, e: AppError) => reply.code(e.status).headers(CORS).type('application/json; charset=utf-8').send({ error: { code: e.code, message: e.message } });

export type HomeExtensionLike = EdgeExtension & { server: HomeServer };

/** The home server's routes and job, for `startEdge` (kind home). */
export function homeExtension(ctx: HomeEdgeContext, opts: HomeOptions = {}): HomeExtensionLike {
  const server = new HomeServer(ctx, opts);
  const routes: FastifyPluginAsync = async (app) => {
    app.options('/play/*', { config: { access: 'public' }, schema: { hide: true } }, async (_req, reply) => {
      reply.code(204).headers({ ...CORS, 'access-control-allow-methods': 'GET, HEAD, OPTIONS', 'access-control-allow-headers': 'range', 'access-control-max-age': '600' }).send();
    });
    app.get<{ Params: { '*': string } }>('/play/*', {
      config: { access: 'public' },
      schema: { summary: 'S2.5: play a rental: <ticket>/file (HTTP Range), <ticket>/index.m3u8 (VOD HLS), <ticket>/seg/<name>', tags: ['home'] },
      handler: async (req, reply) => {
        try {
          const rest = req.params['*'];
          const slash = rest.indexOf('/');
          if (slash <= 0) throw new AppError('route_not_found', 'Play …/play/<ticket>/file, …/index.m3u8 or …/seg/<name>.', 404);
          const r = await server.admit(rest.slice(0, slash));
          const what = rest.slice(slash + 1);
          reply.headers(CORS).header('cache-control', 'private, no-store');
          if (what === 'index.m3u8') return reply.type('application/vnd.apple.mpegurl').send(await server.playlist(r));
          if (what.startsWith('seg/')) {
            const name = what.slice(4);
            const bytes = await server.segment(r, name);
            return reply.type(name.endsWith('.mp4') ? 'video/mp4' : 'video/iso.segment').send(bytes);
          }
          if (what !== 'file') throw new AppError('route_not_found', `Nothing called ${what.slice(0, 40)} here: play …/file, …/index.m3u8 or …/seg/<name>.`, 404);
          const f = await server.fileStream(r, req.headers.range);
          reply.header('accept-ranges', 'bytes').header('cascade-mark', f.mark).type('application/octet-stream');
          if (f.status === 416) return reply.code(416).type('application/json').header('content-range', `bytes */${f.size}`).send({ error: { code: 'range_not_satisfiable', message: `Ask for one range of bytes within 0–${f.size - 1}, e.g. "bytes=0-1023".` } });
          if (f.status === 206) reply.code(206).header('content-range', `bytes ${f.range!.start}-${f.range!.end}/${f.size}`);
          reply.header('content-length', f.body ? f.range!.end - f.range!.start + 1 : 0);
          return reply.send(f.body ?? '');
        } catch (e) {
          if (e instanceof AppError) return sendError(reply, e);
          throw e;
        }
      },
    });
  };
  return {
    server,
    routes,
    inUse: () => server.inUse(),
    start: () => server.job.start(),
    stop: async () => {
      await server.job.stop();
      await server.ready();
    },
  };
}
