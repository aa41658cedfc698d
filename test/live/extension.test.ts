import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { walletAccount } from '../../src/ledger/accounts.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// S3.13 through the API on both engines: the extension is offered in the last ten minutes if
// the next slot is free, accepting it books and charges the extra slots (once, whatever the
// retries), and the database's exclusion constraint decides a race with a booking of that slot.

const M = 60_000;
const T0 = Date.UTC(2026, 5, 15, 8, 3);
const S = Date.UTC(2026, 5, 15, 12, 0); // today: reconfirmed before the window opens

for (const engine of testEngines()) {
  describe(`live extension (${engine.name})`, () => {
    let o: TestOrigin;
    let channelId: string;
    let n = 0;

    before(async () => {
      o = await startTestOrigin({ engine, now: T0, config: { signupCredit: 0 } });
      const op = (await o.userWithRoles(['operator'])).token;
      const ch = await o.call('POST', '/live/channels', { token: op, json: { name: 'Ext', capacity: 10, bitrateKbps: 1000, tariffPerSlot: 300 } });
      assert.equal(ch.status, 201, JSON.stringify(ch.body));
      channelId = ch.body.id;
    });
    after(() => o.close());

    async function premium(funds: number) {
      const u = await o.userWithRoles(['member', 'premium']);
      await o.call('PUT', '/me/contact', { token: u.token, json: { email: `${u.username}@example.org` } });
      if (funds > 0) await o.fund(u.userId, funds, `fund-${u.userId}`);
      return u;
    }
    async function booked(u: { token: string }, start: number, slots: number, confirm = true) {
      const r = await o.call('POST', '/live/bookings', {
        token: u.token,
        json: { channelId, start: new Date(start).toISOString(), end: new Date(start + slots * 10 * M).toISOString(), openLevel: 'public', title: `Show ${++n}`, genre: 'talk' },
      });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      if (confirm) assert.equal((await o.call('POST', '/live/reconfirm', { token: u.token, json: { reservationId: r.body.reservationId } })).status, 200);
      return r.body.booking.id as string;
    }
    /** A snapshot once the deadline job has done what the clock's last move made due (it runs beside the test). */
    async function settled() {
      await o.live.bookings.sweep();
      for (;;) {
        const a = await snapshotTables(o.db.db);
        await new Promise((r) => setTimeout(r, 150));
        const b = await snapshotTables(o.db.db);
        if (JSON.stringify(a) === JSON.stringify(b)) return b;
      }
    }
    const balance = async (userId: string) => (await o.ledger.balance(walletAccount(userId).id)).posted;

    test('S3.13: offered only in the last ten minutes and if the next slot is free; accepting charges the slots once', async () => {
      const a = await premium(10_000);
      const other = await premium(10_000);
      const id = await booked(a, S, 2); // S..S+20
      await booked(other, S + 30 * M, 1); // one free slot between
      const paid = await balance(a.userId);

      o.clock.set(S + 5 * M);
      await settled();
      const early = await o.call('GET', `/live/bookings/${id}/extension`, { token: a.token });
      assert.equal(early.status, 200);
      assert.equal(early.body.offered, false);
      assert.equal(early.body.code, 'not_yet');
      assert.equal(early.body.opensAt, new Date(S + 10 * M).toISOString());
      let snap = await snapshotTables(o.db.db);
      const refused = await o.call('POST', `/live/bookings/${id}/extend`, { token: a.token, json: {} });
      assert.equal(refused.status, 409);
      assert.equal(refused.body.error.code, 'extension_not_offered');
      assert.match(refused.body.error.message, /ten minutes before/);
      assert.deepEqual(await snapshotTables(o.db.db), snap, 'a refused extension changes nothing');

      o.clock.set(S + 12 * M);
      await settled();
      const offer = (await o.call('GET', `/live/bookings/${id}/extension`, { token: a.token })).body;
      assert.equal(offer.offered, true, JSON.stringify(offer));
      assert.equal(offer.slots, 1, 'one slot is free before the next booking');
      assert.equal(offer.until, new Date(S + 30 * M).toISOString());
      assert.equal(offer.chargePerSlot, 300);

      snap = await snapshotTables(o.db.db);
      const tooLong = await o.call('POST', `/live/bookings/${id}/extend`, { token: a.token, json: { slots: 2 } });
      assert.equal(tooLong.status, 409);
      assert.equal(tooLong.body.error.code, 'extension_too_long');
      assert.deepEqual(await snapshotTables(o.db.db), snap);
      const stranger = await o.call('POST', `/live/bookings/${id}/extend`, { token: other.token, json: { until: offer.until } });
      assert.equal(stranger.status, 404);
      assert.equal(stranger.body.error.code, 'unknown_booking');
      assert.deepEqual(await snapshotTables(o.db.db), snap);

      const ok = await o.call('POST', `/live/bookings/${id}/extend`, { token: a.token, json: { until: offer.until } });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal(ok.body.charged, 300);
      assert.equal(ok.body.already, false);
      assert.equal(ok.body.booking.end, offer.until);
      assert.equal(ok.body.booking.slots, 3);
      assert.equal(ok.body.booking.charge, 900);
      assert.equal(ok.body.booking.connectableWindow.to, new Date(S + 33 * M).toISOString(), 'the window moves with the end');
      assert.ok(ok.body.booking.history.some((e: { event: string; detail: string }) => e.event === 'extended' && /charged 300/.test(e.detail)));
      assert.equal(await balance(a.userId), paid - 300);
      // A retry (the answer was lost) changes and charges nothing.
      const again = await o.call('POST', `/live/bookings/${id}/extend`, { token: a.token, json: { until: offer.until } });
      assert.equal(again.status, 200);
      assert.equal(again.body.already, true);
      assert.equal(again.body.charged, 0);
      assert.equal(await balance(a.userId), paid - 300);

      // Now the next slot is the other member's.
      o.clock.set(S + 22 * M);
      const taken = await o.call('POST', `/live/bookings/${id}/extend`, { token: a.token, json: {} });
      assert.equal(taken.status, 409);
      assert.equal(taken.body.error.code, 'extension_not_offered');
      assert.equal(taken.body.error.details.code, 'next_slot_taken');
    });

    test('S3.13: without the money the extension is refused and nothing changes', async () => {
      const poor = await premium(700); // two slots reconfirmed: 600, 100 left
      const id = await booked(poor, S + 60 * M, 2);
      o.clock.set(S + 72 * M);
      const snap = await settled();
      const r = await o.call('POST', `/live/bookings/${id}/extend`, { token: poor.token, json: {} });
      assert.equal(r.status, 409);
      assert.equal(r.body.error.code, 'insufficient_balance');
      assert.equal(r.body.error.details.needed, 300);
      assert.equal(r.body.error.details.available, 100);
      assert.deepEqual(await snapshotTables(o.db.db), snap);
    });

    test('S3.13: an extension and a booking of the same next slot at once: exactly one gets it (the exclusion constraint)', async () => {
      for (let i = 0; i < 4; i++) {
        const start = S + (120 + i * 40) * M;
        const a = await premium(10_000);
        const b = await premium(10_000);
        const id = await booked(a, start, 1);
        // Booking needs the start more than 5 minutes away: the race is at start + 1 min of a program 10 min long.
        o.clock.set(start - 6 * M);
        const offer = (await o.call('GET', `/live/bookings/${id}/extension`, { token: a.token })).body;
        assert.equal(offer.offered, false, 'not yet');
        o.clock.set(start + 1 * M);
        const next = new Date(start + 10 * M).toISOString();
        const [ext, book] = await Promise.all([
          o.call('POST', `/live/bookings/${id}/extend`, { token: a.token, json: { until: new Date(start + 20 * M).toISOString() } }),
          o.call('POST', '/live/bookings', {
            token: b.token,
            json: { channelId, start: next, end: new Date(start + 20 * M).toISOString(), openLevel: 'public', title: `Race ${i}`, genre: 'talk' },
          }),
        ]);
        const won = [ext.status === 200, book.status === 201].filter(Boolean).length;
        assert.equal(won, 1, `extension ${ext.status} ${ext.body?.error?.code ?? ''}; booking ${book.status} ${book.body?.error?.code ?? ''}`);
        const loser = ext.status === 200 ? book : ext;
        assert.equal(loser.status, 409);
        assert.ok(['slot_taken', 'extension_not_offered'].includes(loser.body.error.code), JSON.stringify(loser.body));
      }
    });
  });
}
