import { createHash } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { AppError } from '../core/errors.ts';
import type { KeyPair } from '../core/crypto.ts';
import type { Api } from '../cli/api.ts';
import { checkManifest, pieceLength, pieceOffset, type SignedManifest } from '../content/manifest.ts';
import { DownloadJournal } from './download-journal.ts';
import { ReceiptBook } from './receipt-book.ts';
import type { SignedReceipt } from './receipt.ts';
import { SourceSet, type DropReason, type Source, type SourceOffer } from './source-set.ts';
import { TokenBucket } from './token-bucket.ts';
import { encodeRanges } from './piece-ranges.ts';
import type { Reservation } from '../ledger/reservations.ts';

// S1.6/S1.7: fetch a content piece by piece from several sources at once — peers the
// origin selected for us and the origin as last resort — verifying every piece
// against the origin-signed manifest before keeping it, writing it in place and
// journaling it. A source that stalls, refuses, is slow, or sends wrong bytes is
// dropped (and reported), and the origin is asked for others. Killed and
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
  /** Piece requests in flight at once, over all sources. */
  concurrency?: number;
  /** Piece requests in flight at once to one peer. */
  perPeer?: number;
  /** Peers to ask the origin for (0: the origin only). */
  maxPeers?: number;
  /** Holders the receiver does not want to fetch from (its own choice, S1.5). */
  exclude?: string[];
  /** Cap on download rate, bytes/s. */
  downRate?: number;
  /** Pieces per receipt. */
  receiptBatch?: number;
  /** A request with no bytes for this long fails; two such failures drop the source. */
  stallMs?: number;
  /** How often to report progress to the origin and refresh the source list. */
  refreshMs?: number;
  /** `sequential` for streaming: lowest missing piece first. */
  order?: 'rarest' | 'sequential';
  /** Fetch pieces from this URL instead of the offered sources (tests, proxies). */
  sourceUrlOverride?: string;
  /** The manifest, if the caller already fetched and checked it. */
  manifest?: SignedManifest;
  onProgress?: (p: Progress) => void;
  /** Told of each verified piece as soon as it is on disk (an agent serves it at once). */
  onPiece?: (index: number) => void;
  /** Told what the origin reserved when the transfer opened or resumed (#10: `cascade get` shows it on Ctrl-C). */
  onReservation?: (r: Reservation) => void;
  /** Told of every receipt as it is signed (the agent's accounting journal, S1.10). */
  onReceipt?: (id: string, receipt: SignedReceipt) => void;
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
  dropped: Record<string, DropReason>;
  /** What the origin reserved for this content when the transfer opened or resumed (#10), if it said. */
  reservation: Reservation | null;
  /** Receipts the origin refused for good (their pieces are not paid for). */
  refusedReceipts: { receiptId: string; code: string; message: string }[];
  /** Receipts still waiting for their source's served report at the end (kept in the journal, sent later). */
  receiptsWaiting: number;
}

/** Files for a download to `outPath` (`cascade get`): a `.part` file and its journal beside it. */
export function fileTarget(outPath: string): DownloadOptions['files'] {
  return { data: `${outPath}.part`, journal: `${outPath}.part.journal`, final: outPath };
}

const MAX_BAD_PER_PIECE = 3;
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
    await file.sync();
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

class DownloadRun {
  private readonly body: SignedManifest['body'];
  private readonly total: number;
  private readonly have = new Set<number>();
  private readonly inFlight = new Map<number, Source>();
  private readonly badCount = new Map<number, number>();
  private readonly buffers: Buffer[] = [];
  private readonly tasks = new Set<Promise<void>>();
  private readonly sources: SourceSet;
  private readonly receipts: ReceiptBook;
  private readonly bucket?: TokenBucket;
  private readonly progress: Progress;
  private transferId: string | null = null;
  private reservation: Reservation | null = null;
  private fatal: unknown = null;
  private fetched = 0;
  private bad = 0;
  private lastRefresh = 0;
  private refreshFailures = 0;
  private wakeUp: () => void = () => {};
  private readonly stallMs: number;
  private readonly refreshMs: number;

  constructor(
    private readonly opts: DownloadOptions,
    manifest: SignedManifest,
    private readonly journal: DownloadJournal,
    private readonly file: FileHandle,
  ) {
    this.body = manifest.body;
    this.total = this.body.pieces.length;
    this.stallMs = opts.stallMs ?? 5000;
    this.refreshMs = opts.refreshMs ?? 2000;
    this.sources = new SourceSet(opts.contentId, opts.device.keys.privateKey, opts.api.origin, {
      connections: opts.perPeer ?? 4,
      originConnections: opts.concurrency ?? 8,
      stallMs: this.stallMs,
      sourceUrlOverride: opts.sourceUrlOverride,
    });
    this.receipts = new ReceiptBook({ api: opts.api, contentId: opts.contentId, device: opts.device, batch: opts.receiptBatch ?? 32, onReceipt: opts.onReceipt }, journal, this.body);
    if (opts.downRate) this.bucket = new TokenBucket(opts.downRate, Math.max(opts.downRate, this.body.pieceSize));
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
          // The sources delivered what was verified so far: hand those receipts in (best effort) before stopping.
          await Promise.allSettled(this.tasks);
          await this.receipts.receiptUnreceipted();
          await this.receipts.send({ final: false });
          throw new AppError('aborted', 'The download was stopped.', 499, { pieces: this.have.size, totalPieces: this.total, reservation: this.reservation });
        }
        if (this.fatal) throw this.fatal;
        const now = Date.now();
        if (now - this.lastRefresh >= this.refreshMs || this.sources.usable(now).length === 0) await this.refresh();
        this.schedule();
        await new Promise<void>((resolve) => {
          this.wakeUp = resolve;
          // Not unref'd: while sources back off with nothing in flight, this timer is all that keeps a CLI process alive.
          setTimeout(resolve, Math.min(this.refreshMs, 200));
        });
      }
      await Promise.all(this.tasks);
      if (this.fatal) throw this.fatal;
      await this.receipts.receiptUnreceipted();
      await this.receipts.send({ final: true, mustSucceed: !opts.offlineReceipts });
      await this.report(true);
    } finally {
      await Promise.allSettled(this.tasks);
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
      dropped,
      reservation: this.reservation,
      refusedReceipts: this.receipts.refusals,
      receiptsWaiting: this.receipts.notYetServed,
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

  /**
   * Reports progress and asks the origin for (fresh) sources: the origin notes the
   * transfer is alive (S1.7), and offers peers minus the ones we dropped.
   */
  private async refresh() {
    this.lastRefresh = Date.now();
    try {
      const res = await this.opts.api.post<{ transferId: string; sources: SourceOffer[]; reservation?: Reservation }>('/grants/auto', {
        contentId: this.opts.contentId,
        ...(this.transferId ? { transferId: this.transferId } : {}),
        exclude: [...new Set([...(this.opts.exclude ?? []), ...this.sources.dropped()])],
        maxPeers: this.opts.maxPeers ?? 6,
        piecesDone: this.have.size,
        have: encodeRanges(this.have),
      });
      this.transferId = res.transferId;
      if (res.reservation) {
        this.reservation = res.reservation;
        this.opts.onReservation?.(res.reservation);
      }
      this.sources.apply(res.sources);
      this.refreshFailures = 0;
    } catch (err) {
      // The origin may be briefly away: keep fetching from the sources we have.
      if (err instanceof AppError && err.status < 500 && err.code !== 'origin_unreachable') throw err;
      if (++this.refreshFailures >= 5 && this.sources.usable(Date.now()).length === 0) throw err;
    }
  }

  private async report(done: boolean) {
    if (!this.transferId) return;
    const reports = [...this.sources.all.values()]
      .filter((s) => !s.isOrigin && (s.dropped || (done && s.bytes > 0)))
      .map((s) => ({ sourceId: s.id, kind: s.dropped && s.dropped !== 'slow' ? s.dropped : 'completed', bytes: s.bytes }))
      .filter((r) => r.kind !== 'slow');
    await this.opts.api.post(`/transfers/${this.transferId}/progress`, { piecesDone: this.have.size, done, reports }).catch(() => {});
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
    const now = Date.now();
    const usable = this.sources.usable(now).sort((a, b) => Number(a.isOrigin) - Number(b.isOrigin) || b.rate(now) - a.rate(now));
    let needed: number[] | null = null;
    for (const source of usable) {
      const cap = source.isOrigin ? limit : perPeer;
      while (source.inFlight < cap && this.inFlight.size < limit) {
        needed ??= this.needed();
        const i = this.sources.pick(source, needed, this.opts.order ?? 'rarest');
        if (i < 0) break;
        needed.splice(needed.indexOf(i), 1);
        this.start(source, i);
      }
    }
  }

  private start(source: Source, i: number) {
    this.inFlight.set(i, source);
    source.started(Date.now());
    const buf = this.buffers.pop() ?? Buffer.allocUnsafe(this.body.pieceSize);
    const task = this.fetchPiece(source, i, buf)
      .catch((err) => this.failed(source, i, err))
      .finally(() => {
        this.inFlight.delete(i);
        source.finished(Date.now());
        this.buffers.push(buf);
        this.tasks.delete(task);
        this.wakeUp();
      });
    this.tasks.add(task);
  }

  private async fetchPiece(source: Source, i: number, space: Buffer) {
    const len = pieceLength(this.body, i);
    const target = space.subarray(0, len);
    if (this.bucket) await this.bucket.take(len);
    const received = await source.client.fetch(i, target);
    // Never keep a piece whose bytes are not the ones the origin signed, nor one its
    // source did not sign as served (it could never be receipted and paid for).
    const verified = received.bytes === len && received.sha256 === this.body.pieces[i];
    if (!verified || !received.served) {
      this.bad++;
      const n = (this.badCount.get(i) ?? 0) + 1;
      this.badCount.set(i, n);
      if (!source.isOrigin) this.drop(source, 'bad_piece');
      if (n >= MAX_BAD_PER_PIECE) {
        this.fatal = verified
          ? new AppError('served_unattested', `Sources sent piece ${i} without a signed served statement ${n} times; nothing was kept.`, 502)
          : new AppError('piece_corrupt', `Sources sent wrong bytes for piece ${i} ${n} times; nothing unverified was kept.`, 502);
      }
      return;
    }
    await this.file.write(target, 0, len, pieceOffset(this.body, i));
    this.journal.piece(i, source.grantId, source.id, received.served);
    this.have.add(i);
    this.opts.onPiece?.(i);
    source.failures = 0;
    source.bytes += len;
    source.pieces++;
    this.fetched++;
    this.progress.pieces++;
    this.progress.bytes += len;
    this.opts.onProgress?.({ ...this.progress });
    this.receipts.delivered(source.grantId, source.id, i, received.served);
    this.dropIfSlow(source);
  }

  private failed(source: Source, i: number, err: any) {
    const code = err instanceof AppError ? err.code : (err?.code as string | undefined);
    switch (code) {
      case 'piece_unavailable':
        source.lack(i);
        return;
      case 'source_busy':
        source.busyUntil = Date.now() + 250;
        return;
      case 'grant_expired':
        source.needsGrant = true;
        this.lastRefresh = 0;
        return;
    }
    const refused = err instanceof AppError && err.status >= 400 && err.status < 500;
    if (refused) return this.drop(source, 'refused');
    // Network errors and stalls (no bytes for stallMs): retry briefly, then give up on the source.
    if (++source.failures >= MAX_FAILURES_PER_SOURCE) this.drop(source, 'stalled');
    else source.busyUntil = Date.now() + 200;
    if (source.isOrigin && source.dropped && this.sources.live().length === 0) {
      this.fatal = err instanceof AppError ? err : new AppError('source_unreachable', `No source could be reached: ${err?.message ?? err}`, 503);
    }
  }

  /** A peer far slower than the best one is let go in favour of others (the origin stays). */
  private dropIfSlow(source: Source) {
    if (source.isOrigin || source.pieces < 3) return;
    const now = Date.now();
    const peers = this.sources.live().filter((s) => !s.isOrigin && s.pieces >= 3);
    if (peers.length < 3) return;
    const best = Math.max(...peers.map((s) => s.rate(now)));
    if (source.rate(now) < best / 5) this.drop(source, 'slow');
  }

  private drop(source: Source, reason: DropReason) {
    if (source.dropped) return;
    source.dropped = reason;
    this.lastRefresh = 0; // ask the origin for a replacement at once
    if (reason !== 'slow') void this.reportDrop(source, reason);
  }

  private async reportDrop(source: Source, kind: DropReason) {
    if (!this.transferId) return;
    await this.opts.api
      .post(`/transfers/${this.transferId}/progress`, { piecesDone: this.have.size, done: false, reports: [{ sourceId: source.id, kind, bytes: source.bytes }] })
      .catch(() => {});
  }
}
