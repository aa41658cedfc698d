import type { FastifyInstance } from 'fastify';
import { MAX_PRICE } from '../content/service.ts';
import { errorSchema } from '../core/http.ts';
import type { RecordingService } from './recordings.ts';

// S3.15 (#16 point 3; docs/live.md "Recording and rebroadcast"): asking for a program's
// recording, withdrawing it, listing one's recordings ("my channel"), and naming a content as a
// booking's program (a rebroadcast).

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;
const refusals = { 400: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema } as const;

export function recordingRoutes(app: FastifyInstance, deps: { recordings: RecordingService }) {
  const { recordings } = deps;

  app.post<{ Params: { id: string }; Body: { price: number; title?: string } }>('/live/bookings/:id/recording', {
    config: { access: 'user' },
    schema: {
      summary: 'Record my program (S3.15): once it is over it is published as content with this price (and title; default the program’s)',
      description: 'Before or during the program, or after it if something was broadcast. Asking again changes price and title until it is being made. Refusals: unknown_booking (404), booking_cancelled, nothing_recorded, recording_exists (409), invalid_request (400: a price that is not a whole number from 0 to 10¹²), invalid_title (400).',
      tags: ['live'],
      params: idParams,
      body: { type: 'object', required: ['price'], additionalProperties: false, properties: { price: { type: 'integer', minimum: 0, maximum: MAX_PRICE }, title: { type: 'string', maxLength: 1000 } } },
      response: refusals,
    },
    handler: async (req, reply) => reply.code(201).send(await recordings.request(req.principal!, req.params.id, req.body)),
  });

  app.delete<{ Params: { id: string } }>('/live/bookings/:id/recording', {
    config: { access: 'user' },
    schema: { summary: 'Withdraw my program’s recording request (until it is being made)', tags: ['live'], params: idParams, response: refusals },
    handler: async (req) => recordings.withdraw(req.principal!, req.params.id),
  });

  app.get('/live/recordings', {
    config: { access: 'user' },
    schema: { summary: 'My recordings, newest request first: program, price, status (requested, making, made, failed, empty), content ID once made', tags: ['live'] },
    handler: async (req) => ({ items: await recordings.mine(req.principal!) }),
  });

  app.post<{ Params: { id: string }; Body: { contentId: string } }>('/live/bookings/:id/rebroadcast', {
    config: { access: 'user' },
    schema: {
      summary: 'Make my booking a rebroadcast of a video I published (S3.15): the origin feeds it at the start; RTMP publishes to it are refused',
      description: 'Before the start. Refusals: unknown_booking, unknown_content (404), not_your_content (403), not_a_video, invalid_content_id (400), booking_cancelled, rebroadcast_too_late, content_unavailable (409).',
      tags: ['live'],
      params: idParams,
      body: { type: 'object', required: ['contentId'], additionalProperties: false, properties: { contentId: { type: 'string', maxLength: 100 } } },
      response: refusals,
    },
    handler: async (req, reply) => reply.code(201).send(await recordings.setRebroadcast(req.principal!, req.params.id, req.body.contentId)),
  });

  app.get<{ Params: { id: string } }>('/live/bookings/:id/rebroadcast', {
    config: { access: 'user' },
    schema: { summary: 'What my booking rebroadcasts (no_rebroadcast, 404, if it takes a live publish)', tags: ['live'], params: idParams, response: refusals },
    handler: async (req) => recordings.rebroadcastOf(req.principal!, req.params.id),
  });

  app.delete<{ Params: { id: string } }>('/live/bookings/:id/rebroadcast', {
    config: { access: 'user' },
    schema: { summary: 'My booking takes a live publish again (before the rebroadcast starts)', tags: ['live'], params: idParams, response: refusals },
    handler: async (req) => recordings.clearRebroadcast(req.principal!, req.params.id),
  });
}
