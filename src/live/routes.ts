import type { FastifyPluginAsync } from 'fastify';
import type { WaitClock } from '../core/clock.ts';
import { errorSchema } from '../core/http.ts';
import type { BookingChange, BookingRequest, BookingService } from './bookings.ts';
import type { ChannelFields, Channels } from './channels.ts';
import type { Guide } from './guide.ts';
import { fillerRoutes } from './filler-routes.ts';
import type { Fillers } from './fillers.ts';
import { recordingRoutes } from './recording-routes.ts';
import type { RecordingService } from './recordings.ts';
import { streamRoutes } from './stream-routes.ts';
import type { LiveStreams } from './streams.ts';
import type { BookingStatus } from './tables.ts';

// The live booking API (S3.1–S3.8, S3.10 clock, S3.11, S3.17; docs/live.md).

const channelFields = {
  name: { type: 'string', minLength: 1, maxLength: 40 },
  capacity: { type: 'integer', minimum: 1, maximum: 10_000_000 },
  bitrateKbps: { type: 'integer', minimum: 1, maximum: 1_000_000 },
  tariffPerSlot: { type: 'integer', minimum: 0, maximum: 1_000_000_000 },
  slotMinutes: { type: 'integer', minimum: 1, maximum: 1440 },
  monthlyQuotaSlots: { type: 'integer', minimum: 0, maximum: 1_000_000 },
} as const;
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;
const tz = { type: 'string', maxLength: 64 } as const;
// Lengths here are generous bounds on what is read; the rules with their own codes
// (outline ≤ 20, detail ≤ 200 characters…) are checked in bookings.ts.
/** What a booking describes, and what a change may change (S3.4, S3.7). */
const programFields = {
  title: { type: 'string', maxLength: 1000 },
  genre: { type: 'string', maxLength: 1000 },
  outline: { type: 'string', maxLength: 1000 },
  detail: { type: 'string', maxLength: 4000 },
  discloseEmail: { type: 'boolean' },
  discloseWebPage: { type: 'boolean' },
  password: { type: 'string', maxLength: 1000 },
} as const;
const bookingBody = {
  type: 'object',
  required: ['channelId', 'start', 'end', 'openLevel', 'title', 'genre'],
  additionalProperties: false,
  properties: {
    channelId: { type: 'string', maxLength: 64 },
    start: { type: 'string', maxLength: 40 },
    end: { type: 'string', maxLength: 40 },
    openLevel: { type: 'string', enum: ['public', 'password', 'secret'] },
    ...programFields,
    friends: { type: 'array', maxItems: 200, items: { type: 'string', maxLength: 320 } },
    timeZone: tz,
  },
} as const;
const changeBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...programFields,
    // Accepted only to be refused with a reason (S3.7: cancel and rebook).
    channelId: {},
    start: {},
    end: {},
    openLevel: {},
  },
} as const;
const STATUSES = ['awaiting_reconfirmation', 'confirmed', 'live', 'done', 'cancelled'];

export function liveRoutes(deps: { clock: WaitClock; channels: Channels; bookings: BookingService; guide: Guide; streams: LiveStreams; fillers: Fillers; recordings: RecordingService }): FastifyPluginAsync {
  const { clock, channels, bookings, guide, streams, recordings } = deps;
  return async (app) => {
    streamRoutes(app, { clock, streams });
    fillerRoutes(app, { channels, fillers: deps.fillers, streams });
    recordingRoutes(app, { recordings });

    // S3.10: the origin's clock, so a broadcaster sees its own offset from it.
    app.get('/time', {
      config: { access: 'public' },
      schema: { summary: 'The origin’s clock (S3.10): compare with your own to see your offset', tags: ['live'] },
      handler: async (_req, reply) => {
        const now = clock.now();
        reply.header('cache-control', 'no-store');
        return { now: new Date(now).toISOString(), epochMs: now };
      },
    });

    // ---- channels (S3.2) ----
    app.get('/live/channels', {
      config: { access: 'public' },
      schema: { summary: 'The streaming server’s channels: capacity, bitrate, tariff per slot, slot length, monthly quota (S3.2)', tags: ['live'] },
      handler: async () => ({ items: await channels.list() }),
    });
    app.get<{ Params: { id: string } }>('/live/channels/:id', {
      config: { access: 'public' },
      schema: { summary: 'One channel', tags: ['live'], params: idParams, response: { 404: errorSchema } },
      handler: async (req) => channels.get(req.params.id),
    });
    app.post<{ Body: ChannelFields }>('/live/channels', {
      config: { access: ['operator'] },
      schema: {
        summary: 'Add a channel (S3.2); slot length defaults to 10 minutes, the quota to LIVE_MONTHLY_QUOTA_SLOTS',
        tags: ['live'],
        body: { type: 'object', required: ['name', 'capacity', 'bitrateKbps', 'tariffPerSlot'], additionalProperties: false, properties: channelFields },
        response: { 400: errorSchema, 409: errorSchema },
      },
      handler: async (req, reply) => reply.code(201).send(await channels.add(req.body)),
    });
    app.patch<{ Params: { id: string }; Body: Partial<ChannelFields> }>('/live/channels/:id', {
      config: { access: ['operator'] },
      schema: {
        summary: 'Change a channel’s settings; bookings keep the tariff they were made at',
        tags: ['live'],
        params: idParams,
        body: { type: 'object', minProperties: 1, additionalProperties: false, properties: channelFields },
        response: { 400: errorSchema, 404: errorSchema, 409: errorSchema },
      },
      handler: async (req) => channels.set(req.params.id, req.body),
    });

    // ---- calendar, quote, booking (S3.3–S3.5) ----
    app.get<{ Querystring: { date?: string; tz?: string } }>('/live/calendar', {
      config: { access: 'user' },
      schema: {
        summary: 'A day’s slots per channel, free or taken, with capacity, bitrate and tariff (S3.3); `date` YYYY-MM-DD and `tz` an IANA zone (default today, UTC)',
        tags: ['live'],
        querystring: { type: 'object', additionalProperties: false, properties: { date: { type: 'string', maxLength: 10 }, tz } },
        response: { 400: errorSchema },
      },
      handler: async (req) => guide.calendar(req.principal!.userId, req.query.date, req.query.tz),
    });
    app.post<{ Body: BookingRequest }>('/live/quote', {
      config: { access: 'user' },
      schema: {
        summary: 'What a booking would cost and by when it must be reconfirmed, with every check of a booking made, nothing booked (S3.4)',
        tags: ['live'],
        body: bookingBody,
        response: { 400: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema },
      },
      handler: async (req) => bookings.quote(req.principal!, req.body),
    });
    app.post<{ Body: BookingRequest }>('/live/bookings', {
      config: { access: 'user' },
      schema: {
        summary: 'Book slots (premium members, S3.5); the answer holds the reservation ID (also e-mailed), to reconfirm before the deadline',
        tags: ['live'],
        body: bookingBody,
        response: { 400: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema },
      },
      handler: async (req, reply) => reply.code(201).send(await bookings.book(req.principal!, req.body)),
    });
    app.post<{ Body: { reservationId: string } }>('/live/reconfirm', {
      config: { access: 'user' },
      schema: {
        summary: 'Reconfirm a booking with its reservation ID (S3.6): charges slots × tariff once, answers the origin-signed settings document',
        tags: ['live'],
        body: { type: 'object', required: ['reservationId'], additionalProperties: false, properties: { reservationId: { type: 'string', maxLength: 100 } } },
        response: { 404: errorSchema, 409: errorSchema },
      },
      handler: async (req) => bookings.reconfirm(req.principal!, req.body.reservationId),
    });

    // ---- my channel (S3.17), change and cancel (S3.7) ----
    app.get<{ Querystring: { status?: BookingStatus; limit: number } }>('/live/bookings', {
      config: { access: 'user' },
      schema: {
        summary: 'My channel: my bookings, newest start first, with status, history and past viewer counts (S3.17)',
        tags: ['live'],
        querystring: { type: 'object', additionalProperties: false, properties: { status: { type: 'string', enum: STATUSES }, limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 } } },
      },
      handler: async (req) => ({ items: await bookings.mine(req.principal!, req.query) }),
    });
    app.get<{ Params: { id: string } }>('/live/bookings/:id', {
      config: { access: 'user' },
      schema: { summary: 'One of my bookings (operators: any)', tags: ['live'], params: idParams, response: { 404: errorSchema } },
      handler: async (req) => bookings.get(req.principal!, req.params.id),
    });
    app.patch<{ Params: { id: string }; Body: BookingChange }>('/live/bookings/:id', {
      config: { access: 'user' },
      schema: {
        summary: 'Change title, genre, outline, detail, disclosure or password (S3.7); channel and time cannot change (cancel and rebook)',
        tags: ['live'],
        params: idParams,
        body: changeBody,
        response: { 400: errorSchema, 404: errorSchema, 409: errorSchema },
      },
      handler: async (req) => bookings.change(req.principal!, req.params.id, req.body),
    });
    app.post<{ Params: { id: string } }>('/live/bookings/:id/cancel', {
      config: { access: 'user' },
      schema: { summary: 'Cancel a booking (S3.7): free before reconfirmation; after it the charge stands', tags: ['live'], params: idParams, response: { 404: errorSchema, 409: errorSchema } },
      handler: async (req) => bookings.cancel(req.principal!, req.params.id),
    });
    // ---- S3.13 extension ----
    app.get<{ Params: { id: string } }>('/live/bookings/:id/extension', {
      config: { access: 'user' },
      schema: { summary: 'The extension offer (S3.13): in the last ten minutes, the free slots that can be added, or why none', tags: ['live'], params: idParams, response: { 404: errorSchema } },
      handler: async (req) => bookings.extensionOffer(req.principal!, req.params.id),
    });
    app.post<{ Params: { id: string }; Body: { slots?: number; until?: string } | undefined }>('/live/bookings/:id/extend', {
      config: { access: 'user' },
      schema: {
        summary: 'Accept the extension (S3.13): adds slots after the end, charged at the channel’s tariff; `until` (the offer’s) makes a retry harmless',
        tags: ['live'],
        params: idParams,
        body: { type: 'object', additionalProperties: false, properties: { slots: { type: 'integer', minimum: 1, maximum: 1440 }, until: { type: 'string', maxLength: 40 } } },
        response: { 400: errorSchema, 404: errorSchema, 409: errorSchema },
      },
      handler: async (req) => bookings.extend(req.principal!, req.params.id, req.body ?? {}),
    });
    app.post('/me/calendar-feed', {
      config: { access: 'user' },
      schema: { summary: 'A private iCalendar feed URL of my bookings; a new one replaces the old', tags: ['live'] },
      handler: async (req) => guide.rotateFeed(req.principal!.userId),
    });
    app.get<{ Params: { file: string } }>('/live/feeds/:file', {
      config: { access: 'public' },
      schema: { summary: 'A member’s private calendar feed (the address is the secret)', tags: ['live'], params: { type: 'object', required: ['file'], properties: { file: { type: 'string', maxLength: 80 } } }, response: { 404: errorSchema } },
      handler: async (req, reply) => {
        const text = await guide.feed(req.params.file.replace(/\.ics$/, ''));
        reply.type('text/calendar; charset=utf-8').header('cache-control', 'private, no-cache').send(text);
      },
    });

    // ---- the viewers' guide (S3.11) ----
    app.get<{ Querystring: { tz?: string } }>('/live/today', {
      config: { access: 'public' },
      schema: { summary: 'Today’s live: Public and Password programs of today in `tz` (Secret ones are never listed)', tags: ['live'], querystring: { type: 'object', additionalProperties: false, properties: { tz } }, response: { 400: errorSchema } },
      handler: async (req) => guide.today(req.query.tz),
    });
    app.get<{ Querystring: { month?: string; tz?: string } }>('/live/guide', {
      config: { access: 'public' },
      schema: {
        summary: 'The month’s program guide (`month` YYYY-MM, `tz`); Secret programs are never listed',
        tags: ['live'],
        querystring: { type: 'object', additionalProperties: false, properties: { month: { type: 'string', maxLength: 7 }, tz } },
        response: { 400: errorSchema },
      },
      handler: async (req) => guide.month(req.query.month, req.query.tz),
    });
    app.get<{ Params: { id: string } }>('/live/programs/:id', {
      config: { access: 'public' },
      schema: { summary: 'A program’s page', tags: ['live'], params: idParams, response: { 404: errorSchema } },
      handler: async (req) => guide.program(req.params.id),
    });
  };
}
