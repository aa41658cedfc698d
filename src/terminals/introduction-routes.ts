import type { FastifyPluginAsync } from 'fastify';
import { errorSchema } from '../core/http.ts';
import type { IntroductionService } from './introductions.ts';

// S1.14, origin side: a signed-in terminal asks the origin to introduce it to another
// terminal, then presents the token to that terminal for its content list.

export function introductionRoutes(deps: { introductions: IntroductionService }): FastifyPluginAsync {
  const { introductions } = deps;
  return async (app) => {
    app.post<{ Params: { id: string } }>('/terminals/:id/introductions', {
      config: { access: 'terminal' },
      schema: {
        summary:
          'Introduce the calling terminal to terminal :id (S1.14): a 5-minute origin-signed token carrying the caller’s ' +
          'region, network, link state, holdings and balance, to send to that terminal as "Authorization: Introduction <token>"',
        tags: ['terminals'],
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 200 } } },
        response: {
          201: {
            type: 'object',
            properties: {
              token: { type: 'string' },
              target: { type: 'object', properties: { terminalId: { type: 'string' }, serveUrl: { type: ['string', 'null'] } } },
              expiresAt: { type: 'string' },
            },
          },
          400: errorSchema,
          401: errorSchema,
          403: errorSchema,
          404: errorSchema,
        },
      },
      // The requester is whoever the session token says, never a body field: only the origin may vouch.
      handler: async (req, reply) => reply.code(201).send(await introductions.introduce(req.principal!.terminalId!, req.params.id)),
    });
  };
}
