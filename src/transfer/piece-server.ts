import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { KeyObject } from 'node:crypto';
import { Counter, type Registry } from 'prom-client';
import type { Clock } from '../core/clock.ts';
import { AppError, notFound } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import { int4 } from '../core/validation.ts';
import { GrantVerifier, REFUSAL_MESSAGES, type GrantPayload } from './grant-token.ts';
import { encodeRanges } from './piece-ranges.ts';
import type { TokenBucket } from './token-bucket.ts';
import type { PieceSource } from './piece-source.ts';
import { attestServed, SERVED_HEADER } from './served-attestation.ts';

// S1.6: the piece protocol every source speaks (origin now; agents, edges later).
//   GET /pieces/:contentId/:index
//   Authorization: Grant <token>          origin-signed grant naming this source
//   Cascade-Proof: <ms>.<signature>       receiver's signature over the request
// Reply: the piece bytes, with `Cascade-Served: <signature>`: this source's statement
// that it served the piece under that grant (receipts carry it; see served-attestation.ts).
// The receiver checks the bytes against the signed manifest.

export interface PieceServerOptions {
  sourceId: string;
  originPublicKey: KeyObject | string;
  /** This source's own key: it signs what it served. */
  sourceKey: KeyObject;
  pieces: PieceSource;
  clock: Clock;
  metrics: Registry;
  /** Upload slots: piece requests served at once; more are refused with `source_busy` (agents, #3). */
  slots?: number;
  /** Upload rate cap (agents' `--up-rate`). */
  upRate?: Pick<TokenBucket, 'take'>;
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
    let busy = 0;

    /** The grant check shared by both routes; throws the documented refusal. */
    const authorize = (req: FastifyRequest, contentId: string, index: number | null): GrantPayload => {
      const auth = req.headers.authorization;
      const socket = req.raw.socket;
      const result = verifier.check({
        provenOnConnection: (grantId) => proven.get(socket)?.has(grantId) ?? false,
        grantToken: auth?.startsWith('Grant ') ? auth.slice(6) : undefined,
        proof: req.headers['cascade-proof'] as string | undefined,
        sourceId: opts.sourceId,
        contentId,
        index,
        now: opts.clock.now(),
      });
      if (!result.ok) {
        refused.inc({ code: result.refusal });
        const [status, message] = REFUSAL_MESSAGES[result.refusal];
        throw new AppError(result.refusal, message, status);
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
        response: { 401: errorSchema, 403: errorSchema, 404: errorSchema },
      },
      handler: async (req, reply) => {
        const grant = authorize(req, req.params.contentId, req.params.index);
        if (opts.slots !== undefined && busy >= opts.slots) {
          refused.inc({ code: 'source_busy' });
          throw new AppError('source_busy', `All ${opts.slots} upload slots are in use; try another source or again shortly.`, 503);
        }
        busy++;
        reply.raw.once('close', () => busy--);
        const bytes = await opts.pieces.readPiece(req.params.contentId, req.params.index);
        if (!bytes) throw notFound('piece_unavailable', 'This source does not have that piece.');
        if (opts.upRate) await opts.upRate.take(bytes.length);
        reply.raw.once('finish', () => opts.onServed?.(grant, req.params.index, bytes.length));
        served.inc();
        servedBytes.inc(bytes.length);
        reply.header('content-type', 'application/octet-stream');
        reply.header(SERVED_HEADER, attestServed(opts.sourceKey, grant.id, req.params.index));
        return reply.send(bytes);
      },
    });
  };
}
