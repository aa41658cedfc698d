import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { KeyObject } from 'node:crypto';
import { Readable } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import type { Clock } from '../core/clock.ts';
import { AppError, notFound } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import { int4 } from '../core/validation.ts';
import { GrantVerifier, REFUSAL_MESSAGES, type GrantPayload } from './grant-token.ts';
import { encodeRanges, HAVE_HEADER, MAX_HAVE_HEADER } from './piece-ranges.ts';
import type { TokenBucket } from './token-bucket.ts';
import type { PieceReader, PieceSource } from './piece-source.ts';
import { attestServed, SERVED_HEADER } from './served-attestation.ts';
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
    // Grants whose receiver proved itself on a given connection (see GrantVerifier).
    const proven = new WeakMap<object, Set<string>>();
    const served = new Counter({ name: 'cascade_pieces_served_total', help: 'Pieces served to receivers', registers: [opts.metrics] });
    const servedBytes = new Counter({ name: 'cascade_piece_bytes_served_total', help: 'Piece bytes served to receivers', registers: [opts.metrics] });
    const refused = new Counter({ name: 'cascade_piece_requests_refused_total', help: 'Piece requests refused', labelNames: ['code'], registers: [opts.metrics] });

    /** The grant check shared by both routes; throws the documented refusal. */
    const authorize = (req: FastifyRequest, contentId: string, index: number | null): GrantPayload => {
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
      return result.grant;
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

    app.get<{ Params: { contentId: string; index: number } }>('/pieces/:contentId/:index', {
      config: { access: 'grant' },
      schema: {
        summary: 'One piece of a content, against a grant (S1.6)',
        tags: ['transfer'],
        params: {
          type: 'object',
          required: ['contentId', 'index'],
          properties: { contentId: { type: 'string', pattern: '^[0-9a-f]{64}$' }, index: int4(0) },
        },
        headers: { type: 'object', properties: { authorization: { type: 'string', maxLength: 8192 }, 'cascade-proof': { type: 'string', maxLength: 512 } } },
        response: { 401: errorSchema, 403: errorSchema, 404: errorSchema, 503: errorSchema },
      },
      handler: async (req, reply) => {
        const { contentId, index } = req.params;
        const grant = authorize(req, contentId, index);
        const have = opts.pieces.haveRanges?.(contentId);
        if (have && have.length <= MAX_HAVE_HEADER) reply.header(HAVE_HEADER, have);
        const hungUp = new AbortController();
        reply.raw.once('close', () => hungUp.abort());
        let release;
        try {
          release = await opts.slots.enter(hungUp.signal);
        } catch (err) {
          refused.inc({ code: 'source_busy' });
          throw err;
        }
        if (!release) return reply.hijack(); // the requester left while waiting: nothing to answer
        reply.raw.once('close', release);
        let piece = await opts.pieces.openPiece(contentId, index, grant.receiver);
        if (!piece) throw notFound('piece_unavailable', 'This source does not have that piece.');
        if (opts.deliver) piece = await delivered(piece, (bytes) => opts.deliver!(grant, index, bytes));
        const bucket = opts.upRate?.();
        let body: Buffer | Readable;
        if (bucket) {
          body = pieceStream(piece, bucket);
          // Headers first, even when the first chunk must wait for tokens: the receiver sees a live source.
          reply.raw.once('pipe', () => reply.raw.flushHeaders());
        } else {
          // Uncapped: the piece goes out at once, in one write (the buffer lives as long as the sending).
          body = Buffer.allocUnsafe(piece.length);
          if ((await piece.read(0, body)) !== piece.length) throw notFound('piece_unavailable', 'This source does not have that piece.');
        }
        reply.raw.once('finish', () => opts.onServed?.(grant, index, piece.length));
        served.inc();
        servedBytes.inc(piece.length);
        reply.header('content-type', 'application/octet-stream');
        reply.header('content-length', piece.length);
        reply.header(SERVED_HEADER, attestServed(opts.sourceKey, grant.id, index));
        return reply.send(body);
      },
    });
  };
}

/**
 * Chunk size under a rate cap: about an eighth of a second of the rate, within 1–64 KiB.
 * Small enough that even a source capped at a few kB/s sends bytes well within any
 * receiver's stall time; 64 KiB keeps the per-chunk cost negligible at high rates.
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

/** The piece's bytes as a stream, chunk by chunk, each read only once the bucket let it pass. */
function pieceStream(piece: PieceReader, bucket: TokenBucket): Readable {
  const chunk = chunkBytes(bucket.bytesPerSecond);
  let sent = 0;
  const next = async (stream: Readable) => {
    const n = Math.min(chunk, piece.length - sent);
    await bucket.take(n);
    if (stream.destroyed) return; // the receiver left while we waited
    const buf = Buffer.allocUnsafe(n);
    if ((await piece.read(sent, buf)) !== n) throw new Error('the piece on disk is shorter than its manifest says');
    sent += n;
    stream.push(buf);
    if (sent === piece.length) stream.push(null);
  };
  return new Readable({
    highWaterMark: 0, // read ahead of nothing: one chunk exists only while it is being sent
    read() {
      next(this).catch((err) => this.destroy(err));
    },
  });
}
