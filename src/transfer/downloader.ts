import { createHash } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { systemClock, type WaitClock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import type { KeyPair } from '../core/crypto.ts';
import type { Api } from '../core/http-client.ts';
import { checkManifest, pieceLength, pieceOffset, type SignedManifest } from '../content/manifest.ts';
import { DownloadJournal } from './download-journal.ts';
import { ReceiptBook } from './receipt-book.ts';
import type { SignedReceipt } from './receipt.ts';
import { pieceDeadlineMs, SourceSet, type DropReason, type Source } from './source-set.ts';
import { TokenBucket } from './token-bucket.ts';
import { SourceRefusal, type FetchedPiece } from './piece-client.ts';
import { encodeRanges, MAX_RUN_PIECES } from './piece-ranges.ts';
import type { Reservation } from '../ledger/reservations.ts';
import type { Offer, SkippedHolder } from './coordinator.ts';
import { verifyServed } from './served-attestation.ts';

// S1.6/S1.7: fetch a content piece by piece from several sources at once — peers the
// origin selected for us and the origin as last resort — verifying every piece
// against the origin-signed manifest, and its source's served statement against the
// source's key, before keeping it, writing it in place and journaling it. A source
// that stalls (judged against the rate it declared), refuses, is slow, or sends wrong
// bytes or a bad statement is dropped (and reported once), and the origin is asked
// for others. Killed and
// restarted, the download resumes from the pieces the journal names (re-checked
// against their hashes), never from zero.

export interface DownloadOptions {
  /** Origin API, signed in as the receiving terminal. */
  api: Api;
  /** The origin's public key, pinned at login; manifests must be signed by it. */
  originKey: string;
  device: { terminalId: string; keys: KeyPair };
  contentId: string;
  /**
   * Where bytes and journal go. With `final`, the data file is renamed there and the
   * journal removed at the end (`cascade get`); without, both stay (the agent's store).
   */
  files: { data: string; journal: string; final?: string };
  /** Piece requests in flight at once, over all sources (but for the origin's slice of a swarm: see requestRoom). */
  concurrency?: number;
  /** Piece requests in flight at once to one peer. */
  perPeer?: number;
  /**
   * Pieces one request may ask for, in a row, where the source has them all (#19: a run costs one
   * request, one upload slot and one round trip). Pieces in flight still count one by one against
   * `concurrency` and `perPeer`. Default RUN_PIECES; 1 asks piece by piece.
   */
  runPieces?: number;
  /** Peers to ask the origin for (0: the origin only). */
  maxPeers?: number;
  /** Holders the receiver does not want to fetch from (its own choice, S1.5). */
  exclude?: string[];
  /**
   * The receiver serves what it has (an agent): each refresh also tells the origin which pieces
   * it holds, so others are offered it (#19: one call instead of a refresh and a holdings report).
   */
  announce?: boolean;
  /** With `announce`: the origin did not record our holdings, and why (told once per code). */
  onAnnounceRefused?: (refusal: { code: string; message: string }) => void;
  /** Cap on download rate, bytes/s. */
  downRate?: number;
  /**
   * Pieces per receipt, exactly. Default: a receipt closes once it holds RECEIPT_MIN_PIECES pieces
   * and has been open RECEIPT_SPAN_MS, or at RECEIPT_MAX_PIECES (receipt-book.ts).
   */
  receiptBatch?: number;
  /**
   * A request with no bytes for this long fails, and so does one that takes this long
   * plus far more than its source's declared rate allows (pieceDeadlineMs); two such
   * failures in a row drop the source.
   */
  stallMs?: number;
  /** How often to report progress to the origin and refresh the source list. */
  refreshMs?: number;
  /**
   * End game (#19, default on): straggling last pieces are asked of a second source and the
   * first copy wins. Off, every piece waits for the source it was first asked of (however slow).
   */
  endGame?: boolean;
  /** `sequential` for streaming: lowest missing piece first. */
  order?: 'rarest' | 'sequential';
  /** Fetch pieces from this URL instead of the offered sources (tests, proxies). */
  sourceUrlOverride?: string;
  /** The manifest, if the caller already fetched and checked it. */
  manifest?: SignedManifest;
  onProgress?: (p: Progress) => void;
  /** Told of each verified piece as soon as it is on disk (an agent serves it at once). */
  onPiece?: (index: number) => void;
  /**
   * Told once every piece is verified and the file is synced, before the last receipts and the
   * end report go to the origin: the copy is whole from then on (an agent reports its holding
   * meanwhile instead of after those round trips, #19).
   */
  onComplete?: () => void;
  /**
   * The origin was out of reach when told that the transfer ended: the caller sends this
   * report later (`POST /transfers/<id>/progress` with this body), so the transfer is
   * closed and its reservation released before the hold times out (#10 point 3).
   */
  onEndUnreported?: (transferId: string, body: { piecesDone: number; done: boolean; reports: unknown[] }) => void;
  /** Told what the origin reserved when the transfer opened or resumed (#10: `cascade get` shows it on Ctrl-C). */
  onReservation?: (r: Reservation) => void;
  /** Told of every receipt as it is signed (the agent's accounting journal, S1.10). */
  onReceipt?: (id: string, receipt: SignedReceipt) => void;
  /** Stall, refresh and rate timing, the down-rate cap and proof timestamps run on it (default: the system clock). */
  clock?: WaitClock;
  /**
   * The caller keeps receipts the origin could not be given and reconciles them later
   * (S1.10): a download whose pieces are all verified then succeeds even if the origin
   * is unreachable at the end. Without it (`cascade get`), receipts must reach the origin.
   */
  offlineReceipts?: boolean;
  signal?: AbortSignal;
}

export interface Progress {
  pieces: number;
  totalPieces: number;
  bytes: number;
  totalBytes: number;
  /** Pieces found already verified when this run started. */
  resumedPieces: number;
}

export interface DownloadResult extends Progress {
  contentId: string;
  path: string;
  transferId: string;
  fetchedPieces: number;
  badPieces: number;
  receipts: number;
  title: string;
  /** Bytes per source this run. */
  bySource: Record<string, number>;
  /**
   * Holders the origin did not offer, with its reason in words (S1.5): the latest word on
   * each holder that was never offered afterwards. See describeSources.
   */
  skipped: SkippedHolder[];
  /** Every source the origin offered this run, the origin included (some may have served nothing). */
  offered: string[];
  /** Why the origin offered each source, as it last said (S2.2: an edge's routing reason). */
  reasons: Record<string, string[]>;
  dropped: Record<string, DropReason>;
  /** False when the origin could not be told that the transfer ended (see onEndUnreported). */
  endReported: boolean;
  /** What the origin reserved for this content when the transfer opened or resumed (#10), if it said. */
  reservation: Reservation | null;
  /** Receipts the origin refused for good (their pieces are not paid for). */
  refusedReceipts: { receiptId: string; code: string; message: string }[];
  /** Receipts still waiting for their source's served report at the end (kept in the journal, sent later). */
  receiptsWaiting: number;
  /** End game (#19): second requests made for a last piece (the first verified copy won). */
  duplicates: number;
  /**
   * Answers that cost a round trip and gave no piece (#19, docs/benchmarks.md): busy sources (503), pieces a source lacked (404),
   * `/have` asks, and requests to the origin withdrawn when it turned from serving everything to a slice (see withdrawBeyondSlice).
   */
  misses: { busy: number; unavailable: number; asks: number; withdrawn: number };
}

/** Files for a download to `outPath` (`cascade get`): a `.part` file and its journal beside it. */
export function fileTarget(outPath: string): DownloadOptions['files'] {
  return { data: `${outPath}.part`, journal: `${outPath}.part.journal`, final: outPath };
}

const MAX_BAD_PER_PIECE = 3;
/** The end-of-transfer report is sent again this many times (over ≈ 2 s) before it is handed to the caller. */
const END_REPORT_RETRIES = 3;
const MAX_FAILURES_PER_SOURCE = 2;

export async function fetchCheckedManifest(api: Api, contentId: string, originKey: string): Promise<SignedManifest> {
  const manifest = await api.get<SignedManifest>(`/contents/${contentId}/manifest`);
  const check = checkManifest(manifest, contentId, originKey);
  if (!check.ok) throw new AppError('manifest_invalid', `Refusing content ${contentId}: ${check.reason}.`, 502);
  return manifest;
}

export async function download(opts: DownloadOptions): Promise<DownloadResult> {
  const manifest = opts.manifest ?? (await fetchCheckedManifest(opts.api, opts.contentId, opts.originKey));
  const { journal, resumed } = DownloadJournal.open(opts.files.journal, opts.contentId, manifest);
  const file = await open(opts.files.data, resumed ? 'r+' : 'w+').catch(() => open(opts.files.data, 'w+'));
  try {
    const run = new DownloadRun(opts, manifest, journal, file);
    const result = await run.execute();
    // The data was synced when the last piece came (onComplete); the journal has the receipts since.
    journal.sync();
    await file.close();
    journal.close();
    if (opts.files.final) {
      await rename(opts.files.data, opts.files.final);
      await rm(opts.files.journal, { force: true });
    }
    return result;
  } catch (err) {
    await file.close().catch(() => {});
    journal.close();
    throw err;
  }
}

/** A request in flight for a run of pieces: its source, when it counts as stalled (once it left), and how to stop it. */
interface PieceRequest {
  source: Source;
  /** The run asked for, in order (one piece, or several in a row). */
  pieces: number[];
  /** Those whose bytes have not arrived yet. */
  awaited: Set<number>;
  /** Those still on the in-flight books (arrived ones leave once handled). */
  open: Set<number>;
  startedAt: number;
  /** When its latest piece arrived (a run's pieces come one after another). */
  lastAt: number;
  deadline: number;
  stop: AbortController;
}

/** Pieces a request asks for at most by default (runs, #19; see DownloadOptions.runPieces). */
export const RUN_PIECES = 4;
/** A peer declaring an upload rate below this is asked piece by piece (see runFor). */
export const RUN_MIN_RATE = 50_000_000;
/** How often, at most, a peer that has nothing we need is asked what it has now (`/have`, #19). */
export const HAVE_ASK_MS = 2000;
/** And a download asks one peer per this many milliseconds at most (see pickHaveAsk). */
export const HAVE_ASK_SPACING_MS = 500;

/**
 * Which idle peer to ask `/have` now, given when each last said what it has (or was asked), or
 * -1: none, unless this download asked nobody for HAVE_ASK_SPACING_MS; then the one silent the
 * longest, if silent for HAVE_ASK_MS. Per peer alone, a swarm's asks grow with the square of its
 * size (#19: 6,000–11,000 asks, ~200/s, in a 32-agent run on two cores; spaced, 800–1,300).
 */
export function pickHaveAsk(now: number, lastHeard: readonly number[], downloadLastAsk: number): number {
  if (now - downloadLastAsk < HAVE_ASK_SPACING_MS) return -1;
  let best = -1;
  for (let k = 0; k < lastHeard.length; k++) if (now - lastHeard[k] >= HAVE_ASK_MS && (best < 0 || lastHeard[k] < lastHeard[best])) best = k;
  return best;
}
/** Requests in flight to the origin when it serves us a slice of a swarm (see capOf). */
export const ORIGIN_SLICE_REQUESTS = 2;

/**
 * How many more requests `source` may take now: up to its cap, and, all sources together, up to
 * `limit` counting `counted` requests in flight. The origin's slice of a swarm (pieces nobody holds
 * yet, which only we were handed) is not counted against the limit: peers could otherwise fill
 * every request and leave those pieces waiting, and with them every receiver (#19: seen in a
 * 16-agent swarm, four pieces held by nobody from 9 to 12 s while the receiver handed them fetched
 * from peers only).
 */
export function requestRoom(source: Pick<Source, 'originSlice' | 'inFlight'>, cap: number, limit: number, counted: number): number {
  const own = cap - source.inFlight;
  return source.originSlice ? own : Math.min(own, limit - counted);
}
/** A piece from the origin's slice is announced this soon after it arrived (several arriving meanwhile share the call). */
export const ANNOUNCE_DELAY_MS = 100;
/**
 * Which sources are handed requests first: the origin's slice of a swarm (pieces it handed us
 * alone, to pass on: asked of a slow peer that happens to hold one too, such a piece stayed rare
 * for seconds — #19, a 32-agent swarm with a quarter of its agents at 1 MB/s), then peers (fastest
 * first), then the origin serving the whole content, as the last resort.
 */
export function sourceOrder(source: Pick<Source, 'isOrigin' | 'originSlice'>): number {
  return source.originSlice ? 0 : source.isOrigin ? 2 : 1;
}
/** A busy source (503) is left alone this long, doubling while it stays busy, up to BUSY_BACKOFF_MAX_MS. */
export const BUSY_BACKOFF_MS = 250;
export const BUSY_BACKOFF_MAX_MS = 2000;
/** End game: the origin duplicates a piece only once its request to a peer has run this long. */
export const ORIGIN_DUPLICATE_AFTER_MS = 1000;
/**
 * End game: a request is a straggler, worth a second copy, once it has run this many times as
 * long as a piece usually takes here (and at least END_GAME_MIN_MS). Duplicating everything, as
 * BitTorrent does with 16 KiB blocks, would waste a swarm's upload on megabyte pieces.
 */
export const STRAGGLER_FACTOR = 2;
export const END_GAME_MIN_MS = 250;

class DownloadRun {
  private readonly body: SignedManifest['body'];
  private readonly total: number;
  private readonly have = new Set<number>();
  /** Requests per piece: one, or two in the end game (the first verified copy wins). */
  private readonly inFlight = new Map<number, PieceRequest[]>();
  private requests = 0;
  /** Pieces verified, being written: a duplicate that arrives meanwhile is not written again. */
  private readonly won = new Set<number>();
  private duplicated = 0;
  private readonly misses = { busy: 0, unavailable: 0, asks: 0, withdrawn: 0 };
  /** How long a piece request usually takes (exponential average of verified ones), ms. */
  private pieceMs = 0;
  private readonly announceRefusals = new Set<string>();
  private readonly badCount = new Map<number, number>();
  private readonly buffers: Buffer[] = [];
  private readonly tasks = new Set<Promise<void>>();
  /** Reports of drops on their way to the origin (the end waits for them, then sends what failed). */
  private readonly dropReports = new Set<Promise<void>>();
  private readonly clock: WaitClock;
  private readonly sources: SourceSet;
  private readonly receipts: ReceiptBook;
  private readonly bucket?: TokenBucket;
  private readonly progress: Progress;
  private transferId: string | null = null;
  /** Holders not offered, by terminal ID (bounded: the origin lists at most a few hundred holders). */
  private readonly skipped = new Map<string, SkippedHolder>();
  private reservation: Reservation | null = null;
  /** The origin could not be told that the transfer ended (it was out of reach). */
  private endUnreported = false;
  private fatal: unknown = null;
  private fetched = 0;
  private bad = 0;
  private lastRefresh = 0;
  /** When we last asked any peer `/have` (see pickHaveAsk). */
  private lastAskAt = -Infinity;
  private refreshFailures = 0;
  private wakeUp: () => void = () => {};
  private readonly stallMs: number;
  private readonly refreshMs: number;
  private readonly runPieces: number;

  constructor(
    private readonly opts: DownloadOptions,
    manifest: SignedManifest,
    private readonly journal: DownloadJournal,
    private readonly file: FileHandle,
  ) {
    this.body = manifest.body;
    this.total = this.body.pieces.length;
    this.clock = opts.clock ?? systemClock;
    this.stallMs = opts.stallMs ?? 5000;
    this.refreshMs = opts.refreshMs ?? 2000;
    this.runPieces = Math.max(1, Math.min(MAX_RUN_PIECES, opts.runPieces ?? RUN_PIECES));
    this.sources = new SourceSet({
      contentId: opts.contentId,
      receiverKey: opts.device.keys.privateKey,
      clock: this.clock,
      originUrl: opts.api.origin,
      originKey: opts.originKey,
      connections: opts.perPeer ?? 4,
      originConnections: opts.concurrency ?? 8,
      stallMs: this.stallMs,
      sourceUrlOverride: opts.sourceUrlOverride,
    });
    this.receipts = new ReceiptBook({ api: opts.api, contentId: opts.contentId, device: opts.device, batch: opts.receiptBatch, clock: this.clock, onReceipt: opts.onReceipt }, journal, this.body);
    if (opts.downRate) this.bucket = new TokenBucket(opts.downRate, Math.max(opts.downRate, this.body.pieceSize), this.clock);
    this.progress = { pieces: 0, totalPieces: this.total, bytes: 0, totalBytes: this.body.totalSize, resumedPieces: 0 };
  }

  async execute(): Promise<DownloadResult> {
    const { opts } = this;
    if ((await this.file.stat()).size !== this.body.totalSize) await this.file.truncate(this.body.totalSize);
    await this.recheckJournal();
    await this.receipts.receiptUnreceipted();
    await this.receipts.send({ final: false });

    try {
      while (this.have.size < this.total || (this.transferId === null && this.total === 0)) {
        if (opts.signal?.aborted) {
          // Stop at once: pieces in flight are dropped (they are fetched again on resume), and requests
          // waiting for our own cap let go. Then the sources are paid for what was verified (best effort).
          this.bucket?.close();
          for (const list of this.inFlight.values()) for (const r of list) r.stop.abort(new AppError('aborted', 'The download was stopped.', 499));
          await Promise.allSettled(this.tasks);
          await this.receipts.receiptUnreceipted();
          await this.receipts.send({ final: false });
          throw new AppError('aborted', 'The download was stopped.', 499, { pieces: this.have.size, totalPieces: this.total, reservation: this.reservation });
        }
        if (this.fatal) throw this.fatal;
        const now = this.clock.now();
        this.stopLate(now);
        if (!this.refreshing && (now - this.lastRefresh >= this.refreshMs || this.sources.usable(now).length === 0)) this.startRefresh();
        // Before the first offer there is nothing to fetch from.
        if (this.transferId === null && this.refreshing) await this.refreshing;
        this.schedule();
        await new Promise<void>((resolve) => {
          this.wakeUp = resolve;
          // Not unref'd: while sources back off with nothing in flight, this timer is all that keeps a CLI process alive.
          setTimeout(resolve, Math.min(this.refreshMs, 200));
        });
      }
      // Every piece is here: what is still on its way is a duplicate (end game); not waited for.
      for (const list of this.inFlight.values()) for (const r of list) r.stop.abort(new AppError('duplicate_lost', 'Every piece arrived from elsewhere first.', 499));
      await Promise.all(this.tasks);
      if (this.fatal) throw this.fatal;
      await this.file.sync();
      this.journal.sync();
      opts.onComplete?.();
      // Its answer is no longer needed, but our end report must reach the origin after its progress report.
      await this.refreshing;
      await this.receipts.receiptUnreceipted();
      await this.receipts.send({ final: true, mustSucceed: !opts.offlineReceipts });
      await this.report(true);
    } finally {
      await this.refreshing;
      await Promise.allSettled(this.tasks);
      this.bucket?.close();
      await this.sources.close();
    }
    const bySource: Record<string, number> = {};
    const dropped: Record<string, DropReason> = {};
    for (const s of this.sources.all.values()) {
      if (s.bytes) bySource[s.id] = s.bytes;
      if (s.dropped) dropped[s.id] = s.dropped;
    }
    return {
      ...this.progress,
      contentId: opts.contentId,
      path: opts.files.final ?? opts.files.data,
      transferId: this.transferId ?? '',
      fetchedPieces: this.fetched,
      badPieces: this.bad,
      receipts: this.journal.state.receipts.size,
      title: this.body.title,
      bySource,
      skipped: [...this.skipped.values()],
      offered: [...this.sources.all.keys()],
      reasons: Object.fromEntries([...this.sources.all].map(([id, src]) => [id, src.why])),
      dropped,
      reservation: this.reservation,
      endReported: !this.endUnreported,
      refusedReceipts: this.receipts.refusals,
      receiptsWaiting: this.receipts.notYetServed,
      duplicates: this.duplicated,
      misses: { ...this.misses },
    };
  }

  /** Keeps the pieces the journal names whose bytes on disk still match their hash. */
  private async recheckJournal() {
    for (const i of [...this.journal.state.pieces.keys()]) {
      const buf = Buffer.alloc(pieceLength(this.body, i));
      await this.file.read(buf, 0, buf.length, pieceOffset(this.body, i));
      if (createHash('sha256').update(buf).digest('hex') === this.body.pieces[i]) this.have.add(i);
      else this.journal.forget(i);
    }
    for (const i of this.have) this.opts.onPiece?.(i);
    this.progress.pieces = this.progress.resumedPieces = this.have.size;
    this.progress.bytes = [...this.have].reduce((s, i) => s + pieceLength(this.body, i), 0);
    this.opts.onProgress?.({ ...this.progress });
  }

  /** The refresh on its way to the origin, if any (one at a time). */
  private refreshing: Promise<void> | null = null;

  /**
   * Starts a refresh beside the fetching (#19): the origin may take seconds to answer — a first
   * holdings claim is spot-checked by fetching a piece from us, at our capped upload rate — and
   * the sources we have keep serving meanwhile (a 32-agent swarm had downloads sitting idle for
   * up to 7 s behind their refresh). A refusal that ends the download is kept as fatal.
   */
  private startRefresh() {
    this.refreshing = this.refresh()
      .catch((err) => void (this.fatal ??= err))
      .finally(() => {
        this.refreshing = null;
        this.wakeUp();
      });
  }

  /**
   * Reports progress and asks the origin for (fresh) sources: the origin notes the
   * transfer is alive (S1.7), and offers peers minus the ones we dropped.
   */
  private async refresh() {
    this.lastRefresh = this.clock.now();
    try {
      const res = await this.opts.api.post<Offer>('/grants/auto', {
        contentId: this.opts.contentId,
        ...(this.transferId ? { transferId: this.transferId } : {}),
        exclude: [...new Set([...(this.opts.exclude ?? []), ...this.sources.dropped()])],
        maxPeers: this.opts.maxPeers ?? 6,
        piecesDone: this.have.size,
        have: encodeRanges(this.have),
        ...(this.opts.announce ? { announce: true } : {}),
      });
      this.transferId = res.transferId;
      if (res.reservation) {
        this.reservation = res.reservation;
        this.opts.onReservation?.(res.reservation);
      }
      this.sources.apply(res.sources);
      this.withdrawBeyondSlice();
      this.noteSkipped(res);
      if (res.announceRefused && !this.announceRefusals.has(res.announceRefused.code)) {
        this.announceRefusals.add(res.announceRefused.code);
        this.opts.onAnnounceRefused?.(res.announceRefused);
      }
      this.refreshFailures = 0;
    } catch (err) {
      // The origin may be briefly away: keep fetching from the sources we have.
      if (err instanceof AppError && err.status < 500 && err.code !== 'origin_unreachable') throw err;
      if (++this.refreshFailures >= 5 && this.sources.usable(this.clock.now()).length === 0) throw err;
    }
  }

  /**
   * The origin served us everything (we were its only receiver) and now hands us a slice of a
   * swarm: requests to it that have brought nothing yet and ask for other pieces are withdrawn
   * (the slice's own pieces are asked for again), as those
   * pieces go to other receivers' slices and reach us through them. Kept, they spent the origin's
   * link on copies the swarm got anyway (#19: the first caller of a 16-agent swarm had four runs of
   * four pieces queued at the origin, and the origin sent 11 pieces twice).
   */
  private withdrawBeyondSlice() {
    for (const list of this.inFlight.values()) {
      for (const r of list) {
        if (!r.source.originSlice || r.awaited.size < r.pieces.length || r.pieces.every((i) => r.source.has(i)) || r.stop.signal.aborted) continue;
        this.misses.withdrawn++;
        r.stop.abort(new AppError('withdrawn', 'The origin now serves us a slice of a swarm without some of these pieces.', 499));
      }
    }
  }

  /** A holder offered now is no longer skipped; one skipped now keeps its latest reason. */
  private noteSkipped(res: Offer) {
    for (const s of res.sources) this.skipped.delete(s.sourceId);
    for (const s of res.skipped ?? []) {
      if (this.skipped.size >= 1000 && !this.skipped.has(s.sourceId)) break;
      this.skipped.set(s.sourceId, { sourceId: s.sourceId, reason: s.reason, why: String(s.why).slice(0, 500) });
    }
  }

  /**
   * The end-of-transfer report: each peer that delivered bytes `completed` with its
   * bytes, and the drops the origin has not heard of yet (each incident is reported
   * once; a `slow` peer is no fault and is not reported).
   */
  private async report(done: boolean) {
    if (!this.transferId) return;
    await Promise.all(this.dropReports);
    const reports: { sourceId: string; kind: string; bytes: number }[] = [];
    for (const s of this.sources.all.values()) {
      if (s.isOrigin) continue;
      if (s.dropped && s.dropped !== 'slow' && !s.dropReported) reports.push({ sourceId: s.id, kind: s.dropped, bytes: s.bytes });
      if (done && s.bytes > 0) reports.push({ sourceId: s.id, kind: 'completed', bytes: s.bytes });
    }
    const body = { piecesDone: this.have.size, done, reports };
    if (!done) {
      await this.opts.api.post(`/transfers/${this.transferId}/progress`, body).catch(() => {});
      return;
    }
    // The end of a transfer releases what it reserved and closes it at the origin (#10 point 3):
    // tried a few times, then handed to the caller to send later (the agent), or said.
    for (let attempt = 0; ; attempt++) {
      try {
        await this.opts.api.post(`/transfers/${this.transferId}/progress`, body);
        return;
      } catch (err) {
        const refused = err instanceof AppError && err.status < 500 && err.code !== 'origin_unreachable';
        if (refused) return; // the origin knows better (e.g. the transfer was closed meanwhile)
        if (attempt >= END_REPORT_RETRIES) {
          this.endUnreported = true;
          this.opts.onEndUnreported?.(this.transferId, body);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
      }
    }
  }

  private needed(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.total; i++) if (!this.have.has(i) && !this.inFlight.has(i)) out.push(i);
    return out;
  }

  /** Hands out pieces to every source with room: fastest peers first, the origin last. */
  private schedule() {
    const limit = this.opts.concurrency ?? 8;
    const perPeer = this.opts.perPeer ?? 4;
    const now = this.clock.now();
    const usable = this.sources.usable(now).sort((a, b) => sourceOrder(a) - sourceOrder(b) || b.rate(now) - a.rate(now));
    let needed: number[] | null = null;
    const idle: Source[] = [];
    for (const source of usable) {
      const cap = this.capOf(source, limit, perPeer);
      let gave = false;
      for (let room = requestRoom(source, cap, limit, this.counted()); room > 0; room = requestRoom(source, cap, limit, this.counted())) {
        needed ??= this.needed();
        // A new request waits until it has room for a whole run (runs stay long), unless fewer pieces are left.
        const runMax = this.runFor(source);
        if (room < Math.min(runMax, cap, limit, needed.length)) break;
        const i = this.sources.pick(source, needed, this.opts.order ?? 'rarest', runMax > 1);
        if (i < 0) break;
        const run = [i];
        // Then the pieces after it, as long as we need them and this source may serve them (#19 runs).
        for (let j = i + 1; run.length < Math.min(room, runMax) && j < this.total && !this.have.has(j) && !this.inFlight.has(j) && this.sources.mayServe(source, j); j++) run.push(j);
        for (const j of run) needed.splice(needed.indexOf(j), 1);
        this.start(source, run);
        gave = true;
      }
      // A peer that had nothing for us may have more by now: ask it directly, now and then (#19),
      // when we have room for more requests than we could hand out.
      if (!gave && this.counted() < limit && !source.isOrigin && !source.whole && source.inFlight === 0 && !source.asking) idle.push(source);
    }
    // Still room after the later sources took their share (an ask is for when we could use more).
    const ask = this.counted() < limit ? pickHaveAsk(now, idle.map((s) => Math.max(s.askedAt, s.toldAt)), this.lastAskAt) : -1;
    if (ask >= 0) this.ask(idle[ask], now);
    if (this.opts.endGame !== false && (needed ?? this.needed()).length === 0) this.endGame(usable, limit, perPeer, now);
  }

  /** Requests in flight that count against `concurrency`: all but those for the origin's slice of a swarm (see requestRoom). */
  private counted(): number {
    let n = this.requests;
    for (const s of this.sources.all.values()) if (s.originSlice) n -= s.inFlight;
    return n;
  }

  /**
   * The longest run to ask `source` for. Runs save a request's cost, which matters at hundreds of
   * MB/s; from a capped peer, or from the origin handing out a slice of a swarm, each piece should
   * rather land as soon as it can (it is passed on only once whole), and a run at a slow peer would
   * hold its last pieces for seconds.
   */
  private runFor(source: Source): number {
    if (source.isOrigin) return source.whole ? this.runPieces : 1;
    return source.upRate === null || source.upRate >= RUN_MIN_RATE ? this.runPieces : 1;
  }

  /**
   * Requests in flight to one source at most. The origin takes them all when it serves us the
   * whole content; when it hands us a slice (a swarm, coordinator.ts originSlice) only a few, so
   * that its capped upload is not split among every receiver's eight requests at once, each at
   * a crawl (pieces spread only once whole).
   */
  private capOf(source: Source, limit: number, perPeer: number): number {
    if (!source.isOrigin) return perPeer;
    return source.whole ? limit : ORIGIN_SLICE_REQUESTS;
  }

  /**
   * End game (#19): every missing piece is on its way. A source with room takes a second copy of
   * a straggling piece (its request has run twice as long as pieces usually take), slowest source
   * first; the first verified copy wins and the other request is cancelled. The origin duplicates only what no other peer has, and only once
   * a peer has had a piece for a while: it stays the last resort.
   */
  private endGame(usable: Source[], limit: number, perPeer: number, now: number) {
    // A piece k-th in its run is due k times later than the first.
    const late = ([i, [r]]: [number, PieceRequest[]]) => r.awaited.has(i) && now - r.startedAt >= Math.max(END_GAME_MIN_MS, STRAGGLER_FACTOR * this.pieceMs * (r.pieces.indexOf(i) + 1));
    const single = [...this.inFlight].filter((entry) => entry[1].length === 1 && !this.won.has(entry[0]) && late(entry));
    if (single.length === 0) return;
    // Slowest source first, then the oldest request.
    single.sort(([, [a]], [, [b]]) => a.source.rate(now) - b.source.rate(now) || a.startedAt - b.startedAt);
    for (const source of usable) {
      const cap = this.capOf(source, limit, perPeer);
      for (let k = 0; k < single.length && requestRoom(source, cap, limit, this.counted()) > 0; k++) {
        const [i, [current]] = single[k];
        if (current.source === source || current.source.isOrigin || !source.has(i)) continue;
        if (source.isOrigin && (now - current.startedAt < ORIGIN_DUPLICATE_AFTER_MS || this.sources.live().some((p) => !p.isOrigin && p !== current.source && p.has(i)))) continue;
        single.splice(k--, 1);
        this.duplicated++;
        this.start(source, [i]);
      }
    }
  }

  /** Asks a peer which pieces it has now (`/have`); what it says overrules the origin's registry. */
  private ask(source: Source, now: number) {
    this.lastAskAt = now;
    source.asking = true;
    this.misses.asks++;
    source.askedAt = now;
    const task = source.client
      .have()
      .then((ranges) => source.tell(ranges, this.total, this.clock.now()))
      .catch(() => {}) // a peer that cannot say is simply not asked again for a while
      .finally(() => {
        source.asking = false;
        this.tasks.delete(task);
        this.wakeUp();
      });
    this.tasks.add(task);
  }

  private start(source: Source, run: number[]) {
    const now = this.clock.now();
    const request: PieceRequest = { source, pieces: run, awaited: new Set(run), open: new Set(run), startedAt: now, lastAt: now, deadline: Infinity, stop: new AbortController() };
    for (const i of run) {
      const list = this.inFlight.get(i);
      if (list) list.push(request);
      else this.inFlight.set(i, [request]);
      this.requests++;
      source.started(now);
    }
    const bufs = run.map(() => this.buffers.pop() ?? Buffer.allocUnsafe(this.body.pieceSize));
    const task = this.fetchRun(request, bufs)
      .catch((err) => this.failed(source, run.find((i) => request.awaited.has(i)) ?? run[0], err))
      .finally(() => {
        // Pieces the source did not send go back to the needed ones.
        run.forEach((i, k) => this.settle(request, i, bufs[k]));
        this.tasks.delete(task);
        this.wakeUp();
      });
    this.tasks.add(task);
  }

  /** Piece `i` of `request` is done with (handled, or not coming): it leaves the in-flight books and frees its buffer. */
  private settle(request: PieceRequest, i: number, buf: Buffer) {
    if (!request.open.delete(i)) return;
    const rest = this.inFlight.get(i)?.filter((r) => r !== request) ?? [];
    if (rest.length) this.inFlight.set(i, rest);
    else this.inFlight.delete(i);
    this.requests--;
    request.source.finished(this.clock.now());
    this.buffers.push(buf);
    this.wakeUp();
  }

  /**
   * Stops requests that ran past their deadline: their source sends far slower than the
   * rate it declared (or, with none declared, they are left to the client's silence timeout).
   */
  private stopLate(now: number) {
    for (const [i, list] of this.inFlight) {
      for (const r of list) {
        if (now <= r.deadline || r.stop.signal.aborted) continue;
        r.stop.abort(new AppError('piece_late', `Source ${r.source.id} sent piece ${i} far slower than the ${r.source.upRate} bytes/s it declared.`, 504));
      }
    }
  }

  private async fetchRun(request: PieceRequest, bufs: Buffer[]) {
    const { source, pieces } = request;
    const targets = pieces.map((i, k) => bufs[k].subarray(0, pieceLength(this.body, i)));
    const bytes = targets.reduce((n, t) => n + t.length, 0);
    if (this.bucket) await this.bucket.take(bytes);
    // The deadline runs from when the request leaves, not from the wait for our own cap, and is set
    // afresh for each piece of a run as the one before arrives: each piece is judged on its own.
    request.deadline = this.clock.now() + pieceDeadlineMs(targets[0].length, source.upRate, this.stallMs);
    request.lastAt = this.clock.now();
    const handling: Promise<void>[] = [];
    try {
      await source.client.fetchRun(
        pieces[0],
        targets,
        (k, received) => {
          const i = pieces[k];
          request.awaited.delete(i);
          if (k + 1 < pieces.length) request.deadline = this.clock.now() + pieceDeadlineMs(targets[k + 1].length, source.upRate, this.stallMs);
          if (k === 0 && received.have !== undefined) source.tell(received.have, this.total, this.clock.now());
          // Each piece is checked and kept as soon as it is in, while the rest of the run arrives.
          const handled = this.arrived(request, i, targets[k], received)
            .catch((err) => this.failed(source, i, err))
            .finally(() => this.settle(request, i, bufs[k]));
          handling.push(handled);
        },
        request.stop.signal,
      );
    } finally {
      await Promise.all(handling);
    }
  }

  /** Piece `i` of `request` arrived: verified, it is written, journaled and receipted; otherwise counted bad. */
  private async arrived(request: PieceRequest, i: number, target: Buffer, received: FetchedPiece) {
    const { source } = request;
    const len = target.length;
    // Never keep a piece whose bytes are not the ones the origin signed, nor one its
    // source did not sign as served with its own key under the grant of the request
    // (it could never be receipted and paid for).
    const verified = received.bytes === len && received.sha256 === this.body.pieces[i];
    const attested = received.served !== undefined && source.servedKey !== null && verifyServed(source.servedKey, received.grantId, i, received.served);
    if (!verified || !attested) {
      this.bad++;
      const n = (this.badCount.get(i) ?? 0) + 1;
      this.badCount.set(i, n);
      if (!source.isOrigin) this.drop(source, 'bad_piece');
      if (n >= MAX_BAD_PER_PIECE) {
        // The first piece to fail for good names the error (a run's pieces may fail together).
        this.fatal ??= verified
          ? new AppError('served_unattested', `Sources sent piece ${i} without a valid signed served statement ${n} times; nothing was kept.`, 502)
          : new AppError('piece_corrupt', `Sources sent wrong bytes for piece ${i} ${n} times; nothing unverified was kept.`, 502);
      }
      return;
    }
    // End game: the other copy won, or is being written (this one is not paid for: no receipt).
    if (this.won.has(i) || this.have.has(i)) return;
    this.won.add(i);
    // The loser is cancelled once every piece it still waits for came from elsewhere (a run goes on for the others).
    for (const other of this.inFlight.get(i) ?? []) {
      if (other !== request && [...other.awaited].every((j) => j === i || this.won.has(j) || this.have.has(j))) {
        other.stop.abort(new AppError('duplicate_lost', `Piece ${i} arrived from another source first.`, 499));
      }
    }
    try {
      await this.file.write(target, 0, len, pieceOffset(this.body, i));
    } catch (err) {
      this.won.delete(i);
      throw err;
    }
    this.won.delete(i);
    const now = this.clock.now();
    const took = now - request.lastAt;
    request.lastAt = now;
    this.pieceMs = this.pieceMs === 0 ? took : 0.8 * this.pieceMs + 0.2 * took;
    this.journal.piece(i, received.grantId, source.id, received.served!);
    this.have.add(i);
    this.opts.onPiece?.(i);
    source.failures = 0;
    source.busyStreak = 0;
    source.bytes += len;
    source.pieces++;
    this.fetched++;
    this.progress.pieces++;
    this.progress.bytes += len;
    this.opts.onProgress?.({ ...this.progress });
    this.receipts.delivered(received.grantId, source.id, i, received.served!);
    // A piece of the origin's slice is one nobody else holds: the swarm should hear of it now, not at the next refresh.
    if (this.opts.announce && source.originSlice) this.lastRefresh = Math.min(this.lastRefresh, now - this.refreshMs + ANNOUNCE_DELAY_MS);
    this.dropIfSlow(source);
  }

  private failed(source: Source, i: number, err: any) {
    if (this.opts.signal?.aborted) return; // stopped on request: no fault of the source
    const code = err instanceof AppError ? err.code : (err?.code as string | undefined);
    switch (code) {
      case 'duplicate_lost':
      case 'withdrawn':
        return; // end game: the other copy won; or the origin now leaves these pieces to the swarm: no fault of the source
      case 'piece_unavailable':
        // A peer still fetching says what it has now along with its 404 (#19).
        this.misses.unavailable++;
        if (err instanceof SourceRefusal && err.have !== undefined) source.tell(err.have, this.total, this.clock.now());
        source.lack(i);
        return;
      case 'source_busy':
        this.misses.busy++;
        // In a swarm at full speed every peer is busy: backing off further each time keeps the 503s
        // from costing more than the pieces (#19); one piece from it starts over.
        source.busyUntil = this.clock.now() + Math.min(BUSY_BACKOFF_MAX_MS, BUSY_BACKOFF_MS * 2 ** source.busyStreak);
        source.busyStreak++;
        return;
      case 'grant_expired':
        source.needsGrant = true;
        this.lastRefresh = 0;
        return;
    }
    const refused = err instanceof AppError && err.status >= 400 && err.status < 500;
    if (refused) {
      this.drop(source, 'refused');
      // Nobody left to fetch from: say why rather than wait for offers that cannot come.
      if (source.isOrigin && this.sources.live().length === 0) {
        this.fatal = new AppError(err.code, `The origin refused our piece requests (${err.code}): ${err.message}`, err.status, err.details);
      }
      return;
    }
    // Network errors and stalls (no bytes for stallMs, or late by the declared rate): retry briefly, then give up on the source.
    if (++source.failures >= MAX_FAILURES_PER_SOURCE) this.drop(source, 'stalled');
    else source.busyUntil = this.clock.now() + 200;
    if (source.isOrigin && source.dropped && this.sources.live().length === 0) {
      this.fatal = err instanceof AppError ? err : new AppError('source_unreachable', `No source could be reached: ${err?.message ?? err}`, 503);
    }
  }

  /** A peer far slower than the best one is let go in favour of others (the origin stays). */
  private dropIfSlow(source: Source) {
    if (source.isOrigin || source.pieces < 3) return;
    const now = this.clock.now();
    const peers = this.sources.live().filter((s) => !s.isOrigin && s.pieces >= 3);
    if (peers.length < 3) return;
    const best = Math.max(...peers.map((s) => s.rate(now)));
    if (source.rate(now) < best / 5) this.drop(source, 'slow');
  }

  private drop(source: Source, reason: DropReason) {
    if (source.dropped) return;
    source.dropped = reason;
    this.lastRefresh = 0; // ask the origin for a replacement at once
    if (reason === 'slow' || !this.transferId) return; // without a transfer yet, the end-of-transfer report carries it
    const sent = this.opts.api
      .post(`/transfers/${this.transferId}/progress`, { piecesDone: this.have.size, done: false, reports: [{ sourceId: source.id, kind: reason, bytes: source.bytes }] })
      .then(() => void (source.dropReported = true))
      .catch(() => {}) // the end-of-transfer report sends it again
      .finally(() => this.dropReports.delete(sent));
    this.dropReports.add(sent);
  }
}
