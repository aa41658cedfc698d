import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { ManualClock } from '../../src/core/clock.ts';
import { AppError } from '../../src/core/errors.ts';
import type { DbHandle } from '../../src/db/connection.ts';
import { Ledger, expiryId, transferError, type TransferInput, type TransferResult } from '../../src/ledger/ledger.ts';
import { testEngines } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

// The ledger's double-entry core (#4.1, docs/ledger.md), on both engines. Every
// refusal is checked twice: its code, and that nothing at all changed (accounts,
// rows, conservation). The tests share one database; each builds its own accounts.

const codes = (rs: TransferResult[]) => rs.map((r) => r.code ?? r.status);

for (const engine of testEngines()) {
  describe(`ledger (${engine.name})`, () => {
    let handle: DbHandle;
    let clock: ManualClock;
    let ledger: Ledger;
    let seq = 0;

    before(async () => {
      handle = await engine.open();
      clock = new ManualClock(Date.UTC(2026, 0, 1));
      ledger = new Ledger({ db: handle.db, clock });
      await ledger.ensureAccount({ id: 'bank', kind: 'bank', noOverdraft: false });
    });
    after(() => handle.close());

    /** Fresh accounts: a wallet funded from the bank, a store and the platform's revenue. */
    async function world(funds = 100) {
      const n = ++seq;
      const a = { wallet: `wallet:u${n}`, store: `store:s${n}`, revenue: `platform:revenue${n}`, tag: `t${n}` };
      await ledger.ensureAccount({ id: a.wallet, kind: 'wallet', ownerId: `u${n}`, noOverdraft: true });
      await ledger.ensureAccount({ id: a.store, kind: 'store', ownerId: `s${n}`, noOverdraft: true });
      await ledger.ensureAccount({ id: a.revenue, kind: 'platform', noOverdraft: false });
      if (funds > 0) assert.deepEqual(codes(await ledger.apply([{ id: `${a.tag}:fund`, debit: 'bank', credit: a.wallet, amount: funds, reason: 'topup' }])), ['created']);
      return a;
    }

    async function snapshot() {
      const accounts = await handle.db.selectFrom('ledger_accounts').selectAll().orderBy('id').execute();
      const transfers = await sql<{ n: number }>`select count(*)::int8 as n from ledger_transfers`.execute(handle.db);
      return { accounts, transfers: transfers.rows[0].n };
    }

    /** Runs the batch and asserts it changed nothing; returns the results. */
    async function refused(batch: TransferInput[]): Promise<TransferResult[]> {
      const before = await snapshot();
      const results = await ledger.apply(batch);
      assert.ok(results.every((r) => r.status !== 'created'), JSON.stringify(results));
      assert.deepEqual(await snapshot(), before);
      assert.equal((await ledger.checkConservation()).ok, true);
      return results;
    }

    test('a normal transfer moves money from debit to credit; conservation holds (#4.1)', async () => {
      const a = await world();
      const rs = await ledger.apply([{ id: `${a.tag}:dl`, debit: a.wallet, credit: a.store, amount: 30, reason: 'download', contentId: 'c1', ref: 'rcpt1' }]);
      assert.deepEqual(rs, [{ id: `${a.tag}:dl`, status: 'created' }]);
      assert.deepEqual(await ledger.balance(a.wallet), { posted: 70, pending: 0, available: 70 });
      assert.deepEqual(await ledger.balance(a.store), { posted: 30, pending: 0, available: 30 });
      const c = await ledger.checkConservation();
      assert.equal(c.ok, true);
      assert.equal(c.debitsPosted, c.creditsPosted);
      assert.deepEqual(c.mismatched, []);
    });

    test('a retry with the same ID and content is "exists" and changes nothing (S1.8 idempotent settlement)', async () => {
      const a = await world();
      const t: TransferInput = { id: `${a.tag}:dl`, debit: a.wallet, credit: a.store, amount: 30, reason: 'download' };
      assert.deepEqual(codes(await ledger.apply([t])), ['created']);
      assert.deepEqual(await refused([t]), [{ id: t.id, status: 'exists' }]);
      // Within one batch the second copy sees the first.
      const u: TransferInput = { ...t, id: `${a.tag}:dl2` };
      assert.deepEqual(codes(await ledger.apply([u, u])), ['created', 'exists']);
      assert.equal((await ledger.balance(a.wallet)).posted, 40);
      // Still "exists" when the wallet could no longer pay it.
      await ledger.apply([{ id: `${a.tag}:drain`, debit: a.wallet, credit: a.revenue, amount: 40, reason: 'fee' }]);
      assert.deepEqual(codes(await refused([t, u])), ['exists', 'exists']);
    });

    test('the same ID with different content is refused: transfer_id_conflict', async () => {
      const a = await world();
      const t: TransferInput = { id: `${a.tag}:dl`, debit: a.wallet, credit: a.store, amount: 30, reason: 'download' };
      await ledger.apply([t]);
      for (const altered of [{ ...t, amount: 31 }, { ...t, reason: 'upload' }, { ...t, ref: 'x' }, { ...t, credit: a.revenue }, { ...t, kind: 'pending' as const }]) {
        const [r] = await refused([altered]);
        assert.equal(r.code, 'transfer_id_conflict');
        assert.equal(r.message !== undefined, true);
      }
    });

    test('malformed transfers are refused with their code and leave nothing', async () => {
      const a = await world();
      const base = { debit: a.wallet, credit: a.store, reason: 'download' };
      for (const amount of [0, -1, 1.5, Number.NaN, 2 ** 53, '5' as unknown as number]) {
        assert.deepEqual(codes(await refused([{ ...base, id: `${a.tag}:bad`, amount }])), ['amount_invalid'], String(amount));
      }
      assert.deepEqual(codes(await refused([{ ...base, id: `${a.tag}:same`, credit: a.wallet, amount: 1 }])), ['same_account']);
      assert.deepEqual(codes(await refused([{ ...base, id: `${a.tag}:nf`, credit: 'store:nobody', amount: 1 }])), ['account_not_found']);
      assert.deepEqual(codes(await refused([{ ...base, id: `${a.tag}:nf2`, debit: 'wallet:nobody', amount: 1 }])), ['account_not_found']);
      const invalid: TransferInput[] = [
        { ...base, id: '', amount: 1 },
        { ...base, id: `${a.tag}:r`, amount: 1, reason: '' },
        { ...base, id: `${a.tag}:k`, amount: 1, kind: 'refund' as 'normal' },
        { ...base, id: `${a.tag}:to`, amount: 1, timeoutMs: 1000 }, // a timeout is for pending transfers only
        { ...base, id: `${a.tag}:to2`, amount: 1, kind: 'pending', timeoutMs: -5 },
        { ...base, id: `${a.tag}:pid`, amount: 1, pendingId: 'x' } as TransferInput,
        { id: `${a.tag}:nopid`, kind: 'post', reason: 'play' } as TransferInput,
      ];
      for (const t of invalid) assert.deepEqual(codes(await refused([t])), ['transfer_invalid'], JSON.stringify(t));
      assert.equal(transferError({ id: 'x', status: 'failed', code: 'account_not_found' }).status, 404);
      assert.equal(transferError({ id: 'x', status: 'failed', code: 'insufficient_balance' }).code, 'insufficient_balance');
    });

    test('a no-overdraft account never pays more than it has, pending debits included: insufficient_balance', async () => {
      const a = await world(100);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:big`, debit: a.wallet, credit: a.store, amount: 101, reason: 'download' }])), ['insufficient_balance']);
      assert.deepEqual(codes(await ledger.apply([{ id: `${a.tag}:hold`, kind: 'pending', debit: a.wallet, credit: a.store, amount: 60, reason: 'reservation' }])), ['created']);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:dl`, debit: a.wallet, credit: a.store, amount: 41, reason: 'download' }])), ['insufficient_balance']);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:hold2`, kind: 'pending', debit: a.wallet, credit: a.store, amount: 41, reason: 'reservation' }])), ['insufficient_balance']);
      assert.deepEqual(codes(await ledger.apply([{ id: `${a.tag}:dl`, debit: a.wallet, credit: a.store, amount: 40, reason: 'download' }])), ['created']);
      assert.deepEqual(await ledger.balance(a.wallet), { posted: 60, pending: -60, available: 0 });
      // An account without the flag (the platform's) may go below zero.
      assert.deepEqual(codes(await ledger.apply([{ id: `${a.tag}:rf`, debit: a.revenue, credit: a.wallet, amount: 5, reason: 'refund' }])), ['created']);
      assert.equal((await ledger.balance(a.revenue)).posted, -5);
    });

    test('transfers outside a chain are independent: one failing does not stop the others', async () => {
      const a = await world(50);
      const rs = await ledger.apply([
        { id: `${a.tag}:1`, debit: a.wallet, credit: a.store, amount: 30, reason: 'download' },
        { id: `${a.tag}:2`, debit: a.wallet, credit: a.store, amount: 30, reason: 'download' },
        { id: `${a.tag}:3`, debit: a.wallet, credit: a.revenue, amount: 20, reason: 'fee' },
      ]);
      assert.deepEqual(codes(rs), ['created', 'insufficient_balance', 'created']);
      assert.equal((await ledger.balance(a.wallet)).posted, 0);
    });

    test('a linked chain succeeds as a whole and records its group (#4.1)', async () => {
      const a = await world();
      const chain: TransferInput[] = [
        { id: `${a.tag}:dl`, debit: a.wallet, credit: a.store, amount: 30, reason: 'download', linked: true, ref: 'r1' },
        { id: `${a.tag}:fee`, debit: a.store, credit: a.revenue, amount: 3, reason: 'fee', linked: true, ref: 'r1' },
        { id: `${a.tag}:roy`, debit: a.store, credit: a.revenue, amount: 2, reason: 'royalty', ref: 'r1' },
      ];
      assert.deepEqual(codes(await ledger.apply(chain)), ['created', 'created', 'created']);
      const groups = await handle.db.selectFrom('ledger_transfers').select(['id', 'linked_group']).where('ref', '=', 'r1').where('id', 'like', `${a.tag}:%`).orderBy('seq').execute();
      assert.deepEqual(groups.map((g) => g.linked_group), [`${a.tag}:dl`, `${a.tag}:dl`, `${a.tag}:dl`]);
      assert.equal((await ledger.balance(a.store)).posted, 25);
      // Retrying the whole chain: every member exists, nothing moves.
      assert.deepEqual(codes(await refused(chain)), ['exists', 'exists', 'exists']);
    });

    test('one failure rolls the whole linked chain back; the others get linked_event_failed', async () => {
      const a = await world(100);
      const ok1: TransferInput = { id: `${a.tag}:a`, debit: a.wallet, credit: a.store, amount: 50, reason: 'download', linked: true };
      const ok2: TransferInput = { id: `${a.tag}:b`, debit: a.store, credit: a.revenue, amount: 5, reason: 'fee', linked: true };
      const tooMuch: TransferInput = { id: `${a.tag}:c`, debit: a.wallet, credit: a.revenue, amount: 51, reason: 'fee' };
      assert.deepEqual(codes(await refused([ok1, ok2, tooMuch])), ['linked_event_failed', 'linked_event_failed', 'insufficient_balance']);
      // Failing in the middle: the members after it fail too, unevaluated.
      const bad: TransferInput = { id: `${a.tag}:d`, debit: a.wallet, credit: 'store:nobody', amount: 1, reason: 'x', linked: true };
      assert.deepEqual(codes(await refused([ok1, bad, { ...ok2, linked: false }])), ['linked_event_failed', 'account_not_found', 'linked_event_failed']);
      // A later independent transfer sees the state without the failed chain's effects.
      const rs = await ledger.apply([
        { id: `${a.tag}:e`, debit: 'bank', credit: a.store, amount: 500, reason: 'topup', linked: true },
        { id: `${a.tag}:f`, debit: a.wallet, credit: a.store, amount: 1000, reason: 'download' },
        { id: `${a.tag}:g`, debit: a.store, credit: a.revenue, amount: 1, reason: 'fee' },
        { id: `${a.tag}:h`, debit: a.wallet, credit: a.store, amount: 10, reason: 'download' },
      ]);
      assert.deepEqual(codes(rs), ['linked_event_failed', 'insufficient_balance', 'insufficient_balance', 'created']);
      assert.deepEqual(await ledger.balance(a.store), { posted: 10, pending: 0, available: 10 });
      // The failed chain's IDs stay free.
      assert.deepEqual(codes(await ledger.apply([{ ...ok1, linked: false }])), ['created']);
    });

    test('a batch that ends inside a chain fails the chain: linked_event_chain_open', async () => {
      const a = await world();
      const rs = await refused([
        { id: `${a.tag}:a`, debit: a.wallet, credit: a.store, amount: 1, reason: 'download', linked: true },
        { id: `${a.tag}:b`, debit: a.wallet, credit: a.store, amount: 1, reason: 'download', linked: true },
      ]);
      assert.deepEqual(codes(rs), ['linked_event_failed', 'linked_event_chain_open']);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:c`, debit: a.wallet, credit: a.store, amount: 1, reason: 'download', linked: true }])), ['linked_event_chain_open']);
    });

    test('a pending hold, then a partial post: the rest is released (two-phase, #4.1)', async () => {
      const a = await world(100);
      const hold: TransferInput = { id: `${a.tag}:hold`, kind: 'pending', debit: a.wallet, credit: a.store, amount: 60, reason: 'reservation' };
      assert.deepEqual(codes(await ledger.apply([hold])), ['created']);
      assert.deepEqual(await ledger.balance(a.wallet), { posted: 100, pending: -60, available: 40 });
      assert.deepEqual(await ledger.balance(a.store), { posted: 0, pending: 60, available: 0 });
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:over`, kind: 'post', pendingId: hold.id, amount: 61, reason: 'play' }])), ['post_amount_exceeds_pending']);
      assert.deepEqual(codes(await ledger.apply([{ id: `${a.tag}:post`, kind: 'post', pendingId: hold.id, amount: 45, reason: 'play' }])), ['created']);
      assert.deepEqual(await ledger.balance(a.wallet), { posted: 55, pending: 0, available: 55 });
      assert.deepEqual(await ledger.balance(a.store), { posted: 45, pending: 0, available: 45 });
      const post = await handle.db.selectFrom('ledger_transfers').selectAll().where('id', '=', `${a.tag}:post`).executeTakeFirstOrThrow();
      assert.deepEqual([post.debit_account_id, post.credit_account_id, post.amount, post.pending_id], [a.wallet, a.store, 45, hold.id]);
      // Resolved at most once.
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:post2`, kind: 'post', pendingId: hold.id, reason: 'play' }])), ['pending_already_resolved']);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:void`, kind: 'void', pendingId: hold.id, reason: 'refund' }])), ['pending_already_resolved']);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:post`, kind: 'post', pendingId: hold.id, amount: 45, reason: 'play' }])), ['exists']);
    });

    test('a post without amount posts all of it; pending and post may share a batch', async () => {
      const a = await world(100);
      const rs = await ledger.apply([
        { id: `${a.tag}:hold`, kind: 'pending', debit: a.wallet, credit: a.store, amount: 70, reason: 'reservation' },
        { id: `${a.tag}:post`, kind: 'post', pendingId: `${a.tag}:hold`, debit: a.wallet, credit: a.store, reason: 'play' },
      ]);
      assert.deepEqual(codes(rs), ['created', 'created']);
      assert.deepEqual(await ledger.balance(a.wallet), { posted: 30, pending: 0, available: 30 });
    });

    test('a void releases the hold; resolving refusals: not found, mismatch, already resolved', async () => {
      const a = await world(100);
      const hold: TransferInput = { id: `${a.tag}:hold`, kind: 'pending', debit: a.wallet, credit: a.store, amount: 60, reason: 'reservation' };
      await ledger.apply([hold, { id: `${a.tag}:plain`, debit: a.wallet, credit: a.store, amount: 1, reason: 'download' }]);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:x1`, kind: 'post', pendingId: `${a.tag}:nope`, reason: 'play' }])), ['pending_not_found']);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:x2`, kind: 'void', pendingId: `${a.tag}:plain`, reason: 'play' }])), ['pending_not_found']);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:x3`, kind: 'post', pendingId: hold.id, credit: a.revenue, reason: 'play' }])), ['pending_mismatch']);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:x4`, kind: 'void', pendingId: hold.id, amount: 59, reason: 'refund' }])), ['pending_mismatch']);
      assert.deepEqual(codes(await ledger.apply([{ id: `${a.tag}:void`, kind: 'void', pendingId: hold.id, debit: a.wallet, amount: 60, reason: 'refund' }])), ['created']);
      assert.deepEqual(await ledger.balance(a.wallet), { posted: 99, pending: 0, available: 99 });
      assert.deepEqual(await ledger.balance(a.store), { posted: 1, pending: 0, available: 1 });
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:post`, kind: 'post', pendingId: hold.id, reason: 'play' }])), ['pending_already_resolved']);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:void2`, kind: 'void', pendingId: hold.id, reason: 'refund' }])), ['pending_already_resolved']);
    });

    test('a hold expires at its timeout: post refused, expireHolds voids it (ManualClock, #4.1)', async () => {
      await ledger.expireHolds(); // leftovers of earlier tests must not count below
      const a = await world(100);
      const hold: TransferInput = { id: `${a.tag}:hold`, kind: 'pending', debit: a.wallet, credit: a.store, amount: 60, reason: 'reservation', timeoutMs: 1000 };
      await ledger.apply([hold]);
      clock.advance(999);
      assert.equal(await ledger.expireHolds(), 0);
      clock.advance(1);
      // Due but not yet swept: refused all the same.
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:post`, kind: 'post', pendingId: hold.id, reason: 'play' }])), ['pending_expired']);
      assert.equal(await ledger.expireHolds(), 1);
      assert.equal(await ledger.expireHolds(), 0);
      assert.deepEqual(await ledger.balance(a.wallet), { posted: 100, pending: 0, available: 100 });
      const expiry = await handle.db.selectFrom('ledger_transfers').selectAll().where('id', '=', expiryId(hold.id)).executeTakeFirstOrThrow();
      assert.deepEqual([expiry.kind, expiry.reason, expiry.pending_id, expiry.amount], ['void', 'expired', hold.id, 60]);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:post`, kind: 'post', pendingId: hold.id, reason: 'play' }])), ['pending_expired']);
      assert.deepEqual(codes(await refused([{ id: `${a.tag}:void`, kind: 'void', pendingId: hold.id, reason: 'refund' }])), ['pending_expired']);
      // Without a timeout a hold never expires.
      await ledger.apply([{ ...hold, id: `${a.tag}:forever`, timeoutMs: undefined }]);
      clock.advance(365 * 86_400_000);
      assert.equal(await ledger.expireHolds(), 0);
      assert.equal((await ledger.balance(a.wallet)).available, 40);
    });

    test('history: newest first, signed amounts, balance after, counterpart; paged with before', async () => {
      const a = await world(100);
      const ref = `a,"b"{NULL}\\ ü`; // survives the array binding of the batched insert
      await ledger.apply([
        { id: `${a.tag}:dl`, debit: a.wallet, credit: a.store, amount: 30, reason: 'download', contentId: 'c9', ref, linked: true },
        { id: `${a.tag}:fee`, debit: a.wallet, credit: a.revenue, amount: 5, reason: 'fee', contentId: 'c9', ref },
      ]);
      await ledger.apply([{ id: `${a.tag}:hold`, kind: 'pending', debit: a.wallet, credit: a.store, amount: 10, reason: 'reservation' }]);
      const h = await ledger.history(a.wallet, { limit: 10 });
      assert.deepEqual(
        h.map((e) => [e.id, e.amount, e.balanceAfter, e.counterpart, e.reason, e.kind]),
        [
          [`${a.tag}:hold`, -10, 65, a.store, 'reservation', 'pending'],
          [`${a.tag}:fee`, -5, 65, a.revenue, 'fee', 'normal'],
          [`${a.tag}:dl`, -30, 70, a.store, 'download', 'normal'],
          [`${a.tag}:fund`, 100, 100, 'bank', 'topup', 'normal'],
        ],
      );
      assert.equal(h[1].ref, ref);
      assert.equal(h[1].contentId, 'c9');
      assert.equal(h[0].at, new Date(clock.now()).toISOString());
      const store = await ledger.history(a.store, { limit: 10 });
      assert.deepEqual(store.map((e) => [e.amount, e.balanceAfter, e.counterpart]), [[10, 30, a.wallet], [30, 30, a.wallet]]);
      const page1 = await ledger.history(a.wallet, { limit: 2 });
      const page2 = await ledger.history(a.wallet, { limit: 2, before: page1[1].id });
      assert.deepEqual([...page1, ...page2].map((e) => e.id), h.map((e) => e.id));
      assert.deepEqual(await ledger.history(a.wallet, { limit: 2, before: h[3].id }), []);
      await assert.rejects(ledger.history(a.wallet, { limit: 2, before: 'nope' }), (e) => e instanceof AppError && e.code === 'invalid_cursor');
      await assert.rejects(ledger.history(a.wallet, { limit: 0 }), (e) => e instanceof AppError && e.code === 'invalid_limit');
      await assert.rejects(ledger.balance('wallet:nobody'), (e) => e instanceof AppError && e.code === 'account_not_found' && e.status === 404);
    });

    test('ensureAccount is idempotent and leaves an existing account as it is', async () => {
      const a = await world(10);
      await ledger.ensureAccount({ id: a.wallet, kind: 'other', noOverdraft: false });
      const row = await handle.db.selectFrom('ledger_accounts').selectAll().where('id', '=', a.wallet).executeTakeFirstOrThrow();
      assert.deepEqual([row.kind, row.no_overdraft, row.credits_posted], ['wallet', true, 10]);
    });

    test('checkConservation notices an account that disagrees with its transfers', async () => {
      const a = await world(10);
      assert.equal((await ledger.checkConservation()).ok, true);
      await sql`update ledger_accounts set credits_posted = credits_posted + 1 where id = ${a.revenue}`.execute(handle.db);
      const c = await ledger.checkConservation();
      assert.equal(c.ok, false);
      assert.equal(c.creditsPosted, c.debitsPosted + 1);
      assert.deepEqual(c.mismatched, [a.revenue]);
      // Both columns moved together keep the sums equal, but not the per-account check.
      await sql`update ledger_accounts set debits_posted = debits_posted + 1 where id = ${a.revenue}`.execute(handle.db);
      const d = await ledger.checkConservation();
      assert.deepEqual([d.ok, d.debitsPosted === d.creditsPosted, d.mismatched], [false, true, [a.revenue]]);
      await sql`update ledger_accounts set credits_posted = credits_posted - 1, debits_posted = debits_posted - 1 where id = ${a.revenue}`.execute(handle.db);
      assert.equal((await ledger.checkConservation()).ok, true);
    });

    test('the table refuses an overdrawn no-overdraft account even behind the ledger’s back', async () => {
      const a = await world(10);
      await assert.rejects(sql`update ledger_accounts set debits_posted = debits_posted + 11 where id = ${a.wallet}`.execute(handle.db), /ledger_accounts_no_overdraft/);
      await assert.rejects(sql`update ledger_accounts set debits_pending = debits_pending + 11 where id = ${a.wallet}`.execute(handle.db), /ledger_accounts_no_overdraft/);
    });

    test('inside a caller transaction the ledger commits or rolls back with the caller’s rows', async () => {
      const a = await world(100);
      const t: TransferInput = { id: `${a.tag}:dl`, debit: a.wallet, credit: a.store, amount: 30, reason: 'download' };
      const before = await snapshot();
      await assert.rejects(
        handle.db.transaction().execute(async (trx) => {
          assert.deepEqual(codes(await ledger.apply([t], { trx })), ['created']);
          throw new Error('caller rolls back');
        }),
        /caller rolls back/,
      );
      assert.deepEqual(await snapshot(), before);
      await handle.db.transaction().execute(async (trx) => {
        assert.deepEqual(codes(await ledger.apply([t], { trx })), ['created']);
        assert.deepEqual(codes(await ledger.apply([t], { trx })), ['exists']);
      });
      assert.equal((await ledger.balance(a.wallet)).posted, 70);
    });

    // PostgreSQL: two connections, and the first commits only once the second's insert is seen
    // waiting on its uncommitted key (pg_locks) — the race happens every run, whatever the
    // machine's speed. PGlite is one session: the second transaction runs after the first has
    // committed and finds its row (the ledger's ordinary "exists elsewhere" path, no race).
    test(`losing an ID race inside a caller transaction leaves that transaction usable (${engine.name === 'postgres' ? 'concurrent connections' : 'PGlite: one session, no race'})`, async () => {
      const a = await world(0);
      const b = await world(0);
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let applied!: () => void;
      const firstApplied = new Promise<void>((r) => (applied = r));
      const first = handle.db.transaction().execute(async (trx) => {
        const rs = await ledger.apply([{ id: `${a.tag}:x`, debit: a.revenue, credit: a.store, amount: 1, reason: 'topup' }], { trx });
        applied();
        await gate;
        return rs;
      });
      await firstApplied;
      let secondPid: number | null = null;
      // Disjoint accounts, so no common lock: on PostgreSQL the second insert waits on the
      // first's uncommitted key, then fails on it; the ledger rolls back to its savepoint
      // and looks again.
      const second = handle.db.transaction().execute(async (trx) => {
        if (engine.name === 'postgres') secondPid = (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)).rows[0]!.pid;
        const rs = await ledger.apply([{ id: `${a.tag}:x`, debit: b.revenue, credit: b.store, amount: 1, reason: 'topup' }], { trx });
        const more = await ledger.apply([{ id: `${a.tag}:y`, debit: b.revenue, credit: b.store, amount: 2, reason: 'topup' }], { trx });
        return [...rs, ...more];
      });
      if (engine.name === 'postgres') {
        const waiting = async () => secondPid !== null && (await sql`select 1 from pg_locks where pid = ${secondPid} and not granted`.execute(handle.db)).rows.length > 0;
        await waitFor(waiting, 'the second transaction to wait on the first one’s uncommitted key', 10_000, 5);
      }
      release();
      assert.deepEqual(codes(await first), ['created']);
      assert.deepEqual(codes(await second), ['transfer_id_conflict', 'created']);
      assert.equal((await ledger.balance(b.store)).posted, 2);
      assert.equal((await ledger.checkConservation()).ok, true);
    });

    test('a large batch is applied whole, in order', async () => {
      const a = await world(5000);
      const batch: TransferInput[] = Array.from({ length: 1500 }, (_, i) => ({ id: `${a.tag}:${i}`, debit: a.wallet, credit: a.store, amount: 4, reason: 'download' }));
      const rs = await ledger.apply(batch);
      assert.equal(rs.filter((r) => r.status === 'created').length, 1250);
      assert.deepEqual(codes(rs.slice(1249, 1251)), ['created', 'insufficient_balance']);
      assert.deepEqual(await ledger.balance(a.wallet), { posted: 0, pending: 0, available: 0 });
      const [last] = await ledger.history(a.store, { limit: 1 });
      assert.deepEqual([last.id, last.balanceAfter], [`${a.tag}:1249`, 5000]);
      assert.equal((await ledger.checkConservation()).ok, true);
    });

    test('concurrent batches: a wallet drained by 20 at once never goes negative, each new ID is created once', async () => {
      const a = await world(100);
      // 20 concurrent withdrawals of 7 from 100: exactly 14 fit.
      const drains = await Promise.all(
        Array.from({ length: 20 }, (_, i) => ledger.apply([{ id: `${a.tag}:w${i}`, debit: a.wallet, credit: a.store, amount: 7, reason: 'download' }])),
      );
      const flat = drains.flat();
      assert.equal(flat.filter((r) => r.status === 'created').length, 14);
      assert.equal(flat.filter((r) => r.code === 'insufficient_balance').length, 6);
      assert.deepEqual(await ledger.balance(a.wallet), { posted: 2, pending: 0, available: 2 });

      // The same new ID ten times at once: created once, "exists" nine times.
      const same: TransferInput = { id: `${a.tag}:once`, debit: 'bank', credit: a.store, amount: 1, reason: 'topup' };
      const once = (await Promise.all(Array.from({ length: 10 }, () => ledger.apply([same])))).flat();
      assert.deepEqual(once.map((r) => r.status).sort(), ['created', ...Array(9).fill('exists')]);

      // The same new ID on disjoint accounts (no common lock): the loser meets the
      // primary key, retries, and reports the conflict.
      const b = await world(0);
      const race = await Promise.all([
        ledger.apply([{ id: `${a.tag}:race`, debit: 'bank', credit: a.revenue, amount: 1, reason: 'topup' }]),
        ledger.apply([{ id: `${a.tag}:race`, debit: b.revenue, credit: b.store, amount: 1, reason: 'topup' }]),
      ]);
      assert.deepEqual(race.flat().map((r) => r.code ?? r.status).sort(), ['created', 'transfer_id_conflict']);

      // Two posts of one hold under different IDs: one wins.
      await ledger.apply([{ id: `${a.tag}:hold`, kind: 'pending', debit: 'bank', credit: a.store, amount: 9, reason: 'reservation' }]);
      const posts = await Promise.all(
        Array.from({ length: 5 }, (_, i) => ledger.apply([{ id: `${a.tag}:post${i}`, kind: 'post', pendingId: `${a.tag}:hold`, reason: 'play' }])),
      );
      assert.deepEqual(posts.flat().map((r) => r.code ?? r.status).sort(), ['created', ...Array(4).fill('pending_already_resolved')]);
      assert.equal((await ledger.checkConservation()).ok, true);
    });
  });
}
