import type { FastifyInstance } from 'fastify';
import { errorSchema } from '../core/http.ts';
import { MAX_LABEL, type EdgeService, type HoldingReport } from './service.ts';
import { EDGE_KINDS, PLACEMENT_POLICIES, type EdgeKind, type EdgeStats, type PlacementPolicy } from './tables.ts';

// S2.1, S2.2 (docs/edge.md): edges register and report with their terminal session;
// operators see and steer them; anyone signed in may ask which edge would serve them.

const MAX_BYTES = 2 ** 53 - 1;
const contentId = { type: 'string', pattern: '^[0-9a-f]{64}$' } as const;
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;
const refusals = { 400: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema } as const;
/** An edge reports at most this many holdings (its cache would have to hold that many contents). */
export const MAX_REPORTED_HOLDINGS = 10_000;

const planSchema = {
  type: 'object',
  properties: {
    fetch: { type: 'array', items: { type: 'object', properties: { contentId: { type: 'string' }, bytes: { type: 'integer' }, why: { type: 'string' } } } },
    evict: { type: 'array', items: { type: 'object', properties: { contentId: { type: 'string' }, why: { type: 'string' } } } },
    skipped: { type: 'array', items: { type: 'object', properties: { contentId: { type: 'string' }, why: { type: 'string' } } } },
    keep: { type: 'array', items: { type: 'string' } },
  },
} as const;

export function edgeRoutes(app: FastifyInstance, deps: { edges: EdgeService }) {
  const { edges } = deps;

  app.post<{ Body: { kind: EdgeKind; label: string; cacheBytes: number; policy?: PlacementPolicy } }>('/edges', {
    config: { access: 'terminal' },
    schema: {
      summary: 'Register the calling terminal as an edge server (S2.1): kind, location label, cache size, placement policy',
      description: 'An operator’s terminal only; registering again (an edge started again) updates it. Refusals: operator_required, terminal_session_required (403), invalid_label, no_serve_url (400).',
      tags: ['edge'],
      body: {
        type: 'object',
        required: ['kind', 'label', 'cacheBytes'],
        additionalProperties: false,
        properties: {
          kind: { type: 'string', enum: [...EDGE_KINDS] },
          label: { type: 'string', minLength: 1, maxLength: MAX_LABEL },
          cacheBytes: { type: 'integer', minimum: 1, maximum: MAX_BYTES },
          policy: { type: 'string', enum: [...PLACEMENT_POLICIES] },
        },
      },
      response: refusals,
    },
    handler: async (req, reply) => reply.code(201).send(await edges.register(req.principal!, req.body)),
  });

  app.put<{ Body: { holdings: HoldingReport[]; stats: EdgeStats } }>('/edges/me/report', {
    config: { access: 'terminal' },
    schema: {
      summary: 'An edge’s periodic report (what it holds, its counters); the answer is its placement plan: what to fetch and what to drop, with reasons',
      tags: ['edge'],
      body: {
        type: 'object',
        required: ['holdings', 'stats'],
        additionalProperties: false,
        properties: {
          holdings: {
            type: 'array',
            maxItems: MAX_REPORTED_HOLDINGS,
            items: {
              type: 'object',
              required: ['contentId', 'bytes', 'complete', 'lastUsedAt'],
              additionalProperties: false,
              properties: { contentId, bytes: { type: 'integer', minimum: 0, maximum: MAX_BYTES }, complete: { type: 'boolean' }, lastUsedAt: { type: 'integer', minimum: 0, maximum: MAX_BYTES } },
            },
          },
          stats: {
            type: 'object',
            required: ['hits', 'misses', 'bytesServed', 'load', 'usedBytes'],
            additionalProperties: false,
            properties: {
              hits: { type: 'integer', minimum: 0, maximum: MAX_BYTES },
              misses: { type: 'integer', minimum: 0, maximum: MAX_BYTES },
              bytesServed: { type: 'integer', minimum: 0, maximum: MAX_BYTES },
              load: { type: 'number', minimum: 0, maximum: 1 },
              usedBytes: { type: 'integer', minimum: 0, maximum: MAX_BYTES },
              filling: { type: ['string', 'null'], maxLength: 64 },
              deliveries: {
                type: 'object',
                required: ['recorded', 'acknowledged', 'refused', 'pending'],
                additionalProperties: false,
                properties: Object.fromEntries(['recorded', 'acknowledged', 'refused', 'pending'].map((k) => [k, { type: 'integer', minimum: 0, maximum: MAX_BYTES }])),
              },
            },
          },
        },
      },
      response: { 200: planSchema, ...refusals },
    },
    handler: async (req) => {
      const edge = await edges.mine(req.principal!);
      return edges.report(edge, { holdings: req.body.holdings, stats: { ...req.body.stats, filling: req.body.stats.filling ?? null } });
    },
  });

  app.get('/edges/me', {
    config: { access: 'terminal' },
    schema: { summary: 'The calling edge as the origin knows it', tags: ['edge'], response: refusals },
    handler: async (req) => edges.mine(req.principal!),
  });

  app.get<{ Querystring: { kind?: EdgeKind } }>('/edges', {
    config: { access: 'user' },
    schema: {
      summary: 'Edge servers: kind, label, cache size and use, policy, online, hit rate and load (S2.1; home and store edges for their users, everything for operators)',
      tags: ['edge'],
      querystring: { type: 'object', additionalProperties: false, properties: { kind: { type: 'string', enum: [...EDGE_KINDS] } } },
    },
    handler: async (req) => {
      const list = await edges.list({ kind: req.query.kind });
      // Members see where home and store servers are, to rent or order there; operators see all, with figures.
      if (req.principal!.roles.includes('operator')) return { scope: 'all', items: list };
      return { scope: 'home_and_store', items: list.filter((e) => e.kind !== 'delivery').map((e) => ({ id: e.id, kind: e.kind, label: e.label, online: e.online, serveUrl: e.serveUrl })) };
    },
  });

  app.get<{ Params: { id: string } }>('/edges/:id', {
    config: { access: ['operator'] },
    schema: { summary: 'One edge with its holdings (what it caches, since when used, pinned or not), its current plan, its pins and the titles of the contents these name', tags: ['edge'], params: idParams, response: refusals },
    handler: async (req) => {
      const edge = await edges.get(req.params.id);
      const holdings = await edges.holdings(edge.id);
      const plan = await edges.plan(edge);
      const pins = await edges.pinned(edge.id);
      // Pins (held or not) and the titles of what the plan names, so a page can show them by name.
      const titles = await edges.titles([...pins, ...plan.fetch.map((f) => f.contentId), ...plan.evict.map((e) => e.contentId), ...plan.skipped.map((s) => s.contentId)]);
      return { ...edge, holdings, plan, pins, titles };
    },
  });

  app.patch<{ Params: { id: string }; Body: { policy?: PlacementPolicy; cacheBytes?: number } }>('/edges/:id', {
    config: { access: ['operator'] },
    schema: {
      summary: 'Change an edge’s placement policy or cache size (S2.1); its next report gets the new plan',
      tags: ['edge'],
      params: idParams,
      body: { type: 'object', additionalProperties: false, properties: { policy: { type: 'string', enum: [...PLACEMENT_POLICIES] }, cacheBytes: { type: 'integer', minimum: 1, maximum: MAX_BYTES } } },
      response: refusals,
    },
    handler: async (req) => edges.configure(req.params.id, req.body),
  });

  app.put<{ Params: { id: string; contentId: string } }>('/edges/:id/pins/:contentId', {
    config: { access: ['operator'] },
    schema: {
      summary: 'Put a content on an edge ahead of demand (S2.1 manual placement); it ranks before every policy’s own choices',
      tags: ['edge'],
      params: { type: 'object', required: ['id', 'contentId'], properties: { id: { type: 'string', maxLength: 64 }, contentId } },
      response: refusals,
    },
    handler: async (req) => {
      await edges.pin(req.params.id, req.params.contentId);
      return { pinned: true };
    },
  });

  app.delete<{ Params: { id: string; contentId: string } }>('/edges/:id/pins/:contentId', {
    config: { access: ['operator'] },
    schema: { summary: 'Take a pin off (the edge drops the content when it needs the room)', tags: ['edge'], params: { type: 'object', required: ['id', 'contentId'], properties: { id: { type: 'string', maxLength: 64 }, contentId } }, response: refusals },
    handler: async (req) => ({ removed: await edges.unpin(req.params.id, req.params.contentId) }),
  });

  app.get<{ Querystring: { contentId: string } }>('/edges/route', {
    config: { access: 'terminal' },
    schema: {
      summary: 'Which edge would serve this terminal a content (S2.2), and why; null when the origin would',
      tags: ['edge'],
      querystring: { type: 'object', required: ['contentId'], additionalProperties: false, properties: { contentId } },
    },
    handler: async (req) => {
      const routed = await edges.route(req.principal!.terminalId!, req.query.contentId);
      return routed ? { edgeId: routed.edge.edgeId, label: routed.edge.label, serveUrl: routed.edge.serveUrl, holds: routed.edge.holds, why: routed.why } : { edgeId: null, why: 'no edge near you holds it or is near enough: the origin serves it' };
    },
  });
}
