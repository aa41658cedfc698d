import type { FastifyPluginAsync } from 'fastify';
import { errorSchema } from '../core/http.ts';
import { safeInteger } from '../core/validation.ts';
import { AppError } from '../core/errors.ts';
import type { ProgressReport, ScheduleRunner, StreamEvent } from './runner.ts';
import { PLAN_MAX_LIMIT } from './planning.ts';
import type { ScheduleInput } from './requests.ts';
import type { ScheduleService } from './service.ts';

// Scheduled distribution over HTTP (#5): a terminal's distribution requests (S0.1,
// S0.2), its plan (S0.5) and its delivery records (S0.7). All for a terminal session:
// each terminal sees and changes only its own. Shapes and codes: docs/schedules.md.

const windowSchema = {
  type: 'object',
  additionalProperties: true,
  properties: {
    days: { type: 'array', items: { type: 'string' } },
    start: { type: 'string' },
    end: { type: 'string' },
    timeZone: { type: 'string' },
    from: { type: 'string' },
    until: { type: 'string' },
    capBytesPerSecond: { type: 'integer' },
  },
} as const;

const nextSchema = {
  type: ['object', 'null'],
  properties: {
    start: { type: 'string', format: 'date-time' },
    end: { type: 'string', format: 'date-time' },
    open: { type: 'boolean' },
    windowIndex: { type: 'integer' },
    capBytesPerSecond: { type: ['integer', 'null'] },
  },
} as const;

export const scheduleSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    terminalId: { type: 'string' },
    select: {
      type: 'object',
      description: 'exactly one of contentId, publisherId (with publisher, the username), genre, series',
      properties: {
        contentId: { type: 'string' },
        publisherId: { type: 'string' },
        publisher: { type: 'string' },
        genre: { type: 'string' },
        series: { type: 'string' },
      },
    },
    windows: { type: 'array', items: windowSchema },
    priority: { type: 'integer' },
    createdAt: { type: 'string', format: 'date-time' },
    next: { ...nextSchema, description: 'the current (open: true) or next interval of its windows; null when they never open again' },
  },
} as const;

const planItemSchema = {
  type: 'object',
  properties: {
    contentId: { type: 'string' },
    title: { type: 'string' },
    genre: { type: 'string' },
    publisher: { type: 'string' },
    totalSize: { type: 'integer' },
    heldPieces: { type: ['string', 'null'], description: 'piece ranges already held while fetching' },
    scheduleId: { type: 'string', description: 'the schedule it is due under' },
    matchedBy: { type: 'array', items: { type: 'string' }, description: 'every schedule that selects it' },
    priority: { type: 'integer' },
    dueAt: { type: 'string', format: 'date-time', description: 'start of the interval it is due in (in the past when open)' },
    windowEnd: { type: 'string', format: 'date-time' },
    windowIndex: { type: 'integer' },
    open: { type: 'boolean' },
    capBytesPerSecond: { type: ['integer', 'null'] },
    deferrals: { type: 'integer', description: 'windows it was already carried over' },
    deliveryId: { type: ['string', 'null'], description: 'its open delivery record, if any' },
    lastOutcome: { type: ['string', 'null'] },
  },
} as const;

const recordSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    terminalId: { type: 'string' },
    contentId: { type: 'string' },
    title: { type: ['string', 'null'] },
    scheduleId: { type: ['string', 'null'] },
    dueAt: { type: 'string', format: 'date-time' },
    windowEnd: { type: ['string', 'null'] },
    startedAt: { type: ['string', 'null'] },
    endedAt: { type: ['string', 'null'] },
    bytes: { type: 'integer' },
    source: { type: ['string', 'null'], description: 'origin, edge or peer' },
    sourceId: { type: ['string', 'null'] },
    outcome: { type: 'string', enum: ['due', 'running', 'done', 'deferred', 'failed'] },
    reason: { type: ['string', 'null'] },
    deferrals: { type: 'integer' },
    createdAt: { type: 'string', format: 'date-time' },
  },
} as const;

/** The body of POST /schedules and POST /me/terminals/:tid/schedules: checked by the service, field by field; the schema still refuses control characters anywhere. */
export const scheduleBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    select: { description: 'exactly one of contentId, publisherId, publisher, genre, series', examples: [{ genre: 'news' }, { series: 'Evening' }] },
    windows: {
      description: 'array of 1–10 windows',
      examples: [
        [{ days: 'weekdays', start: '01:00', end: '05:00', timeZone: 'Europe/Berlin', capBytesPerSecond: 2_000_000 }],
        [{ days: ['sat', 'sun'], start: '22:00', end: '06:00', timeZone: 'UTC' }],
      ],
    },
    priority: { description: 'whole number 0–100, default 0', examples: [0, 7, 100] },
  },
} as const;

export const SCHEDULE_CREATE_DESCRIPTION =
  'select: exactly one of contentId, publisherId, publisher (username), genre, series (a title prefix). windows: 1–10 windows ' +
  '{ days, start, end, timeZone, from?, until?, capBytesPerSecond? } (docs/schedules.md "Windows"). priority: 0–100, orders this terminal’s own items. ' +
  'At most 50 schedules per terminal. Refusals: empty_selection, invalid_selection, invalid_content_id, invalid_window, unknown_time_zone, ' +
  'invalid_cap, too_many_windows, invalid_priority (400); unknown_content, unknown_publisher (404); too_many_schedules (409).';

export const scheduleListSchema = { type: 'object', properties: { schedules: { type: 'array', items: scheduleSchema } } } as const;

export const planQuerySchema = { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: PLAN_MAX_LIMIT, default: 100 } } } as const;

export const planSchema = {
  type: 'object',
  properties: {
    terminalId: { type: 'string' },
    at: { type: 'string', format: 'date-time' },
    items: { type: 'array', items: planItemSchema },
    truncated: { type: 'boolean' },
    openings: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          scheduleId: { type: 'string' },
          windowIndex: { type: 'integer' },
          start: { type: 'string', format: 'date-time' },
          end: { type: 'string', format: 'date-time' },
          capBytesPerSecond: { type: ['integer', 'null'] },
        },
      },
    },
  },
} as const;

export const historyQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 20 },
    before: { type: 'string', maxLength: 64, description: 'the nextCursor of the previous page' },
    contentId: { type: 'string', pattern: '^[0-9a-f]{64}$' },
  },
} as const;

export const historySchema = { type: 'object', properties: { entries: { type: 'array', items: recordSchema }, nextCursor: { type: ['string', 'null'] } } } as const;

export const scheduleIdParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;

export const removedSchema = { type: 'object', properties: { id: { type: 'string' }, removed: { type: 'boolean' } } } as const;

const orderSchema = {
  type: 'object',
  properties: {
    terminalId: { type: 'string' },
    contentId: { type: 'string' },
    title: { type: 'string' },
    totalSize: { type: 'integer' },
    rateBytesPerSecond: { type: 'integer', description: 'the admitted rate: cap the download at it' },
    windowEnd: { type: 'string', format: 'date-time', description: 'pause then; the rest comes in the next window' },
    attempt: { type: 'string' },
    issuedAt: { type: 'string', format: 'date-time' },
  },
} as const;

/** How often a held order stream carries a comment line, so proxies and the agent see it alive. */
const STREAM_KEEPALIVE_MS = 15_000;

/** `runner` is absent on an origin that does not run the scheduler (SCHEDULER=off): delivery routes answer 503 there. */
export function scheduleRoutes(deps: { schedules: ScheduleService; runner?: ScheduleRunner }): FastifyPluginAsync {
  const { schedules } = deps;
  const runner = () => {
    if (!deps.runner) throw new AppError('scheduler_elsewhere', 'This origin does not run the scheduler (SCHEDULER=off); call the one that does.', 503);
    return deps.runner;
  };
  return async (app) => {
    const streams = new Set<() => void>();
    // Held streams would keep the server from closing: end them first.
    app.addHook('preClose', async () => {
      for (const end of [...streams]) end();
    });

    app.post('/schedules/check-in', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Pull (S0.3): call in when a window opens; the answer is what to fetch now and when to call again',
        description: 'orders: the deliveries admitted for this terminal (S0.6), each with the rate to cap it at and the window end to pause at. waiting: items due now that wait for the origin’s budget. nextCheckInAt: soon while a window is open, else the next opening.',
        tags: ['schedules'],
        response: {
          200: {
            type: 'object',
            properties: {
              terminalId: { type: 'string' },
              at: { type: 'string', format: 'date-time' },
              open: { type: 'boolean' },
              orders: { type: 'array', items: orderSchema },
              waiting: { type: 'integer' },
              nextCheckInAt: { type: ['string', 'null'], format: 'date-time' },
            },
          },
          503: errorSchema,
        },
      },
      handler: async (req) => runner().checkIn(req.principal!.terminalId!),
    });

    app.get('/schedules/orders', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Push (S0.4): a held connection (server-sent events) the origin sends this terminal’s delivery orders down',
        description: 'Events: `order` (a DeliveryOrder, as in check-in; the running ones are sent on connecting) and `stop` ({ contentId, reason }: window_closed or failed). A comment line every 15 s keeps it alive.',
        tags: ['schedules'],
        response: { 503: errorSchema },
      },
      handler: async (req, reply) => {
        const r = runner();
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        res.write(': cascade delivery orders\n\n');
        const send = (e: StreamEvent) => res.write(`event: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`);
        const keepalive = setInterval(() => res.write(': keepalive\n\n'), STREAM_KEEPALIVE_MS);
        const hangUp = r.openStream(req.principal!.terminalId!, send);
        const end = () => {
          clearInterval(keepalive);
          hangUp();
          streams.delete(end);
          res.end();
        };
        streams.add(end);
        req.raw.once('close', end);
      },
    });

    app.put<{ Body: { url: string | null } }>('/schedules/push-address', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Push (S0.4): register the address the origin POSTs this terminal’s delivery orders to (null: remove it)',
        description: 'The origin POSTs { token } — the order signed with the origin key (typ cascade-delivery-order) — when a delivery starts. Refusal: invalid_push_address (400).',
        tags: ['schedules'],
        body: { type: 'object', required: ['url'], additionalProperties: false, properties: { url: { type: ['string', 'null'], maxLength: 2000 } } },
        response: { 200: { type: 'object', properties: { terminalId: { type: 'string' }, url: { type: ['string', 'null'] } } }, 400: errorSchema, 503: errorSchema },
      },
      handler: async (req) => runner().setPushAddress(req.principal!.terminalId!, req.body.url),
    });

    app.post<{ Body: ProgressReport }>('/schedules/deliveries/report', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Progress of a scheduled delivery (S0.7): bytes so far, and running, done, paused or failed',
        description: 'continue: false when the origin no longer runs it (window closed, failed). Refusals: invalid_report (400), unknown_order (404), not_held (409: done while the holder registry lacks the content whole).',
        tags: ['schedules'],
        body: {
          type: 'object',
          required: ['contentId', 'bytes', 'state'],
          additionalProperties: false,
          properties: {
            contentId: { type: 'string', pattern: '^[0-9a-f]{64}$' },
            bytes: safeInteger(0),
            state: { type: 'string', enum: ['running', 'done', 'paused', 'failed'] },
            reason: { type: 'string', minLength: 1, maxLength: 200 },
            source: { type: 'string', enum: ['origin', 'peer'], description: 'with done: who delivered most of it' },
            sourceId: { type: 'string', minLength: 1, maxLength: 64, description: 'with source peer: its terminal ID' },
          },
        },
        response: { 200: { type: 'object', properties: { continue: { type: 'boolean' } } }, 400: errorSchema, 404: errorSchema, 409: errorSchema, 503: errorSchema },
      },
      handler: async (req) => runner().report(req.principal!.terminalId!, req.body),
    });

    app.post<{ Body: ScheduleInput }>('/schedules', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Send a distribution request (S0.1, S0.2): what this terminal wants and in which of its local time windows',
        description: SCHEDULE_CREATE_DESCRIPTION,
        tags: ['schedules'],
        body: scheduleBodySchema,
        response: { 201: scheduleSchema, 400: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema },
      },
      handler: async (req, reply) => {
        const created = await schedules.requests.create(req.principal!.terminalId!, req.body ?? {});
        reply.code(201);
        return created;
      },
    });

    app.get('/schedules', {
      config: { access: 'terminal' },
      schema: {
        summary: 'This terminal’s schedules, oldest first, each with its current or next window (S0.2)',
        tags: ['schedules'],
        response: { 200: scheduleListSchema },
      },
      handler: async (req) => ({ schedules: await schedules.requests.list(req.principal!.terminalId!) }),
    });

    app.get<{ Querystring: { limit?: number } }>('/schedules/plan', {
      config: { access: 'terminal' },
      schema: {
        summary: 'This terminal’s plan (S0.5): every content its schedules select that it does not hold yet, with when it is due',
        description: 'Computed when asked: a content published a moment ago that a schedule selects is in it. `openings` lists the intervals of the coming 7 days.',
        tags: ['schedules'],
        querystring: planQuerySchema,
        response: { 200: planSchema, 400: errorSchema },
      },
      handler: async (req) => schedules.planner.plan(req.principal!.terminalId!, { limit: req.query.limit }),
    });

    app.get<{ Querystring: { limit?: number; before?: string; contentId?: string } }>('/schedules/history', {
      config: { access: 'terminal' },
      schema: {
        summary: 'This terminal’s scheduled deliveries, newest first (S0.7): due time, start, end, bytes, source, outcome',
        tags: ['schedules'],
        querystring: historyQuerySchema,
        response: { 200: historySchema, 400: errorSchema },
      },
      handler: async (req) => schedules.deliveries.history(req.principal!.terminalId!, req.query),
    });

    app.delete<{ Params: { id: string } }>('/schedules/:id', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Remove one of this terminal’s schedules (its delivery records stay)',
        tags: ['schedules'],
        params: scheduleIdParams,
        response: { 200: removedSchema, 403: errorSchema, 404: errorSchema },
      },
      handler: async (req) => schedules.requests.remove(req.principal!.terminalId!, req.params.id),
    });
  };
}
