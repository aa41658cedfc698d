import type { FastifyInstance } from 'fastify';
import type { WaitClock } from '../core/clock.ts';
import { errorSchema } from '../core/http.ts';
import type { LiveStreams } from './streams.ts';

// The streaming API (#15; docs/live.md "Watching" and "Broadcasting"): admission, the HLS
// playlist and segments behind a viewer session, the signed live manifest, audience figures,
// and the broadcaster's live status (JSON, or pushed every second over server-sent events).

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;
const sessionQuery = { type: 'object', additionalProperties: false, properties: { s: { type: 'string', maxLength: 200 } } } as const;
/** How often the broadcaster's status is pushed. */
const STATUS_EVERY_MS = 1000;

export function streamRoutes(app: FastifyInstance, deps: { clock: WaitClock; streams: LiveStreams }) {
  const { clock, streams } = deps;

  app.post<{ Params: { id: string }; Body: { password?: string } | undefined }>('/live/programs/:id/viewers', {
    config: { access: 'user' },
    schema: {
      summary: 'Join a program that is on air (S3.11, S3.12): a viewer session and the playlist URL',
      description:
        'The session counts against the channel’s capacity until it stops fetching for LIVE_VIEWER_IDLE_SECONDS, or leaves. Joining again replaces your earlier session. Refusals: viewer_password_required (401), wrong_password (403), too_many_attempts (429), unknown_program (404), not_live and program_over (409), channel_full (503, with capacity and viewers).',
      tags: ['live'],
      params: idParams,
      body: { type: ['object', 'null'], additionalProperties: false, properties: { password: { type: 'string', maxLength: 1000 } } },
      response: { 401: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema, 429: errorSchema, 503: errorSchema },
    },
    handler: async (req, reply) => {
      const r = await streams.admit(req.principal!, req.params.id, req.body?.password);
      reply.code(201);
      return r;
    },
  });

  app.post<{ Params: { id: string }; Querystring: { s?: string } }>('/live/programs/:id/leave', {
    config: { access: 'public' },
    schema: { summary: 'Leave a program: the viewer session (`s`) ends and its place is free at once', tags: ['live'], params: idParams, querystring: sessionQuery, response: { 401: errorSchema } },
    handler: async (req, reply) => {
      await streams.leave(req.params.id, req.query.s ?? '');
      reply.code(204).send();
    },
  });

  app.get<{ Params: { id: string } }>('/live/programs/:id/audience', {
    config: { access: 'public' },
    schema: { summary: 'Viewers now, capacity, peak and total of a program (S3.10, S3.17)', tags: ['live'], params: idParams, response: { 404: errorSchema } },
    handler: async (req, reply) => {
      reply.header('cache-control', 'no-store');
      return streams.audience(req.params.id);
    },
  });

  app.get<{ Params: { id: string }; Querystring: { s?: string } }>('/live/programs/:id/index.m3u8', {
    config: { access: 'public' },
    schema: {
      summary: 'The program’s HLS playlist (fMP4) for a viewer session `s`; the URL is stable for the program',
      description: 'Refusals: viewer_session_required, viewer_session_invalid, viewer_session_expired (401: join again), no_segments_yet (503).',
      tags: ['live'],
      params: idParams,
      querystring: sessionQuery,
      response: { 401: errorSchema, 404: errorSchema, 503: errorSchema },
    },
    handler: async (req, reply) => {
      const text = await streams.playlist(req.params.id, req.query.s);
      reply.type('application/vnd.apple.mpegurl').header('cache-control', 'no-cache, no-store').send(text);
    },
  });

  app.get<{ Params: { id: string; name: string }; Querystring: { s?: string } }>('/live/programs/:id/segments/:name', {
    config: { access: 'public' },
    schema: {
      summary: 'One HLS segment of the program for a viewer session `s`, as logged (its SHA-256 is in the signed manifest)',
      tags: ['live'],
      params: { type: 'object', required: ['id', 'name'], properties: { id: { type: 'string', maxLength: 64 }, name: { type: 'string', maxLength: 64 } } },
      querystring: sessionQuery,
      response: { 401: errorSchema, 404: errorSchema },
    },
    handler: async (req, reply) => {
      const bytes = await streams.segment(req.params.id, req.params.name, req.query.s);
      reply.type(req.params.name.endsWith('.mp4') ? 'video/mp4' : 'video/iso.segment').header('cache-control', 'private, max-age=86400, immutable').send(bytes);
    },
  });

  app.get<{ Params: { id: string }; Querystring: { after?: number } }>('/live/programs/:id/manifest', {
    config: { access: 'public' },
    schema: {
      summary: 'The program’s live manifest: origin-signed entries, one per segment, each naming the previous entry’s hash',
      description: 'Verify with the origin key (GET /origin) and `verifySegmentLog` (docs/live.md). `after`: entries with a greater seq (at most 1000 per answer).',
      tags: ['live'],
      params: idParams,
      querystring: { type: 'object', additionalProperties: false, properties: { after: { type: 'integer', minimum: -1, maximum: 2_147_483_647, default: -1 } } },
      response: { 404: errorSchema },
    },
    handler: async (req) => streams.manifest(req.params.id, req.query.after ?? -1),
  });

  app.get<{ Params: { id: string } }>('/live/bookings/:id/status', {
    config: { access: 'user' },
    schema: { summary: 'The broadcaster’s live view (S3.10): origin clock, elapsed, slot end, bitrate, channel, viewers', tags: ['live'], params: idParams, response: { 404: errorSchema } },
    handler: async (req, reply) => {
      reply.header('cache-control', 'no-store');
      return streams.status(req.principal!, req.params.id);
    },
  });

  app.get<{ Params: { id: string } }>('/live/bookings/:id/status/events', {
    config: { access: 'user' },
    schema: {
      summary: 'The broadcaster’s live view pushed as server-sent events: one `status` event a second (S3.10)',
      tags: ['live'],
      params: idParams,
      response: { 404: errorSchema },
    },
    handler: async (req, reply) => {
      const p = req.principal!;
      const first = await streams.status(p, req.params.id); // refusals answer before the stream opens
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      const stop = new AbortController();
      req.raw.once('close', () => stop.abort());
      streams.closing.addEventListener('abort', () => stop.abort(), { once: true });
      const send = (s: unknown) => res.write(`event: status\ndata: ${JSON.stringify(s)}\n\n`);
      send(first);
      while (!stop.signal.aborted) {
        await clock.sleepUntil(clock.now() + STATUS_EVERY_MS, stop.signal);
        if (stop.signal.aborted) break;
        try {
          send(await streams.status(p, req.params.id));
        } catch {
          break;
        }
      }
      res.end();
    },
  });
}
