import canonicalizeModule from 'canonicalize';
import { terminalSession, type KeyStore, type TerminalSession } from './device.ts';
// The whole-file hash is fed piece by piece (WebCrypto digests only whole buffers, which
// would need a second copy of the content): @noble/hashes' audited incremental SHA-256.
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import {
  abortedError,
  browserClock,
  callApi,
  CascadeError,
  defaultFetch,
  encodeRanges,
  importPublicKey,
  pause,
  refusal,
  sha256Hex,
  signText,
  utf8,
  verifySignature,
  type Clock,
  type FetchLike,
} from './wire.ts';

const canonicalize = canonicalizeModule as unknown as (v: unknown) => string | undefined;

// A signed-in member downloads a content in the browser the way a terminal does
// (S1.6, docs/protocol.md "Downloading in a browser"): the manifest is checked against
// the origin's key, the origin grants and reserves (`POST /grants/auto`, origin only),
// every piece is fetched under the grant with a signed proof, kept only if its SHA-256
// is the manifest's and the origin's `Cascade-Served` statement verifies, and signed
// receipts pay for what arrived. The content ends up as a Blob of the verified pieces.

export interface ManifestBody {
  v: 1;
  title: string;
  summary: string;
  author: string;
  genre: string;
  price: number;
  publisher: string;
  pieceSize: number;
  totalSize: number;
  pieces: string[];
  createdAt: string;
}

export interface SignedManifest {
  body: ManifestBody;
  signature: string;
}

export interface DownloadProgress {
  /** Verified pieces so far. */
  pieces: number;
  totalPieces: number;
  /** Verified bytes so far. */
  bytes: number;
  totalBytes: number;
}

export interface ReceiptRefusal {
  receiptId: string;
  code: string;
  message: string;
}

export interface DownloadResult {
  blob: Blob;
  /** Hex SHA-256 of the whole content. */
  sha256: string;
  bytes: number;
  contentId: string;
  title: string;
  terminalId: string;
  transferId: string;
  receipts: {
    /** Receipt IDs the origin accepted (or already had). */
    accepted: string[];
    /**
     * Receipts the origin refused, with its code — and those it still called
     * `receipt_not_served` after the retries, or that could not reach it (`origin_unreachable`).
     */
    refused: ReceiptRefusal[];
  };
}

export interface DownloadOptions {
  /** The origin's URL, e.g. `location.origin` (no trailing slash). */
  origin: string;
  /** The member's account session token. */
  accountToken: string;
  contentId: string;
  /** Where the browser's terminal key lives (indexedDbKeyStore() in a page). */
  keyStore: KeyStore;
  onProgress?: (p: DownloadProgress) => void;
  signal?: AbortSignal;
  /** fetch to use (default: the page's). */
  fetch?: FetchLike;
  /** The browser's clock (default Date.now); request proofs are corrected to the origin's clock measured at login. */
  clock?: Clock;
  /** The origin's Ed25519 key (base64url), if the app pinned it; default: `GET /health` `originKey`. */
  originKey?: string;
  /** Terminal name when this browser registers (default "Web browser"). */
  terminalName?: string;
  /** Piece requests in flight at once (default 4). */
  concurrency?: number;
  /** Pieces per receipt: receipts cover aligned blocks of this many pieces (default 32). */
  receiptBatch?: number;
  /** Larger contents are refused (`content_too_large`) before anything is reserved (default 2 GiB: the Blob lives in the page). */
  maxBytes?: number;
  /** How often (by `clock`) the transfer's progress is reported and its grant refreshed (default 10 s). */
  refreshMs?: number;
  /** A piece request with no bytes for this long (real time) fails and is tried again (default 30 s). */
  stallMs?: number;
  /** Real-time pause before the n-th retry (0-based) of receipts the origin calls `receipt_not_served`, and of busy or unreachable requests. */
  retryDelayMs?: (attempt: number) => number;
}

const ORIGIN_SOURCE_ID = 'origin';
/** Three wrong copies of one piece end the download (as `cascade get`). */
const MAX_BAD_PER_PIECE = 3;
/** Network failures of one piece in a row before the download gives up. */
const MAX_FAILURES_PER_PIECE = 3;
/** Proofs are re-signed this often: sources accept them within ±120 s. */
const PROOF_RESIGN_MS = 30_000;
/** `receipt_not_served` (the origin has not yet noted what it sent) is tried again this many times at the end. */
const RECEIPT_RETRIES = 8;
const MAX_RECEIPTS_PER_REQUEST = 1000;
const DEFAULT_MAX_BYTES = 2 * 1024 ** 3;
const defaultRetryDelay = (attempt: number) => Math.min(250 * 2 ** attempt, 2000);

function pieceLength(body: ManifestBody, index: number): number {
  return index === body.pieces.length - 1 ? body.totalSize - index * body.pieceSize : body.pieceSize;
}

/** `rc_` + the first 32 hex digits of SHA-256(`grant|source|pieces`), as src/transfer/receipt.ts. */
export async function receiptId(grantId: string, sourceId: string, pieces: string): Promise<string> {
  return `rc_${(await sha256Hex(`${grantId}|${sourceId}|${pieces}`)).slice(0, 32)}`;
}

export interface ReceiptFields {
  grant: string;
  content: string;
  source: string;
  receiver: string;
  pieces: string;
  bytes: number;
  served: string[];
}

/** A signed receipt: the exact JSON text signed, byte for byte what src/transfer/receipt.ts makes. */
export async function makeReceipt(fields: ReceiptFields, privateKey: CryptoKey): Promise<{ body: string; signature: string }> {
  const body = {
    typ: 'receipt',
    id: await receiptId(fields.grant, fields.source, fields.pieces),
    grant: fields.grant,
    content: fields.content,
    source: fields.source,
    receiver: fields.receiver,
    pieces: fields.pieces,
    bytes: fields.bytes,
    served: fields.served,
  };
  const text = JSON.stringify(body);
  return { body: text, signature: await signText(privateKey, text) };
}

/**
 * The manifest of `contentId`, accepted only if its canonical body (RFC 8785) hashes to
 * the content ID and the origin's key signed it; otherwise `manifest_invalid`.
 */
export async function fetchVerifiedManifest(f: FetchLike, origin: string, contentId: string, originKey: CryptoKey, signal?: AbortSignal): Promise<SignedManifest> {
  if (!/^[0-9a-f]{64}$/.test(contentId)) throw new CascadeError('invalid_content_id', `"${contentId}" is not a content ID (64 hex characters).`);
  const m = await callApi<SignedManifest>(f, origin, 'GET', `/contents/${contentId}/manifest`, { signal });
  const bad = (reason: string) => new CascadeError('manifest_invalid', `Refusing content ${contentId}: ${reason}.`, 502);
  const b = m?.body;
  const wellFormed =
    b &&
    typeof b === 'object' &&
    typeof m.signature === 'string' &&
    Number.isSafeInteger(b.pieceSize) &&
    b.pieceSize > 0 &&
    Number.isSafeInteger(b.totalSize) &&
    b.totalSize >= 0 &&
    Array.isArray(b.pieces) &&
    b.pieces.every((h) => typeof h === 'string' && /^[0-9a-f]{64}$/.test(h));
  if (!wellFormed) throw bad('the manifest is not well formed');
  const text = canonicalize(b);
  if (text === undefined) throw bad('the manifest is not well formed');
  const bytes = utf8(text);
  if ((await sha256Hex(bytes)) !== contentId) throw bad('the manifest does not hash to the content ID');
  if (!(await verifySignature(originKey, bytes, m.signature))) throw bad('the manifest signature is not the origin’s');
  const expected = b.totalSize === 0 ? 0 : Math.ceil(b.totalSize / b.pieceSize);
  if (b.pieces.length !== expected) throw bad('the piece count does not match the total size');
  return m;
}

/**
 * Downloads a content as the signed-in member, from the origin, verifying everything.
 * Throws a CascadeError: the API's code and message for refusals (`insufficient_balance`,
 * `unknown_content`, …), `manifest_invalid`, `piece_corrupt` / `served_unattested` after
 * three bad copies of a piece (never kept), `content_too_large`, `aborted`.
 */
export async function downloadContent(opts: DownloadOptions): Promise<DownloadResult> {
  const f = opts.fetch ?? defaultFetch;
  if (opts.signal?.aborted) throw abortedError();
  const originKeyB64 = opts.originKey ?? (await callApi<{ originKey: string }>(f, opts.origin, 'GET', '/health', { signal: opts.signal })).originKey;
  const originKey = await importPublicKey(originKeyB64).catch(() => {
    throw new CascadeError('invalid_origin_key', 'The origin key is not an Ed25519 public key.');
  });
  const manifest = await fetchVerifiedManifest(f, opts.origin, opts.contentId, originKey, opts.signal);
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  if (manifest.body.totalSize > maxBytes) {
    throw new CascadeError('content_too_large', `This content is ${manifest.body.totalSize} bytes; a browser download takes at most ${maxBytes}. Use \`cascade get\`.`);
  }
  const session = await terminalSession({
    origin: opts.origin,
    accountToken: opts.accountToken,
    keyStore: opts.keyStore,
    name: opts.terminalName,
    fetch: f,
    clock: opts.clock,
    signal: opts.signal,
  });
  return new BrowserDownload(opts, f, manifest.body, originKey, session).run();
}

interface Grant {
  id: string;
  token: string;
}

interface Offer {
  transferId: string;
  sources: { sourceId: string; sourceUrl: string | null; grant: Grant & { expiresAt: string } }[];
}

type Fetched = { ok: true; bytes: Uint8Array<ArrayBuffer>; served: string; grantId: string } | { ok: false; verified: boolean };

class BrowserDownload {
  private readonly clock: Clock;
  private readonly total: number;
  private readonly stop = new AbortController();
  private grant: Grant | null = null;
  private transferId: string | null = null;
  private proof: { at: number; grantId: string; text: string } | null = null;
  private lastRefresh = 0;
  private refreshing: Promise<void> | null = null;
  private fatal: unknown = null;
  private readonly have = new Set<number>();
  private readonly progress: DownloadProgress;
  /** Verified pieces in order, as Blobs; a piece waits as bytes only until those before it are hashed. */
  private readonly parts: Blob[] = [];
  private readonly waiting = new Map<number, Uint8Array<ArrayBuffer>>();
  private readonly hasher = sha256.create();
  /** Verified pieces not yet in a receipt, per grant and block (`<grant>|<block>`): index → served statement. */
  private readonly unreceipted = new Map<string, { grantId: string; pieces: Map<number, string> }>();
  private readonly receipts = new Map<string, { receipt: { body: string; signature: string }; state: 'new' | 'accepted' | 'refused' }>();
  private readonly refused: ReceiptRefusal[] = [];
  private sending: Promise<void> = Promise.resolve();
  private readonly retryDelay: (attempt: number) => number;

  constructor(
    private readonly opts: DownloadOptions,
    private readonly f: FetchLike,
    private readonly body: ManifestBody,
    private readonly originKey: CryptoKey,
    private readonly session: TerminalSession,
  ) {
    this.clock = opts.clock ?? browserClock;
    this.total = body.pieces.length;
    this.progress = { pieces: 0, totalPieces: this.total, bytes: 0, totalBytes: body.totalSize };
    this.retryDelay = opts.retryDelayMs ?? defaultRetryDelay;
    const onAbort = () => this.stop.abort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    this.stop.signal.addEventListener('abort', () => opts.signal?.removeEventListener('abort', onAbort), { once: true });
  }

  async run(): Promise<DownloadResult> {
    try {
      await this.refresh(); // opens the transfer and reserves: insufficient_balance ends it here
      this.opts.onProgress?.({ ...this.progress });
      const queue = [...Array(this.total).keys()];
      const worker = async () => {
        while (!this.fatal && queue.length > 0) {
          const i = queue.shift()!;
          try {
            await this.getPiece(i);
          } catch (err) {
            this.fatal ??= err;
            this.stop.abort();
          }
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, Math.min(this.opts.concurrency ?? 4, 32)) }, worker));
      if (this.opts.signal?.aborted) throw abortedError();
      if (this.fatal) throw this.fatal;
    } catch (err) {
      // Receipts made for whole blocks go to the origin (best effort). The pieces of unfinished
      // blocks are dropped with the page's copy and not receipted: fetched again by the next
      // download, they are receipted then — and whole blocks again byte-identical (duplicates).
      await this.sendReceipts(false).catch(() => {});
      this.stop.abort();
      throw this.opts.signal?.aborted ? abortedError() : err;
    }
    this.receiptAll();
    await this.sendReceipts(true);
    await this.reportDone();
    const blob = new Blob(this.parts, { type: 'application/octet-stream' });
    return {
      blob,
      sha256: bytesToHex(this.hasher.digest()),
      bytes: blob.size,
      contentId: this.opts.contentId,
      title: this.body.title,
      terminalId: this.session.terminalId,
      transferId: this.transferId!,
      receipts: {
        accepted: [...this.receipts].filter(([, r]) => r.state === 'accepted').map(([id]) => id),
        refused: [
          ...this.refused,
          ...[...this.receipts].filter(([, r]) => r.state === 'new').map(([receiptId]) => ({ receiptId, code: 'receipt_not_served', message: 'The origin had not yet noted this piece as served; the receipt was not paid.' })),
        ],
      },
    };
  }

  /** Time on the origin's clock (proofs are checked against it within ±120 s). */
  private originNow(): number {
    return Math.round(this.clock.now() + this.session.clockOffsetMs);
  }

  /**
   * `POST /grants/auto` with the origin as the only source: the first call opens the
   * transfer (and the billing hold), later ones report progress and renew the grant.
   */
  private refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        this.lastRefresh = this.clock.now();
        const offer = await callApi<Offer>(this.f, this.opts.origin, 'POST', '/grants/auto', {
          token: this.session.token,
          json: {
            contentId: this.opts.contentId,
            maxPeers: 0,
            piecesDone: this.have.size,
            ...(this.transferId ? { transferId: this.transferId } : {}),
            ...(this.have.size ? { have: encodeRanges(this.have) } : {}),
          },
          signal: this.stop.signal,
        });
        const origin = offer.sources?.find((s) => s.sourceId === ORIGIN_SOURCE_ID);
        if (!origin?.grant?.token) throw new CascadeError('no_source', 'The origin offered no grant to fetch this content from it.');
        this.transferId = offer.transferId;
        this.grant = { id: origin.grant.id, token: origin.grant.token };
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  private async maybeRefresh() {
    if (this.clock.now() - this.lastRefresh < (this.opts.refreshMs ?? 10_000)) return;
    try {
      await this.refresh();
    } catch (err) {
      // The origin briefly away: the grant we have still works. A refusal is final.
      if (err instanceof CascadeError && err.status >= 400 && err.status < 500) throw err;
    }
  }

  /** `<origin ms>.<signature of cascade-piece:<grant>:<origin ms>>`, re-signed every 30 s. */
  private async proofFor(grant: Grant): Promise<string> {
    const now = this.clock.now();
    if (!this.proof || this.proof.grantId !== grant.id || Math.abs(now - this.proof.at) >= PROOF_RESIGN_MS) {
      const ts = this.originNow();
      this.proof = { at: now, grantId: grant.id, text: `${ts}.${await signText(this.session.privateKey, `cascade-piece:${grant.id}:${ts}`)}` };
    }
    return this.proof.text;
  }

  private async getPiece(i: number) {
    let bad = 0;
    let failures = 0;
    let renewals = 0;
    let busy = 0;
    for (;;) {
      if (this.stop.signal.aborted) return;
      await this.maybeRefresh();
      let got: Fetched;
      try {
        got = await this.fetchPiece(i);
      } catch (err) {
        if (this.stop.signal.aborted) return;
        const code = err instanceof CascadeError ? err.code : '';
        if (code === 'grant_expired' && renewals++ < 2) {
          await this.refresh();
          continue;
        }
        if (code === 'source_busy' && busy++ < 20) {
          await pause(this.retryDelay(Math.min(busy, 3)), this.stop.signal);
          continue;
        }
        const network = !(err instanceof CascadeError) || err.status === 0 || err.status >= 500;
        if (network && ++failures < MAX_FAILURES_PER_PIECE) {
          await pause(this.retryDelay(failures), this.stop.signal);
          continue;
        }
        throw err;
      }
      if (got.ok) return this.keep(i, got);
      // Never kept: bytes that are not the manifest's, or that the origin did not sign as served.
      if (++bad >= MAX_BAD_PER_PIECE) {
        throw got.verified
          ? new CascadeError('served_unattested', `The origin sent piece ${i} without a valid signed served statement ${bad} times; nothing was kept.`, 502)
          : new CascadeError('piece_corrupt', `Wrong bytes arrived for piece ${i} ${bad} times; nothing unverified was kept.`, 502);
      }
    }
  }

  /** One request for piece `i`: at most the piece's size is read, then hashed and its statement checked. */
  private async fetchPiece(i: number): Promise<Fetched> {
    const grant = this.grant!;
    const len = pieceLength(this.body, i);
    const proof = await this.proofFor(grant);
    const req = new AbortController();
    const onStop = () => req.abort();
    this.stop.signal.addEventListener('abort', onStop, { once: true });
    const stallMs = this.opts.stallMs ?? 30_000;
    let timer = setTimeout(() => req.abort(), stallMs);
    const alive = () => {
      clearTimeout(timer);
      timer = setTimeout(() => req.abort(), stallMs);
    };
    try {
      let res: Response;
      try {
        res = await this.f(`${this.opts.origin}/pieces/${this.opts.contentId}/${i}`, {
          headers: { authorization: `Grant ${grant.token}`, 'cascade-proof': proof },
          signal: req.signal,
        });
      } catch (err) {
        throw new CascadeError('source_unreachable', `Piece ${i} could not be fetched (${(err as Error)?.message ?? err}).`);
      }
      if (res.status !== 200) throw await refusal(res);
      const declared = res.headers.get('content-length');
      if (declared !== null && Number(declared) !== len) {
        await res.body?.cancel().catch(() => {});
        return { ok: false, verified: false };
      }
      const bytes = new Uint8Array(len);
      let size = 0;
      if (res.body) {
        const reader = res.body.getReader();
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            alive();
            if (size + value.length > len) {
              // More than the piece can hold: stop reading at once, and keep nothing.
              await reader.cancel().catch(() => {});
              return { ok: false, verified: false };
            }
            bytes.set(value, size);
            size += value.length;
          }
        } catch (err) {
          throw new CascadeError('source_unreachable', `Piece ${i} stopped arriving (${(err as Error)?.message ?? err}).`);
        }
      }
      const verified = size === len && (await sha256Hex(bytes)) === this.body.pieces[i];
      const served = res.headers.get('cascade-served');
      const attested = served !== null && (await verifySignature(this.originKey, `cascade-served|${grant.id}|${i}`, served));
      return verified && attested ? { ok: true, bytes, served: served!, grantId: grant.id } : { ok: false, verified };
    } finally {
      clearTimeout(timer);
      this.stop.signal.removeEventListener('abort', onStop);
    }
  }

  private keep(i: number, got: Extract<Fetched, { ok: true }>) {
    if (this.have.has(i)) return;
    this.have.add(i);
    // Hashed in order into the whole-content digest, then kept as a Blob (the page holds the content once).
    this.waiting.set(i, got.bytes);
    for (let next = this.parts.length; this.waiting.has(next); next++) {
      const bytes = this.waiting.get(next)!;
      this.waiting.delete(next);
      this.hasher.update(bytes);
      this.parts.push(new Blob([bytes]));
    }
    this.progress.pieces++;
    this.progress.bytes += got.bytes.length;
    this.opts.onProgress?.({ ...this.progress });
    // Receipts cover aligned blocks of pieces, made once a block is complete under one grant: a
    // download stopped and started again under the same grant re-makes the same receipts byte for
    // byte (the origin counts them as duplicates), never overlapping ones it would refuse.
    const batch = Math.max(1, Math.min(this.opts.receiptBatch ?? 32, 100_000));
    const block = Math.floor(i / batch);
    const blockSize = Math.min(batch, this.total - block * batch);
    const key = `${got.grantId}|${block}`;
    let group = this.unreceipted.get(key);
    if (!group) this.unreceipted.set(key, (group = { grantId: got.grantId, pieces: new Map() }));
    group.pieces.set(i, got.served);
    if (group.pieces.size === blockSize) {
      this.unreceipted.delete(key);
      const done = group;
      this.sending = this.sending.then(() => this.receipt(done.grantId, done.pieces));
      void this.sendReceipts(false).catch(() => {}); // best effort now; the end sends what is left
    }
  }

  private async receipt(grantId: string, group: Map<number, string>) {
    const indices = [...group.keys()].sort((a, b) => a - b);
    const receipt = await makeReceipt(
      {
        grant: grantId,
        content: this.opts.contentId,
        source: ORIGIN_SOURCE_ID,
        receiver: this.session.terminalId,
        pieces: encodeRanges(indices),
        bytes: indices.reduce((s, i) => s + pieceLength(this.body, i), 0),
        served: indices.map((i) => group.get(i)!),
      },
      this.session.privateKey,
    );
    this.receipts.set(JSON.parse(receipt.body).id, { receipt, state: 'new' });
  }

  /** At the end of a complete download: receipts for blocks whose pieces came under more than one grant. */
  private receiptAll() {
    for (const { grantId, pieces } of this.unreceipted.values()) this.sending = this.sending.then(() => this.receipt(grantId, pieces));
    this.unreceipted.clear();
  }

  /**
   * `POST /receipts` with every receipt not yet judged. At the end (`final`), receipts the
   * origin calls `receipt_not_served` (its note of what it sent is on its way) go again a
   * few times after a short pause; other refusals are final.
   */
  private sendReceipts(final: boolean): Promise<void> {
    const done = this.sending.then(async () => {
      for (let attempt = 0; ; attempt++) {
        const open = [...this.receipts].filter(([, r]) => r.state === 'new');
        if (open.length === 0) return;
        let waiting = 0;
        for (let k = 0; k < open.length; k += MAX_RECEIPTS_PER_REQUEST) {
          const part = open.slice(k, k + MAX_RECEIPTS_PER_REQUEST);
          let res: { accepted: string[]; duplicates: string[]; refused: { index: number; receiptId: string | null; code: string; message: string }[] };
          try {
            res = await callApi(this.f, this.opts.origin, 'POST', '/receipts', { token: this.session.token, json: { receipts: part.map(([, r]) => r.receipt) } });
          } catch (err) {
            if (!final || attempt >= 2) {
              if (final) for (const [receiptId, r] of part) if (r.state === 'new') this.refuse(receiptId, 'origin_unreachable', `The receipt could not be delivered: ${(err as Error).message}`);
              return;
            }
            waiting++;
            continue;
          }
          for (const id of [...(res.accepted ?? []), ...(res.duplicates ?? [])]) {
            const r = this.receipts.get(id);
            if (r) r.state = 'accepted';
          }
          for (const r of res.refused ?? []) {
            const id = r.receiptId ?? part[r.index]?.[0];
            if (!id || !this.receipts.has(id)) continue;
            if (r.code === 'receipt_not_served') waiting++;
            else this.refuse(id, r.code, r.message);
          }
        }
        if (waiting === 0 || !final || attempt >= RECEIPT_RETRIES) return;
        await pause(this.retryDelay(attempt));
      }
    });
    this.sending = done.catch(() => {});
    return done;
  }

  private refuse(receiptId: string, code: string, message: string) {
    this.receipts.get(receiptId)!.state = 'refused';
    this.refused.push({ receiptId, code, message: String(message).slice(0, 200) });
  }

  /** The end of the transfer: the origin closes it and releases what is still held (tried a few times). */
  private async reportDone() {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await callApi(this.f, this.opts.origin, 'POST', `/transfers/${this.transferId}/progress`, {
          token: this.session.token,
          json: { piecesDone: this.have.size, done: true, reports: [] },
        });
        return;
      } catch (err) {
        if (err instanceof CascadeError && err.status >= 400 && err.status < 500) return; // the origin knows better
        await pause(this.retryDelay(attempt));
      }
    }
  }
}
