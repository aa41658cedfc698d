import { createHash } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { AppError } from '../core/errors.ts';
import type { KeyPair } from '../core/crypto.ts';
import type { Api } from '../cli/api.ts';
import { checkManifest, pieceLength, pieceOffset, type SignedManifest } from '../content/manifest.ts';
import { DownloadJournal } from './download-journal.ts';
import { PieceClient } from './piece-client.ts';
import { encodeRanges } from './piece-ranges.ts';
import { makeReceipt } from './receipt.ts';
import { TokenBucket } from './token-bucket.ts';

// S1.6: fetch a content piece by piece under a grant, verify every piece against the
// origin-signed manifest before keeping it, write it in place, journal it, and sign
// receipts for what was verified. Killed and restarted, it resumes from the pieces
// the journal names (re-checked against their hashes), never from zero.

export interface DownloadOptions {
  /** Origin API, signed in as the receiving terminal. */
  api: Api;
  /** The origin's public key, pinned at login; manifests must be signed by it. */
  originKey: string;
  device: { terminalId: string; keys: KeyPair };
  contentId: string;
  outPath: string;
  /** Piece requests in flight at once. */
  concurrency?: number;
  /** Cap on download rate, bytes/s. */
  downRate?: number;
  /** Pieces per receipt. */
  receiptBatch?: number;
  /** Fetch pieces from this URL instead of the grant's source (tests, proxies). */
  sourceUrlOverride?: string;
  onProgress?: (p: Progress) => void;
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
  fetchedPieces: number;
  badPieces: number;
  receipts: number;
  title: string;
}

const MAX_BAD_PER_PIECE = 3;
const MAX_NETWORK_RETRIES = 5;

export async function download(opts: DownloadOptions): Promise<DownloadResult> {
  const { api, contentId } = opts;
  const manifest = await api.get<SignedManifest>(`/contents/${contentId}/manifest`);
  const check = checkManifest(manifest, contentId, opts.originKey);
  if (!check.ok) throw new AppError('manifest_invalid', `Refusing content ${contentId}: ${check.reason}.`, 502);
  const body = manifest.body;
  const total = body.pieces.length;

  const partPath = `${opts.outPath}.part`;
  const { journal, resumed } = DownloadJournal.open(`${opts.outPath}.part.journal`, contentId, manifest);
  const file = await open(partPath, resumed ? 'r+' : 'w+').catch(() => open(partPath, 'w+'));
  try {
    if ((await file.stat()).size !== body.totalSize) await file.truncate(body.totalSize);

    // Re-check what the journal claims against the bytes on disk.
    const have = new Set<number>();
    for (const i of [...journal.state.pieces.keys()]) {
      const buf = Buffer.alloc(pieceLength(body, i));
      await file.read(buf, 0, buf.length, pieceOffset(body, i));
      if (hashOf(buf) === body.pieces[i]) have.add(i);
      else journal.forget(i);
    }
    const progress: Progress = {
      pieces: have.size,
      totalPieces: total,
      bytes: [...have].reduce((s, i) => s + pieceLength(body, i), 0),
      totalBytes: body.totalSize,
      resumedPieces: have.size,
    };
    opts.onProgress?.({ ...progress });

    const receipts = new ReceiptBook(opts, journal, body);
    await receipts.receiptUnreceipted();
    await receipts.send(false);

    const bucket = opts.downRate ? new TokenBucket(opts.downRate, Math.max(opts.downRate, body.pieceSize)) : undefined;
    let fetched = 0;
    let bad = 0;
    const badCount = new Map<number, number>();

    while (have.size < total) {
      const missing = [...Array(total).keys()].filter((i) => !have.has(i));
      const grant = await api.post<{ id: string; token: string; sourceId: string; sourceUrl: string | null }>('/grants', {
        contentId,
        pieces: encodeRanges(missing),
      });
      const client = new PieceClient(opts.sourceUrlOverride ?? grant.sourceUrl ?? api.origin, { id: grant.id, token: grant.token, contentId }, opts.device.keys.privateKey, opts.concurrency ?? 8);
      const queue = missing.slice();
      let grantExpired = false;

      const worker = async () => {
        const space = Buffer.allocUnsafe(body.pieceSize); // reused for every piece this worker fetches
        while (queue.length > 0 && !grantExpired) {
          const i = queue.shift()!;
          const len = pieceLength(body, i);
          const target = space.subarray(0, len);
          let received = { bytes: 0, sha256: '' };
          for (let attempt = 1; ; attempt++) {
            try {
              if (bucket) await bucket.take(len);
              received = await client.fetch(i, target);
              break;
            } catch (err) {
              if (err instanceof AppError && err.code === 'grant_expired') {
                grantExpired = true;
                queue.unshift(i);
                return;
              }
              const refusal = err instanceof AppError && err.status >= 400 && err.status < 500;
              if (refusal || attempt >= MAX_NETWORK_RETRIES) throw err;
              await new Promise((r) => setTimeout(r, 100 * attempt));
            }
          }
          // Never keep a piece whose bytes are not the ones the origin signed.
          if (received.bytes !== len || received.sha256 !== body.pieces[i]) {
            bad++;
            const n = (badCount.get(i) ?? 0) + 1;
            badCount.set(i, n);
            if (n >= MAX_BAD_PER_PIECE) {
              throw new AppError('piece_corrupt', `Source ${grant.sourceId} sent wrong bytes for piece ${i} ${n} times; nothing unverified was kept.`, 502);
            }
            queue.push(i);
            continue;
          }
          await file.write(target, 0, len, pieceOffset(body, i));
          journal.piece(i, grant.id, grant.sourceId);
          have.add(i);
          fetched++;
          progress.pieces++;
          progress.bytes += len;
          opts.onProgress?.({ ...progress });
          await receipts.delivered(grant.id, grant.sourceId, i);
        }
      };
      try {
        await Promise.all(Array.from({ length: opts.concurrency ?? 8 }, worker));
      } finally {
        await client.close();
      }
    }

    await receipts.receiptUnreceipted();
    await receipts.send(true);
    await file.sync();
    journal.sync();
    await file.close();
    await rename(partPath, opts.outPath);
    journal.close();
    await rm(`${opts.outPath}.part.journal`, { force: true });
    return {
      ...progress,
      contentId,
      path: opts.outPath,
      fetchedPieces: fetched,
      badPieces: bad,
      receipts: journal.state.receipts.size,
      title: body.title,
    };
  } catch (err) {
    await file.close().catch(() => {});
    journal.close();
    throw err;
  }
}

function hashOf(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Turns verified pieces into signed receipts and hands them to the origin. */
class ReceiptBook {
  private readonly pending = new Map<string, { grant: string; source: string; pieces: number[] }>();
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly opts: DownloadOptions,
    private readonly journal: DownloadJournal,
    private readonly body: SignedManifest['body'],
  ) {}

  async delivered(grant: string, source: string, index: number) {
    const key = `${grant}|${source}`;
    if (!this.pending.has(key)) this.pending.set(key, { grant, source, pieces: [] });
    const group = this.pending.get(key)!;
    group.pieces.push(index);
    if (group.pieces.length >= (this.opts.receiptBatch ?? 32)) {
      this.pending.delete(key);
      this.make(group);
      void this.send(false); // best effort now; the end of the download waits for all

    }
  }

  /** Receipts for every journaled piece not yet covered (after a restart, or at the end). */
  async receiptUnreceipted() {
    this.pending.clear();
    for (const group of this.journal.unreceipted()) this.make(group);
  }

  private make(group: { grant: string; source: string; pieces: number[] }) {
    const pieces = encodeRanges(group.pieces);
    const bytes = group.pieces.reduce((s, i) => s + pieceLength(this.body, i), 0);
    const receipt = makeReceipt(
      { grant: group.grant, content: this.opts.contentId, source: group.source, receiver: this.opts.device.terminalId, pieces, bytes },
      this.opts.device.keys.privateKey,
    );
    this.journal.receipt(receipt, JSON.parse(receipt.body).id, group.grant, group.source, group.pieces);
  }

  /** Sends unacknowledged receipts; `mustSucceed` at the end, best effort before. */
  send(mustSucceed: boolean): Promise<void> {
    this.sending = this.sending.then(async () => {
      const unacked = [...this.journal.state.receipts.entries()].filter(([, r]) => !r.acked);
      if (unacked.length === 0) return;
      try {
        const res = await this.opts.api.post<{ accepted: string[]; duplicates: string[] }>('/receipts', { receipts: unacked.map(([, r]) => r.receipt) });
        for (const id of [...res.accepted, ...res.duplicates]) this.journal.ack(id);
      } catch (err) {
        if (mustSucceed) throw err;
      }
    });
    return this.sending;
  }
}
