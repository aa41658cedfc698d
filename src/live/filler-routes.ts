import type { FastifyInstance } from 'fastify';
import type { Readable } from 'node:stream';
import { AppError, badRequest } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import type { Channels } from './channels.ts';
import type { Fillers } from './fillers.ts';
import type { LiveStreams } from './streams.ts';

// S3.14 (docs/live.md "Filler and the channel's URL"): the operator sets a channel's filler;
// anyone may play it (it is the channel's shop window, like its listing); the channel's "now"
// tells a player whether to show the filler or the program whose slot it is.

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;

export function fillerRoutes(app: FastifyInstance, deps: { channels: Channels; fillers: Fillers; streams: LiveStreams }) {
  const { channels, fillers, streams } = deps;
  // Clips arrive as the request body, streamed to disk with their own bound (FILLER_CLIP_MAX_BYTES).
  app.addContentTypeParser(/^(video\/[a-z0-9.+-]+|application\/octet-stream)$/i, (_req, payload, done) => done(null, payload));

  app.put<{ Params: { id: string }; Body: { slate?: string } | Readable }>('/live/channels/:id/filler', {
    config: { access: ['operator'] },
    schema: {
      summary: 'Set the channel’s filler (S3.14): JSON {"slate": "text"} for a slate, or a video file as the body (Content-Type video/… , at most 200 MiB) for a looping clip',
      tags: ['live'],
      params: idParams,
      response: { 400: errorSchema, 404: errorSchema, 413: errorSchema, 415: errorSchema },
    },
    handler: async (req) => {
      const body = req.body as { slate?: unknown } | Readable | undefined;
      if (body && typeof (body as Readable).pipe === 'function') return fillers.setClip(req.params.id, body as Readable, req.principal!.userId);
      if (!body || typeof body !== 'object') throw new AppError('unsupported_media_type', 'Send {"slate": "text"} as JSON, or the clip as a video/… body.', 415);
      if (typeof (body as { slate?: unknown }).slate !== 'string') throw badRequest('filler_text_required', 'Give {"slate": "text"}, or send a video file as the body.', { field: 'slate' });
      return fillers.setSlate(req.params.id, (body as { slate: string }).slate, req.principal!.userId);
    },
  });

  app.get<{ Params: { id: string } }>('/live/channels/:id/filler', {
    config: { access: 'public' },
    schema: { summary: 'The channel’s filler: slate or clip, its segments and its looping playlist (S3.14)', tags: ['live'], params: idParams, response: { 404: errorSchema } },
    handler: async (req) => fillers.get(req.params.id),
  });

  app.get<{ Params: { id: string } }>('/live/channels/:id/filler.m3u8', {
    config: { access: 'public' },
    schema: { summary: 'The channel’s filler as a live HLS playlist looping by the clock (S3.14)', tags: ['live'], params: idParams, response: { 404: errorSchema } },
    handler: async (req, reply) => {
      const text = await fillers.playlist(req.params.id);
      reply.type('application/vnd.apple.mpegurl').header('cache-control', 'no-cache, no-store').send(text);
    },
  });

  app.get<{ Params: { id: string; version: string; name: string } }>('/live/channels/:id/filler/:version/:name', {
    config: { access: 'public' },
    schema: {
      summary: 'One file of the channel’s filler (a new filler has a new version, so these never change)',
      tags: ['live'],
      params: { type: 'object', required: ['id', 'version', 'name'], properties: { id: { type: 'string', maxLength: 64 }, version: { type: 'string', maxLength: 64 }, name: { type: 'string', maxLength: 64 } } },
      response: { 404: errorSchema },
    },
    handler: async (req, reply) => {
      const bytes = await fillers.file(req.params.id, req.params.version, req.params.name);
      reply.type(req.params.name.endsWith('.mp4') ? 'video/mp4' : 'video/iso.segment').header('cache-control', 'public, max-age=86400, immutable').send(bytes);
    },
  });

  app.get<{ Params: { id: string } }>('/live/channels/:id/now', {
    config: { access: 'public' },
    schema: {
      summary: 'What the channel carries now (S3.14): the program whose slot it is (null: the filler), whether it is on air, the next program',
      tags: ['live'],
      params: idParams,
      response: { 404: errorSchema },
    },
    handler: async (req, reply) => {
      await channels.get(req.params.id); // unknown_channel
      reply.header('cache-control', 'no-store');
      return streams.channelNow(req.params.id);
    },
  });
}
