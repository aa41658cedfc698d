import type { FastifyPluginAsync } from 'fastify';
import { forbidden, notFound } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import type { Db } from '../db/connection.ts';
import { terminalOwners } from '../terminals/queries.ts';
import type { ScheduleInput } from './requests.ts';
import {
  historyQuerySchema,
  historySchema,
  planQuerySchema,
  planSchema,
  removedSchema,
  SCHEDULE_CREATE_DESCRIPTION,
  scheduleBodySchema,
  scheduleIdParams,
  scheduleListSchema,
  scheduleSchema,
} from './routes.ts';
import type { ScheduleService } from './service.ts';

// #13: the schedule routes for an account session (the web app), acting on one terminal
// the member owns: the same ScheduleService calls, bodies and answers as the terminal
// routes in routes.ts (S0.1, S0.2, S0.5, S0.7). The terminal's owner comes from the
// terminals domain (terminalOwners); a terminal session is refused by the access rule.

const tidParams = { type: 'object', required: ['tid'], properties: { tid: { type: 'string', maxLength: 64 } } } as const;
const tidAndIdParams = {
  type: 'object',
  required: ['tid', 'id'],
  properties: { tid: { type: 'string', maxLength: 64 }, id: scheduleIdParams.properties.id },
} as const;

const REFUSALS = 'Refusals: unknown_terminal (404) for a terminal nobody registered, not_your_terminal (403) for another account’s.';

export function memberScheduleRoutes(deps: { db: Db; schedules: ScheduleService }): FastifyPluginAsync {
  const { db, schedules } = deps;

  /** The terminal, if `userId` owns it: 404 `unknown_terminal`, else 403 `not_your_terminal`. Checked before anything is read or written. */
  const owned = async (userId: string, terminalId: string): Promise<string> => {
    const owner = (await terminalOwners(db, [terminalId])).get(terminalId);
    if (owner === undefined) throw notFound('unknown_terminal', `No terminal ${terminalId}.`);
    if (owner !== userId) throw forbidden('not_your_terminal', 'That terminal belongs to another account: you can manage the schedules of your own terminals only.');
    return terminalId;
  };

  return async (app) => {
    app.get<{ Params: { tid: string } }>('/me/terminals/:tid/schedules', {
      config: { access: 'user' },
      schema: {
        summary: 'One of your terminals’ schedules, oldest first, each with its current or next window (S0.2; as GET /schedules)',
        description: REFUSALS,
        tags: ['schedules'],
        params: tidParams,
        response: { 200: scheduleListSchema, 403: errorSchema, 404: errorSchema },
      },
      handler: async (req) => ({ schedules: await schedules.requests.list(await owned(req.principal!.userId, req.params.tid)) }),
    });

    app.post<{ Params: { tid: string }; Body: ScheduleInput }>('/me/terminals/:tid/schedules', {
      config: { access: 'user' },
      schema: {
        summary: 'Send a distribution request for one of your terminals (S0.1, S0.2; as POST /schedules)',
        description: `${SCHEDULE_CREATE_DESCRIPTION} ${REFUSALS}`,
        tags: ['schedules'],
        params: tidParams,
        body: scheduleBodySchema,
        response: { 201: scheduleSchema, 400: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema },
      },
      handler: async (req, reply) => {
        const terminalId = await owned(req.principal!.userId, req.params.tid);
        const created = await schedules.requests.create(terminalId, req.body ?? {});
        reply.code(201);
        return created;
      },
    });

    app.delete<{ Params: { tid: string; id: string } }>('/me/terminals/:tid/schedules/:id', {
      config: { access: 'user' },
      schema: {
        summary: 'Remove one of your terminal’s schedules; its delivery records stay (as DELETE /schedules/:id)',
        description: `${REFUSALS} unknown_schedule (404); schedule_not_yours (403) for a schedule of another terminal.`,
        tags: ['schedules'],
        params: tidAndIdParams,
        response: { 200: removedSchema, 403: errorSchema, 404: errorSchema },
      },
      handler: async (req) => schedules.requests.remove(await owned(req.principal!.userId, req.params.tid), req.params.id),
    });

    app.get<{ Params: { tid: string }; Querystring: { limit?: number } }>('/me/terminals/:tid/schedules/plan', {
      config: { access: 'user' },
      schema: {
        summary: 'One of your terminals’ plan (S0.5; as GET /schedules/plan): what its schedules select that it does not hold yet, and when it is due',
        description: REFUSALS,
        tags: ['schedules'],
        params: tidParams,
        querystring: planQuerySchema,
        response: { 200: planSchema, 400: errorSchema, 403: errorSchema, 404: errorSchema },
      },
      handler: async (req) => schedules.planner.plan(await owned(req.principal!.userId, req.params.tid), { limit: req.query.limit }),
    });

    app.get<{ Params: { tid: string }; Querystring: { limit?: number; before?: string; contentId?: string } }>('/me/terminals/:tid/schedules/history', {
      config: { access: 'user' },
      schema: {
        summary: 'One of your terminals’ scheduled deliveries, newest first (S0.7; as GET /schedules/history)',
        description: REFUSALS,
        tags: ['schedules'],
        params: tidParams,
        querystring: historyQuerySchema,
        response: { 200: historySchema, 400: errorSchema, 403: errorSchema, 404: errorSchema },
      },
      handler: async (req) => schedules.deliveries.history(await owned(req.principal!.userId, req.params.tid), req.query),
    });
  };
}
