import type { FastifyPluginAsync } from 'fastify';
import type { AccountService } from '../accounts/service.ts';
import type { ContentService } from '../content/service.ts';
import type { Clock } from '../core/clock.ts';
import { forbidden } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import type { Db } from '../db/connection.ts';
import { PLATFORM_PAYOUTS, VOUCHERS_OUTSTANDING } from './accounts.ts';
import type { Ledger } from './ledger.ts';
import { StatementService } from './statements.ts';
import { MAX_VOUCHER_AMOUNT, MAX_VOUCHERS_PER_ISSUE, VoucherService } from './vouchers.ts';

// Money in and out of the platform (S1.11): stores issue vouchers, users redeem them
// into their wallets, operators pay publishers out, publishers read their statements.

const lineSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    at: { type: 'string' },
    amount: { type: 'integer' },
    reason: { type: 'string' },
    counterpart: { type: 'string' },
    ref: { type: ['string', 'null'] },
    contentId: { type: ['string', 'null'] },
  },
} as const;

export function voucherRoutes(deps: { db: Db; ledger: Ledger; clock: Clock; accounts: AccountService; content: Pick<ContentService, 'titles'> }): FastifyPluginAsync {
  const vouchers = new VoucherService(deps);
  const statements = new StatementService(deps);
  return async (app) => {
    // Created once here, so that no request (and no refusal) has to create them.
    await deps.ledger.ensureAccounts([VOUCHERS_OUTSTANDING, PLATFORM_PAYOUTS]);

    app.post<{ Body: { amount: number; count?: number; expiresAt?: string } }>('/vouchers', {
      config: { access: ['store'] },
      schema: {
        summary: 'A store issues prepaid vouchers (S1.11); the codes are in this answer only and are never shown again',
        description: 'Each voucher moves its amount from the store’s account (negative: what the store owes the platform) to vouchers:outstanding.',
        tags: ['ledger'],
        body: {
          type: 'object',
          required: ['amount'],
          additionalProperties: false,
          properties: {
            amount: { type: 'integer', minimum: 1, maximum: MAX_VOUCHER_AMOUNT, description: 'face value of each voucher, in minor units' },
            count: { type: 'integer', minimum: 1, maximum: MAX_VOUCHERS_PER_ISSUE, default: 1 },
            expiresAt: { type: 'string', format: 'date-time', description: 'default: never' },
          },
        },
        response: {
          201: {
            type: 'object',
            properties: {
              vouchers: {
                type: 'array',
                items: { type: 'object', properties: { id: { type: 'string' }, code: { type: 'string' }, amount: { type: 'integer' }, expiresAt: { type: ['string', 'null'] } } },
              },
            },
          },
          400: errorSchema,
          401: errorSchema,
          403: errorSchema,
        },
      },
      handler: async (req, reply) => {
        const { amount, count = 1, expiresAt } = req.body;
        const issued = await vouchers.issue(req.principal!.userId, { amount, count, expiresAt: expiresAt === undefined ? null : new Date(expiresAt) });
        return reply.code(201).send({ vouchers: issued });
      },
    });

    app.post<{ Body: { code: string } }>('/wallet/topup', {
      config: { access: 'user' },
      schema: {
        summary: 'Redeem a voucher code: its amount is credited to your wallet, once (S1.11)',
        description: 'Codes are case-insensitive; dashes and spaces are ignored. Repeated failures are refused for a while with too_many_attempts.',
        tags: ['ledger'],
        body: { type: 'object', required: ['code'], additionalProperties: false, properties: { code: { type: 'string', maxLength: 100 } } },
        response: {
          200: { type: 'object', properties: { voucherId: { type: 'string' }, amount: { type: 'integer' }, balance: { type: 'integer' } } },
          401: errorSchema,
          404: errorSchema,
          409: errorSchema,
          410: errorSchema,
          429: errorSchema,
        },
      },
      handler: async (req) => vouchers.redeem(req.principal!.userId, req.body.code),
    });

    app.post<{ Body: { id: string; publisherId: string; amount: number; reference: string } }>('/payouts', {
      config: { access: ['operator'] },
      schema: {
        summary: 'Record a payout to a publisher: moves money from its royalties to platform:payouts (S1.11)',
        description: 'Idempotent by `id`: sending the same payout again pays nothing more; the same `id` with different content is transfer_id_conflict.',
        tags: ['ledger'],
        body: {
          type: 'object',
          required: ['id', 'publisherId', 'amount', 'reference'],
          additionalProperties: false,
          properties: {
            id: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$' },
            publisherId: { type: 'string', minLength: 1, maxLength: 64 },
            amount: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
            reference: { type: 'string', minLength: 1, maxLength: 200 },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              transferId: { type: 'string' },
              created: { type: 'boolean' },
              publisherId: { type: 'string' },
              amount: { type: 'integer' },
              reference: { type: 'string' },
              balance: { type: 'integer' },
            },
          },
          400: errorSchema,
          403: errorSchema,
          404: errorSchema,
          409: errorSchema,
        },
      },
      handler: async (req) => {
        await deps.accounts.getUser(req.body.publisherId); // unknown_user, rather than a bare account_not_found
        return statements.payout(req.body);
      },
    });

    const periodQuery = {
      type: 'object',
      additionalProperties: false,
      properties: {
        from: { type: 'string', format: 'date-time', description: 'start, included (default: the start of the current month, UTC, by the origin’s clock)' },
        to: { type: 'string', format: 'date-time', description: 'end, excluded (default: the start of next month, UTC)' },
      },
    } as const;

    app.get<{ Querystring: { from?: string; to?: string } }>('/payouts', {
      config: { access: ['operator'] },
      schema: {
        summary: 'What the platform owes each publisher now, with royalties and payouts in a period (default: the current month, UTC) (S1.11)',
        description: 'There is no automatic payout run: payouts are recorded one by one with POST /payouts. `note` says so in words.',
        tags: ['ledger'],
        querystring: periodQuery,
        response: {
          200: {
            type: 'object',
            properties: {
              from: { type: 'string' },
              to: { type: 'string' },
              period: { type: 'string' },
              publishers: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    publisherId: { type: 'string' },
                    name: { type: ['string', 'null'] },
                    royalties: { type: 'integer' },
                    paidOut: { type: 'integer' },
                    owed: { type: 'integer' },
                  },
                },
              },
              totals: { type: 'object', properties: { royalties: { type: 'integer' }, paidOut: { type: 'integer' }, owed: { type: 'integer' } } },
              note: { type: 'string' },
            },
          },
          400: errorSchema,
          403: errorSchema,
        },
      },
      handler: async (req) => {
        const { from, to, period } = statements.period(req.query.from, req.query.to);
        return statements.overview(from, to, period);
      },
    });

    app.get<{ Params: { id: string }; Querystring: { from?: string; to?: string } }>('/publishers/:id/statement', {
      config: { access: 'user' },
      schema: {
        summary: 'A publisher’s payout statement for [from, to) (default: the current month, UTC): opening balance, royalties by content, payouts, closing balance (S1.11)',
        description: 'The publisher itself or an operator. opening + royalties − payouts + other = closing. `period` says how the period was chosen.',
        tags: ['ledger'],
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
        querystring: periodQuery,
        response: {
          200: {
            type: 'object',
            properties: {
              publisherId: { type: 'string' },
              from: { type: 'string' },
              to: { type: 'string' },
              period: { type: 'string' },
              openingBalance: { type: 'integer' },
              royalties: {
                type: 'object',
                properties: {
                  total: { type: 'integer' },
                  transfers: { type: 'integer' },
                  byContent: {
                    type: 'array',
                    items: {
                      type: 'object',
                      properties: {
                        contentId: { type: ['string', 'null'] },
                        title: { type: ['string', 'null'] },
                        transfers: { type: 'integer' },
                        amount: { type: 'integer', description: 'royalties of downloads and plays' },
                        plays: { type: 'object', description: 'the plays among them (S1.13)', properties: { count: { type: 'integer' }, amount: { type: 'integer' } } },
                      },
                    },
                  },
                },
              },
              payouts: { type: 'object', properties: { total: { type: 'integer' }, items: { type: 'array', items: lineSchema } } },
              other: { type: 'object', properties: { total: { type: 'integer' }, items: { type: 'array', items: lineSchema } } },
              closingBalance: { type: 'integer' },
            },
          },
          400: errorSchema,
          403: errorSchema,
          404: errorSchema,
        },
      },
      handler: async (req) => {
        const p = req.principal!;
        if (p.userId !== req.params.id && !p.roles.includes('operator')) throw forbidden('forbidden', 'Only the publisher itself or an operator may see its statement.');
        await deps.accounts.getUser(req.params.id);
        const { from, to, period } = statements.period(req.query.from, req.query.to);
        return statements.statement(req.params.id, from, to, period);
      },
    });
  };
}
