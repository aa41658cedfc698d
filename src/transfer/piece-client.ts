import { createHash, type KeyObject } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import { PROOF_WINDOW_MS, signGrantProof } from './grant-token.ts';
import { SERVED_HEADER } from './served-attestation.ts';
import { HAVE_HEADER, MAX_HAVE_HEADER, RUN_HEADER } from './piece-ranges.ts';
import { ConnectionPool, type AnswerSink } from './piece-connection.ts';

// Fetches pieces from one source under one grant. Keeps a small pool of keep-alive
// connections to the source so piece requests overlap (the latency of one request
// hides behind the transfer of another); each answer is read straight into the piece
// buffers (piece-connection.ts) and hashed there.

/** Error bodies longer than this are cut off (#10.7: a source must not grow our memory). */
export const MAX_ERROR_BODY = 4096;
/** A `/have` answer longer than this is refused. */
const MAX_HAVE_BODY = 200_000;
/** How much of a source's error message is passed on in ours. */
const MESSAGE_EXCERPT = 200;
/** A source claiming a clock further than this from ours is not believed (proofs are not re-timed). */
const MAX_CLOCK_OFFSET_MS = 7 * 24 * 3600_000;

export interface PieceClientOptions {
  sourceUrl: string;
  grant: { id: string; token: string; contentId: string };
  receiverKey: KeyObject;
  /** Proof timestamps are read from it (the source checks them against its own clock). */
  clock: Clock;
  connections?: number;
  /** A request that receives no bytes for this long fails (S1.7: a holder that stalls is given up on). */
  stallMs?: number;
  /** The address to connect to for the source's host; the origin passes its address policy's check (issue 10 #8). */
  resolve?: (hostname: string, port: number) => Promise<string>;
}

export interface FetchedPiece {
  /** Bytes the source sent. */
  bytes: number;
  /** Their SHA-256 (comparing it with the manifest is the caller's job). */
  sha256: string;
  /** The source's `cascade-served` statement, unchecked (checking it is the caller's job). */
  served?: string;
  /** The grant the request was made under (the statement names it). */
  grantId: string;
  /** The source's `cascade-have` ranges (the pieces it holds now, when it is still fetching), unchecked. */
  have?: string;
}

/** A source's refusal; `have` is its `cascade-have` ranges when it sent them (a 404 from a peer still fetching). */
export class SourceRefusal extends AppError {
  have?: string;
}

export class PieceClient {
  readonly sourceUrl: string;
  private readonly pool: ConnectionPool;
  private grant: PieceClientOptions['grant'];
  private signed?: { at: number; proof: string };
  /**
   * The source's clock minus ours, learnt from a `proof_stale` refusal: proofs are checked
   * against the source's clock, so a receiver whose clock is off signs on the source's time.
   * Per source (a source that lies about its time only spoils proofs sent to itself).
   */
  private offsetMs = 0;

  constructor(private readonly opts: PieceClientOptions) {
    this.sourceUrl = opts.sourceUrl;
    this.grant = opts.grant;
    const url = new URL(opts.sourceUrl);
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search || url.username || url.password) {
      throw new AppError('bad_source_url', `A source address is http(s)://host:port with nothing after it, not ${opts.sourceUrl.slice(0, 200)}.`, 400);
    }
    this.pool = new ConnectionPool({ url, stallMs: opts.stallMs ?? 30_000, connections: opts.connections ?? 8, resolve: opts.resolve });
  }

  /** A new grant for the same source (the previous one expired or was replaced). */
  setGrant(grant: { id: string; token: string }) {
    this.grant = { ...this.grant, ...grant };
    this.signed = undefined;
  }

  /**
   * Fetches piece `index` into `into` (whose length is the piece's expected size),
   * hashing it chunk by chunk as it arrives. The caller reuses `into` for the next
   * piece: a megabyte allocated per piece is garbage-collection work the receiver can
   * do without. `signal` aborts the request (with its reason as the error).
   */
  async fetch(index: number, into: Buffer, signal?: AbortSignal): Promise<FetchedPiece> {
    let got: FetchedPiece | undefined;
    await this.fetchRun(index, [into], (_, piece) => (got = piece), signal);
    return got!;
  }

  /**
   * Fetches the run of pieces from `index` on, one per buffer in `intos` (each the length of its
   * piece), in one request (#19). `onPiece(k, piece)` is told of piece `index + k` as soon as its
   * bytes are in, before the rest of the run arrives; a piece cut short is told with the bytes it got
   * (its hash cannot match). Resolves with how many pieces the source sent: it may send fewer than
   * asked (the next ones it holds), never none. Fails, after some pieces were told, if the
   * connection breaks.
   */
  async fetchRun(index: number, intos: Buffer[], onPiece: (k: number, piece: FetchedPiece) => void, signal?: AbortSignal): Promise<number> {
    const offsetBefore = this.offsetMs;
    try {
      return await this.fetchOnce(index, intos, onPiece, signal);
    } catch (err) {
      // The source said our proof's time is too far from its clock, and what its clock says: sign
      // on its time and ask once more (also when a request in parallel learnt the offset first).
      if (!(err instanceof AppError && err.code === 'proof_stale')) throw err;
      this.learnOffset(err.details?.sourceTime);
      if (this.offsetMs === offsetBefore) throw err;
      return this.fetchOnce(index, intos, onPiece, signal);
    }
  }

  /** Adopts a source's time if it is plausible (a finite instant within a week of ours). */
  private learnOffset(sourceTime: unknown) {
    if (typeof sourceTime !== 'number' || !Number.isFinite(sourceTime)) return;
    const offset = sourceTime - this.opts.clock.now();
    if (Math.abs(offset) > MAX_CLOCK_OFFSET_MS || Math.abs(offset - this.offsetMs) <= PROOF_WINDOW_MS / 4) return;
    this.offsetMs = Math.round(offset);
    this.signed = undefined;
  }

  private fetchOnce(index: number, intos: Buffer[], onPiece: (k: number, piece: FetchedPiece) => void, signal?: AbortSignal): Promise<number> {
    const { id: grantId, token, contentId } = this.grant;
    /** The answer's status, and its body unless it is 200. */
    const small = new SmallBody();
    let served: string[] = [];
    let have: string | undefined;
    /** Pieces in this answer (`cascade-run`; 1 when the source does not say). */
    let count = 1;
    let p = 0; // the piece being received
    let size = 0; // its bytes so far
    let hash = createHash('sha256');
    const tell = () => {
      onPiece(p, { bytes: size, sha256: hash.digest('hex'), served: served[p], grantId, have });
      p++;
      size = 0;
      hash = createHash('sha256');
    };
    const sink: AnswerSink = {
      head(status, headers, length) {
        small.status = status;
        served = headers.get(SERVED_HEADER)?.split(',', intos.length) ?? [];
        const haveText = headers.get(HAVE_HEADER);
        if (haveText !== undefined && haveText.length <= MAX_HAVE_HEADER) have = haveText;
        if (status !== 200) return small.head(status, headers, length);
        // A source (or a proxy in between) that does not say how many pieces it sends: the length tells.
        const told = headers.get(RUN_HEADER);
        count = told !== undefined ? Number(told) : piecesIn(intos, length);
        if (!(Number.isInteger(count) && count >= 1 && count <= intos.length)) {
          throw new AppError('source_error', `source said it sends ${String(told ?? count).slice(0, 20)} pieces of the ${intos.length} asked for`, 502);
        }
        if (length !== undefined && length > capacity(intos, count)) throw oversized(count, index);
      },
      space() {
        if (small.status !== 200) return small.space();
        // A source that sends more than the pieces can hold is wrong; stop reading at once.
        if (p >= count) throw oversized(count, index);
        return intos[p].subarray(size);
      },
      filled(n) {
        if (small.status !== 200) return small.filled(n);
        hash.update(intos[p].subarray(size, size + n));
        size += n;
        if (size === intos[p].length) tell();
      },
    };
    const path = intos.length > 1 ? `/pieces/${contentId}/${index}?count=${intos.length}` : `/pieces/${contentId}/${index}`;
    return this.pool.get(path, { authorization: `Grant ${token}`, 'cascade-proof': this.proof() }, sink, signal).then(() => {
      if (small.status !== 200) {
        const refusal = sourceRefusal(small.status, small.text());
        refusal.have = have;
        throw refusal;
      }
      if (size > 0 || p === 0) tell(); // cut short: its hash will not match
      return p;
    });
  }

  /**
   * The pieces the source holds now, as ranges (`GET /have`), unchecked; null when it holds
   * them all. A receiver asks a peer that had nothing it needed, now and then (#19).
   */
  async have(signal?: AbortSignal): Promise<string | null> {
    const { token, contentId } = this.grant;
    const body = new SmallBody(MAX_HAVE_BODY, `the source sent a piece list over ${MAX_HAVE_BODY} bytes`);
    await this.pool.get(`/have/${contentId}`, { authorization: `Grant ${token}`, 'cascade-proof': this.proof() }, body, signal);
    if (body.status !== 200) throw sourceRefusal(body.status, body.text());
    const pieces = JSON.parse(body.text()).pieces;
    return typeof pieces === 'string' ? pieces : null;
  }

  /** A proof of being the grant's receiver, re-signed well before sources would call it stale. */
  private proof(): string {
    const now = this.opts.clock.now() + this.offsetMs;
    if (!this.signed || Math.abs(now - this.signed.at) > PROOF_WINDOW_MS / 4) this.signed = { at: now, proof: signGrantProof(this.opts.receiverKey, this.grant.id, now) };
    return this.signed.proof;
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** How many of the pieces `intos` stand for make up `length` bytes, from the first; 1 when no prefix does. */
function piecesIn(intos: Buffer[], length: number | undefined): number {
  let sum = 0;
  for (let k = 0; k < intos.length; k++) {
    sum += intos[k].length;
    if (sum === length) return k + 1;
  }
  return 1;
}

/** Bytes the first `count` pieces hold. */
function capacity(intos: Buffer[], count: number): number {
  let sum = 0;
  for (let k = 0; k < count; k++) sum += intos[k].length;
  return sum;
}

function oversized(count: number, index: number): AppError {
  return new AppError('piece_oversized', `source sent more than the ${count} piece(s) from ${index} it announced`, 502);
}

/**
 * A small answer (an error, a piece list) as a sink: its status, and its body kept up to `max` bytes;
 * more fails the request (#10.7). The buffer is taken only when a body comes (most piece answers
 * are 200s that never use it), and no larger than the length the source said.
 */
class SmallBody implements AnswerSink {
  status = 0;
  private buf?: Buffer;
  private size = 0;
  /** The body's length, when the source said it (the buffer is no larger). */
  private length?: number;
  constructor(
    private readonly max = MAX_ERROR_BODY,
    private readonly overMessage?: string,
  ) {}
  private over(): AppError {
    return new AppError('source_error', this.overMessage ?? `source answered ${this.status} with an error body over ${this.max} bytes`, this.overMessage ? 502 : this.status);
  }
  head(status: number, _headers: Map<string, string>, length: number | undefined) {
    this.status = status;
    if (length !== undefined && length > this.max) throw this.over();
    this.length = length;
  }
  space(): Buffer {
    if (this.size === this.max) throw this.over();
    this.buf ??= Buffer.allocUnsafe(Math.min(this.max, this.length ?? this.max));
    return this.buf.subarray(this.size);
  }
  filled(n: number) {
    this.size += n;
  }
  text(): string {
    return this.buf?.toString('utf8', 0, this.size) ?? '';
  }
}

/**
 * The source's `{error:{code,message}}` as an AppError, or a generic one if it sent
 * something else. Only a well-formed code and a short excerpt of the message are kept.
 */
function sourceRefusal(status: number, text: string): SourceRefusal {
  try {
    const e = JSON.parse(text).error;
    if (typeof e?.code === 'string' && /^[a-z][a-z0-9_]{0,63}$/.test(e.code)) {
      // Of the details, only the one a receiver acts on is kept: the source's time (proof_stale).
      const sourceTime = e.details?.sourceTime;
      return new SourceRefusal(e.code, String(e.message ?? '').slice(0, MESSAGE_EXCERPT), status, typeof sourceTime === 'number' ? { sourceTime } : undefined);
    }
  } catch {}
  return new SourceRefusal('source_error', `source answered ${status}`, status);
}
