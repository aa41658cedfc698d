import type { FastifyPluginAsync } from 'fastify';
import { AppError, forbidden } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import { DELIVERY_LIMITS, type DeliveryReport, type DeliveryService } from './deliveries.ts';

// S2.4 routes (docs/edge.md "Deliveries, reports and billing"): an edge reports its deliveries
// with its terminal session; operators list an edge's deliveries; a member lists its own.

/** The edge a terminal session belongs to (EdgeService.byTerminal once the spine is composed). */
export type ResolveEdge = (terminalId: string) => Promise<{ id: string; ownerId: string; kind: 'delivery' | 'home' | 'store' } | null>;

/** At most this many reports in one request; each is judged alone. */
export const MAX_REPORTS_PER_REQUEST = 500;

export interface ReportsAnswer {
  /** Delivery IDs of the reports recorded now (a final one billed), in request order. */
  accepted: string[];
  /** Delivery IDs of reports that changed nothing: the delivery was already billed with this final report. */
  duplicates: string[];
  /** Reports refused, with their place in the request: nothing of them was recorded. */
  refused: { index: number; deliveryId: string; code: string; message: string }[];
}

const splitSchema = {
  type: ['object', 'null'],
  properties: { edge: { type: 'integer' }, royalty: { type: 'integer' }, fee: { type: 'integer' }, rounding: { type: 'integer' } },
} as const;

const deliverySchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    serial: { type: 'integer' },
    edgeId: { type: 'string' },
    kind: { type: 'string', enum: ['rental', 'order'] },
    contentId: { type: 'string' },
    userId: { type: 'string' },
    payer: { type: 'string', enum: ['wallet', 'counter'] },
    maxFee: { type: 'integer' },
    terms: { type: 'object', additionalProperties: true },
    state: { type: 'string', enum: ['open', 'billed'] },
    openedAt: { type: 'string' },
    fee: { type: ['integer', 'null'] },
    bytes: { type: ['integer', 'null'] },
    viewedSeconds: { type: ['integer', 'null'] },
    reports: { type: 'integer' },
    lastReportAt: { type: ['string', 'null'] },
    billedAt: { type: ['string', 'null'] },
    charged: { type: ['integer', 'null'] },
    split: splitSchema,
  },
} as const;

const pageSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 50 },
    before: { type: 'integer', minimum: 1, maximum: 2 ** 31 - 1 },
  },
} as const;

const countsSchema = { type: 'object', properties: { opened: { type: 'integer' }, open: { type: 'integer' }, billed: { type: 'integer' }, billedFees: { type: 'integer' } } } as const;

const listAnswer = {
  200: { type: 'object', properties: { deliveries: { type: 'array', items: deliverySchema }, nextBefore: { type: ['integer', 'null'] } } },
  400: errorSchema,
} as const;

const notAnEdge = () => forbidden('not_an_edge', 'This terminal is not registered as an edge (cascade edge registers one).');

export function deliveryRoutes(deps: { deliveries: DeliveryService; resolveEdge: ResolveEdge }): FastifyPluginAsync {
  const { deliveries } = deps;
  return async (app) => {
    app.post<{ Body: { reports: DeliveryReport[] } }>('/edges/me/deliveries/reports', {
      config: { access: 'terminal' },
      schema: {
        summary: 'An edge reports what it delivered (S2.4); the final report of a delivery bills it once',
        description:
          `Up to ${MAX_REPORTS_PER_REQUEST} reports, each judged alone. A final report bills its delivery exactly once: the same final report again is a duplicate and charges nothing; ` +
          'a different one after the bill is refused (delivery_already_billed). A non-final report records the figures so far. Refusals: unknown_delivery, not_your_delivery, fee_exceeds_terms, insufficient_balance.',
        tags: ['edge'],
        body: {
          type: 'object',
          required: ['reports'],
          additionalProperties: false,
          properties: {
            reports: {
              type: 'array',
              maxItems: MAX_REPORTS_PER_REQUEST,
              items: {
                type: 'object',
                required: ['deliveryId', 'fee', 'final'],
                additionalProperties: false,
                properties: {
                  deliveryId: { type: 'string', pattern: '^dlv_[A-Za-z0-9_-]{1,60}$' },
                  fee: { type: 'integer', minimum: 0, maximum: DELIVERY_LIMITS.maxFee },
                  bytes: { type: 'integer', minimum: 0, maximum: DELIVERY_LIMITS.maxBytes },
                  viewedSeconds: { type: 'integer', minimum: 0, maximum: DELIVERY_LIMITS.maxViewedSeconds },
                  final: { type: 'boolean' },
                },
              },
            },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              accepted: { type: 'array', items: { type: 'string' } },
              duplicates: { type: 'array', items: { type: 'string' } },
              refused: {
                type: 'array',
                items: { type: 'object', properties: { index: { type: 'integer' }, deliveryId: { type: 'string' }, code: { type: 'string' }, message: { type: 'string' } } },
              },
            },
          },
          403: errorSchema,
        },
      },
      handler: async (req): Promise<ReportsAnswer> => {
        const edge = await deps.resolveEdge(req.principal!.terminalId!);
        if (!edge) throw notAnEdge();
        const answer: ReportsAnswer = { accepted: [], duplicates: [], refused: [] };
        // One at a time, each in its own transaction: a refusal leaves the others standing. Any
        // other failure (the database) answers 500 and the edge sends the batch again: what was
        // billed meanwhile comes back as duplicates.
        for (const [index, report] of req.body.reports.entries()) {
          try {
            const r = await deliveries.report(edge.id, report);
            (r.status === 'accepted' ? answer.accepted : answer.duplicates).push(report.deliveryId);
          } catch (err) {
            if (!(err instanceof AppError) || err.status >= 500) throw err;
            answer.refused.push({ index, deliveryId: report.deliveryId, code: err.code, message: err.message });
          }
        }
        return answer;
      },
    });

    app.get('/edges/me/deliveries/counts', {
      config: { access: 'terminal' },
      schema: {
        summary: 'What this edge’s deliveries came to on the origin (for cascade edge status, beside the edge’s own journal counts)',
        tags: ['edge'],
        response: {
          200: countsSchema,
          403: errorSchema,
        },
      },
      handler: async (req) => {
        const edge = await deps.resolveEdge(req.principal!.terminalId!);
        if (!edge) throw notAnEdge();
        return deliveries.counts(edge.id);
      },
    });

    app.get<{ Params: { id: string }; Querystring: { limit: number; before?: number } }>('/edges/:id/deliveries', {
      config: { access: ['operator'] },
      schema: {
        summary: 'An edge’s deliveries, newest first, with what each was billed (S2.4)',
        tags: ['edge'],
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 100 } } },
        querystring: pageSchema,
        response: { ...listAnswer, 200: { type: 'object', properties: { ...listAnswer[200].properties, counts: countsSchema } } },
      },
      handler: async (req) => ({ ...(await deliveries.list({ edgeId: req.params.id }, req.query)), counts: await deliveries.counts(req.params.id) }),
    });

    app.get<{ Querystring: { limit: number; before?: number } }>('/deliveries/mine', {
      config: { access: 'user' },
      schema: {
        summary: 'My rentals and orders from edges, newest first, with what each cost (S2.4)',
        tags: ['edge'],
        querystring: pageSchema,
        response: listAnswer,
      },
      handler: async (req) => deliveries.list({ userId: req.principal!.userId }, req.query),
    });
  };
}
