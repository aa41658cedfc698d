import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { KeyObject } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import type { Clock } from '../core/clock.ts';
import { AppError, notFound } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import { int4 } from '../core/validation.ts';
import { GrantVerifier, REFUSAL_MESSAGES, type GrantPayload } from './grant-token.ts';
import { encodeRanges, HAVE_HEADER, MAX_HAVE_HEADER, MAX_RUN_PIECES, RUN_HEADER } from './piece-ranges.ts';
import type { TokenBucket, Turn } from './token-bucket.ts';
import type { PieceReader, PieceSource } from './piece-source.ts';
import { attestServed, SERVED_HEADER } from './served-attestation.ts';
import { BufferPool } from './buffer-pool.ts';
import type { UploadSlots } from './upload-slots.ts';

// S1.6: the piece protocol every source speaks (origin now; agents, edges later).
//   GET /pieces/:contentId/:index
//   Authorization: Grant <token>          origin-signed grant naming this source
//   Cascade-Proof: <ms>.<signature>       receiver's signature over the request
// Reply: the piece bytes, with `Cascade-Served: <signature>`: this source's statement
// that it served the piece under that grant (receipts carry it; see served-attestation.ts).
// A source still fetching the content adds `Cascade-Have: <ranges>`, the pieces it holds
// now, to every answer, a piece's or a 404's (#19: receivers learn its new pieces from it
// directly, not seconds later through the origin's registry).
// The receiver checks the bytes against the signed manifest and the statement against
// this source's key.
//
// #10.4/#10.7: under a rate cap the headers go out at once and the bytes follow in
// chunks as the bucket releases them, read from the store chunk by chunk: an honest
// slow source shows progress from the start, and no request holds a piece buffer while
// it waits for tokens or for a slot.

export interface PieceServerOptions {
  sourceId: string;
  originPublicKey: KeyObject | string;
  /** This source's own key: it signs what it served. */
  sourceKey: KeyObject;
  pieces: PieceSource;
  clock: Clock;
  metrics: Registry;
  /** Piece requests served at once, and how many more may wait; beyond that `503 source_busy`. */
  slots: UploadSlots;
  /** The upload rate cap in force now, if any (agents' `--up-rate`, the origin's ORIGIN_UP_RATE). */
  upRate?: () => TokenBucket | undefined;
  /**
   * The per-delivery hook (S2.3 seam; edges): each piece's bytes on their way to the grant's
   * receiver. Given, a piece is read whole, passed through it, and sent as it returns.
   */
  deliver?: (grant: GrantPayload, index: number, bytes: Buffer) => Buffer | Promise<Buffer>;
  /** Told of every piece served, after it was sent (progress reports to the origin). */
  onServed?: (grant: GrantPayload, index: number, bytes: number) => void;
}

export function pieceServerRoutes(opts: PieceServerOptions): FastifyPluginAsync {
  return async (app) => {
    const verifier = new GrantVerifier(opts.originPublicKey);
    const buffers = new BufferPool(POOL_BYTES);
    // Grants whose receiver proved itself on a given connection (see GrantVerifier).
    const proven = new WeakMap<object, Set<string>>();
    const served = new Counter({ name: 'cascade_pieces_served_total', help: 'Pieces served to receivers', registers: [opts.metrics] });
    const servedBytes = new Counter({ name: 'cascade_piece_bytes_served_total', help: 'Piece bytes served to receivers', registers: [opts.metrics] });
    // Requests in service per receiver, for their place in the upload's line (token-bucket.ts): bounded by the slots, as entries leave at zero.
    const serving = new Map<string, number>();
    const refused = new Counter({ name: 'cascade_piece_requests_refused_total', help: 'Piece requests refused', labelNames: ['code'], registers: [opts.metrics] });

    /** The grant check shared by both routes; throws the documented refusal. */
    const authorize = (req: FastifyRequest, contentId: string, index: number | null): { grant: GrantPayload; covers: (i: number) => boolean } => {
      const auth = req.headers.authorization;
      const socket = req.raw.socket;
      const now = opts.clock.now();
      const result = verifier.check({
        provenOnConnection: (grantId) => proven.get(socket)?.has(grantId) ?? false,
        grantToken: auth?.startsWith('Grant ') ? auth.slice(6) : undefined,
        proof: req.headers['cascade-proof'] as string | undefined,
        sourceId: opts.sourceId,
        contentId,
        index,
        now,
      });
      if (!result.ok) {
        refused.inc({ code: result.refusal });
        const [status, message] = REFUSAL_MESSAGES[result.refusal];
        throw new AppError(result.refusal, message, status, result.refusal === 'proof_stale' ? { sourceTime: now } : undefined);
      }
      if (!proven.has(socket)) proven.set(socket, new Set());
      proven.get(socket)!.add(result.grant.id);
      return result;
    };

    app.get<{ Params: { contentId: string } }>('/have/:contentId', {
      config: { access: 'grant' },
      schema: {
        summary: 'Which pieces of a content this source has now, as ranges (#3); needs a grant for the content',
        tags: ['transfer'],
        params: { type: 'object', required: ['contentId'], properties: { contentId: { type: 'string', pattern: '^[0-9a-f]{64}$' } } },
        response: { 200: { type: 'object', properties: { pieces: { type: 'string' } } }, 401: errorSchema, 403: errorSchema },
      },
      handler: async (req) => {
        authorize(req, req.params.contentId, null);
        const manifest = await opts.pieces.manifest(req.params.contentId);
        if (!manifest) throw notFound('unknown_content', 'This source does not hold that content.');
        const have = opts.pieces.have ? await opts.pieces.have(req.params.contentId) : null;
        return { pieces: encodeRanges(have ?? manifest.body.pieces.keys()) };
      },
    });

    app.get<{ Params: { contentId: string; index: number }; Querystring: { count?: number } }>('/pieces/:contentId/:index', {
      config: { access: 'grant' },
      schema: {
        summary: 'A piece of a content, or a run of pieces from it (`?count=`), against a grant (S1.6, #19)',
        tags: ['transfer'],
        params: {
          type: 'object',
          required: ['contentId', 'index'],
          properties: { contentId: { type: 'string', pattern: '^[0-9a-f]{64}$' }, index: int4(0) },
        },
        querystring: { type: 'object', properties: { count: { type: 'integer', minimum: 1, maximum: MAX_RUN_PIECES } }, additionalProperties: false },
        headers: { type: 'object', properties: { authorization: { type: 'string', maxLength: 8192 }, 'cascade-proof': { type: 'string', maxLength: 512 } } },
        response: { 401: errorSchema, 403: errorSchema, 404: errorSchema, 503: errorSchema },
      },
      handler: async (req, reply) => {
        const { contentId, index } = req.params;
        const { grant, covers } = authorize(req, contentId, index);
        const have = opts.pieces.haveRanges?.(contentId);
        if (have && have.length <= MAX_HAVE_HEADER) reply.header(HAVE_HEADER, have);
        // A requester that hangs up while waiting for a slot gives up its place in the queue.
        const hungUp = new AbortController();
        const onHangUp = () => hungUp.abort();
        reply.raw.once('close', onHangUp);
        let release;
        try {
          release = await opts.slots.enter(hungUp.signal);
        } catch (err) {
          refused.inc({ code: 'source_busy' });
          throw err;
        } finally {
          // Not aborted for every finished request: an AbortSignal's abort builds a DOMException (~1 % of the origin's time, #19).
          reply.raw.removeListener('close', onHangUp);
        }
        if (!release) return reply.hijack(); // the requester left while waiting: nothing to answer
        reply.raw.once('close', release);
        // This receiver's n-th request in service waits for bytes behind every receiver's (n-1)-th.
        const rank = serving.get(grant.receiver) ?? 0;
        serving.set(grant.receiver, rank + 1);
        reply.raw.once('close', () => {
          const left = serving.get(grant.receiver)! - 1;
          if (left > 0) serving.set(grant.receiver, left);
          else serving.delete(grant.receiver);
        });
        // The run: the piece asked for, then as many of the next ones (up to `count`) as the grant
        // covers and this source holds; the answer says how many (`cascade-run`).
        const first = await opts.pieces.openPiece(contentId, index, grant.receiver);
        if (!first) throw notFound('piece_unavailable', 'This source does not have that piece.');
        const run: { index: number; piece: PieceReader }[] = [{ index, piece: first }];
        for (let j = index + 1; j < index + (req.query.count ?? 1) && covers(j); j++) {
          const piece = await opts.pieces.openPiece(contentId, j, grant.receiver);
          if (!piece) break;
          run.push({ index: j, piece });
        }
        if (opts.deliver) for (const r of run) r.piece = await delivered(r.piece, (bytes) => opts.deliver!(grant, r.index, bytes));
        const bucket = opts.upRate?.();
        let total = 0;
        for (const r of run) total += r.piece.length;
        // Each piece counts as served (metrics; #10 point 6: reported, then receipted) once the socket
        // took all its bytes, not when the run is asked for: a receiver may hang up before its end.
        const body = runBody(run, reply.raw, buffers, bucket, bucket?.turn(rank), (k) => {
          served.inc();
          servedBytes.inc(run[k].piece.length);
          opts.onServed?.(grant, run[k].index, run[k].piece.length);
        });
        // Headers first, even when the first chunk must wait for tokens: the receiver sees a live source.
        if (bucket) reply.raw.once('pipe', () => reply.raw.flushHeaders());
        reply.header('content-type', 'application/octet-stream');
        reply.header('content-length', total);
        if (req.query.count !== undefined) reply.header(RUN_HEADER, run.length);
        reply.header(SERVED_HEADER, run.map((r) => attestServed(opts.sourceKey, grant.id, r.index)).join(','));
        return reply.send(body);
      },
    });
  };
}

/** Piece buffers a piece server keeps for reuse while idle (#19: see buffer-pool.ts). */
export const POOL_BYTES = 32 * 1024 * 1024;

/** Pooled buffers come in powers of two from 64 KiB: a content's full pieces share one size, its short last piece another. */
export function poolCapacity(length: number): number {
  return Math.max(64 * 1024, 2 ** Math.ceil(Math.log2(Math.max(1, length))));
}

/**
 * Chunk size under a rate cap: about an eighth of a second of the rate, within 1–256 KiB.
 * Small enough that even a source capped at a few kB/s sends bytes well within any
 * receiver's stall time; 256 KiB keeps the per-chunk cost negligible at high rates.
 */
export function chunkBytes(bytesPerSecond: number): number {
  return Math.min(256 * 1024, Math.max(1024, Math.floor(bytesPerSecond / 8)));
}

/** The piece read whole and passed through the delivery hook, as a reader over the result. */
async function delivered(piece: PieceReader, hook: (bytes: Buffer) => Buffer | Promise<Buffer>): Promise<PieceReader> {
  const whole = Buffer.allocUnsafe(piece.length);
  if ((await piece.read(0, whole)) !== piece.length) throw notFound('piece_unavailable', 'This source does not have that piece.');
  const out = await hook(whole);
  return { length: out.length, read: async (offset, into) => out.copy(into, 0, offset, offset + into.length) };
}

/**
 * A run's bytes as a stream, piece after piece: each part is read from the store only when the
 * socket wants more (and, under a rate cap, once the bucket let it pass), so a request holds at
 * most the part being sent. Uncapped, a part is a whole piece (one write); capped, a chunk.
 * Parts come from `pool` and go back once the socket has taken them. `onFlushed(k)` is told,
 * in order, of each piece whose bytes all went to the socket.
 */
function runBody(run: { piece: PieceReader }[], res: ServerResponse, pool: BufferPool, bucket: TokenBucket | undefined, turn: Turn | undefined, onFlushed: (k: number) => void): Readable {
  const chunk = bucket ? chunkBytes(bucket.bytesPerSecond) : Infinity;
  let p = 0; // the piece being sent
  let offset = 0; // its next byte
  let flushed = 0; // pieces told flushed
  const held: Buffer[] = [];
  // Everything pushed so far is with the kernel: buffers back to the pool, whole pieces told.
  const settle = () => {
    while (held.length) pool.give(held.pop()!);
    while (flushed < p) onFlushed(flushed++);
  };
  res.once('finish', settle);
  const next = async (stream: Readable) => {
    if (stream.readableLength === 0 && res.writableLength === 0) settle();
    const piece = run[p].piece;
    let n = Math.min(chunk, piece.length - offset);
    // A request let through only to show it is alive gets a trickle (token-bucket.ts).
    if (bucket && turn) n = await bucket.takeSome(n, turn, gone.signal);
    if (stream.destroyed) return; // the receiver left while we waited (it took nothing then)
    const buf = pool.take(n, poolCapacity(n));
    held.push(buf);
    if ((await piece.read(offset, buf)) !== n) throw new Error('the piece on disk is shorter than its manifest says');
    offset += n;
    if (offset === piece.length) {
      p++;
      offset = 0;
    }
    stream.push(buf);
    if (p === run.length) stream.push(null);
  };
  // A receiver that hangs up leaves the upload's line: its waiting chunk spends no tokens (end-game losers are cancelled so).
  const gone = new AbortController();
  return new Readable({
    highWaterMark: 0, // read ahead of nothing: a part exists only while it is being sent
    read() {
      next(this).catch((err) => this.destroy(err));
    },
    destroy(err, cb) {
      // Only on a hang-up, not after a run sent whole: an abort builds a DOMException (see the slot wait above).
      if (!this.readableEnded) gone.abort();
      cb(err);
    },
  });
}
