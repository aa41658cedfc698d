import type { FastifyPluginAsync } from 'fastify';
import type { ContentService } from '../content/service.ts';
import { badRequest, forbidden } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import { HEARTBEAT_FIELDS, MAX_BPS, MAX_SLOTS } from './heartbeat.ts';
import { MAX_HOLDINGS_PER_REPORT, type HoldingsMode, type RegisterInput, type TerminalService } from './service.ts';

// HTTP face of the terminals domain: registration and login (S1.2), heartbeats (S1.2),
// holdings and the holder registry (S1.3).

const text = (maxLength: number) => ({ type: 'string', maxLength }) as const;

const terminalSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    userId: { type: 'string' },
    name: { type: 'string' },
    publicKey: { type: 'string' },
    region: { type: 'string' },
    network: { type: 'string' },
    serveUrl: { type: ['string', 'null'] },
    createdAt: { type: 'string' },
  },
} as const;

const stateProperties = {
  uptimeRatio: { type: 'number', minimum: 0, maximum: 1, description: 'Share of the recent period the terminal was up' },
  upBps: { type: 'number', minimum: 0, maximum: MAX_BPS, description: 'Upstream link capacity, bits/s' },
  downBps: { type: 'number', minimum: 0, maximum: MAX_BPS, description: 'Downstream link capacity, bits/s' },
  sendLoadBps: { type: 'number', minimum: 0, maximum: MAX_BPS, description: 'Current send rate, bits/s; at most 110% of upBps' },
  recvLoadBps: { type: 'number', minimum: 0, maximum: MAX_BPS, description: 'Current receive rate, bits/s; at most 110% of downBps' },
  cpu: { type: 'number', minimum: 0, maximum: 1, description: 'CPU use, 0..1; lowers the terminal\'s rank as a source, never excludes it (docs/selection.md)' },
  slots: { type: 'integer', minimum: 1, maximum: MAX_SLOTS, description: 'Upload slots (pieces served at once); sent together with slotsBusy' },
  slotsBusy: { type: 'number', minimum: 0, maximum: MAX_SLOTS, description: 'Upload slots in use, averaged since the previous heartbeat; at most slots' },
} as const;

const stateSchema = { type: ['object', 'null'], properties: { ...stateProperties, at: { type: 'number' } } } as const;

const holderSchema = {
  type: 'object',
  properties: {
    terminalId: { type: 'string' },
    name: { type: 'string' },
    region: { type: 'string' },
    network: { type: 'string' },
    serveUrl: { type: ['string', 'null'] },
    online: { type: 'boolean' },
    lastSeenAt: { type: ['string', 'null'] },
    state: stateSchema,
    reportedAt: { type: 'string' },
  },
} as const;

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 200 } } } as const;

export function terminalRoutes(deps: { terminals: TerminalService; content: ContentService }): FastifyPluginAsync {
  const { terminals } = deps; // `content` is reserved for S1.4 (holder flags in content lists)
  return async (app) => {
    app.post('/terminals/registration-challenge', {
      config: { access: 'user' },
      schema: {
        summary: 'A single-use nonce for the device to sign when this account registers it; expires after 60 s (S1.2)',
        tags: ['terminals'],
        response: { 200: { type: 'object', properties: { nonce: { type: 'string' }, expiresAt: { type: 'string' } } } },
      },
      handler: async (req) => terminals.registrationChallenge(req.principal!.userId),
    });

    app.post<{ Body: RegisterInput }>('/terminals', {
      config: { access: 'user' },
      schema: {
        summary: 'Register this device as a terminal, proving it holds its key; returns its device credential (S1.2)',
        tags: ['terminals'],
        body: {
          type: 'object',
          required: ['publicKey', 'name', 'nonce', 'signature'],
          additionalProperties: false,
          properties: {
            publicKey: { type: 'string', maxLength: 100, description: 'base64url raw Ed25519 public key of the device' },
            nonce: { ...text(200), description: 'from POST /terminals/registration-challenge' },
            signature: { ...text(200), description: 'base64url Ed25519 signature of "cascade-register:<publicKey>:<nonce>" with the device key' },
            name: text(80),
            region: text(80),
            network: text(80),
            serveUrl: { type: ['string', 'null'], maxLength: 2048, description: 'Where the terminal serves pieces to peers' },
          },
        },
        response: {
          201: { type: 'object', properties: { terminal: terminalSchema, credential: { type: 'string' } } },
          400: errorSchema,
          409: errorSchema,
        },
      },
      handler: async (req, reply) => reply.code(201).send(await terminals.register(req.principal!.userId, req.body)),
    });

    app.post<{ Body: { terminalId: string } }>('/terminals/challenge', {
      config: { access: 'public' },
      schema: {
        summary: 'A single-use nonce for a terminal to sign; expires after 60 s (S1.2)',
        tags: ['terminals'],
        body: { type: 'object', required: ['terminalId'], additionalProperties: false, properties: { terminalId: text(200) } },
        response: { 200: { type: 'object', properties: { nonce: { type: 'string' }, expiresAt: { type: 'string' } } }, 404: errorSchema },
      },
      handler: async (req) => terminals.challenge(req.body.terminalId),
    });

    app.post<{ Body: { credential: string; nonce: string; signature: string } }>('/terminals/login', {
      config: { access: 'public' },
      schema: {
        summary: 'Log a terminal in: device credential plus its signature over "cascade-login:<terminalId>:<nonce>" (S1.2)',
        tags: ['terminals'],
        body: {
          type: 'object',
          required: ['credential', 'nonce', 'signature'],
          additionalProperties: false,
          properties: { credential: text(4096), nonce: text(200), signature: text(200) },
        },
        response: {
          200: { type: 'object', properties: { token: { type: 'string' }, terminalId: { type: 'string' }, expiresAt: { type: 'string' } } },
          401: errorSchema,
        },
      },
      handler: async (req) => terminals.login(req.body.credential, req.body.nonce, req.body.signature),
    });

    app.post('/terminals/heartbeat', {
      config: { access: 'terminal' },
      // Schema failures are heartbeat refusals too: keep one code for "this beat is not true".
      attachValidation: true,
      schema: {
        summary: 'Report uptime, link capacity, load and CPU (S1.2); kept in memory and flushed in batches',
        tags: ['terminals'],
        body: { type: 'object', required: [...HEARTBEAT_FIELDS], additionalProperties: false, properties: stateProperties },
        response: { 204: { type: 'null' }, 400: errorSchema, 403: errorSchema },
      },
      handler: async (req, reply) => {
        if (req.validationError) throw badRequest('invalid_heartbeat', `Heartbeat refused: ${req.validationError.message}.`);
        await terminals.heartbeat(req.principal!.terminalId!, req.body);
        reply.code(204).send();
      },
    });

    app.put<{ Body: { contentIds: string[]; mode?: HoldingsMode } }>('/terminals/holdings', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Report the content this terminal holds: the full list (replace) or additions (add) (S1.2, S1.3)',
        tags: ['terminals'],
        body: {
          type: 'object',
          required: ['contentIds'],
          additionalProperties: false,
          properties: {
            contentIds: { type: 'array', maxItems: MAX_HOLDINGS_PER_REPORT, items: { type: 'string', maxLength: 64 } },
            mode: { type: 'string', enum: ['replace', 'add'], default: 'replace' },
          },
        },
        response: { 200: { type: 'object', properties: { holdings: { type: 'integer' } } }, 400: errorSchema, 404: errorSchema },
      },
      handler: async (req) => terminals.reportHoldings(req.principal!.terminalId!, req.body.contentIds, req.body.mode ?? 'replace'),
    });

    app.put<{ Body: { serveUrl: string | null; region?: string; network?: string } }>('/terminals/address', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Set where this terminal serves pieces to others, and its region and network labels (S1.5)',
        tags: ['terminals'],
        body: {
          type: 'object',
          required: ['serveUrl'],
          additionalProperties: false,
          properties: {
            serveUrl: { type: ['string', 'null'], maxLength: 2048 },
            region: { type: 'string', maxLength: 80 },
            network: { type: 'string', maxLength: 80 },
          },
        },
        response: { 200: terminalSchema, 400: errorSchema },
      },
      handler: async (req) => terminals.updateAddress(req.principal!.terminalId!, req.body),
    });

    app.put<{ Params: { contentId: string }; Body: { pieces: string } }>('/terminals/holdings/:contentId/pieces', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Report the pieces of a content this terminal has verified so far, while it is still fetching it (#3)',
        tags: ['terminals'],
        params: { type: 'object', required: ['contentId'], properties: { contentId: { type: 'string', maxLength: 200 } } },
        body: { type: 'object', required: ['pieces'], additionalProperties: false, properties: { pieces: { type: 'string', maxLength: 100_000 } } },
        response: { 400: errorSchema, 404: errorSchema },
      },
      handler: async (req, reply) => {
        await terminals.reportPieces(req.principal!.terminalId!, req.params.contentId, req.body.pieces);
        reply.code(204).send();
      },
    });

    app.get('/me/terminals', {
      config: { access: 'user' },
      schema: {
        summary: 'The signed-in member’s own terminals, oldest first, with whether each is online (#13)',
        description: 'online: the terminal sent a heartbeat within the offline limit (max(30 s, 3 heartbeat flushes)), the rule the holder registry uses. lastSeenAt: its latest heartbeat, null if it never sent one. At most 1000.',
        tags: ['terminals'],
        response: {
          200: {
            type: 'object',
            properties: {
              items: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: { id: { type: 'string' }, name: { type: 'string' }, region: { type: 'string' }, online: { type: 'boolean' }, lastSeenAt: { type: ['string', 'null'] } },
                },
              },
            },
          },
        },
      },
      handler: async (req) => ({ items: await terminals.ofUser(req.principal!.userId) }),
    });

    app.get<{ Params: { id: string } }>('/terminals/:id', {
      config: { access: 'user-or-terminal' },
      schema: {
        summary: 'One terminal: its owner and operators, or the terminal itself',
        tags: ['terminals'],
        params: idParams,
        response: { 200: terminalSchema, 403: errorSchema, 404: errorSchema },
      },
      handler: async (req) => {
        const t = await terminals.get(req.params.id);
        const p = req.principal!;
        // A terminal session acts only as its terminal: it sees itself, not its owner's other terminals.
        const allowed = p.terminalId ? p.terminalId === t.id : t.userId === p.userId || p.roles.includes('operator');
        if (!allowed) throw forbidden('forbidden', p.terminalId ? 'A terminal session sees only its own terminal.' : 'This terminal belongs to another account.');
        return t;
      },
    });

    app.get<{ Params: { id: string }; Querystring: { limit?: number } }>('/contents/:id/holders', {
      config: { access: 'user' },
      schema: {
        summary: 'The holder registry: terminals holding this content, online first, with their last state (S1.3)',
        tags: ['terminals'],
        params: idParams,
        querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: 5000 } } },
        response: {
          200: { type: 'object', properties: { contentId: { type: 'string' }, holders: { type: 'array', items: holderSchema } } },
          400: errorSchema,
          404: errorSchema,
        },
      },
      handler: async (req) => ({ contentId: req.params.id, holders: await terminals.holders(req.params.id, { limit: req.query.limit }) }),
    });
  };
}
