import type { FastifyPluginAsync } from 'fastify';
import type { AccountService } from '../accounts/service.ts';
import type { ContentService } from '../content/service.ts';
import type { Clock } from '../core/clock.ts';
import { forbidden } from '../core/errors.ts';
import { errorSchema, type Principal } from '../core/http.ts';
import { sql, type Db } from '../db/connection.ts';
import { royaltyAccount, walletAccount } from './accounts.ts';
import type { Balance, Ledger } from './ledger.ts';
import { PlayService, type PlayResult } from './plays.ts';
import { AccountRecords } from './records.ts';
import type { Tariff } from './tariff.ts';
import { contentsByIds } from '../content/queries.ts';
import type { Wallets } from './wallets.ts';

// A user's wallet and its records (S1.12, docs/ledger.md "Records"), and pay per play
// (S1.13, "Pay per play"). Records are built in records.ts: one per download, upload
// earning, royalty, play or top-up. A publisher's royalties live in its royalty account,
// not its wallet: GET /wallet reports them as earnings, and /wallet/history?account=royalties
// lists them as records.

/** What a user has earned (S1.12, #12): as a source (into the wallet) and as a publisher (its royalty account). */
export interface Earnings {
  /** Upload earnings ever credited to the wallet: the source shares of others' downloads. */
  uploads: number;
  /** The publisher's royalty account: earned in all, paid out, and what the platform owes now. Null if it has none. */
  royalties: { earned: number; paidOut: number; balance: number } | null;
}

export interface WalletView {
  account: string;
  userId: string;
  balance: Balance;
  earnings: Earnings;
}

const balanceSchema = {
  type: 'object',
  properties: { posted: { type: 'integer' }, pending: { type: 'integer' }, available: { type: 'integer' } },
} as const;

const transferSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    at: { type: 'string' },
    amount: { type: 'integer' },
    balanceAfter: { type: 'integer' },
    counterpart: { type: 'string' },
    reason: { type: 'string' },
    kind: { type: 'string' },
    contentId: { type: ['string', 'null'] },
    ref: { type: ['string', 'null'] },
    seq: { type: 'integer' },
    record: { type: ['string', 'null'] },
    pendingId: { type: ['string', 'null'] },
  },
} as const;

const recordSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    at: { type: 'string' },
    since: { type: 'string' },
    amount: { type: 'integer' },
    held: { type: 'integer' },
    balanceAfter: { type: 'integer' },
    reason: { type: 'string' },
    description: { type: 'string' },
    counterpart: { type: 'string' },
    counterpartName: { type: ['string', 'null'] },
    contentId: { type: ['string', 'null'] },
    contentTitle: { type: ['string', 'null'] },
    ref: { type: ['string', 'null'] },
    receipts: { type: 'integer' },
    split: {
      type: ['array', 'null'],
      items: { type: 'object', properties: { part: { type: 'string' }, account: { type: 'string' }, name: { type: ['string', 'null'] }, amount: { type: 'integer' } } },
    },
    rules: { type: 'array', items: { type: 'string' } },
    transfers: { type: 'array', items: transferSchema },
  },
} as const;

const earningsSchema = {
  type: 'object',
  properties: {
    uploads: { type: 'integer' },
    royalties: { type: ['object', 'null'], properties: { earned: { type: 'integer' }, paidOut: { type: 'integer' }, balance: { type: 'integer' } } },
  },
} as const;

const userQuery = { type: 'string', minLength: 1, maxLength: 64, description: 'whose wallet (operators only; default: yours)' } as const;

export function walletRoutes(deps: {
  db: Db;
  ledger: Ledger;
  wallets: Wallets;
  accounts: AccountService;
  content: Pick<ContentService, 'titles'>;
  clock: Clock;
  tariff: Tariff;
}): FastifyPluginAsync {
  const records = new AccountRecords(deps);
  const plays = new PlayService(deps);

  const exists = async (account: string) => !!(await deps.db.selectFrom('ledger_accounts').select('id').where('id', '=', account).executeTakeFirst());

  /** What the user earned as a source and as a publisher (reads, opens nothing). */
  async function earnings(userId: string, wallet: { account: string; exists: boolean }): Promise<Earnings> {
    let uploads = 0;
    if (wallet.exists) {
      const { rows } = await sql<{ total: number }>`
        select coalesce(sum(amount), 0)::int8 as total from ledger_transfers
        where credit_account_id = ${wallet.account} and reason = 'upload' and kind in ('normal', 'post')`.execute(deps.db);
      uploads = rows[0].total;
    }
    const r = await deps.db.selectFrom('ledger_accounts').select(['credits_posted', 'debits_posted']).where('id', '=', royaltyAccount(userId).id).executeTakeFirst();
    return { uploads, royalties: r ? { earned: r.credits_posted, paidOut: r.debits_posted, balance: r.credits_posted - r.debits_posted } : null };
  }

  /**
   * The wallet account to read: the caller's (opened, so a new user sees the sign-up
   * credit), or for an operator another user's (not opened: a look changes nothing).
   */
  async function walletOf(p: Principal, user: string | undefined): Promise<{ account: string; exists: boolean }> {
    if (user === undefined || user === p.userId) return { account: await deps.wallets.open(p.userId), exists: true };
    if (!p.roles.includes('operator')) throw forbidden('forbidden', 'Only an operator may see another user’s wallet.');
    await deps.accounts.getUser(user); // unknown_user
    const account = walletAccount(user).id;
    return { account, exists: await exists(account) };
  }

  return async (app) => {
    app.get<{ Querystring: { user?: string } }>('/wallet', {
      config: { access: 'user' },
      schema: {
        summary: 'Your wallet’s balance (posted, pending: held by reservations, available) and your earnings as a source and as a publisher (S1.12)',
        description:
          'earnings.uploads: what serving others has credited to the wallet; earnings.royalties: the publisher’s royalty account (earned, paid out, owed now), null without one. ' +
          'Operators may pass ?user=ID to see another user’s wallet.',
        tags: ['ledger'],
        querystring: { type: 'object', additionalProperties: false, properties: { user: userQuery } },
        response: {
          200: { type: 'object', properties: { account: { type: 'string' }, userId: { type: 'string' }, balance: balanceSchema, earnings: earningsSchema } },
          400: errorSchema,
          403: errorSchema,
          404: errorSchema,
        },
      },
      handler: async (req) => {
        const p = req.principal!;
        const wallet = await walletOf(p, req.query.user);
        const userId = req.query.user ?? p.userId;
        const balance: Balance = wallet.exists ? await deps.ledger.balance(wallet.account) : { posted: 0, pending: 0, available: 0 };
        return { account: wallet.account, userId, balance, earnings: await earnings(userId, wallet) } satisfies WalletView;
      },
    });

    app.get<{ Querystring: { user?: string; account?: 'wallet' | 'royalties'; limit?: number; before?: string } }>('/wallet/history', {
      config: { access: 'user' },
      schema: {
        summary: 'Your records, newest first: event ID, time, amount, balance after, counterpart, reason and description in words, content (S1.12)',
        description:
          'One record per download (its reservations, releases and every receipt’s legs together, with the split and the pricing rules), ' +
          'per upload earning, play, top-up or refund. ?account=royalties lists a publisher’s royalty records instead of the wallet’s. ' +
          'Page with ?before=<nextCursor>. Operators may pass ?user=ID.',
        tags: ['ledger'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            user: userQuery,
            account: { type: 'string', enum: ['wallet', 'royalties'], default: 'wallet', description: 'the wallet, or the publisher’s royalty account' },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 20 },
            before: { type: 'string', minLength: 1, maxLength: 200, description: 'nextCursor of the previous page' },
          },
        },
        response: {
          200: { type: 'object', properties: { account: { type: 'string' }, entries: { type: 'array', items: recordSchema }, nextCursor: { type: ['string', 'null'] } } },
          400: errorSchema,
          403: errorSchema,
          404: errorSchema,
        },
      },
      handler: async (req) => {
        const wallet = await walletOf(req.principal!, req.query.user);
        const account = req.query.account === 'royalties' ? royaltyAccount(req.query.user ?? req.principal!.userId).id : wallet.account;
        // An account not opened yet has no transfers: its history is empty (looking opens nothing).
        return records.history(account, { limit: req.query.limit ?? 20, before: req.query.before });
      },
    });

    app.post<{ Body: { contentId: string; playId: string } }>('/plays', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Report a play on this terminal: free with a download record here, else charged as a play (S1.13)',
        description:
          'playId is chosen by the terminal and makes the call idempotent: the same playId again charges nothing more and answers the first result. ' +
          'Charged: the play price (PLAY_PRICE_PERCENT of the list price) from the owner’s wallet, split between the publisher’s royalties and the platform.',
        tags: ['ledger'],
        body: {
          type: 'object',
          required: ['contentId', 'playId'],
          additionalProperties: false,
          properties: {
            contentId: { type: 'string', pattern: '^[0-9a-f]{64}$' },
            playId: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              playId: { type: 'string' },
              contentId: { type: 'string' },
              charged: { type: 'integer' },
              reason: { type: 'string', enum: ['owned', 'free', 'charged'] },
              created: { type: 'boolean' },
              parts: { type: ['object', 'null'], properties: { royalty: { type: 'integer' }, fee: { type: 'integer' }, rounding: { type: 'integer' } } },
              balance: { type: ['integer', 'null'] },
              transfers: { type: 'array', items: { type: 'string' } },
            },
          },
          400: errorSchema,
          402: errorSchema,
          403: errorSchema,
          404: errorSchema,
          409: errorSchema,
        },
      },
      handler: async (req): Promise<PlayResult> => {
        const p = req.principal!;
        return plays.play({ userId: p.userId, terminalId: p.terminalId! }, req.body);
      },
    });
  };
}
