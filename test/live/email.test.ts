import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startSmtpReceiver, type SmtpReceiver } from '../helpers/smtp-receiver.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { waitFor } from '../helpers/wait.ts';

// S3.5, S3.6, S3.8 end to end through a real SMTP server (smtp-server on loopback): what the
// broadcaster and the friend list receive, headers, body and the iCalendar attachment; and a
// mail server that refuses never blocks or fails a booking.

const M = 60_000;
const H = 60 * M;
const T0 = Date.UTC(2026, 2, 27, 9, 0); // the Friday before Europe's clocks go forward
const START = Date.UTC(2026, 2, 29, 16, 0); // Sunday 18:00 in Berlin (CEST, after the change)

describe('live e-mail through a real SMTP server', () => {
  let smtp: SmtpReceiver;
  let o: TestOrigin;
  let member: { token: string; userId: string; username: string };
  let channelId: string;

  before(async () => {
    smtp = await startSmtpReceiver();
    o = await startTestOrigin({ now: T0, config: { smtpUrl: smtp.url, mailFrom: 'Cascade Live <live@cascade.test>', publicUrl: 'https://tv.example.org' } });
    const op = (await o.userWithRoles(['operator'])).token;
    channelId = (await o.call('POST', '/live/channels', { token: op, json: { name: 'Stage', capacity: 20, bitrateKbps: 1500, tariffPerSlot: 120 } })).body.id;
    member = await o.userWithRoles(['member', 'premium']);
    await o.call('PUT', '/me/contact', { token: member.token, json: { email: 'host@example.org' } });
  });
  after(async () => {
    await o.close();
    await smtp.close();
  });

  const arrived = async (n: number) => {
    await o.mail.sendDue();
    await waitFor(() => smtp.messages.length >= n, () => `${n} messages (have ${smtp.messages.length})`);
  };

  test('booked, reconfirmed, changed, cancelled: who gets what', async () => {
    const b = await o.call('POST', '/live/bookings', {
      token: member.token,
      json: {
        channelId,
        start: new Date(START).toISOString(),
        end: new Date(START + 30 * M).toISOString(),
        openLevel: 'secret',
        password: 'blue moon',
        title: 'Garden concert',
        genre: 'music',
        outline: 'Strings at dusk',
        detail: 'Bring a blanket.',
        friends: ['Ann@Example.org', 'bob@example.org'],
        timeZone: 'Europe/Berlin',
      },
    });
    assert.equal(b.status, 201, JSON.stringify(b.body));
    const { reservationId, booking } = b.body;
    await arrived(1);
    const booked = smtp.messages[0];
    assert.deepEqual(booked.envelopeTo, ['host@example.org']);
    assert.equal(booked.from?.text, '"Cascade Live" <live@cascade.test>');
    assert.match(booked.subject!, /^Reserved: Garden concert — reconfirm by 29 Mar 12:00$/);
    assert.ok(booked.text!.includes(`Reservation ID (also your stream key; keep it secret): ${reservationId}`), booked.text);
    assert.ok(booked.text!.includes('Sunday 29 March 2026, 18:00–18:30 (Europe/Berlin; 2026-03-29 16:00–16:30 UTC)'), booked.text);
    const ics = booked.attachments.find((a) => a.filename === 'program.ics')!;
    assert.match(ics.contentType, /^text\/calendar/);
    const cal = ics.content.toString('utf8');
    assert.match(cal, /METHOD:REQUEST/);
    assert.match(cal, /DTSTART:20260329T160000Z/);
    assert.match(cal, new RegExp(`UID:${booking.id}@cascade`));
    assert.match(cal, /SUMMARY:Garden concert/);

    const r = await o.call('POST', '/live/reconfirm', { token: member.token, json: { reservationId } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await arrived(3);
    const confirmed = smtp.messages.find((m) => m.subject === 'Confirmed: Garden concert')!;
    assert.deepEqual(confirmed.envelopeTo, ['host@example.org']);
    const settings = JSON.parse(confirmed.attachments.find((a) => a.filename === 'settings.json')!.content.toString('utf8'));
    assert.equal(settings.document.reservationId, reservationId);
    assert.equal(settings.document.viewerUrl, `https://tv.example.org/#/live/${booking.id}`);
    assert.equal(settings.document.ingest.rtmp.url, `rtmp://tv.example.org:${o.live.streams.rtmp.address()!.port}/live/${reservationId}`);
    const invite = smtp.messages.find((m) => m.subject === 'Live: Garden concert')!;
    assert.deepEqual(invite.envelopeTo.sort(), ['ann@example.org', 'bob@example.org']);
    assert.ok(!invite.envelopeTo.includes('host@example.org'));
    for (const line of ['About: Strings at dusk', 'When: Sunday 29 March 2026, 18:00–18:30 (Europe/Berlin;', `Watch: https://tv.example.org/#/live/${booking.id}`, 'Password: blue moon']) {
      assert.ok(invite.text!.includes(line), `${line}\n---\n${invite.text}`);
    }
    assert.ok(!invite.text!.includes(reservationId), 'friends never see the stream key');
    assert.ok(invite.attachments.some((a) => a.filename === 'program.ics'));

    await o.call('PATCH', `/live/bookings/${booking.id}`, { token: member.token, json: { title: 'Garden concert (moved indoors)', password: 'red sun' } });
    await arrived(5);
    const changed = smtp.messages.find((m) => m.subject === 'Changed: Garden concert (moved indoors)' && m.envelopeTo.includes('bob@example.org'))!;
    assert.ok(changed.text!.includes('Password: red sun'));
    assert.match(changed.attachments[0].content.toString('utf8'), /SEQUENCE:[1-9]/);

    await o.call('POST', `/live/bookings/${booking.id}/cancel`, { token: member.token });
    await arrived(7);
    const cancels = smtp.messages.filter((m) => m.subject === 'Cancelled: Garden concert (moved indoors)');
    assert.equal(cancels.length, 2, 'the member and the friends');
    for (const c of cancels) assert.match(c.attachments[0].content.toString('utf8'), /METHOD:CANCEL[\s\S]*STATUS:CANCELLED/);
    assert.equal(smtp.messages.length, 7, 'nothing else was sent');
  });

  test('a refusing mail server neither blocks nor fails a booking; the failure is visible to the operator', async () => {
    smtp.refuse = 'mailbox unavailable';
    const before = smtp.messages.length;
    try {
      const b = await o.call('POST', '/live/bookings', {
        token: member.token,
        json: { channelId, start: new Date(START + 2 * H).toISOString(), end: new Date(START + 2 * H + 10 * M).toISOString(), openLevel: 'public', title: 'Late show', genre: 'talk' },
      });
      assert.equal(b.status, 201, JSON.stringify(b.body));
      await o.mail.sendDue();
      const op = (await o.userWithRoles(['operator'])).token;
      // The origin's own sender, woken by the booking, may hold the message (its lease) while its
      // attempt is under way; sendDue above then had nothing to claim. Wait for the attempt's outcome.
      const outbox = () => o.call('GET', `/mail/outbox?ref=${b.body.booking.id}`, { token: op });
      await waitFor(async () => (await outbox()).body.items[0]?.attempts === 1, 'the first attempt recorded');
      const box = await outbox();
      assert.equal(box.body.items.length, 1);
      assert.equal(box.body.items[0].status, 'queued');
      assert.equal(box.body.items[0].attempts, 1);
      assert.match(box.body.items[0].lastError, /mailbox unavailable/);
      assert.equal(smtp.messages.length, before);
      // Once the server takes mail again, the retry after the back-off delivers it.
      smtp.refuse = null;
      o.clock.advance(2 * M);
      await arrived(before + 1);
      assert.equal(smtp.messages.at(-1)!.subject?.startsWith('Reserved: Late show'), true);
    } finally {
      smtp.refuse = null;
    }
  });
});
