import * as crypto from 'node:crypto';
import type { Insertable, Transaction } from 'kysely';
import type { Clock } from '../core/clock.ts';
import { AppError, badRequest, notFound } from '../core/errors.ts';
import { arrayLiteral, type Scalar } from '../db/array-literal.ts';
import { sql, type Db } from '../db/connection.ts';
import type { Database } from '../db/schema.ts';
import type { LedgerTransfersTable, TransferKind } from './tables.ts';

// The ledger's double-entry core (#4.1; the model is described in docs/ledger.md).
//
// Every movement of money is a transfer between two accounts: the debit account's
// debits and the credit account's credits grow by the same amount, so the sum over
// all accounts of (credits − debits) is zero at every moment. Transfers are immutable
// and identified by the caller's ID: a retry is the same request and has no effect,
// a correction is a new transfer (TigerBeetle's model, see ARCHITECTURE.md).
//
// `apply` runs a whole batch in one database transaction: lock the accounts involved
// (select … for update, in id order, so two batches never deadlock), look the batch's
// IDs up *after* taking the locks (so a concurrent batch with the same new ID is seen
// once it commits), decide every transfer in memory in batch order, then write with
// two statements (one insert, one update). Per-transfer refusals are results with a
// code, not exceptions; exceptions mean a bug or a database failure.

export interface LedgerDeps {
  db: Db;
  clock: Clock;
}

export interface AccountSpec {
  id: string;
  kind: string;
  ownerId?: string | null;
  /** Debits (posted + pending) may never exceed posted credits: wallets, stores. */
  noOverdraft: boolean;
}

interface TransferCommon {
  /** Caller-chosen and unique forever; a retry sends the same ID and content. */
  id: string;
  /** Chains this transfer to the next one of the batch: all succeed or all fail. */
  linked?: boolean;
  /** Why money moved: download, upload, royalty, fee, voucher, topup, … (docs/ledger.md). */
  reason: string;
  contentId?: string | null;
  /** A reference outside the ledger, e.g. the receipt ID. */
  ref?: string | null;
  /**
   * The record it belongs to in account histories (S1.12), e.g. `purchase:<user>:<content>:<round>`
   * for everything one download moves. A post or void without one takes its pending's.
   */
  record?: string | null;
}

/** Moves `amount` now ('normal') or holds it until posted or voided ('pending'). */
export interface MoveInput extends TransferCommon {
  kind?: 'normal' | 'pending';
  debit: string;
  credit: string;
  amount: number;
  /** pending only: the hold expires (is voided by expireHolds) after this many ms. */
  timeoutMs?: number;
}

/**
 * Resolves a pending transfer: 'post' moves `amount` (default: all of it; any rest is
 * released), 'void' releases all of it. Accounts come from the pending transfer; if
 * the caller names them (or a void's amount) they must match it.
 */
export interface ResolveInput extends TransferCommon {
  kind: 'post' | 'void';
  pendingId: string;
  debit?: string;
  credit?: string;
  amount?: number;
}

export type TransferInput = MoveInput | ResolveInput;

/** Why a transfer failed; each failed result carries one of these. */
export const LEDGER_CODES = {
  transfer_invalid: 'The transfer is malformed: check its id, kind, accounts, reason, pendingId and timeoutMs.',
  amount_invalid: 'The amount must be a positive whole number of minor units.',
  transfer_id_conflict: 'A different transfer with this ID already exists.',
  same_account: 'A transfer needs two different accounts.',
  account_not_found: 'No such ledger account.',
  insufficient_balance: 'The account cannot pay this: its available balance is too low.',
  pending_not_found: 'No pending transfer with this ID.',
  pending_mismatch: 'The accounts or amount differ from the pending transfer.',
  pending_already_resolved: 'The pending transfer was already posted or voided.',
  pending_expired: 'The pending transfer has expired.',
  post_amount_exceeds_pending: 'A post may not move more than the pending amount.',
  linked_event_failed: 'Another transfer of its linked chain failed.',
  linked_event_chain_open: 'The batch ends inside a linked chain.',
} as const;
export type LedgerCode = keyof typeof LEDGER_CODES;

export interface TransferResult {
  id: string;
  status: 'created' | 'exists' | 'failed';
  code?: LedgerCode;
  message?: string;
}

/** The refusal a route returns for a failed transfer result. */
export function transferError(result: TransferResult): AppError {
  const code = result.code ?? 'transfer_invalid';
  const status = code.endsWith('_not_found') ? 404 : code === 'insufficient_balance' || code.startsWith('pending_') || code === 'transfer_id_conflict' ? 409 : 400;
  return new AppError(code, LEDGER_CODES[code], status, { transferId: result.id });
}

export interface Balance {
  /** credits_posted − debits_posted */
  posted: number;
  /** credits_pending − debits_pending: held amounts not yet posted or released. */
  pending: number;
  /** credits_posted − debits_posted − debits_pending: what the account can still pay. */
  available: number;
}

export interface HistoryEntry {
  id: string;
  at: string;
  /** + credited to this account, − debited from it. */
  amount: number;
  /** Posted balance of this account right after the transfer. */
  balanceAfter: number;
  counterpart: string;
  reason: string;
  kind: TransferKind;
  contentId: string | null;
  ref: string | null;
  /** Insertion order: the history's order. */
  seq: number;
  /** The record it belongs to (see TransferCommon.record); null: a record of its own. */
  record: string | null;
  /** post/void: the pending transfer it resolves. */
  pendingId: string | null;
}

export interface Conservation {
  ok: boolean;
  debitsPosted: number;
  creditsPosted: number;
  debitsPending: number;
  creditsPending: number;
  /** Accounts whose totals differ from the sums over their transfers (first 20). */
  mismatched: string[];
}

/** A stored transfer as one account sees it. */
function historyEntry(accountId: string, t: LedgerTransfersTable): HistoryEntry {
  const debited = t.debit_account_id === accountId;
  return {
    id: t.id,
    at: new Date(t.created_at).toISOString(),
    amount: debited ? -t.amount : t.amount,
    balanceAfter: debited ? t.debit_balance_after : t.credit_balance_after,
    counterpart: debited ? t.credit_account_id : t.debit_account_id,
    reason: t.reason,
    kind: t.kind,
    contentId: t.content_id,
    ref: t.ref,
    seq: Number(t.seq),
    record: t.record_key,
    pendingId: t.pending_id,
  };
}

/** The ID of the void that expireHolds writes for an expired pending transfer. */
export const expiryId = (pendingId: string) => `expire:${pendingId}`;

const KINDS: readonly TransferKind[] = ['normal', 'pending', 'post', 'void'];
const MAX_ID_LENGTH = 200;
const EXPIRE_BATCH = 1_000;
/** A concurrent batch may insert the same new ID between our lookup and our insert. */
const MAX_ATTEMPTS = 5;

export class Ledger {
  private readonly db: Db;
  private readonly clock: Clock;

  constructor(deps: LedgerDeps) {
    this.db = deps.db;
    this.clock = deps.clock;
  }

  /** Creates the account unless it exists (an existing one is left as it is). */
  ensureAccount(spec: AccountSpec): Promise<void> {
    return this.ensureAccounts([spec]);
  }

  /**
   * Creates the accounts that do not exist yet, in one statement (settlement names
   * hundreds per batch; nearly all exist, and `on conflict do nothing` skips them at the
   * index check). In `opts.trx` when given.
   */
  async ensureAccounts(specs: AccountSpec[], opts: { trx?: Transaction<Database> } = {}): Promise<void> {
    const unique = [...new Map(specs.map((s) => [s.id, s])).values()];
    if (unique.length === 0) return;
    await sql`
      insert into ledger_accounts (id, kind, owner_id, no_overdraft, created_at)
      select id, kind, owner_id, no_overdraft, ${new Date(this.clock.now())}::timestamptz
      from unnest(${arrayLiteral(unique.map((s) => s.id))}::text[], ${arrayLiteral(unique.map((s) => s.kind))}::text[],
                  ${arrayLiteral(unique.map((s) => s.ownerId ?? null))}::text[], ${arrayLiteral(unique.map((s) => s.noOverdraft))}::bool[])
        as u(id, kind, owner_id, no_overdraft)
      on conflict (id) do nothing`.execute(opts.trx ?? this.db);
  }

  /**
   * Applies a batch of transfers in order, in one database transaction; one result per
   * transfer, same order. Linked chains succeed or fail whole; other transfers are
   * independent. Runs in `opts.trx` when given (under a savepoint, so a failure leaves
   * it usable; it must be READ COMMITTED), else in a transaction of its own.
   */
  apply(transfers: TransferInput[], opts: { trx?: Transaction<Database> } = {}): Promise<TransferResult[]> {
    return this.run(transfers, opts.trx, false);
  }

  /** Voids every pending transfer whose timeout has passed; returns how many. */
  async expireHolds(): Promise<number> {
    let total = 0;
    for (;;) {
      const due = await this.db
        .selectFrom('ledger_transfers as t')
        .select('t.id')
        .where('t.kind', '=', 'pending')
        .where('t.timeout_at', '<=', new Date(this.clock.now()))
        .where(({ not, exists, selectFrom }) => not(exists(selectFrom('ledger_transfers as r').select('r.id').whereRef('r.pending_id', '=', 't.id'))))
        .orderBy('t.timeout_at')
        .limit(EXPIRE_BATCH)
        .execute();
      if (due.length === 0) return total;
      const voids: ResolveInput[] = due.map((p) => ({ id: expiryId(p.id), kind: 'void', pendingId: p.id, reason: 'expired' }));
      const created = (await this.run(voids, undefined, true)).filter((r) => r.status === 'created').length;
      total += created;
      // Nothing created means every one was resolved meanwhile (or its expiry ID taken): stop.
      if (due.length < EXPIRE_BATCH || created === 0) return total;
    }
  }

  async balance(accountId: string): Promise<Balance> {
    const a = await this.db.selectFrom('ledger_accounts').selectAll().where('id', '=', accountId).executeTakeFirst();
    if (!a) throw notFound('account_not_found', `No ledger account ${accountId}.`);
    return {
      posted: a.credits_posted - a.debits_posted,
      pending: a.credits_pending - a.debits_pending,
      available: a.credits_posted - a.debits_posted - a.debits_pending,
    };
  }

  /** The account's transfers, newest first; `before` is the last ID of the previous page. */
  async history(accountId: string, opts: { limit: number; before?: string; beforeSeq?: number }): Promise<HistoryEntry[]> {
    const { limit, before } = opts;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw badRequest('invalid_limit', 'limit must be a whole number from 1 to 1000.');
    let beforeSeq = opts.beforeSeq ?? Number.MAX_SAFE_INTEGER;
    if (before !== undefined) {
      const row = await this.db.selectFrom('ledger_transfers').select('seq').where('id', '=', before).executeTakeFirst();
      if (!row) throw badRequest('invalid_cursor', `No transfer ${before} to page from.`);
      beforeSeq = row.seq;
    }
    // One index range per side (debit, credit) instead of an OR over both columns.
    const side = (column: 'debit_account_id' | 'credit_account_id') =>
      sql`(select * from ledger_transfers where ${sql.ref(column)} = ${accountId} and seq < ${beforeSeq} order by seq desc limit ${limit})`;
    const { rows } = await sql<LedgerTransfersTable>`
      select * from (${side('debit_account_id')} union all ${side('credit_account_id')}) as t
      order by seq desc limit ${limit}`.execute(this.db);
    return rows.map((t) => historyEntry(accountId, t));
  }

  /** Every transfer of the account that belongs to one of these records, newest first. */
  async recordTransfers(accountId: string, records: string[]): Promise<HistoryEntry[]> {
    if (records.length === 0) return [];
    const { rows } = await sql<LedgerTransfersTable>`
      select * from ledger_transfers
      where record_key = any(${arrayLiteral(records)}::text[]) and (debit_account_id = ${accountId} or credit_account_id = ${accountId})
      order by seq desc`.execute(this.db);
    return rows.map((t) => historyEntry(accountId, t));
  }

  /** Which of these records have a transfer of the account at or after `seq` (they belong to newer pages). */
  async recordsSince(accountId: string, records: string[], seq: number): Promise<Set<string>> {
    if (records.length === 0) return new Set();
    const { rows } = await sql<{ record_key: string }>`
      select distinct record_key from ledger_transfers
      where record_key = any(${arrayLiteral(records)}::text[]) and seq >= ${seq} and (debit_account_id = ${accountId} or credit_account_id = ${accountId})`.execute(this.db);
    return new Set(rows.map((r) => r.record_key));
  }

  /**
   * The cheap half of `checkConservation` (one aggregate over the accounts, not their
   * transfers): Σ debits = Σ credits over all accounts, posted and pending alike, i.e. the
   * balances sum to zero (docs/ledger.md "Conservation"). The operations dashboard shows it.
   */
  async checkTotals(): Promise<Omit<Conservation, 'mismatched'>> {
    const totals = await sql<{ dp: number; cp: number; dpn: number; cpn: number }>`
      select coalesce(sum(debits_posted), 0)::int8 as dp, coalesce(sum(credits_posted), 0)::int8 as cp,
             coalesce(sum(debits_pending), 0)::int8 as dpn, coalesce(sum(credits_pending), 0)::int8 as cpn
      from ledger_accounts`.execute(this.db);
    const t = totals.rows[0];
    const [dp, cp, dpn, cpn] = [t.dp, t.cp, t.dpn, t.cpn].map(Number);
    return { ok: dp === cp && dpn === cpn, debitsPosted: dp, creditsPosted: cp, debitsPending: dpn, creditsPending: cpn };
  }

  /**
   * Debits equal credits over all accounts (posted and pending alike), and every
   * account's totals equal the sums over its transfers.
   */
  async checkConservation(): Promise<Conservation> {
    const totals = await this.checkTotals();
    // Posted: normal and post transfers. Pending: pending transfers not yet resolved.
    const mismatched = await sql<{ id: string }>`
      with moves as (
        select t.kind, t.amount, t.debit_account_id, t.credit_account_id,
               (t.kind = 'pending' and not exists (select 1 from ledger_transfers r where r.pending_id = t.id)) as open
        from ledger_transfers t
      ), sides as (
        select debit_account_id as account_id,
               case when kind in ('normal', 'post') then amount else 0 end as dp, 0::int8 as cp,
               case when open then amount else 0 end as dpn, 0::int8 as cpn
        from moves
        union all
        select credit_account_id, 0, case when kind in ('normal', 'post') then amount else 0 end, 0, case when open then amount else 0 end
        from moves
      ), sums as (
        select account_id, sum(dp) as dp, sum(cp) as cp, sum(dpn) as dpn, sum(cpn) as cpn from sides group by account_id
      )
      select a.id from ledger_accounts a left join sums s on s.account_id = a.id
      where a.debits_posted <> coalesce(s.dp, 0) or a.credits_posted <> coalesce(s.cp, 0)
         or a.debits_pending <> coalesce(s.dpn, 0) or a.credits_pending <> coalesce(s.cpn, 0)
      order by a.id limit 20`.execute(this.db);
    return { ...totals, ok: totals.ok && mismatched.rows.length === 0, mismatched: mismatched.rows.map((r) => r.id) };
  }

  private async run(inputs: TransferInput[], trx: Transaction<Database> | undefined, expiring: boolean): Promise<TransferResult[]> {
    if (inputs.length === 0) return [];
    for (let attempt = 1; ; attempt++) {
      try {
        if (trx) return await underSavepoint(trx, () => this.applyIn(trx, inputs, expiring));
        return await this.db.transaction().execute((t) => this.applyIn(t, inputs, expiring));
      } catch (err) {
        // Lost a race for a new ID (or for resolving a pending): the retry's lookup sees
        // the winner's row, and answers 'exists' or a conflict like any retry would.
        if (attempt >= MAX_ATTEMPTS || !isUniqueViolation(err)) throw err;
      }
    }
  }

  private async applyIn(trx: Db, inputs: TransferInput[], expiring: boolean): Promise<TransferResult[]> {
    const now = this.clock.now();
    const ids = unique(inputs.map((t) => t.id));
    const pendingIds = unique(inputs.map((t) => (isResolve(t) ? t.pendingId : undefined)));

    // A pending transfer never changes, so it may be read before locking; its accounts
    // are the ones a post or void moves, and must be locked too.
    const pendings = pendingIds.length
      ? (
          await sql<{ debit_account_id: string; credit_account_id: string }>`
            select t.debit_account_id, t.credit_account_id from unnest(${arrayLiteral(pendingIds)}::text[]) as u(id)
            cross join lateral (select debit_account_id, credit_account_id from ledger_transfers where id = u.id limit 1) as t`.execute(trx)
        ).rows
      : [];
    const accountIds = unique([...inputs.flatMap((t) => [t.debit, t.credit]), ...pendings.flatMap((p) => [p.debit_account_id, p.credit_account_id])]);
    const locked = accountIds.length
      ? (
          await sql<{ id: string; no_overdraft: boolean; debits_posted: number; credits_posted: number; debits_pending: number; credits_pending: number }>`
            select id, no_overdraft, debits_posted, credits_posted, debits_pending, credits_pending
            from ledger_accounts where id = any(${arrayLiteral(accountIds)}::text[]) order by id for update`.execute(trx)
        ).rows
      : [];

    // Looked up only now, under the locks: a concurrent batch touching the same
    // accounts has committed by now, so its IDs and resolutions are visible.
    // One primary-key probe per ID, whatever the table's size: for thousands of IDs the
    // planner prefers a sequential scan for `id = any(…) or pending_id = any(…)`, and a hash
    // or merge join (reading the whole table or index) for a plain join with the list; a
    // lateral subquery with `limit` cannot be flattened into a join, so it stays a probe.
    const columns = sql`id, kind, debit_account_id, credit_account_id, amount, pending_id, timeout_at, fingerprint, record_key`;
    const { rows: stored } = await sql<StoredTransfer>`
      select t.* from unnest(${arrayLiteral([...ids, ...pendingIds])}::text[]) as u(id)
      cross join lateral (select ${columns} from ledger_transfers where id = u.id limit 1) as t
      ${pendingIds.length ? sql`union all select ${columns} from ledger_transfers where pending_id = any(${arrayLiteral(pendingIds)}::text[])` : sql``}`.execute(trx);

    const batch = new Batch(now, expiring);
    for (const a of locked) {
      batch.accounts.set(a.id, { id: a.id, noOverdraft: a.no_overdraft, dp: a.debits_posted, cp: a.credits_posted, dpn: a.debits_pending, cpn: a.credits_pending });
    }
    for (const t of stored) {
      const timeoutAt = t.timeout_at ? new Date(t.timeout_at).getTime() : null;
      batch.known.set(t.id, { kind: t.kind, debit: t.debit_account_id, credit: t.credit_account_id, amount: t.amount, timeoutAt, fingerprint: t.fingerprint, record: t.record_key });
      if (t.pending_id !== null) batch.resolved.set(t.pending_id, { expiry: t.id === expiryId(t.pending_id) });
    }
    const results = batch.run(inputs);

    await insertTransfers(trx, batch.rows, now);
    await moveAccounts(
      trx,
      locked.flatMap((before) => {
        const a = batch.accounts.get(before.id)!;
        const d = { id: a.id, dp: a.dp - before.debits_posted, cp: a.cp - before.credits_posted, dpn: a.dpn - before.debits_pending, cpn: a.cpn - before.credits_pending };
        return d.dp || d.cp || d.dpn || d.cpn ? [d] : [];
      }),
    );
    return results;
  }
}

type StoredTransfer = Pick<LedgerTransfersTable, 'id' | 'kind' | 'debit_account_id' | 'credit_account_id' | 'amount' | 'pending_id' | 'timeout_at' | 'fingerprint' | 'record_key'>;

interface Account {
  id: string;
  noOverdraft: boolean;
  dp: number;
  cp: number;
  dpn: number;
  cpn: number;
}

/** A transfer already stored, or created earlier in this batch. */
interface Known {
  kind: TransferKind;
  debit: string;
  credit: string;
  amount: number;
  timeoutAt: number | null;
  fingerprint: string;
  record: string | null;
}

type Outcome = { status: 'created' | 'exists' } | { status: 'failed'; code: LedgerCode };
const EXISTS: Outcome = { status: 'exists' };
const CREATED: Outcome = { status: 'created' };
const fail = (code: LedgerCode): Outcome => ({ status: 'failed', code });

/**
 * Decides one batch in memory, in order, against the locked accounts and the stored
 * transfers it was given; collects the rows to insert. Pure: no I/O.
 */
class Batch {
  readonly accounts = new Map<string, Account>();
  readonly known = new Map<string, Known>();
  /** pendingId → how it was resolved. */
  readonly resolved = new Map<string, { expiry: boolean }>();
  readonly rows: Row[] = [];
  // What the current chain changed, to undo it if a later member fails.
  private saved = new Map<string, Account>();
  private addedTransfers: string[] = [];
  private addedResolutions: string[] = [];
  /** One Date for every row of the batch (they are all created at the same moment). */
  private readonly createdAt: Date;

  constructor(
    private readonly now: number,
    /** The expiry sweep: voids pending transfers that are past their timeout. */
    private readonly expiring: boolean,
  ) {
    this.createdAt = new Date(now);
  }

  run(inputs: TransferInput[]): TransferResult[] {
    const results: TransferResult[] = [];
    let start = 0;
    while (start < inputs.length) {
      // A chain runs from `start` to the first transfer without `linked` (#4.1).
      let end = start;
      while (inputs[end].linked === true && end < inputs.length - 1) end++;
      const chain = inputs.slice(start, end + 1);
      results.push(...this.chain(chain));
      start = end + 1;
    }
    return results;
  }

  private chain(chain: TransferInput[]): TransferResult[] {
    const result = (t: TransferInput, o: Outcome): TransferResult =>
      o.status === 'failed' ? { id: t.id, status: 'failed', code: o.code, message: LEDGER_CODES[o.code] } : { id: t.id, status: o.status };
    const last = chain[chain.length - 1];
    if (last.linked === true) {
      return chain.map((t, i) => result(t, fail(i === chain.length - 1 ? 'linked_event_chain_open' : 'linked_event_failed')));
    }
    const group = chain.length > 1 ? String(chain[0].id) : null;
    const rowsBefore = this.rows.length;
    this.saved = new Map();
    this.addedTransfers = [];
    this.addedResolutions = [];
    const outcomes: Outcome[] = [];
    for (const t of chain) {
      const o = this.transfer(t, group);
      outcomes.push(o);
      if (o.status === 'failed') {
        this.undo(rowsBefore);
        return chain.map((t, i) => result(t, i === outcomes.length - 1 ? o : fail('linked_event_failed')));
      }
    }
    return chain.map((t, i) => result(t, outcomes[i]));
  }

  private undo(rowsBefore: number) {
    this.rows.length = rowsBefore;
    for (const [id, a] of this.saved) this.accounts.set(id, a);
    for (const id of this.addedTransfers) this.known.delete(id);
    for (const id of this.addedResolutions) this.resolved.delete(id);
  }

  private transfer(t: TransferInput, group: string | null): Outcome {
    const kind = t.kind ?? 'normal';
    if (!validId(t.id) || !KINDS.includes(kind) || typeof t.reason !== 'string' || t.reason.length === 0) return fail('transfer_invalid');
    if (t.contentId != null && typeof t.contentId !== 'string') return fail('transfer_invalid');
    if (t.ref != null && typeof t.ref !== 'string') return fail('transfer_invalid');
    if (t.record != null && !validId(t.record)) return fail('transfer_invalid');
    return isResolve(t) ? this.resolve(t, group) : this.move(t as MoveInput, group);
  }

  /** normal and pending transfers. */
  private move(t: MoveInput, group: string | null): Outcome {
    const kind = t.kind ?? 'normal';
    if (!validId(t.debit) || !validId(t.credit) || (t as Loose).pendingId !== undefined) return fail('transfer_invalid');
    if (t.timeoutMs !== undefined && (kind !== 'pending' || !isPositiveAmount(t.timeoutMs))) return fail('transfer_invalid');
    if (!isPositiveAmount(t.amount)) return fail('amount_invalid');
    if (t.debit === t.credit) return fail('same_account');
    const fingerprint = fingerprintOf(t);
    const prior = this.known.get(t.id);
    if (prior) return prior.fingerprint === fingerprint ? EXISTS : fail('transfer_id_conflict');
    const debit = this.accounts.get(t.debit);
    const credit = this.accounts.get(t.credit);
    if (!debit || !credit) return fail('account_not_found');
    if (debit.noOverdraft && debit.dp + debit.dpn + t.amount > debit.cp) return fail('insufficient_balance');

    const d = this.touch(debit.id);
    const c = this.touch(credit.id);
    if (kind === 'pending') {
      d.dpn += t.amount;
      c.cpn += t.amount;
    } else {
      d.dp += t.amount;
      c.cp += t.amount;
    }
    const timeoutAt = t.timeoutMs === undefined ? null : this.now + t.timeoutMs;
    this.record(t, { kind, debit: d.id, credit: c.id, amount: t.amount, timeoutAt, fingerprint, record: t.record ?? null }, group, null);
    return CREATED;
  }

  /** post and void: resolve a pending transfer, at most once. */
  private resolve(t: ResolveInput, group: string | null): Outcome {
    if (!validId(t.pendingId) || (t as Loose).timeoutMs !== undefined) return fail('transfer_invalid');
    if ((t.debit !== undefined && !validId(t.debit)) || (t.credit !== undefined && !validId(t.credit))) return fail('transfer_invalid');
    if (t.amount !== undefined && !isPositiveAmount(t.amount)) return fail('amount_invalid');
    const fingerprint = fingerprintOf(t);
    const prior = this.known.get(t.id);
    if (prior) return prior.fingerprint === fingerprint ? EXISTS : fail('transfer_id_conflict');
    const p = this.known.get(t.pendingId);
    if (!p || p.kind !== 'pending') return fail('pending_not_found');
    if ((t.debit !== undefined && t.debit !== p.debit) || (t.credit !== undefined && t.credit !== p.credit)) return fail('pending_mismatch');
    if (t.kind === 'void' && t.amount !== undefined && t.amount !== p.amount) return fail('pending_mismatch');
    const resolution = this.resolved.get(t.pendingId);
    if (resolution) return fail(resolution.expiry ? 'pending_expired' : 'pending_already_resolved');
    // Past its timeout but not yet swept by expireHolds: expired all the same.
    if (!this.expiring && p.timeoutAt !== null && p.timeoutAt <= this.now) return fail('pending_expired');
    const amount = t.kind === 'post' ? (t.amount ?? p.amount) : p.amount;
    if (amount > p.amount) return fail('post_amount_exceeds_pending');

    const d = this.touch(p.debit);
    const c = this.touch(p.credit);
    d.dpn -= p.amount;
    c.cpn -= p.amount;
    if (t.kind === 'post') {
      d.dp += amount;
      c.cp += amount;
    }
    this.resolved.set(t.pendingId, { expiry: this.expiring });
    // A release belongs to the record of what it releases (the download its hold was for).
    this.record(t, { kind: t.kind, debit: d.id, credit: c.id, amount, timeoutAt: null, fingerprint, record: t.record ?? p.record }, group, t.pendingId);
    return CREATED;
  }

  /** The account, to be changed: keeps its state before the chain for undo. */
  private touch(id: string): Account {
    const a = this.accounts.get(id);
    if (!a) throw new Error(`ledger: account ${id} was not locked`);
    if (!this.saved.has(id)) this.saved.set(id, { ...a });
    return a;
  }

  private record(t: TransferInput, k: Known, group: string | null, pendingId: string | null) {
    const d = this.accounts.get(k.debit)!;
    const c = this.accounts.get(k.credit)!;
    assertInvariants(d);
    assertInvariants(c);
    this.known.set(t.id, k);
    this.addedTransfers.push(t.id);
    if (pendingId) this.addedResolutions.push(pendingId);
    this.rows.push({
      id: t.id,
      debit_account_id: k.debit,
      credit_account_id: k.credit,
      amount: k.amount,
      kind: k.kind,
      pending_id: pendingId,
      timeout_at: k.timeoutAt === null ? null : new Date(k.timeoutAt),
      linked_group: group,
      reason: t.reason,
      content_id: t.contentId ?? null,
      ref: t.ref ?? null,
      record_key: k.record,
      debit_balance_after: d.cp - d.dp,
      credit_balance_after: c.cp - c.dp,
      fingerprint: k.fingerprint,
      created_at: this.createdAt,
    });
  }
}

// The writes of a batch: one statement each, whatever its size. Arrays bound as single
// parameters and unnested server-side stay far from the 65,535-parameter limit and are
// parsed once; on PGlite they are also markedly faster than multi-row VALUES lists.

type Row = Insertable<LedgerTransfersTable>;

async function insertTransfers(trx: Db, rows: Row[], now: number) {
  if (rows.length === 0) return;
  const col = <K extends keyof Row>(k: K) => arrayLiteral(rows.map((r) => (r[k] ?? null) as Scalar));
  const timeouts = arrayLiteral(rows.map((r) => (r.timeout_at ? new Date(r.timeout_at as Date).toISOString() : null)));
  // `with ordinality … order by n`: seq (the history order) follows the batch order.
  await sql`
    insert into ledger_transfers (id, debit_account_id, credit_account_id, amount, kind, pending_id, timeout_at, linked_group,
                                  reason, content_id, ref, record_key, debit_balance_after, credit_balance_after, fingerprint, created_at)
    select id, d, c, a, k, p, t, g, r, cid, ref, rk, dba, cba, f, ${new Date(now)}::timestamptz
    from unnest(${col('id')}::text[], ${col('debit_account_id')}::text[], ${col('credit_account_id')}::text[], ${col('amount')}::int8[],
                ${col('kind')}::text[], ${col('pending_id')}::text[], ${timeouts}::timestamptz[], ${col('linked_group')}::text[],
                ${col('reason')}::text[], ${col('content_id')}::text[], ${col('ref')}::text[], ${col('record_key')}::text[],
                ${col('debit_balance_after')}::int8[], ${col('credit_balance_after')}::int8[], ${col('fingerprint')}::text[])
         with ordinality as u(id, d, c, a, k, p, t, g, r, cid, ref, rk, dba, cba, f, n)
    order by n`.execute(trx);
}

interface Delta {
  id: string;
  dp: number;
  cp: number;
  dpn: number;
  cpn: number;
}

async function moveAccounts(trx: Db, deltas: Delta[]) {
  if (deltas.length === 0) return;
  const col = <K extends keyof Delta>(k: K) => arrayLiteral(deltas.map((d) => d[k]));
  // Deltas rather than new totals: the statement stays right even if it ever ran outside the lock.
  await sql`
    update ledger_accounts as a set
      debits_posted = a.debits_posted + v.dp, credits_posted = a.credits_posted + v.cp,
      debits_pending = a.debits_pending + v.dpn, credits_pending = a.credits_pending + v.cpn
    from unnest(${col('id')}::text[], ${col('dp')}::int8[], ${col('cp')}::int8[], ${col('dpn')}::int8[], ${col('cpn')}::int8[]) as v(id, dp, cp, dpn, cpn)
    where a.id = v.id`.execute(trx);
}

// Checked after every change (TigerBeetle's habit): a breach is a bug in this file,
// so it throws and the whole batch rolls back. The table's CHECKs say the same.
function assertInvariants(a: Account) {
  if (!(isTotal(a.dp) && isTotal(a.cp) && isTotal(a.dpn) && isTotal(a.cpn))) throw new Error(`ledger invariant: account ${a.id} totals out of range ${[a.dp, a.cp, a.dpn, a.cpn]}`);
  if (a.noOverdraft && a.dp + a.dpn > a.cp) throw new Error(`ledger invariant: no-overdraft account ${a.id} overdrawn`);
}

const isTotal = (n: number) => Number.isSafeInteger(n) && n >= 0;

/** Hash of everything the caller supplied: the same ID must come with the same content. */
function fingerprintOf(t: TransferInput): string {
  const r = t as Loose;
  const fields: unknown[] = [t.id, t.kind ?? 'normal', r.debit ?? null, r.credit ?? null, r.amount ?? null, r.pendingId ?? null, r.timeoutMs ?? null];
  fields.push(t.linked === true, t.reason, t.contentId ?? null, t.ref ?? null);
  // Only when given, so transfers written before records existed keep their fingerprints.
  if (t.record != null) fields.push(t.record);
  return sha256(JSON.stringify(fields));
}

// crypto.hash (Node ≥ 20.12) hashes in one call, about 3× faster than createHash for short inputs; same digest.
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'base64url') => string }).hash;
const sha256 = (text: string): string => (oneShot ? oneShot('sha256', text, 'base64url') : crypto.createHash('sha256').update(text).digest('base64url'));

/** Any transfer input, every field optional: for checks that look at fields a kind must not have. */
type Loose = Partial<Omit<MoveInput, 'kind'> & Omit<ResolveInput, 'kind'>>;

function isResolve(t: TransferInput): t is ResolveInput {
  return t.kind === 'post' || t.kind === 'void';
}

const validId = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_ID_LENGTH;
const isPositiveAmount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) > 0;
const unique = (xs: unknown[]): string[] => [...new Set(xs.filter(validId))];

function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === '23505';
}

/** Runs fn under a savepoint of the caller's transaction, so a failure leaves it usable. */
async function underSavepoint<T>(trx: Transaction<Database>, fn: () => Promise<T>): Promise<T> {
  await sql`savepoint ledger_apply`.execute(trx);
  try {
    const result = await fn();
    await sql`release savepoint ledger_apply`.execute(trx);
    return result;
  } catch (err) {
    await sql`rollback to savepoint ledger_apply`.execute(trx);
    await sql`release savepoint ledger_apply`.execute(trx);
    throw err;
  }
}
