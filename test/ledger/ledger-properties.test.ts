import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { sql } from 'kysely';
import { ManualClock } from '../../src/core/clock.ts';
import type { DbHandle } from '../../src/db/connection.ts';
import { Ledger, expiryId, type MoveInput, type ResolveInput, type TransferInput } from '../../src/ledger/ledger.ts';
import type { TransferKind } from '../../src/ledger/tables.ts';
import { testEngines } from '../helpers/db.ts';

// Properties of the ledger core (#4.1, docs/ledger.md) under random interleavings of
// transfers, holds, posts, voids, expiry, linked chains and retries (same and altered
// content). After every step: the database agrees with a plain in-memory model,
// conservation holds, no no-overdraft account is overdrawn, and a step that created
// nothing moved nothing (so a retry never changes balances).

interface Acc {
  noOverdraft: boolean;
  dp: number;
  cp: number;
  dpn: number;
  cpn: number;
}
interface Stored {
  content: string;
  kind: TransferKind;
  debit: string;
  credit: string;
  amount: number;
  timeoutAt: number | null;
}

/** The rules of docs/ledger.md, one transfer at a time; a failed chain restores a copy. */
class Model {
  accounts = new Map<string, Acc>();
  transfers = new Map<string, Stored>();
  /** pendingId → resolved by expiry? */
  resolved = new Map<string, boolean>();

  constructor(private readonly now: () => number) {}

  apply(batch: TransferInput[]): string[] {
    const out: string[] = [];
    for (let i = 0; i < batch.length; ) {
      let j = i;
      while (batch[j].linked && j < batch.length - 1) j++;
      const chain = batch.slice(i, j + 1);
      i = j + 1;
      if (chain[chain.length - 1].linked) {
        out.push(...chain.map((_, k) => (k === chain.length - 1 ? 'linked_event_chain_open' : 'linked_event_failed')));
        continue;
      }
      const saved = structuredClone({ a: this.accounts, t: this.transfers, r: this.resolved });
      const res: string[] = [];
      for (const t of chain) {
        res.push(this.one(t));
        if (!ok(res[res.length - 1])) break;
      }
      const failed = res.findIndex((r) => !ok(r));
      if (failed < 0) out.push(...res);
      else {
        [this.accounts, this.transfers, this.resolved] = [saved.a, saved.t, saved.r];
        out.push(...chain.map((_, k) => (k === failed ? res[k] : 'linked_event_failed')));
      }
    }
    return out;
  }

  private one(input: TransferInput): string {
    const content = JSON.stringify(input);
    if (input.kind === 'post' || input.kind === 'void') {
      const t = input as ResolveInput;
      if (t.amount !== undefined && !(Number.isSafeInteger(t.amount) && t.amount > 0)) return 'amount_invalid';
      const prior = this.transfers.get(t.id);
      if (prior) return prior.content === content ? 'exists' : 'transfer_id_conflict';
      const p = this.transfers.get(t.pendingId);
      if (!p || p.kind !== 'pending') return 'pending_not_found';
      if (this.resolved.has(t.pendingId)) return this.resolved.get(t.pendingId) ? 'pending_expired' : 'pending_already_resolved';
      if (p.timeoutAt !== null && p.timeoutAt <= this.now()) return 'pending_expired';
      const amount = t.kind === 'post' ? (t.amount ?? p.amount) : p.amount;
      if (amount > p.amount) return 'post_amount_exceeds_pending';
      this.settle(t.pendingId, p, t.kind === 'post' ? amount : 0, false);
      this.transfers.set(t.id, { content, kind: t.kind, debit: p.debit, credit: p.credit, amount, timeoutAt: null });
      return 'created';
    }
    const t = input as MoveInput;
    if (!(Number.isSafeInteger(t.amount) && t.amount > 0)) return 'amount_invalid';
    if (t.debit === t.credit) return 'same_account';
    const prior = this.transfers.get(t.id);
    if (prior) return prior.content === content ? 'exists' : 'transfer_id_conflict';
    const d = this.accounts.get(t.debit);
    const c = this.accounts.get(t.credit);
    if (!d || !c) return 'account_not_found';
    if (d.noOverdraft && d.dp + d.dpn + t.amount > d.cp) return 'insufficient_balance';
    if (t.kind === 'pending') {
      d.dpn += t.amount;
      c.cpn += t.amount;
    } else {
      d.dp += t.amount;
      c.cp += t.amount;
    }
    const timeoutAt = t.timeoutMs === undefined ? null : this.now() + t.timeoutMs;
    this.transfers.set(t.id, { content, kind: t.kind ?? 'normal', debit: t.debit, credit: t.credit, amount: t.amount, timeoutAt });
    return 'created';
  }

  /** Releases a hold, posting `posted` of it. */
  private settle(pendingId: string, p: Stored, posted: number, expiry: boolean) {
    const d = this.accounts.get(p.debit)!;
    const c = this.accounts.get(p.credit)!;
    d.dpn -= p.amount;
    c.cpn -= p.amount;
    d.dp += posted;
    c.cp += posted;
    this.resolved.set(pendingId, expiry);
  }

  expire(): number {
    let n = 0;
    for (const [id, p] of this.transfers) {
      if (p.kind === 'pending' && p.timeoutAt !== null && p.timeoutAt <= this.now() && !this.resolved.has(id)) {
        this.settle(id, p, 0, true);
        this.transfers.set(expiryId(id), { content: '', kind: 'void', debit: p.debit, credit: p.credit, amount: p.amount, timeoutAt: null });
        n++;
      }
    }
    return n;
  }
}

const ok = (r: string) => r === 'created' || r === 'exists';

// Abstract steps; the concrete transfers are built while running, from what was sent before.
const linked = fc.integer({ min: 0, max: 3 }).map((n) => n === 0);
// Indices into the run's accounts: 0 bank, 1–3 wallets (no overdraft), 4–5 platform, 6 does not exist.
// Money mostly flows bank → wallets → others, so that most transfers can succeed.
const debit = fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 5, arbitrary: fc.integer({ min: 1, max: 3 }) }, { weight: 1, arbitrary: fc.constantFrom(4, 5, 6) });
const credit = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 3 }) }, { weight: 2, arbitrary: fc.constantFrom(4, 5) }, { weight: 1, arbitrary: fc.constantFrom(0, 6) });
const move = fc.record({
  t: fc.constant('move' as const),
  kind: fc.constantFrom('normal' as const, 'pending' as const),
  debit,
  credit,
  amount: fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 1, max: 40 }) }, { weight: 1, arbitrary: fc.constantFrom(0, -3) }),
  timeoutMs: fc.option(fc.integer({ min: 500, max: 3000 }), { nil: undefined, freq: 3 }),
  linked,
});
const resolve = fc.record({
  t: fc.constant('resolve' as const),
  kind: fc.constantFrom('post' as const, 'void' as const),
  pending: fc.nat(),
  amount: fc.option(fc.integer({ min: 1, max: 45 }), { nil: undefined }),
  linked,
});
const retry = fc.record({ t: fc.constant('retry' as const), ref: fc.nat(), alter: fc.boolean() });
const step = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant('batch' as const), items: fc.array(fc.oneof({ weight: 4, arbitrary: move }, { weight: 2, arbitrary: resolve }, { weight: 2, arbitrary: retry }), { minLength: 1, maxLength: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 2500 }) }) },
  { weight: 2, arbitrary: fc.constant({ t: 'expire' as const }) },
);

for (const engine of testEngines()) {
  describe(`ledger properties (${engine.name})`, () => {
    let handle: DbHandle;
    let clock: ManualClock;
    let ledger: Ledger;
    let run = 0;

    before(async () => {
      handle = await engine.open();
      clock = new ManualClock(Date.UTC(2026, 0, 1));
      ledger = new Ledger({ db: handle.db, clock });
    });
    after(() => handle.close());

    async function totals(ids: string[]) {
      const rows = await handle.db.selectFrom('ledger_accounts').selectAll().where('id', 'in', ids).orderBy('id').execute();
      return Object.fromEntries(rows.map((r) => [r.id, { dp: r.debits_posted, cp: r.credits_posted, dpn: r.debits_pending, cpn: r.credits_pending }]));
    }

    test('random transfers, holds, chains, expiry and retries keep the books right', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 16 }), async (steps) => {
          const p = `p${++run}`;
          // Earlier runs' timed holds are all past due after a day: sweep them, so that
          // expireHolds' count below is this run's alone.
          clock.advance(86_400_000);
          await ledger.expireHolds();
          const model = new Model(() => clock.now());
          const names = [`${p}:bank`, `${p}:w0`, `${p}:w1`, `${p}:w2`, `${p}:rev`, `${p}:bank2`, `${p}:ghost`];
          for (const [i, id] of names.slice(0, 6).entries()) {
            const noOverdraft = i >= 1 && i <= 3; // the wallets
            await ledger.ensureAccount({ id, kind: noOverdraft ? 'wallet' : 'platform', noOverdraft });
            model.accounts.set(id, { noOverdraft, dp: 0, cp: 0, dpn: 0, cpn: 0 });
          }
          const real = names.slice(0, 6);
          const funding: TransferInput[] = [1, 2, 3].map((w) => ({ id: `${p}:fund${w}`, debit: names[0], credit: names[w], amount: 40, reason: 'topup' }));
          assert.deepEqual((await ledger.apply(funding)).map((r) => r.status), model.apply(funding));
          const sent: TransferInput[] = [];
          const pendings: string[] = []; // created pending transfers, to post or void
          let n = 0;

          for (const s of steps) {
            const before = await totals(real);
            let results: string[];
            if (s.t === 'advance') {
              clock.advance(s.ms);
              continue;
            } else if (s.t === 'expire') {
              assert.equal(await ledger.expireHolds(), model.expire());
              results = [];
            } else {
              const batch: TransferInput[] = [];
              for (const it of s.items) {
                const id = `${p}:${++n}`;
                if (it.t === 'move') {
                  const t: MoveInput = { id, kind: it.kind, debit: names[it.debit], credit: names[it.credit], amount: it.amount, reason: it.kind === 'pending' ? 'reservation' : 'download', linked: it.linked };
                  if (it.kind === 'pending' && it.timeoutMs !== undefined) t.timeoutMs = it.timeoutMs;
                  batch.push(t);
                } else if (it.t === 'resolve') {
                  const candidates = [...pendings, ...batch.filter((t) => t.kind === 'pending').map((t) => t.id)];
                  const pendingId = candidates.length === 0 || it.pending % 10 === 0 ? `${p}:nope` : candidates[it.pending % candidates.length];
                  const t: ResolveInput = { id, kind: it.kind, pendingId, reason: it.kind === 'post' ? 'play' : 'refund', linked: it.linked };
                  if (it.kind === 'post' && it.amount !== undefined) t.amount = it.amount;
                  batch.push(t);
                } else if (sent.length > 0) {
                  const original = sent[it.ref % sent.length];
                  batch.push(it.alter ? { ...original, reason: `${original.reason}+` } : original);
                }
              }
              if (batch.length === 0) continue;
              sent.push(...batch);
              const got = await ledger.apply(batch);
              assert.deepEqual(got.map((r) => r.id), batch.map((t) => t.id));
              results = got.map((r) => r.code ?? r.status);
              batch.forEach((t, i) => t.kind === 'pending' && results[i] === 'created' && pendings.push(t.id));
              assert.deepEqual(results, model.apply(batch), JSON.stringify(batch));
            }

            const after = await totals(real);
            const expected = Object.fromEntries(real.map((id) => { const a = model.accounts.get(id)!; return [id, { dp: a.dp, cp: a.cp, dpn: a.dpn, cpn: a.cpn }]; }));
            assert.deepEqual(after, expected);
            if (s.t === 'batch' && !results.includes('created')) assert.deepEqual(after, before, 'nothing created, nothing moved');
            const c = await ledger.checkConservation();
            assert.equal(c.ok, true, JSON.stringify(c));
            const overdrawn = await sql<{ n: number }>`select count(*)::int8 as n from ledger_accounts where no_overdraft and debits_posted + debits_pending > credits_posted`.execute(handle.db);
            assert.equal(overdrawn.rows[0].n, 0);
          }
        }),
        { numRuns: 40, includeErrorInReport: true },
      );
    });
  });
}
