import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { verifySettings } from '../../src/live/settings.ts';
import { walletAccount } from '../../src/ledger/accounts.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { waitFor } from '../helpers/wait.ts';

/** The tables whose rows differ between two snapshots (a readable failure). */
const changedTables = (a: Record<string, string[]>, b: Record<string, string[]>) =>
  Object.keys({ ...a, ...b }).filter((t) => JSON.stringify(a[t]) !== JSON.stringify(b[t]));

// S3.1–S3.8, S3.11, S3.17 through the API on both engines: the database refuses double
// booking under concurrency, each refusal leaves nothing behind, reconfirmation charges once and
// signs the settings, the deadline cancels once across a restart, Secret programs are never listed.

const M = 60_000;
const H = 60 * M;
const T0 = Date.UTC(2026, 5, 15, 8, 3); // a Monday morning; any fixed instant would do
const DAY1 = Date.UTC(2026, 5, 16); // tomorrow, midnight UTC

for (const engine of testEngines()) {
  describe(`live bookings (${engine.name})`, () => {
    let o: TestOrigin;
    let op: string;
    let channelId: string;
    let n = 0;

    before(async () => {
      o = await startTestOrigin({ engine, now: T0, config: { signupCredit: 0 } });
      op = (await o.userWithRoles(['operator'])).token;
      const ch = await o.call('POST', '/live/channels', { token: op, json: { name: 'Main', capacity: 50, bitrateKbps: 2500, tariffPerSlot: 300 } });
      assert.equal(ch.status, 201, JSON.stringify(ch.body));
      assert.equal(ch.body.slotMinutes, 10, 'S3.2: slots are 10 minutes unless set');
      channelId = ch.body.id;
    });
    after(() => o.close());

    /** A premium member with an e-mail address and `funds` in its wallet. */
    async function premium(funds = 100_000, roles = ['member', 'premium']) {
      const u = await o.userWithRoles(roles);
      const c = await o.call('PUT', '/me/contact', { token: u.token, json: { email: `${u.username}@example.org` } });
      assert.equal(c.status, 200, JSON.stringify(c.body));
      if (funds > 0) await o.fund(u.userId, funds, `fund-${u.userId}`);
      return u;
    }
    const req = (start: number, slots: number, extra: Record<string, unknown> = {}) => ({
      channelId,
      start: new Date(start).toISOString(),
      end: new Date(start + slots * 10 * M).toISOString(),
      openLevel: 'public',
      title: `Program ${++n}`,
      genre: 'music',
      outline: 'Live jazz',
      detail: 'A trio from the old town.',
      friends: ['ann@example.org', 'bob@example.org'],
      timeZone: 'Europe/Berlin',
      ...extra,
    });
    const outbox = async (ref: string) => {
      const r = await o.call('GET', `/mail/outbox?ref=${ref}&limit=100`, { token: op });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.items as { id: string; kind: string; to: string[]; subject: string }[];
    };
    const mailText = async (id: string) => (await o.call('GET', `/mail/outbox/${id}`, { token: op })).body;
    const balance = async (userId: string) => (await o.ledger.balance(walletAccount(userId).id)).posted;

    test('S3.5: 50 simultaneous overlapping bookings: exactly one wins, the rest get slot_taken; back-to-back both fit', async () => {
      const members = await Promise.all(Array.from({ length: 50 }, () => premium(0)));
      const base = DAY1 + 10 * H;
      // Every request covers the slot at `base`; each starts 0–2 slots earlier and lasts 1–4 slots past it.
      const results = await Promise.all(
        members.map((m, i) => o.call('POST', '/live/bookings', { token: m.token, json: req(base - (i % 3) * 10 * M, (i % 3) + 1 + (i % 4)) })),
      );
      const won = results.filter((r) => r.status === 201);
      const lost = results.filter((r) => r.status !== 201);
      assert.equal(won.length, 1, results.map((r) => `${r.status} ${r.body?.error?.code ?? ''}`).join(', '));
      assert.ok(lost.every((r) => r.status === 409 && r.body.error.code === 'slot_taken'), JSON.stringify(lost.find((r) => r.body?.error?.code !== 'slot_taken')?.body));
      const booked = won[0].body.booking;
      assert.match(won[0].body.reservationId, /^rsv_[A-Za-z0-9_-]{27}$/, '160 random bits, base64url');
      // Losers left no booking and no e-mail.
      const rows = await o.live.bookings.between(base - H, base + H);
      assert.equal(rows.length, 1);
      const mails = await o.call('GET', '/mail/outbox?kind=live.booked&limit=100', { token: op });
      assert.equal(mails.body.items.filter((m: { ref: string }) => m.ref === booked.id).length, 1);
      assert.equal(mails.body.items.length, 1, 'one booked e-mail in all');

      // Back to back on either side of the winner: [s-10, s) and [e, e+10) both fit ([start, end) ranges).
      const winnerStart = Date.parse(booked.start);
      const winnerEnd = Date.parse(booked.end);
      const before1 = await o.call('POST', '/live/bookings', { token: members[1].token, json: req(winnerStart - 10 * M, 1) });
      const after1 = await o.call('POST', '/live/bookings', { token: members[2].token, json: req(winnerEnd, 1) });
      assert.equal(before1.status, 201, JSON.stringify(before1.body));
      assert.equal(after1.status, 201, JSON.stringify(after1.body));
    });

    test('S3.5: one member booking 6 free ranges at once on a channel with a quota of 4 slots gets 4, and 2 quota_exceeded', async () => {
      // The quota is counted under the member's lock for the channel (live_book, tables.ts): without
      // it, or with a count that did not see what the lock's last holder committed, more would fit.
      const m = await premium(0);
      const small = await o.call('POST', '/live/channels', { token: op, json: { name: 'Quota race', capacity: 5, bitrateKbps: 800, tariffPerSlot: 0, monthlyQuotaSlots: 4 } });
      const base = DAY1 + 2 * H;
      const results = await Promise.all(
        Array.from({ length: 6 }, (_, i) => o.call('POST', '/live/bookings', { token: m.token, json: { ...req(base + i * H, 1), channelId: small.body.id } })),
      );
      const codes = results.map((r) => (r.status === 201 ? 'booked' : `${r.status} ${r.body?.error?.code}`)).sort();
      assert.deepEqual(codes, ['409 quota_exceeded', '409 quota_exceeded', 'booked', 'booked', 'booked', 'booked']);
      for (const r of results.filter((x) => x.status === 409)) {
        assert.deepEqual(r.body.error.details, { month: '2026-06', used: 4, limit: 4, requested: 1 }, 'says how many are used');
      }
      const rows = (await o.live.bookings.between(base - H, base + 7 * H)).filter((b) => b.channel_id === small.body.id);
      assert.equal(rows.length, 4);
    });

    test('S3.5: a booking priced with a channel copy that another origin has changed since is priced again, not at the old tariff', async () => {
      const m = await premium();
      const ch = await o.call('POST', '/live/channels', { token: op, json: { name: 'Repriced', capacity: 5, bitrateKbps: 800, tariffPerSlot: 100, monthlyQuotaSlots: 10 } });
      const first = await o.call('POST', '/live/bookings', { token: m.token, json: { ...req(DAY1 + 3 * H, 1), channelId: ch.body.id } });
      assert.equal(first.body.booking.charge, 100);
      // As another origin would: the row changes, this process's copy does not hear of it.
      await o.db.db.updateTable('live_channels').set({ tariff_per_slot: 250, monthly_quota_slots: 2 }).where('id', '=', ch.body.id).execute();
      const second = await o.call('POST', '/live/bookings', { token: m.token, json: { ...req(DAY1 + 4 * H, 1), channelId: ch.body.id } });
      assert.equal(second.status, 201, JSON.stringify(second.body));
      assert.equal(second.body.booking.charge, 250, 'the tariff as it is now');
      const third = await o.call('POST', '/live/bookings', { token: m.token, json: { ...req(DAY1 + 5 * H, 1), channelId: ch.body.id } });
      assert.equal(third.body.error?.code, 'quota_exceeded', 'and the quota as it is now');
    });

    test('S3.4: the quote shows slots × tariff and the deadline, and books nothing', async () => {
      const m = await premium();
      const snap = await snapshotTables(o.db.db);
      const q = await o.call('POST', '/live/quote', { token: m.token, json: req(DAY1 + 20 * H, 3) });
      assert.equal(q.status, 200, JSON.stringify(q.body));
      assert.equal(q.body.slots, 3);
      assert.equal(q.body.charge, 900);
      assert.equal(q.body.deadline, new Date(DAY1 + 14 * H).toISOString(), 'S3.6: 6 h before the start');
      assert.deepEqual(q.body.quota, { month: '2026-06', used: 0, limit: 60, afterBooking: 3 });
      assert.equal(q.body.wallet.enough, true);
      assert.deepEqual(changedTables(await snapshotTables(o.db.db), snap), [], 'a quote writes nothing');
    });

    test('S3.6: reconfirmation charges once, signs the settings, tells the broadcaster and the friends (with the password)', async () => {
      const m = await premium();
      const b = await o.call('POST', '/live/bookings', { token: m.token, json: req(DAY1 + 12 * H, 2, { openLevel: 'password', password: 'open sesame' }) });
      assert.equal(b.status, 201, JSON.stringify(b.body));
      const { booking, reservationId } = b.body;
      assert.equal(booking.status, 'awaiting_reconfirmation');
      assert.equal(booking.charged, false);
      // The program password is hashed at the origin's password cost (PASSWORD_SCRYPT_N; the tests' origins: 1024).
      const stored = await o.db.db.selectFrom('live_bookings').select('password_hash').where('id', '=', booking.id).executeTakeFirstOrThrow();
      assert.match(stored.password_hash ?? '', /^scrypt\$1024\$8\$/);
      const booked = (await outbox(booking.id)).filter((x) => x.kind === 'live.booked');
      assert.equal(booked.length, 1);
      assert.deepEqual(booked[0].to, [`${m.username}@example.org`]);
      assert.ok((await mailText(booked[0].id)).text.includes(reservationId), 'S3.5: the reservation ID is e-mailed');
      assert.equal((await outbox(booking.id)).filter((x) => x.kind.startsWith('live.friends')).length, 0, 'friends hear of it once confirmed');

      const paid = await balance(m.userId);
      const r1 = await o.call('POST', '/live/reconfirm', { token: m.token, json: { reservationId } });
      assert.equal(r1.status, 200, JSON.stringify(r1.body));
      assert.equal(r1.body.booking.status, 'confirmed');
      assert.equal(r1.body.charged, 600);
      assert.equal(await balance(m.userId), paid - 600, 'slots × tariff charged');
      const doc = r1.body.settings.document;
      assert.equal(doc.reservationId, reservationId);
      assert.equal(doc.password, 'open sesame');
      assert.equal(doc.ingest.rtmp.url, `rtmp://127.0.0.1:${o.live.streams.rtmp.address()!.port}/live/${reservationId}`, "the port ingest listens on");
      assert.deepEqual(doc.connectableWindow, { from: new Date(DAY1 + 12 * H - 5 * M).toISOString(), to: new Date(DAY1 + 12 * H + 23 * M).toISOString() });
      assert.equal(doc.channel.capacity, 50);
      assert.equal(doc.bitrateKbps, 2500);
      assert.equal(r1.body.settings.originKey, o.keys.publicKeyB64);
      assert.ok(verifySettings(r1.body.settings, o.keys.publicKeyB64), 'origin-signed');
      assert.ok(!verifySettings({ ...r1.body.settings, document: { ...doc, bitrateKbps: 9999 } }, o.keys.publicKeyB64), 'an edited document fails');

      const r2 = await o.call('POST', '/live/reconfirm', { token: m.token, json: { reservationId } });
      assert.equal(r2.status, 200);
      assert.equal(r2.body.already, true);
      assert.equal(r2.body.charged, 0);
      assert.equal(await balance(m.userId), paid - 600, 'charged once');

      const mails = await outbox(booking.id);
      const friends = mails.find((x) => x.kind === 'live.friends.confirmed')!;
      assert.deepEqual(friends.to, ['ann@example.org', 'bob@example.org']);
      const text = (await mailText(friends.id)).text as string;
      assert.ok(text.includes('open sesame'), 'S3.8: the password for a Password program');
      assert.ok(text.includes('(Europe/Berlin;'), 'the time in a stated zone');
      assert.ok(text.includes(`/#/live/${booking.id}`), 'the viewer URL');
      assert.equal(mails.filter((x) => x.kind === 'live.confirmed').length, 1);
    });

    test('S3.7: change what may change; channel and time may not; cancel before reconfirmation is free, after it the charge stands', async () => {
      const m = await premium();
      const b = (await o.call('POST', '/live/bookings', { token: m.token, json: req(DAY1 + 13 * H, 1) })).body;
      const changed = await o.call('PATCH', `/live/bookings/${b.booking.id}`, { token: m.token, json: { title: 'Renamed', outline: 'New outline' } });
      assert.equal(changed.status, 200, JSON.stringify(changed.body));
      assert.equal(changed.body.title, 'Renamed');
      assert.deepEqual(changed.body.history.map((h: { event: string }) => h.event), ['booked', 'changed']);

      const snap = await snapshotTables(o.db.db);
      for (const body of [{ start: new Date(DAY1 + 14 * H).toISOString() }, { channelId: 'chn_x' }, { end: 'x' }, { openLevel: 'secret' }]) {
        const r = await o.call('PATCH', `/live/bookings/${b.booking.id}`, { token: m.token, json: { title: 'Nope', ...body } });
        assert.equal(r.status, 409, JSON.stringify(body));
        assert.equal(r.body.error.code, 'cannot_change_time_or_channel');
      }
      const pw = await o.call('PATCH', `/live/bookings/${b.booking.id}`, { token: m.token, json: { password: 'secret!' } });
      assert.equal(pw.body.error.code, 'password_not_used');
      assert.deepEqual(changedTables(await snapshotTables(o.db.db), snap), [], 'refused changes change nothing');

      const before1 = await balance(m.userId);
      const c = await o.call('POST', `/live/bookings/${b.booking.id}/cancel`, { token: m.token });
      assert.equal(c.status, 200);
      assert.equal(c.body.booking.status, 'cancelled');
      assert.equal(c.body.charged, 0);
      assert.equal(await balance(m.userId), before1, 'free before reconfirmation');
      // The slots are free again.
      const again = await o.call('POST', '/live/bookings', { token: m.token, json: req(DAY1 + 13 * H, 1) });
      assert.equal(again.status, 201, JSON.stringify(again.body));

      await o.call('POST', '/live/reconfirm', { token: m.token, json: { reservationId: again.body.reservationId } });
      const paid = await balance(m.userId);
      const c2 = await o.call('POST', `/live/bookings/${again.body.booking.id}/cancel`, { token: m.token });
      assert.equal(c2.body.charged, 300);
      assert.equal(await balance(m.userId), paid, 'the charge stands');
      const kinds = (await outbox(again.body.booking.id)).map((x) => x.kind).sort();
      assert.deepEqual(kinds, ['live.booked', 'live.cancelled', 'live.confirmed', 'live.friends.cancelled', 'live.friends.confirmed']);
      assert.deepEqual(
        c2.body.booking.history.map((h: { event: string; status: string }) => `${h.event}:${h.status}`),
        ['booked:awaiting_reconfirmation', 'reconfirmed:confirmed', 'cancelled:cancelled'],
      );
      assert.ok(c2.body.booking.history.every((h: { at: string }) => Date.parse(h.at) === o.clock.now()), 'each change timestamped by the clock');
    });

    test('refusals: each has its code and leaves nothing behind (no row, no posting, no e-mail)', async () => {
      const m = await premium();
      const general = await premium(100_000, ['member']);
      const noMail = await o.userWithRoles(['member', 'premium']);
      const small = await o.call('POST', '/live/channels', { token: op, json: { name: 'Small', capacity: 5, bitrateKbps: 800, tariffPerSlot: 100, monthlyQuotaSlots: 3 } });
      const s = DAY1 + 15 * H;
      const held = await o.call('POST', '/live/bookings', { token: m.token, json: req(s, 2) });
      assert.equal(held.status, 201);
      const quotaUsed = await o.call('POST', '/live/bookings', { token: m.token, json: { ...req(s, 2), channelId: small.body.id } });
      assert.equal(quotaUsed.status, 201);

      const cases: [string, string, Record<string, unknown>, number][] = [
        ['premium_required', general.token, req(s + 2 * H, 1), 403],
        ['email_required', noMail.token, req(s + 2 * H, 1), 400],
        ['quota_exceeded', m.token, { ...req(s + 2 * H, 2), channelId: small.body.id }, 409],
        ['slot_taken', m.token, req(s + 10 * M, 1), 409],
        ['misaligned', m.token, { ...req(s + 2 * H, 1), start: new Date(s + 2 * H + 5 * M).toISOString() }, 400],
        ['in_the_past', m.token, req(Date.UTC(2026, 5, 15, 8, 0), 1), 400],
        ['too_long', m.token, req(s + 2 * H, 25), 400],
        ['outline_too_long', m.token, req(s + 2 * H, 1, { outline: 'x'.repeat(21) }), 400],
        ['detail_too_long', m.token, req(s + 2 * H, 1, { detail: 'é'.repeat(201) }), 400],
        ['password_required', m.token, req(s + 2 * H, 1, { openLevel: 'secret' }), 400],
        ['unknown_channel', m.token, req(s + 2 * H, 1, { channelId: 'chn_nope' }), 404],
        ['invalid_friend', m.token, req(s + 2 * H, 1, { friends: ['not an address'] }), 400],
        // An address the mail queue would refuse at reconfirmation is refused at booking.
        ['invalid_friend', m.token, req(s + 2 * H, 1, { friends: ['josé@example.org'] }), 400],
      ];
      // Exactly at the limits is fine: 20 and 200 characters (code points).
      const fits = await o.call('POST', '/live/quote', { token: m.token, json: req(s + 2 * H, 1, { outline: '😀'.repeat(20), detail: 'é'.repeat(200) }) });
      assert.equal(fits.status, 200, JSON.stringify(fits.body));

      const other = await premium();
      const snap = await snapshotTables(o.db.db);
      for (const [code, token, body, status] of cases) {
        for (const path of ['/live/quote', '/live/bookings']) {
          const r = await o.call('POST', path, { token, json: body });
          assert.equal(r.body?.error?.code, code, `${path} ${code}: ${JSON.stringify(r.body)}`);
          assert.equal(r.status, status, code);
        }
      }
      const wrong = await o.call('POST', '/live/reconfirm', { token: m.token, json: { reservationId: 'rsv_' + 'A'.repeat(27) } });
      assert.equal(wrong.body.error.code, 'unknown_reservation');
      // Someone else's reservation ID is as unknown as a wrong one.
      const theirs = await o.call('POST', '/live/reconfirm', { token: other.token, json: { reservationId: held.body.reservationId } });
      assert.equal(theirs.body.error.code, 'unknown_reservation');
      assert.deepEqual(changedTables(await snapshotTables(o.db.db), snap), [], 'nothing changed');
    });

    test('S3.6: reconfirming after the deadline is refused; the deadline job cancels once, across a restart', async () => {
      const m = await premium();
      const start = DAY1 + 22 * H;
      const b = (await o.call('POST', '/live/bookings', { token: m.token, json: req(start, 1) })).body;
      const deadline = Date.parse(b.booking.deadline);
      assert.equal(deadline, start - 6 * H);

      // Late reconfirmation, with the job stopped so that the refusal, not the cancel, is what we see.
      await o.live.deadlines.stop();
      const t = o.clock.now();
      o.clock.set(deadline);
      const late = await o.call('POST', '/live/reconfirm', { token: m.token, json: { reservationId: b.reservationId } });
      assert.equal(late.status, 409);
      assert.equal(late.body.error.code, 'deadline_passed');
      assert.equal((await o.call('GET', `/live/bookings/${b.booking.id}`, { token: m.token })).body.status, 'awaiting_reconfirmation');
      o.clock.set(t);

      // The origin stops; time passes the deadline while it is down; it starts again and cancels.
      await o.stop();
      o.clock.set(deadline + M);
      const again = await o.restart();
      await waitFor(async () => (await o.call('GET', `/live/bookings/${b.booking.id}`, { token: m.token })).body.status === 'cancelled', 'the deadline cancel');
      await again.live.deadlines.nextSweep();
      await again.live.deadlines.nextSweep();
      const got = (await o.call('GET', `/live/bookings/${b.booking.id}`, { token: m.token })).body;
      assert.equal(got.cancelReason, 'not reconfirmed before the deadline');
      assert.equal(got.history.filter((h: { event: string }) => h.event === 'cancelled').length, 1, 'cancelled once');
      assert.equal(got.charged, false);
      const kinds = (await outbox(b.booking.id)).map((x) => x.kind).sort();
      assert.deepEqual(kinds, ['live.booked', 'live.cancelled'], 'the member is told once; friends never heard of it');
      const r = await o.call('POST', '/live/reconfirm', { token: m.token, json: { reservationId: b.reservationId } });
      assert.equal(r.body.error.code, 'booking_cancelled');
      o.clock.set(t);
      // Keep using the restarted origin's services in later tests.
      Object.assign(o, { live: again.live, ledger: again.ledger, db: again.db });
    });

    test('S3.11: Secret programs appear in no listing; Public and Password ones do; the calendar marks free, taken and mine', async () => {
      const m = await premium();
      const viewer = await premium(0, ['member']);
      const s = DAY1 + 17 * H;
      const secret = await o.call('POST', '/live/bookings', { token: m.token, json: req(s, 1, { openLevel: 'secret', password: 'hush hush', title: 'ZZSECRETZZ party' }) });
      const pass = await o.call('POST', '/live/bookings', { token: m.token, json: req(s + 10 * M, 1, { openLevel: 'password', password: 'letmein', title: 'Members evening' }) });
      const pub = await o.call('POST', '/live/bookings', { token: m.token, json: req(s + 20 * M, 1, { title: 'Open stage' }) });
      const late = await o.call('POST', '/live/bookings', { token: m.token, json: req(DAY1 - 10 * M, 2, { title: 'Midnight show' }) });
      assert.ok([secret, pass, pub, late].every((r) => r.status === 201));
      // Reconfirmed, or the deadline job would cancel it when the clock moves to the next morning.
      assert.equal((await o.call('POST', '/live/reconfirm', { token: m.token, json: { reservationId: late.body.reservationId } })).status, 200);
      o.clock.set(DAY1 + 9 * H); // "today" is now the programs' day
      try {
        const listings = [
          await o.call('GET', '/live/today?tz=UTC'),
          await o.call('GET', '/live/today?tz=Pacific/Kiritimati'),
          await o.call('GET', '/live/guide?month=2026-06&tz=UTC'),
          await o.call('GET', '/live/guide'),
          await o.call('GET', '/live/calendar?date=2026-06-16&tz=UTC', { token: viewer.token }),
          await o.call('GET', '/live/calendar?date=2026-06-16&tz=UTC', { token: m.token }),
          await o.call('GET', '/live/channels'),
          await o.call('GET', '/contents'),
        ];
        for (const l of listings) {
          assert.equal(l.status, 200, JSON.stringify(l.body));
          assert.ok(!JSON.stringify(l.body).includes('ZZSECRETZZ'), 'a Secret title is never listed');
        }
        const today = listings[0].body.items.map((p: { title: string }) => p.title);
        assert.ok(today.includes('Members evening') && today.includes('Open stage'), today.join(', '));
        assert.ok(today.includes('Midnight show'), 'on the air after midnight: in today’s live');
        const june16 = listings[2].body.days.find((d: { date: string }) => d.date === '2026-06-16').items.map((p: { title: string }) => p.title);
        assert.ok(!june16.includes('Midnight show'), 'the month lists it on the day it starts');
        assert.equal(listings[0].body.items.find((p: { title: string }) => p.title === 'Members evening').needsPassword, true);
        // The Secret program's own page (reached by the link its broadcaster shares) shows it.
        const page = await o.call('GET', `/live/programs/${secret.body.booking.id}`);
        assert.equal(page.body.title, 'ZZSECRETZZ party');
        assert.equal(page.body.needsPassword, true);

        const main = listings[5].body.channels.find((c: { channel: { id: string } }) => c.channel.id === channelId);
        assert.equal(main.slots.length, 144);
        const at = (t: number) => main.slots.find((x: { start: string }) => x.start === new Date(t).toISOString());
        assert.deepEqual([at(s).state, at(s).mine, at(s).program], ['taken', true, null]);
        assert.deepEqual(at(s + 20 * M).program, { id: pub.body.booking.id, title: 'Open stage' });
        assert.equal(at(s + 30 * M).state, 'free');
        assert.equal(at(DAY1 + 8 * H).state, 'past');
        const seen = listings[4].body.channels.find((c: { channel: { id: string } }) => c.channel.id === channelId);
        assert.equal(seen.slots.find((x: { start: string }) => x.start === new Date(s).toISOString()).mine, false);
        assert.deepEqual(Object.keys(main.channel).sort(), ['bitrateKbps', 'capacity', 'createdAt', 'id', 'monthlyQuotaSlots', 'name', 'slotMinutes', 'tariffPerSlot', 'updatedAt']);
      } finally {
        o.clock.set(T0);
      }
    });

    test('the calendar feed and the clock', async () => {
      const m = await premium();
      const b = await o.call('POST', '/live/bookings', { token: m.token, json: req(DAY1 + 19 * H, 1, { title: 'Feed me' }) });
      assert.equal(b.status, 201);
      const f = await o.call('POST', '/me/calendar-feed', { token: m.token });
      assert.equal(f.status, 200);
      const path = new URL(f.body.url).pathname;
      const ics = await fetch(o.url + path);
      assert.equal(ics.status, 200);
      assert.match(ics.headers.get('content-type')!, /^text\/calendar/);
      const text = await ics.text();
      assert.ok(text.includes('BEGIN:VCALENDAR') && text.includes('Feed me'), text);
      const rotated = await o.call('POST', '/me/calendar-feed', { token: m.token });
      assert.equal((await fetch(o.url + path)).status, 404, 'a new feed URL retires the old');
      assert.equal((await fetch(o.url + new URL(rotated.body.url).pathname)).status, 200);
      const time = await o.call('GET', '/time');
      assert.deepEqual(time.body, { now: new Date(o.clock.now()).toISOString(), epochMs: o.clock.now() });
    });
  });
}
