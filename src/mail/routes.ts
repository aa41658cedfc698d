import type { FastifyPluginAsync } from 'fastify';
import { errorSchema } from '../core/http.ts';
import type { MailService, OutboxQuery } from './service.ts';
import { MAIL_STATUSES } from './status.ts';

// S3.8 over HTTP (docs/mail.md): the operators' view of the outbox — what was queued, sent,
// held or given up, and each failure's last error.

const attachmentInfo = {
  type: 'object',
  properties: { filename: { type: 'string' }, contentType: { type: 'string' }, size: { type: 'integer', description: 'UTF-8 bytes' } },
} as const;

const itemProperties = {
  id: { type: 'string' },
  kind: { type: 'string' },
  ref: { type: ['string', 'null'] },
  to: { type: 'array', items: { type: 'string' } },
  subject: { type: 'string' },
  status: { type: 'string', enum: [...MAIL_STATUSES] },
  attempts: { type: 'integer' },
  nextAttemptAt: { type: 'string', format: 'date-time', description: 'when a queued message is tried next' },
  lastError: { type: ['string', 'null'], description: 'the last failed attempt’s error (the SMTP server’s answer when there is one)' },
  createdAt: { type: 'string', format: 'date-time' },
  sentAt: { type: ['string', 'null'], format: 'date-time' },
} as const;

const itemSchema = { type: 'object', properties: { ...itemProperties, attachments: { type: 'array', items: attachmentInfo } } } as const;

const messageSchema = {
  type: 'object',
  properties: {
    ...itemProperties,
    from: { type: 'string' },
    text: { type: 'string' },
    attachments: { type: 'array', items: { type: 'object', properties: { ...attachmentInfo.properties, content: { type: 'string' } } } },
  },
} as const;

export function mailRoutes(deps: { mail: MailService }): FastifyPluginAsync {
  const { mail } = deps;
  return async (app) => {
    app.get<{ Querystring: OutboxQuery }>('/mail/outbox', {
      config: { access: ['operator'] },
      schema: {
        summary: 'The mail outbox, newest first, without bodies (S3.8): queued, sent, held (no SMTP_URL) and failed messages with their last errors',
        tags: ['mail'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { type: 'string', enum: [...MAIL_STATUSES] },
            kind: { type: 'string', maxLength: 80 },
            ref: { type: 'string', maxLength: 200, description: 'the record a message is about (a booking ID)' },
            limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 },
            after: { type: 'string', maxLength: 400, description: 'nextCursor of the previous page' },
          },
        },
        response: { 200: { type: 'object', properties: { items: { type: 'array', items: itemSchema }, nextCursor: { type: ['string', 'null'] } } }, 400: errorSchema },
      },
      handler: async (req) => mail.list(req.query),
    });

    app.get<{ Params: { id: string } }>('/mail/outbox/:id', {
      config: { access: ['operator'] },
      schema: {
        summary: 'One message of the outbox with its text and attachments (S3.8)',
        tags: ['mail'],
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 100 } } },
        response: { 200: messageSchema, 404: errorSchema },
      },
      handler: async (req) => mail.get(req.params.id),
    });
  };
}
