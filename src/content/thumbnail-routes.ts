import type { FastifyPluginAsync } from 'fastify';
import { badRequest, errorBody } from '../core/errors.ts';
import { errorSchema, toAppError } from '../core/http.ts';
import type { ContentService } from './service.ts';
import { imageTooLarge, THUMBNAIL_MAX_BYTES, THUMBNAIL_MIMES } from './thumbnail-image.ts';

// S1.1 thumbnails over HTTP (#13): the publisher uploads the image's bytes; anyone fetches
// them, cached for a day and revalidated by ETag. The image/* body parser is registered in
// this plugin only, with the thumbnail's size as its limit: no other route takes image bodies.

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: 200, description: 'content ID' } },
} as const;

export const THUMBNAIL_CACHE_CONTROL = 'public, max-age=86400';

export function thumbnailRoutes(deps: { content: ContentService }): FastifyPluginAsync {
  const { content } = deps;
  return async (app) => {
    app.addContentTypeParser(/^image\/[a-z0-9.+-]+$/i, { parseAs: 'buffer', bodyLimit: THUMBNAIL_MAX_BYTES }, (_req, body, done) => done(null, body));

    app.put<{ Params: { id: string } }>('/contents/:id/thumbnail', {
      config: { access: ['publisher'] },
      schema: {
        summary: 'Set the thumbnail of a content you published (S1.1): the body is the image’s bytes',
        description:
          `PNG, JPEG, WebP or GIF, at most ${THUMBNAIL_MAX_BYTES} bytes and 4096×4096; the type is read from the bytes and must match Content-Type. ` +
          'A new image replaces the old one (and gets a new thumbnailUrl).',
        tags: ['content'],
        consumes: THUMBNAIL_MIMES,
        params: idParams,
        response: {
          200: { type: 'object', properties: { thumbnailUrl: { type: 'string' } } },
          400: errorSchema,
          401: errorSchema,
          403: errorSchema,
          404: errorSchema,
          413: errorSchema,
          415: errorSchema,
        },
      },
      // A declared length over the limit is refused before any of the body is read.
      onRequest: async (req) => {
        const declared = Number(req.headers['content-length']);
        if (Number.isFinite(declared) && declared > THUMBNAIL_MAX_BYTES) throw imageTooLarge();
      },
      // The parser's own limit (a body without a declared length) answers image_too_large too.
      errorHandler: (err, req, reply) => {
        const e = (err as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? imageTooLarge() : toAppError(err);
        if (e.code === 'internal') req.log.error({ err }, 'request failed');
        reply.code(e.status).send(errorBody(e));
      },
      handler: async (req) => {
        const type = String(req.headers['content-type'] ?? '');
        if (!Buffer.isBuffer(req.body) || !/^image\//i.test(type)) {
          throw badRequest('invalid_image', `Send the image’s bytes with Content-Type ${THUMBNAIL_MIMES.join(', ')}.`);
        }
        return content.putThumbnail(req.params.id, { userId: req.principal!.userId }, req.body, type);
      },
    });

    app.get<{ Params: { id: string }; Querystring: { v?: string } }>('/contents/:id/thumbnail', {
      config: { access: 'public' },
      schema: {
        summary: 'A content’s thumbnail image (S1.1), with an ETag; cached for a day',
        tags: ['content'],
        params: idParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { v: { type: 'string', maxLength: 64, description: 'version in thumbnailUrl (ignored: it only makes a new image a new URL)' } },
        },
        response: { 304: { type: 'null', description: 'not modified (If-None-Match)' }, 400: errorSchema, 404: errorSchema },
      },
      handler: async (req, reply) => {
        const t = await content.thumbnail(req.params.id);
        reply.header('etag', t.etag).header('cache-control', THUMBNAIL_CACHE_CONTROL).header('x-content-type-options', 'nosniff');
        reply.header('last-modified', t.updatedAt.toUTCString());
        const match = req.headers['if-none-match'];
        if (match && match.split(',').some((m) => m.trim().replace(/^W\//, '') === t.etag || m.trim() === '*')) return reply.code(304).send();
        return reply.type(t.mime).send(t.bytes);
      },
    });
  };
}
