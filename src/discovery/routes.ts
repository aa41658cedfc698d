import type { FastifyPluginAsync } from 'fastify';
import { errorSchema } from '../core/http.ts';
import { COMMENTS_PER_ITEM, MAX_PREFERRED_GENRES, type DiscoveryService } from './service.ts';

// S1.4 over HTTP (docs/content-list.md): the member's profile and content list, comments,
// ratings, the publisher's notes and paid placement.

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: 200, description: 'content ID' } },
} as const;

/** A caller-chosen key that makes a POST idempotent (a UUID fits). */
const requestId = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{7,63}$', description: '8–64 letters, digits, . _ : - (a UUID fits); the same one again posts nothing new' } as const;

const commentSchema = {
  type: 'object',
  properties: { id: { type: 'string' }, author: { type: 'string', description: 'username' }, text: { type: 'string' }, createdAt: { type: 'string', format: 'date-time' } },
} as const;

const ratingSchema = {
  type: 'object',
  properties: {
    average: { type: ['number', 'null'], description: 'mean stars, one decimal; null with none' },
    count: { type: 'integer' },
    mine: { type: ['integer', 'null'], description: 'your stars, if you rated it' },
  },
} as const;

const profileSchema = {
  type: 'object',
  properties: {
    preferredGenres: { type: 'array', items: { type: 'string' } },
    historyGenres: { type: 'array', items: { type: 'string' }, description: 'genres of what you received, most first' },
  },
} as const;

const itemSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    title: { type: 'string' },
    summary: { type: 'string' },
    author: { type: 'string' },
    genre: { type: 'string' },
    price: { type: 'integer' },
    publisher: { type: 'string' },
    totalSize: { type: 'integer' },
    pieces: { type: 'integer' },
    createdAt: { type: 'string', format: 'date-time' },
    thumbnailUrl: { type: ['string', 'null'] },
    affordable: { type: 'boolean', description: 'what it would still cost is within your available balance' },
    received: { type: 'boolean', description: 'your purchase of it is complete' },
    preferredGenre: { type: 'boolean' },
    placement: { type: ['object', 'null'], properties: { until: { type: 'string', format: 'date-time' } }, description: 'paid preferred placement running now' },
    why: { type: 'array', items: { type: 'string' }, description: 'sentences: why it is where it is, and why it is marked as it is' },
    rating: ratingSchema,
    comments: { type: 'array', items: commentSchema, description: `the latest ${COMMENTS_PER_ITEM}, newest first` },
    commentCount: { type: 'integer' },
    notes: { type: ['string', 'null'], description: 'the publisher’s notes' },
    holdersOnline: { type: 'integer', description: 'terminals holding it whole that are online' },
  },
} as const;

const placementSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    contentId: { type: 'string' },
    from: { type: 'string', format: 'date-time' },
    until: { type: 'string', format: 'date-time' },
    days: { type: 'integer' },
    charged: { type: 'integer' },
    balanceAfter: { type: 'integer', description: 'your posted wallet balance right after the charge' },
    active: { type: 'boolean' },
  },
} as const;

const listQuery = {
  limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
  cursor: { type: 'string', maxLength: 400, description: 'nextCursor of the previous page' },
} as const;

export function discoveryRoutes(deps: { discovery: DiscoveryService }): FastifyPluginAsync {
  const { discovery } = deps;
  return async (app) => {
    app.get('/me/profile', {
      config: { access: 'user' },
      schema: { summary: 'Your preferred genres, and the genres of what you received (S1.4)', tags: ['discovery'], response: { 200: profileSchema, 401: errorSchema, 403: errorSchema } },
      handler: async (req) => discovery.profile(req.principal!.userId),
    });

    app.put<{ Body: { preferredGenres: string[] } }>('/me/profile', {
      config: { access: 'user' },
      schema: {
        summary: 'Set your preferred genres: they come first in your content list (S1.4)',
        tags: ['discovery'],
        body: {
          type: 'object',
          required: ['preferredGenres'],
          additionalProperties: false,
          properties: { preferredGenres: { type: 'array', maxItems: MAX_PREFERRED_GENRES, items: { type: 'string', minLength: 1, maxLength: 40 } } },
        },
        response: { 200: profileSchema, 400: errorSchema, 401: errorSchema, 403: errorSchema },
      },
      handler: async (req) => discovery.setProfile(req.principal!.userId, req.body.preferredGenres),
    });

    app.get<{ Querystring: { q?: string; limit?: number; cursor?: string } }>('/me/content-list', {
      config: { access: 'user' },
      schema: {
        summary: 'Your content list (S1.4): placed items first, then your preferred genres, then the genres of what you received, then the newest',
        description: 'Each item is marked affordable against your available balance, and says why it is where it is in `why`.',
        tags: ['discovery'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { q: { type: 'string', maxLength: 200, description: 'case-insensitive substring of title, genre or publisher' }, ...listQuery },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              balance: { type: 'object', properties: { available: { type: 'integer' } } },
              preferredGenres: { type: 'array', items: { type: 'string' } },
              items: { type: 'array', items: itemSchema },
              nextCursor: { type: ['string', 'null'] },
            },
          },
          400: errorSchema,
          401: errorSchema,
          403: errorSchema,
        },
      },
      handler: async (req) => discovery.contentList(req.principal!.userId, req.query),
    });

    app.get<{ Params: { id: string } }>('/me/content-list/:id', {
      config: { access: 'user' },
      schema: { summary: 'One item of your content list (S1.4)', tags: ['discovery'], params: idParams, response: { 200: itemSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema } },
      handler: async (req) => discovery.contentItem(req.principal!.userId, req.params.id),
    });

    app.get<{ Params: { id: string }; Querystring: { limit?: number; cursor?: string } }>('/contents/:id/comments', {
      config: { access: 'public' },
      schema: {
        summary: 'A content’s comments, newest first (S1.4)',
        tags: ['discovery'],
        params: idParams,
        querystring: { type: 'object', additionalProperties: false, properties: listQuery },
        response: {
          200: { type: 'object', properties: { items: { type: 'array', items: commentSchema }, nextCursor: { type: ['string', 'null'] } } },
          400: errorSchema,
          404: errorSchema,
        },
      },
      handler: async (req) => discovery.comments(req.params.id, req.query),
    });

    app.post<{ Params: { id: string }; Body: { text: string; requestId: string } }>('/contents/:id/comments', {
      config: { access: 'user' },
      schema: {
        summary: 'Comment on a content you received (S1.4); the same requestId again answers the same comment',
        tags: ['discovery'],
        params: idParams,
        body: {
          type: 'object',
          required: ['text', 'requestId'],
          additionalProperties: false,
          properties: { text: { type: 'string', minLength: 1, maxLength: 2000, controlChars: 'allowLineBreaks' }, requestId },
        },
        response: { 200: commentSchema, 201: commentSchema, 400: errorSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema },
      },
      handler: async (req, reply) => {
        const { comment, created } = await discovery.postComment(req.principal!.userId, req.params.id, req.body);
        return reply.code(created ? 201 : 200).send(comment);
      },
    });

    app.put<{ Params: { id: string }; Body: { stars: number } }>('/contents/:id/rating', {
      config: { access: 'user' },
      schema: {
        summary: 'Rate a content you received, 1–5 stars (S1.4); rating again replaces your rating',
        tags: ['discovery'],
        params: idParams,
        body: { type: 'object', required: ['stars'], additionalProperties: false, properties: { stars: { type: 'integer', minimum: 1, maximum: 5 } } },
        response: { 200: ratingSchema, 400: errorSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema },
      },
      handler: async (req) => discovery.rate(req.principal!.userId, req.params.id, req.body.stars),
    });

    app.put<{ Params: { id: string }; Body: { notes: string } }>('/contents/:id/notes', {
      config: { access: ['publisher', 'operator'] },
      schema: {
        summary: 'Set the publisher’s notes shown with a content (S1.4): its publisher, or an operator; empty clears them',
        tags: ['discovery'],
        params: idParams,
        body: {
          type: 'object',
          required: ['notes'],
          additionalProperties: false,
          properties: { notes: { type: 'string', maxLength: 2000, controlChars: 'allowLineBreaks' } },
        },
        response: { 200: { type: 'object', properties: { notes: { type: ['string', 'null'] } } }, 400: errorSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema },
      },
      handler: async (req) => discovery.setNotes(req.principal!, req.params.id, req.body.notes),
    });

    app.post<{ Params: { id: string }; Body: { days: number; requestId: string } }>('/contents/:id/placements', {
      config: { access: ['publisher'] },
      schema: {
        summary: 'Buy preferred placement for a content you published (S1.4): PLACEMENT_PRICE_PER_DAY × days from your wallet',
        description:
          'Charged once, through the ledger, from your wallet to the platform (your wallet history shows it with reason `placement`). ' +
          'It starts now, or where the content’s running placement ends. The same requestId again answers the same placement (200) and charges nothing.',
        tags: ['discovery'],
        params: idParams,
        body: {
          type: 'object',
          required: ['days', 'requestId'],
          additionalProperties: false,
          properties: { days: { type: 'integer', minimum: 1, maximum: 90 }, requestId },
        },
        response: { 200: placementSchema, 201: placementSchema, 400: errorSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema },
      },
      handler: async (req, reply) => {
        const { placement, created } = await discovery.place(req.principal!.userId, req.params.id, req.body);
        return reply.code(created ? 201 : 200).send(placement);
      },
    });

    app.get<{ Params: { id: string } }>('/contents/:id/placements', {
      config: { access: ['publisher', 'operator'] },
      schema: {
        summary: 'A content’s placements, newest first, with whether each runs now (S1.4): its publisher, or an operator',
        tags: ['discovery'],
        params: idParams,
        response: { 200: { type: 'object', properties: { pricePerDay: { type: 'integer', description: 'PLACEMENT_PRICE_PER_DAY now' }, items: { type: 'array', items: placementSchema } } }, 401: errorSchema, 403: errorSchema, 404: errorSchema },
      },
      handler: async (req) => discovery.placements(req.principal!, req.params.id),
    });
  };
}
