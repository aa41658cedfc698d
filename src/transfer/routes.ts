import type { FastifyPluginAsync } from 'fastify';
import { badRequest } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import type { ContentService } from '../content/service.ts';
import type { TerminalService } from '../terminals/service.ts';
import type { GrantService } from './grants.ts';
import type { ReceiptService } from './receipts.ts';
import type { SignedReceipt } from './receipt.ts';

export function transferRoutes(deps: {
  grants: GrantService;
  receipts: ReceiptService;
  content: ContentService;
  terminals: TerminalService;
  originSourceId: string;
}): FastifyPluginAsync {
  return async (app) => {
    app.post<{ Body: { contentId: string; source?: string; pieces?: string } }>('/grants', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Ask for a grant to fetch pieces of a content from a source (S1.6)',
        description: 'Until peer selection lands (#3) the only source is "origin", whose pieces are served at /pieces on this server.',
        tags: ['transfer'],
        body: {
          type: 'object',
          required: ['contentId'],
          additionalProperties: false,
          properties: {
            contentId: { type: 'string', pattern: '^[0-9a-f]{64}$' },
            source: { type: 'string', default: 'origin' },
            pieces: { type: 'string', description: 'piece ranges such as "0-9,12"; default: all' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              id: { type: 'string' },
              token: { type: 'string' },
              contentId: { type: 'string' },
              sourceId: { type: 'string' },
              sourceUrl: { type: ['string', 'null'] },
              pieces: { type: 'string' },
              expiresAt: { type: 'string' },
            },
          },
          400: errorSchema,
          404: errorSchema,
        },
      },
      handler: async (req) => {
        const source = req.body.source ?? deps.originSourceId;
        if (source !== deps.originSourceId) throw badRequest('unknown_source', 'Only the origin can serve pieces yet.');
        const grant = await deps.grants.issue(req.principal!.terminalId!, { contentId: req.body.contentId, sourceId: source, pieces: req.body.pieces });
        // A null sourceUrl means "this origin": the receiver already knows where it is.
        return { ...grant, sourceUrl: null };
      },
    });

    app.post<{ Body: { receipts: SignedReceipt[] } }>('/receipts', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Hand in signed receipts for verified pieces (settled by the ledger)',
        tags: ['transfer'],
        body: {
          type: 'object',
          required: ['receipts'],
          additionalProperties: false,
          properties: {
            receipts: {
              type: 'array',
              minItems: 1,
              maxItems: 1000,
              items: {
                type: 'object',
                required: ['body', 'signature'],
                additionalProperties: false,
                properties: { body: { type: 'string', maxLength: 200_000 }, signature: { type: 'string', maxLength: 200 } },
              },
            },
          },
        },
        response: {
          200: { type: 'object', properties: { accepted: { type: 'array', items: { type: 'string' } }, duplicates: { type: 'array', items: { type: 'string' } } } },
          400: errorSchema,
          403: errorSchema,
          404: errorSchema,
          409: errorSchema,
        },
      },
      handler: async (req) => deps.receipts.submit(req.principal!.terminalId!, req.body.receipts),
    });
  };
}
