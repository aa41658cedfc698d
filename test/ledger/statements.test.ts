import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { PLATFORM_PAYOUTS, PLATFORM_REVENUE, royaltyAccount } from '../../src/ledger/accounts.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// Payouts and payout statements (S1.11 "the platform settles with publishers";
// docs/ledger.md "Payouts and statements"). Royalties are put in with ledger.apply
// directly, at chosen times of the manual clock, so the test does not depend on the
// settlement module.

const at = (iso: string) => Date.parse(iso);
const FEB = '2026-02-01T00:00:00.000Z';
const MAR = '2026-03-01T00:00:00.000Z';
const APR = '2026-04-01T00:00:00.000Z';

for (const engine of testEngines()) {
  describe(`payouts and statements (${engine.name})`, () => {
    let origin: TestOrigin;
    let ledger: Ledger;
    let publisher: { token: string; userId: string };
    let rival: { token: string; userId: string };
    let operator: { token: string; userId: string };
    let song: string;
    const unlisted = 'b'.repeat(64); // a content ID with no catalog row: no title
    let n = 0;

    before(async () => {
      origin = await startTestOrigin({ engine });
      ledger = new Ledger({ db: origin.db.db, clock: origin.clock });
      publisher = await origin.userWithRoles(['publisher']);
      rival = await origin.userWithRoles(['publisher']);
      operator = await origin.userWithRoles(['operator']);
      const published = await origin.call('POST', '/contents?title=Song&genre=music&price=100', {
        token: publisher.token,
        body: randomBytes(1000),
        headers: { 'content-type': 'application/octet-stream' },
      });
      assert.equal(published.status, 201, JSON.stringify(published.body));
      song = published.body.id;
      await ledger.ensureAccounts([PLATFORM_REVENUE, royaltyAccount(publisher.userId), royaltyAccount(rival.userId)]);
    });
    after(() => origin?.close());

    /** A royalty credited to the publisher at `when` (what settlement will write). */
    async function royalty(when: string, amount: number, contentId: string, to = publisher.userId) {
      origin.clock.set(at(when));
      const [r] = await ledger.apply([{ id: `test-royalty:${++n}`, debit: PLATFORM_REVENUE.id, credit: royaltyAccount(to).id, amount, reason: 'royalty', contentId, ref: `rcpt${n}` }]);
      assert.equal(r.status, 'created');
    }
    function payout(body: Record<string, unknown>, token = operator.token) {
      return origin.call('POST', '/payouts', { token, json: body });
    }
    function statement(id: string, from: string, to: string, token = publisher.token) {
      return origin.call('GET', `/publishers/${id}/statement?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`, { token });
    }
    async function snapshot() {
      const accounts = await origin.db.db.selectFrom('ledger_accounts').selectAll().orderBy('id').execute();
      const transfers = await sql<{ n: number }>`select count(*)::int8 as n from ledger_transfers`.execute(origin.db.db);
      return { accounts, transfers: transfers.rows[0].n };
    }
    async function refused(call: () => Promise<{ status: number; body: any }>, status: number, code: string) {
      const before = await snapshot();
      const res = await call();
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.equal(res.body.error.code, code);
      assert.deepEqual(await snapshot(), before);
      return res;
    }

    test('royalties and payouts; a statement covers exactly [from, to) and opening + royalties − payouts = closing', async () => {
      await royalty('2026-01-15T10:00:00Z', 100, song); // before the period: in the opening balance
      await royalty(FEB, 30, song); // at `from`: included
      await royalty('2026-02-02T08:00:00Z', 20, song);
      await royalty('2026-02-03T08:00:00Z', 50, unlisted);
      await royalty('2026-02-03T09:00:00Z', 999, song, rival.userId); // someone else's
      origin.clock.set(at('2026-02-10T12:00:00Z'));
      const paid = await payout({ id: 'feb-1', publisherId: publisher.userId, amount: 60, reference: 'SEPA 2026-02-10 #1' });
      assert.equal(paid.status, 200, JSON.stringify(paid.body));
      assert.deepEqual(paid.body, { transferId: 'payout:feb-1', created: true, publisherId: publisher.userId, amount: 60, reference: 'SEPA 2026-02-10 #1', balance: 140 });
      assert.equal((await ledger.balance(PLATFORM_PAYOUTS.id)).posted >= 60, true);
      await royalty(MAR, 1000, song); // at `to`: excluded, it opens March
      origin.clock.set(at('2026-03-05T00:00:00Z'));
      assert.equal((await payout({ id: 'mar-1', publisherId: publisher.userId, amount: 500, reference: 'SEPA 2026-03-05' })).status, 200);

      const res = await statement(publisher.userId, FEB, MAR);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const s = res.body;
      assert.equal(s.publisherId, publisher.userId);
      assert.equal(s.from, FEB);
      assert.equal(s.to, MAR);
      assert.equal(s.openingBalance, 100);
      assert.deepEqual(s.royalties, {
        total: 100,
        transfers: 3,
        byContent: [
          { contentId: song, title: 'Song', transfers: 2, amount: 50, plays: { count: 0, amount: 0 } },
          { contentId: unlisted, title: null, transfers: 1, amount: 50, plays: { count: 0, amount: 0 } },
        ].sort((a, b) => b.amount - a.amount || a.contentId.localeCompare(b.contentId)),
      });
      assert.equal(s.payouts.total, 60);
      assert.deepEqual(
        s.payouts.items.map((p: any) => [p.id, p.amount, p.ref, p.at, p.counterpart]),
        [['payout:feb-1', -60, 'SEPA 2026-02-10 #1', '2026-02-10T12:00:00.000Z', PLATFORM_PAYOUTS.id]],
      );
      assert.deepEqual(s.other, { total: 0, items: [] });
      assert.equal(s.closingBalance, 140);
      assert.equal(s.openingBalance + s.royalties.total - s.payouts.total + s.other.total, s.closingBalance);
      // The statement is about the period, not about now: the account holds more today.
      assert.equal((await ledger.balance(royaltyAccount(publisher.userId).id)).posted, 640);

      // The next period opens where this one closed.
      const march = (await statement(publisher.userId, MAR, APR)).body;
      assert.equal(march.openingBalance, 140);
      assert.deepEqual([march.royalties.total, march.payouts.total, march.closingBalance], [1000, 500, 640]);
      assert.equal(march.openingBalance + march.royalties.total - march.payouts.total, march.closingBalance);

      // An operator sees the same statement.
      assert.deepEqual((await statement(publisher.userId, FEB, MAR, operator.token)).body, s);
    });

    test('S1.13: a play’s royalty is a royalty of its content in the statement, not an "other" movement', async () => {
      await royalty('2026-07-02T08:00:00Z', 40, song);
      origin.clock.set(at('2026-07-03T08:00:00Z'));
      // What the play service writes for the royalty leg of a play (src/ledger/plays.ts).
      const [r] = await ledger.apply([{ id: 'play:test-1:royalty', debit: PLATFORM_REVENUE.id, credit: royaltyAccount(publisher.userId).id, amount: 7, reason: 'play', contentId: song, ref: 'play:test-1' }]);
      assert.equal(r.status, 'created');
      const s = (await statement(publisher.userId, '2026-07-01T00:00:00.000Z', '2026-08-01T00:00:00.000Z')).body;
      assert.deepEqual(s.royalties, { total: 47, transfers: 2, byContent: [{ contentId: song, title: 'Song', transfers: 2, amount: 47, plays: { count: 1, amount: 7 } }] });
      assert.deepEqual(s.other, { total: 0, items: [] });
      assert.equal(s.openingBalance + s.royalties.total - s.payouts.total + s.other.total, s.closingBalance);
    });

    test('a payout is idempotent by its id; a different payout under the same id is refused', async () => {
      await royalty('2026-05-01T00:00:00Z', 300, song);
      const body = { id: 'may-1', publisherId: publisher.userId, amount: 100, reference: 'SEPA may' };
      const first = await payout(body);
      assert.equal(first.body.created, true);
      const before = await snapshot();
      const again = await payout(body);
      assert.equal(again.status, 200);
      assert.equal(again.body.created, false);
      assert.equal(again.body.balance, first.body.balance);
      assert.deepEqual(await snapshot(), before);
      await refused(() => payout({ ...body, amount: 101 }), 409, 'transfer_id_conflict');
    });

    test('payout refusals: more than the royalties, unknown publisher, bad input, not an operator; nothing changes', async () => {
      const balance = (await ledger.balance(royaltyAccount(publisher.userId).id)).posted;
      await refused(() => payout({ id: 'too-much', publisherId: publisher.userId, amount: balance + 1, reference: 'x' }), 409, 'insufficient_balance');
      await refused(() => payout({ id: 'nobody', publisherId: 'usr_nobody', amount: 1, reference: 'x' }), 404, 'unknown_user');
      for (const body of [
        { id: 'bad id!', publisherId: publisher.userId, amount: 1, reference: 'x' },
        { id: 'zero', publisherId: publisher.userId, amount: 0, reference: 'x' },
        { id: 'noref', publisherId: publisher.userId, amount: 1 },
      ]) {
        await refused(() => payout(body), 400, 'invalid_request');
      }
      await refused(() => payout({ id: 'self', publisherId: publisher.userId, amount: 1, reference: 'x' }, publisher.token), 403, 'forbidden');
    });

    test('statement access: the publisher itself or an operator; another publisher is refused', async () => {
      await refused(() => statement(publisher.userId, FEB, MAR, rival.token), 403, 'forbidden');
      const member = await origin.userWithRoles(['member']);
      await refused(() => statement(publisher.userId, FEB, MAR, member.token), 403, 'forbidden');
      await refused(() => origin.call('GET', `/publishers/${publisher.userId}/statement?from=${FEB}&to=${MAR}`), 401, 'unauthenticated');
      assert.equal((await statement(rival.userId, FEB, MAR, rival.token)).body.royalties.total, 999);
      await refused(() => statement('usr_nobody', FEB, MAR, operator.token), 404, 'unknown_user');
      await refused(() => statement(publisher.userId, MAR, FEB), 400, 'invalid_period');
      await refused(() => statement(publisher.userId, 'yesterday', MAR), 400, 'invalid_request');
    });

    test('a publisher with no royalties yet gets an empty statement', async () => {
      const fresh = await origin.userWithRoles(['publisher']);
      const s = (await statement(fresh.userId, FEB, MAR, fresh.token)).body;
      assert.deepEqual(
        [s.openingBalance, s.royalties.total, s.royalties.byContent, s.payouts.items, s.closingBalance],
        [0, 0, [], [], 0],
      );
      assert.equal((await ledger.checkConservation()).ok, true);
    });
  });
}
