import type { FastifyPluginAsync } from 'fastify';
import type { KeyObject } from 'node:crypto';
import { Counter, type Registry } from 'prom-client';
import type { Clock } from '../core/clock.ts';
import { AppError, notFound } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import { GrantVerifier, REFUSAL_MESSAGES } from './grant-token.ts';
import type { PieceSource } from './piece-source.ts';

// S1.6: the piece protocol every source speaks (origin now; agents, edges later).
//   GET /pieces/:contentId/:index
//   Authorization: Grant <token>          origin-signed grant naming this source
//   Cascade-Proof: <ms>.<signature>       receiver's signature over the request
// Reply: the piece bytes. The receiver checks them against the signed manifest.

export interface PieceServerOptions {
  sourceId: string;
  originPublicKey: KeyObject | string;
  pieces: PieceSource;
  clock: Clock;
  metrics: Registry;
  /** Called for every piece served (upload accounting, rate limiting in agents). */
  beforeServe?: (bytes: number) => Promise<void>;
}

export function pieceServerRoutes(opts: PieceServerOptions): FastifyPluginAsync {
  return async (app) => {
    const verifier = new GrantVerifier(opts.originPublicKey);
    // Grants whose receiver proved itself on a given connection (see GrantVerifier).
    const proven = new WeakMap<object, Set<string>>();
    const served = new Counter({ name: 'cascade_pieces_served_total', help: 'Pieces served to receivers', registers: [opts.metrics] });
    const servedBytes = new Counter({ name: 'cascade_piece_bytes_served_total', help: 'Piece bytes served to receivers', registers: [opts.metrics] });
    const refused = new Counter({ name: 'cascade_piece_requests_refused_total', help: 'Piece requests refused', labelNames: ['code'], registers: [opts.metrics] });

    app.get<{ Params: { contentId: string; index: number } }>('/pieces/:contentId/:index', {
      config: { access: 'grant' },
      schema: {
        summary: 'One piece of a content, against a grant (S1.6)',
        tags: ['transfer'],
        params: {
          type: 'object',
          required: ['contentId', 'index'],
          properties: { contentId: { type: 'string', pattern: '^[0-9a-f]{64}$' }, index: { type: 'integer', minimum: 0 } },
        },
        headers: { type: 'object', properties: { authorization: { type: 'string' }, 'cascade-proof': { type: 'string' } } },
        response: { 401: errorSchema, 403: errorSchema, 404: errorSchema },
      },
      handler: async (req, reply) => {
        const auth = req.headers.authorization;
        const socket = req.raw.socket;
        const result = verifier.check({
          provenOnConnection: (grantId) => proven.get(socket)?.has(grantId) ?? false,
          grantToken: auth?.startsWith('Grant ') ? auth.slice(6) : undefined,
          proof: req.headers['cascade-proof'] as string | undefined,
          sourceId: opts.sourceId,
          contentId: req.params.contentId,
          index: req.params.index,
          now: opts.clock.now(),
        });
        if (!result.ok) {
          refused.inc({ code: result.refusal });
          const [status, message] = REFUSAL_MESSAGES[result.refusal];
          throw new AppError(result.refusal, message, status);
        }
        if (!proven.has(socket)) proven.set(socket, new Set());
        proven.get(socket)!.add(result.grant.id);
        const bytes = await opts.pieces.readPiece(req.params.contentId, req.params.index);
        if (!bytes) throw notFound('piece_unavailable', 'This source does not have that piece.');
        await opts.beforeServe?.(bytes.length);
        served.inc();
        servedBytes.inc(bytes.length);
        reply.header('content-type', 'application/octet-stream');
        return reply.send(bytes);
      },
    });
  };
}
