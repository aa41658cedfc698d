import type { FastifyPluginAsync } from 'fastify';
import type { AccountService } from '../accounts/service.ts';
import type { Clock } from '../core/clock.ts';
import { badRequest, forbidden } from '../core/errors.ts';
import { errorSchema, type Principal } from '../core/http.ts';
import type { Db } from '../db/connection.ts';
import { walletAccount } from './accounts.ts';
import type { Balance, HistoryEntry, Ledger } from './ledger.ts';
import { PlayService, type PlayResult } from './plays.ts';
import type { TransferKind } from './tables.ts';
import type { Tariff } from './tariff.ts';
import { contentsByIds } from '../content/queries.ts';
import type { Wallets } from './wallets.ts';

// A user's wallet and its records (S1.12, docs/ledger.md "Records"), and pay per play
// (S1.13, "Pay per play"). Records are the ledger's transfers of the wallet account, in
// the spec's words: the four legs that settle one receipt (upload, royalty, fee,
// rounding, all debiting the receiver) are one `download` record, the legs of one play
// one `play` record; every other transfer is a record of its own.

/** A record's reason, in the spec's words (S1.12). */
export type RecordReason = 'download' | 'upload' | 'royalty' | 'voucher' | 'top-up' | 'play' | 'reservation' | 'refund' | 'payout' | (string & {});

export interface WalletRecord {
  /** The ID of the record's oldest ledger transfer; pass it as `before` to read on from it. */
  id: string;
  at: string;
  /**
   * + in, − out. For a reservation: the change of the available balance (− held,
   * + released); the posted balance does not move.
   */
  amount: number;
  /** Posted balance right after the record. */
  balanceAfter: number;
  /** The other ledger account, e.g. `wallet:<userId>`, `royalty:<publisherId>`, `platform:revenue`. */
  counterpart: string;
  /** Username of the account's owner, or `platform` for the platform's accounts. */
  counterpartName: string | null;
  reason: RecordReason;
  /** The ledger's own reason of the transfer named by `id` (for a grouped record: its oldest leg's). */
  ledgerReason: string;
  kind: TransferKind;
  contentId: string | null;
  contentTitle: string | null;
  /** What caused it outside the ledger: the receipt ID, the voucher ID, `play:<terminal>:<play>`. */
  ref: string | null;
  /** The parts of a grouped record (download: upload, royalty, fee, rounding; play: royalty, fee, rounding). */
  parts: Record<string, number> | null;
  /** The ledger transfers behind it, newest first. */
  transfers: string[];
}

export interface WalletHistory {
  account: string;
  entries: WalletRecord[];
  /** Pass as `before` for the next (older) page; null on the last page. */
  nextCursor: string | null;
}

/** Settlement legs that debit the receiver (src/ledger/settlement.ts): together, one download. */
const DOWNLOAD_LEGS = new Set(['upload', 'royalty', 'fee', 'rounding']);

/** The record reason of one ledger entry of a wallet (docs/ledger.md "Records"). */
export function recordReason(e: Pick<HistoryEntry, 'reason' | 'amount' | 'kind'>): RecordReason {
  if (e.amount < 0 && e.kind === 'normal' && DOWNLOAD_LEGS.has(e.reason)) return 'download';
  switch (e.reason) {
    case 'topup':
      return 'top-up';
    case 'reservation':
    case 'expired':
      return 'reservation';
    default:
      // upload (credit), royalty (credit), voucher, play, refund, payout, download: the same word.
      return e.reason;
  }
}

/** Records of a wallet account, built from the ledger's history of it. */
export class WalletRecords {
  constructor(private readonly deps: { db: Db; ledger: Ledger; accounts: AccountService }) {}

  /** Newest first; a page never splits a record; `before` is the previous page's `nextCursor` (any record ID). */
  async history(accountId: string, opts: { limit: number; before?: string }): Promise<WalletHistory> {
    const { limit, before } = opts;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw badRequest('invalid_limit', 'limit must be a whole number from 1 to 1000.');
    if (before !== undefined) {
      const t = await this.deps.db.selectFrom('ledger_transfers').select(['debit_account_id', 'credit_account_id']).where('id', '=', before).executeTakeFirst();
      if (!t || (t.debit_account_id !== accountId && t.credit_account_id !== accountId)) throw badRequest('invalid_cursor', `No record ${before} in this wallet to page from.`);
    }
    const records: Builder[] = [];
    let current: Builder | null = null;
    let more = false;
    for await (const e of this.entries(accountId, before, limit)) {
      if (current?.takes(e)) {
        current.add(e);
        continue;
      }
      if (current) {
        records.push(current);
        // The entry that closed this record starts another one: there is more.
        if (records.length === limit) {
          more = true;
          break;
        }
      }
      current = new Builder(e);
    }
    if (!more && current) records.push(current);
    const built = records.map((r) => r.build());
    await this.name(built);
    return { account: accountId, entries: built, nextCursor: more ? built[built.length - 1].id : null };
  }

  /** The account's ledger entries, newest first, read in chunks as far as needed. */
  private async *entries(accountId: string, before: string | undefined, limit: number): AsyncGenerator<HistoryEntry> {
    const chunk = Math.min(1000, Math.max(50, limit * 4));
    let cursor = before;
    for (;;) {
      const page = await this.deps.ledger.history(accountId, { limit: chunk, before: cursor });
      yield* page;
      if (page.length < chunk) return;
      cursor = page[page.length - 1].id;
    }
  }

  /** Fills in counterpart names and content titles, one query each. */
  private async name(records: WalletRecord[]) {
    const owners = new Map<string, string>();
    for (const r of records) {
      const m = /^(wallet|royalty|store|earnings):(.+)$/.exec(r.counterpart);
      if (m) owners.set(r.counterpart, m[2]);
    }
    const names = await this.deps.accounts.usernames([...new Set(owners.values())]);
    const contentIds = [...new Set(records.map((r) => r.contentId).filter((id): id is string => id !== null))];
    const titles = new Map([...(await contentsByIds(this.deps.db, contentIds)).values()].map((c) => [c.id, c.title]));
    for (const r of records) {
      const owner = owners.get(r.counterpart);
      r.counterpartName = owner !== undefined ? (names.get(owner) ?? null) : isPlatform(r.counterpart) ? 'platform' : null;
      r.contentTitle = r.contentId ? (titles.get(r.contentId) ?? null) : null;
    }
  }
}

const isPlatform = (account: string) => account.startsWith('platform:') || account === 'vouchers:outstanding' || account === 'holds';

/** One record under construction: a single entry, or the consecutive legs of one download or play. */
class Builder {
  private readonly legs: HistoryEntry[];
  private readonly reason: RecordReason;

  constructor(first: HistoryEntry) {
    this.legs = [first];
    this.reason = recordReason(first);
  }

  private get grouped() {
    const f = this.legs[0];
    return (this.reason === 'download' || this.reason === 'play') && f.ref !== null && f.amount < 0 && f.kind === 'normal';
  }

  /** The next (older) entry belongs to this record: same ref, same reason, also a debit. */
  takes(e: HistoryEntry): boolean {
    return this.grouped && e.ref === this.legs[0].ref && e.amount < 0 && e.kind === 'normal' && recordReason(e) === this.reason;
  }

  add(e: HistoryEntry) {
    this.legs.push(e);
  }

  build(): WalletRecord {
    const newest = this.legs[0];
    const oldest = this.legs[this.legs.length - 1];
    const grouped = this.grouped;
    const leg = (e: HistoryEntry) => (this.reason === 'download' ? e.reason : e.id.slice(e.id.lastIndexOf(':') + 1));
    // A download's counterpart is its source (the upload leg's payee); a play's, the publisher.
    const main = grouped ? (this.legs.find((e) => leg(e) === (this.reason === 'download' ? 'upload' : 'royalty')) ?? oldest) : newest;
    let amount = this.legs.reduce((s, e) => s + e.amount, 0);
    // A void releases what its pending held; the ledger lists it on the same (debit) side.
    if (newest.kind === 'void') amount = -amount;
    return {
      id: oldest.id,
      at: newest.at,
      amount,
      balanceAfter: newest.balanceAfter,
      counterpart: main.counterpart,
      counterpartName: null,
      reason: this.reason,
      ledgerReason: oldest.reason,
      kind: newest.kind,
      contentId: newest.contentId,
      contentTitle: null,
      ref: newest.ref,
      parts: grouped ? Object.fromEntries(this.legs.map((e) => [leg(e), -e.amount]).reverse()) : null,
      transfers: this.legs.map((e) => e.id),
    };
  }
}

const balanceSchema = {
  type: 'object',
  properties: { posted: { type: 'integer' }, pending: { type: 'integer' }, available: { type: 'integer' } },
} as const;

const recordSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    at: { type: 'string' },
    amount: { type: 'integer' },
    balanceAfter: { type: 'integer' },
    counterpart: { type: 'string' },
    counterpartName: { type: ['string', 'null'] },
    reason: { type: 'string' },
    ledgerReason: { type: 'string' },
    kind: { type: 'string' },
    contentId: { type: ['string', 'null'] },
    contentTitle: { type: ['string', 'null'] },
    ref: { type: ['string', 'null'] },
    parts: { type: ['object', 'null'], additionalProperties: { type: 'integer' } },
    transfers: { type: 'array', items: { type: 'string' } },
  },
} as const;

const userQuery = { type: 'string', minLength: 1, maxLength: 64, description: 'whose wallet (operators only; default: yours)' } as const;

export function walletRoutes(deps: { db: Db; ledger: Ledger; wallets: Wallets; accounts: AccountService; clock: Clock; tariff: Tariff }): FastifyPluginAsync {
  const records = new WalletRecords(deps);
  const plays = new PlayService(deps);

  /**
   * The wallet account to read: the caller's (opened, so a new user sees the sign-up
   * credit), or for an operator another user's (not opened: a look changes nothing).
   */
  async function walletOf(p: Principal, user: string | undefined): Promise<{ account: string; exists: boolean }> {
    if (user === undefined || user === p.userId) return { account: await deps.wallets.open(p.userId), exists: true };
    if (!p.roles.includes('operator')) throw forbidden('forbidden', 'Only an operator may see another user’s wallet.');
    await deps.accounts.getUser(user); // unknown_user
    const account = walletAccount(user).id;
    const row = await deps.db.selectFrom('ledger_accounts').select('id').where('id', '=', account).executeTakeFirst();
    return { account, exists: !!row };
  }

  return async (app) => {
    app.get<{ Querystring: { user?: string } }>('/wallet', {
      config: { access: 'user' },
      schema: {
        summary: 'Your wallet’s balance: posted, pending (held by reservations) and available (S1.12)',
        description: 'Operators may pass ?user=ID to see another user’s wallet.',
        tags: ['ledger'],
        querystring: { type: 'object', additionalProperties: false, properties: { user: userQuery } },
        response: {
          200: { type: 'object', properties: { account: { type: 'string' }, userId: { type: 'string' }, balance: balanceSchema } },
          400: errorSchema,
          403: errorSchema,
          404: errorSchema,
        },
      },
      handler: async (req) => {
        const p = req.principal!;
        const { account, exists } = await walletOf(p, req.query.user);
        const balance: Balance = exists ? await deps.ledger.balance(account) : { posted: 0, pending: 0, available: 0 };
        return { account, userId: req.query.user ?? p.userId, balance };
      },
    });

    app.get<{ Querystring: { user?: string; limit?: number; before?: string } }>('/wallet/history', {
      config: { access: 'user' },
      schema: {
        summary: 'Your wallet’s records, newest first: event ID, time, amount, balance after, counterpart, reason, content (S1.12)',
        description:
          'One record per download (the settlement legs of one receipt together), per play, top-up, upload earning, reservation or refund. ' +
          'Page with ?before=<nextCursor>. Operators may pass ?user=ID.',
        tags: ['ledger'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            user: userQuery,
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 20 },
            before: { type: 'string', minLength: 1, maxLength: 200, description: 'nextCursor of the previous page (a record ID)' },
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
        const { account, exists } = await walletOf(req.principal!, req.query.user);
        if (!exists) {
          if (req.query.before !== undefined) throw badRequest('invalid_cursor', `No record ${req.query.before} in this wallet to page from.`);
          return { account, entries: [], nextCursor: null };
        }
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
