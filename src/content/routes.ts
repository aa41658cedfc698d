import type { FastifyPluginAsync } from 'fastify';
import { Readable } from 'node:stream';
import type { AccountService } from '../accounts/service.ts';
import type { Config } from '../core/config.ts';
import { AppError, badRequest } from '../core/errors.ts';
import { drainBriefly } from '../core/drain.ts';
import { errorSchema, validationError } from '../core/http.ts';
import { thumbnailRoutes } from './thumbnail-routes.ts';
import { MAX_PRICE, uploadTooLarge, type ContentService, type ListQuery, type PublishMeta } from './service.ts';

// S1.1 over HTTP: publishing (a streamed body; metadata in the query string) and the
// public catalog. Manifests are signed by the origin, so anyone may fetch them.

const itemSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    title: { type: 'string' },
    summary: { type: 'string' },
    author: { type: 'string' },
    genre: { type: 'string' },
    price: { type: 'integer', description: 'whole-content price in minor units' },
    publisher: { type: 'string', description: 'publisher username' },
    totalSize: { type: 'integer' },
    pieces: { type: 'integer' },
    createdAt: { type: 'string', format: 'date-time' },
    thumbnailUrl: { type: ['string', 'null'], description: 'where its thumbnail is served (S1.1); null without one' },
  },
} as const;

// Extra properties pass through untouched: dropping a field the serializer does not
// know would silently break the signature.
const manifestSchema = {
  type: 'object',
  additionalProperties: true,
  properties: {
    body: {
      type: 'object',
      additionalProperties: true,
      properties: {
        v: { type: 'integer' },
        title: { type: 'string' },
        summary: { type: 'string' },
        author: { type: 'string' },
        genre: { type: 'string' },
        price: { type: 'integer' },
        publisher: { type: 'string' },
        pieceSize: { type: 'integer' },
        totalSize: { type: 'integer' },
        pieces: { type: 'array', items: { type: 'string' }, description: 'hex SHA-256 of each piece, in order' },
        createdAt: { type: 'string' },
      },
    },
    signature: { type: 'string', description: 'base64url Ed25519 signature by the origin over the canonical (RFC 8785) body' },
  },
} as const;

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: 200, description: 'content ID: hex SHA-256 of the canonical manifest body' } },
} as const;

const META_FIELDS = ['title', 'genre', 'price', 'summary', 'author'] as const;

export function contentRoutes(deps: { content: ContentService; accounts: AccountService; config: Config }): FastifyPluginAsync {
  const { content, config } = deps;
  return async (app) => {
    // Hand the raw request stream to the handler: the service streams it into pieces
    // and enforces maxUploadBytes itself, so Fastify's JSON bodyLimit does not apply.
    // Registered inside this plugin, so no other route accepts octet-stream bodies.
    app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
    await app.register(thumbnailRoutes({ content }));

    app.post<{ Querystring: PublishMeta }>('/contents', {
      config: { access: ['publisher'] },
      attachValidation: true,
      schema: {
        summary: 'Publish a content (S1.1): the body is the file’s bytes; metadata is in the query string',
        tags: ['content'],
        consumes: ['application/octet-stream'],
        querystring: {
          type: 'object',
          required: ['title', 'genre', 'price'],
          additionalProperties: false,
          properties: {
            title: { type: 'string', minLength: 1, maxLength: 200 },
            genre: { type: 'string', minLength: 1, maxLength: 60 },
            price: { type: 'integer', minimum: 0, maximum: MAX_PRICE, description: 'whole-content price in minor units' },
            summary: { type: 'string', maxLength: 2000, controlChars: 'allowLineBreaks', description: 'free text: tabs and line breaks are kept' },
            author: { type: 'string', maxLength: 200 },
          },
        },
        response: {
          201: {
            type: 'object',
            properties: { id: { type: 'string' }, title: { type: 'string' }, pieces: { type: 'integer' }, totalSize: { type: 'integer' }, manifest: manifestSchema },
          },
          400: errorSchema,
          401: errorSchema,
          403: errorSchema,
          413: errorSchema,
          415: errorSchema,
        },
      },
      // Issue 12 #5: refusals come before any of the body is read. The access rule (who, which
      // role) is checked by the shared onRequest hook (src/core/http.ts), which runs first; then
      // the declared size here.
      onRequest: async (req) => {
        const declared = Number(req.headers['content-length']);
        if (Number.isFinite(declared) && declared > config.maxUploadBytes) throw uploadTooLarge(config.maxUploadBytes);
      },
      // An answer sent before the whole body arrived: read on (and discard) what the client
      // already has on its way for a bounded while, instead of closing at once. A socket closed
      // with unread bytes is reset, and a reset can destroy the answer before the client reads it
      // (the "EPIPE instead of forbidden" of issue 12 #5).
      onResponse: async (req) => {
        if (!req.raw.complete) drainBriefly(req.raw);
      },
      handler: async (req, reply) => {
        if (req.validationError) throw metaError(req.validationError);
        // No body at all reaches here unparsed (and is refused as empty); any other
        // content type was parsed by a JSON/text parser and is not a file's bytes.
        const body = req.body === undefined ? req.raw : req.body;
        if (!(body instanceof Readable)) {
          throw new AppError('unsupported_media_type', 'Send the content’s bytes with Content-Type: application/octet-stream.', 415);
        }
        const principal = req.principal!;
        let r;
        try {
          r = await content.publish({ id: principal.userId, username: principal.username }, req.query, body);
        } catch (err) {
          // The client went away mid-body: its fault, not a server failure to log as one.
          if (!(err instanceof AppError) && (req.raw.aborted || (err as any)?.code === 'ECONNRESET')) {
            throw new AppError('upload_interrupted', 'The upload ended before all of its bytes arrived; nothing was stored.', 400);
          }
          throw err;
        }
        reply.code(201);
        return { id: r.id, title: r.manifest.body.title, pieces: r.pieces, totalSize: r.totalSize, manifest: r.manifest };
      },
    });

    app.get<{ Querystring: ListQuery }>('/contents', {
      config: { access: 'public' },
      schema: {
        summary: 'The catalog, newest first: search by title, genre or publisher; keyset paging with `cursor`',
        tags: ['content'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            q: { type: 'string', maxLength: 200, description: 'case-insensitive substring of title, genre or publisher' },
            genre: { type: 'string', maxLength: 60 },
            publisher: { type: 'string', maxLength: 40, description: 'publisher username' },
            limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
            cursor: { type: 'string', maxLength: 200, description: 'nextCursor from the previous page' },
            idPrefix: { type: 'string', maxLength: 64, description: 'contents whose ID starts with these 8–64 lower-case hex characters (a short ID, as git takes short commit IDs)' },
          },
        },
        response: {
          200: { type: 'object', properties: { items: { type: 'array', items: itemSchema }, nextCursor: { type: ['string', 'null'] } } },
          400: errorSchema,
        },
      },
      handler: async (req) => content.list(req.query),
    });

    app.get<{ Params: { id: string } }>('/contents/:id', {
      config: { access: 'public' },
      schema: { summary: 'One catalog entry', tags: ['content'], params: idParams, response: { 200: itemSchema, 400: errorSchema, 404: errorSchema } },
      handler: async (req) => content.get(req.params.id),
    });

    app.get<{ Params: { id: string } }>('/contents/:id/manifest', {
      config: { access: 'public' },
      schema: {
        summary: 'The origin-signed manifest: piece hashes to check every piece against (S1.6)',
        tags: ['content'],
        params: idParams,
        response: { 200: manifestSchema, 400: errorSchema, 404: errorSchema },
      },
      handler: async (req) => content.getManifest(req.params.id),
    });
  };
}

/**
 * Turns a schema failure on the publish metadata into the same codes the service
 * uses (`invalid_title`, `invalid_price`, …), so a client gets one code per rule
 * whichever layer caught it.
 */
function metaError(err: Error & { validation?: any[] }): AppError {
  const first = err.validation?.[0];
  if (first?.keyword === 'controlChars') return validationError(err); // invalid_text, as on every route
  const field: string | undefined = first?.params?.missingProperty ?? String(first?.instancePath ?? '').replace(/^\//, '');
  if (field && (META_FIELDS as readonly string[]).includes(field)) {
    const what = first?.keyword === 'required' ? `A ${field} is required` : `The ${field} is not valid: ${first?.message ?? 'bad value'}`;
    return badRequest(`invalid_${field}`, `${what}.`);
  }
  return validationError(err);
}
