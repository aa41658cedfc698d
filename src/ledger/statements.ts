import type { AccountService } from '../accounts/service.ts';
import type { ContentService } from '../content/service.ts';
import type { Clock } from '../core/clock.ts';
import { badRequest } from '../core/errors.ts';
import { sql, type Db } from '../db/connection.ts';
import { PLATFORM_PAYOUTS, royaltyAccount } from './accounts.ts';
import { transferError, type Ledger } from './ledger.ts';

// Publisher payouts and payout statements (S1.11 "the platform settles with
// publishers"; docs/ledger.md "Payouts and statements"). Royalties accumulate in
// `royalty:<publisherId>`; a payout moves money from there to `platform:payouts` when
// the platform pays the publisher outside the system (a bank transfer).
//
// A statement is computed from ledger_transfers alone, never from the accounts'
// running totals: a balance at time t is the sum of the posted transfers before t, so
// a statement for a past period comes out the same whenever it is asked for.

export interface PayoutInput {
  /** Caller-chosen, unique forever: a retry with the same ID pays nothing more. */
  id: string;
  publisherId: string;
  amount: number;
  /** The bank transfer's reference, or whatever ties this payout to the money sent. */
  reference: string;
}

export interface PayoutResult {
  transferId: string;
  /** False when this payout already existed (a retry). */
  created: boolean;
  publisherId: string;
  amount: number;
  reference: string;
  /** The royalty account's posted balance afterwards. */
  balance: number;
}

export interface StatementLine {
  id: string;
  at: string;
  /** + credited to the royalty account, − debited from it. */
  amount: number;
  reason: string;
  counterpart: string;
  ref: string | null;
  contentId: string | null;
}

export interface Statement {
  publisherId: string;
  from: string;
  to: string;
  /** How the period was chosen, in words (e.g. the current month in UTC, by the origin's clock). */
  period: string;
  /** Posted balance of the royalty account just before `from`. */
  openingBalance: number;
  /** Royalties of downloads (reason `royalty`) and of plays (reason `play`, S1.13), by content; `plays` is the plays' part. */
  royalties: { total: number; transfers: number; byContent: { contentId: string | null; title: string | null; transfers: number; amount: number; plays: { count: number; amount: number } }[] };
  payouts: { total: number; items: StatementLine[] };
  /** Any other posted movement in the period (corrections, refunds): empty as a rule. */
  other: { total: number; items: StatementLine[] };
  /** Posted balance just before `to`: opening + royalties − payouts + other. */
  closingBalance: number;
}

/** What the platform owes one publisher, and what moved in a period (the operator's payout view). */
export interface PayoutLine {
  publisherId: string;
  name: string | null;
  /** Royalties credited in the period. */
  royalties: number;
  /** Paid out in the period. */
  paidOut: number;
  /** Owed now: the royalty account's posted balance. */
  owed: number;
}

export interface PayoutOverview {
  from: string;
  to: string;
  period: string;
  publishers: PayoutLine[];
  totals: { royalties: number; paidOut: number; owed: number };
  /** How payouts work here, in words: there is no automatic payout run. */
  note: string;
}

export const PAYOUT_NOTE =
  'There is no automatic payout run: the platform pays each publisher outside the system (a bank transfer) and records it with ' +
  '`cascade payout pay` (POST /payouts), which moves the amount out of the publisher’s royalties. "owed" is what is left to pay. ' +
  'Upload earnings are credited to wallets as they are earned and are not paid out.';

/** Transfers that change a posted balance; pending holds and voids do not. */
const POSTED = sql`kind in ('normal', 'post')`;

export const payoutTransferId = (id: string) => `payout:${id}`;

export class StatementService {
  private readonly db: Db;
  private readonly ledger: Ledger;

  constructor(private readonly deps: { db: Db; ledger: Ledger; clock: Clock; content: Pick<ContentService, 'titles'>; accounts: Pick<AccountService, 'usernames'> }) {
    this.db = deps.db;
    this.ledger = deps.ledger;
  }

  /**
   * A period [from, to): each bound not given is that of the current calendar month in
   * UTC, by the origin's clock (#12: `cascade statement` with no dates is this month).
   */
  period(from?: string, to?: string): { from: Date; to: Date; period: string } {
    const now = new Date(this.deps.clock.now());
    const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    const nextMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
    const parse = (v: string) => {
      const t = new Date(v);
      if (Number.isNaN(t.getTime())) throw badRequest('invalid_period', '`from` and `to` are ISO 8601 times.');
      return t;
    };
    const month = monthStart.toISOString().slice(0, 7);
    const period =
      from === undefined && to === undefined
        ? `the current month, ${month} (UTC, by the origin's clock)`
        : from === undefined
          ? `from the start of the current month, ${month}-01 UTC, to the time given`
          : to === undefined
            ? `from the time given to the end of the current month, ${month} (UTC)`
            : 'the period given';
    return { from: from === undefined ? monthStart : parse(from), to: to === undefined ? nextMonth : parse(to), period };
  }

  /** Moves `amount` from the publisher's royalties to the platform's payouts (reason 'payout'). */
  async payout(input: PayoutInput): Promise<PayoutResult> {
    const royalty = royaltyAccount(input.publisherId);
    await this.ledger.ensureAccounts([PLATFORM_PAYOUTS]);
    const transferId = payoutTransferId(input.id);
    const [result] = await this.ledger.apply([
      { id: transferId, debit: royalty.id, credit: PLATFORM_PAYOUTS.id, amount: input.amount, reason: 'payout', ref: input.reference },
    ]);
    if (result.status === 'failed') throw transferError(result);
    const balance = await this.ledger.balance(royalty.id);
    return { transferId, created: result.status === 'created', publisherId: input.publisherId, amount: input.amount, reference: input.reference, balance: balance.posted };
  }

  /** Every publisher with a royalty account: royalties and payouts in [from, to), and what is owed now; most owed first. */
  async overview(from: Date, to: Date, period = 'the period given'): Promise<PayoutOverview> {
    if (!(from.getTime() < to.getTime())) throw badRequest('invalid_period', '`from` must be earlier than `to`.');
    const fromTs = from.toISOString();
    const toTs = to.toISOString();
    const { rows } = await sql<{ id: string; owner_id: string; owed: number; royalties: number; paid_out: number }>`
      select a.id, a.owner_id, (a.credits_posted - a.debits_posted)::int8 as owed,
             coalesce((select sum(t.amount) from ledger_transfers t where t.credit_account_id = a.id and ${POSTED}
                        and t.created_at >= ${fromTs}::timestamptz and t.created_at < ${toTs}::timestamptz), 0)::int8 as royalties,
             coalesce((select sum(t.amount) from ledger_transfers t where t.debit_account_id = a.id and t.reason = 'payout' and ${POSTED}
                        and t.created_at >= ${fromTs}::timestamptz and t.created_at < ${toTs}::timestamptz), 0)::int8 as paid_out
      from ledger_accounts a where a.kind = 'royalty'
      order by owed desc, a.id`.execute(this.db);
    const names = await this.deps.accounts.usernames(rows.map((r) => r.owner_id));
    const publishers = rows.map((r) => ({ publisherId: r.owner_id, name: names.get(r.owner_id) ?? null, royalties: r.royalties, paidOut: r.paid_out, owed: r.owed }));
    const sum = (f: (l: PayoutLine) => number) => publishers.reduce((s, l) => s + f(l), 0);
    return { from: fromTs, to: toTs, period, publishers, totals: { royalties: sum((l) => l.royalties), paidOut: sum((l) => l.paidOut), owed: sum((l) => l.owed) }, note: PAYOUT_NOTE };
  }

  /** The publisher's royalty account over [from, to): opening, royalties by content, payouts, closing. */
  async statement(publisherId: string, from: Date, to: Date, period = 'the period given'): Promise<Statement> {
    if (!(from.getTime() < to.getTime())) throw badRequest('invalid_period', '`from` must be earlier than `to`.');
    const account = royaltyAccount(publisherId).id;
    const fromTs = from.toISOString();
    const toTs = to.toISOString();

    const balances = await sql<{ opening: number; closing: number }>`
      select coalesce(sum(signed) filter (where created_at < ${fromTs}::timestamptz), 0)::int8 as opening,
             coalesce(sum(signed), 0)::int8 as closing
      from (
        select amount as signed, created_at from ledger_transfers where credit_account_id = ${account} and ${POSTED} and created_at < ${toTs}::timestamptz
        union all
        select -amount, created_at from ledger_transfers where debit_account_id = ${account} and ${POSTED} and created_at < ${toTs}::timestamptz
      ) as t`.execute(this.db);

    // Royalties can be one transfer per receipt: aggregated in SQL, one line per content.
    // A play's royalty leg (reason `play`, one transfer per play) is a royalty too.
    // Titles come from the content service, not a join onto its table (ARCHITECTURE.md "Boundaries").
    const royalties = await sql<{ content_id: string | null; transfers: number; amount: number; plays: number; play_amount: number }>`
      select t.content_id, count(*)::int8 as transfers, sum(t.amount)::int8 as amount,
             count(*) filter (where t.reason = 'play')::int8 as plays,
             coalesce(sum(t.amount) filter (where t.reason = 'play'), 0)::int8 as play_amount
      from ledger_transfers t
      where t.credit_account_id = ${account} and t.reason in ('royalty', 'play') and t.kind in ('normal', 'post')
        and t.created_at >= ${fromTs}::timestamptz and t.created_at < ${toTs}::timestamptz
      group by t.content_id
      order by amount desc, t.content_id`.execute(this.db);
    const titles = await this.deps.content.titles(royalties.rows.map((r) => r.content_id).filter((id): id is string => id !== null));

    // Everything else in the period, one line each: payouts and the rare correction.
    const moves = await sql<{ id: string; created_at: Date; amount: number; reason: string; debit_account_id: string; credit_account_id: string; ref: string | null; content_id: string | null }>`
      select id, created_at, amount, reason, debit_account_id, credit_account_id, ref, content_id
      from ledger_transfers
      where (debit_account_id = ${account} or (credit_account_id = ${account} and reason not in ('royalty', 'play'))) and ${POSTED}
        and created_at >= ${fromTs}::timestamptz and created_at < ${toTs}::timestamptz
      order by seq`.execute(this.db);

    const lines = moves.rows.map((t): StatementLine => {
      const debited = t.debit_account_id === account;
      return {
        id: t.id,
        at: new Date(t.created_at).toISOString(),
        amount: debited ? -t.amount : t.amount,
        reason: t.reason,
        counterpart: debited ? t.credit_account_id : t.debit_account_id,
        ref: t.ref,
        contentId: t.content_id,
      };
    });
    const payouts = lines.filter((l) => l.reason === 'payout' && l.amount < 0);
    const other = lines.filter((l) => !payouts.includes(l));
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const byContent = royalties.rows.map((r) => ({
      contentId: r.content_id,
      title: r.content_id ? (titles.get(r.content_id) ?? null) : null,
      transfers: Number(r.transfers),
      amount: Number(r.amount),
      plays: { count: Number(r.plays), amount: Number(r.play_amount) },
    }));
    return {
      publisherId,
      from: fromTs,
      to: toTs,
      period,
      openingBalance: balances.rows[0].opening,
      royalties: { total: sum(byContent.map((r) => r.amount)), transfers: sum(byContent.map((r) => r.transfers)), byContent },
      payouts: { total: -sum(payouts.map((p) => p.amount)), items: payouts },
      other: { total: sum(other.map((o) => o.amount)), items: other },
      closingBalance: balances.rows[0].closing,
    };
  }
}
