import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { AppError } from '../../src/core/errors.ts';
import { MailService, backoffMs, type OutgoingMail } from '../../src/mail/index.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { startSmtpReceiver, type SmtpReceiver } from '../helpers/smtp-receiver.ts';
import { waitFor, within } from '../helpers/wait.ts';

// S3.8: the mail outbox. Messages are queued in the caller's transaction, handed to a real
// SMTP server (smtp-server on loopback) with their attachments, tried again with back-off
// when the server refuses, given up after MAIL_MAX_ATTEMPTS, never sent twice; without
// SMTP_URL they are held. The operator sees all of it through GET /mail/outbox.

const ICS = ['BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//Cascade//test//EN', 'METHOD:REQUEST', 'BEGIN:VEVENT', 'UID:bkg_1@cascade', 'DTSTART:20260301T180000Z', 'DTEND:20260301T190000Z', 'SUMMARY:Live: a test broadcast', 'END:VEVENT', 'END:VCALENDAR', ''].join('\r\n');

const booking = (over: Partial<OutgoingMail> = {}): OutgoingMail => ({
  kind: 'live.booked',
  to: ['dana@example.org'],
  subject: 'Your booking: a test broadcast',
  text: 'Hello Dana,\n\nyour slot is booked for 1 March, 18:00 UTC.\n',
  attachments: [{ filename: 'booking.ics', contentType: 'text/calendar; method=REQUEST; charset=utf-8', content: ICS }],
  ref: 'bkg_1',
  ...over,
});

const rowsOf = (origin: TestOrigin) => origin.db.db.selectFrom('mail_outbox').selectAll().orderBy('created_at').orderBy('id').execute();

for (const engine of testEngines()) {
  describe(`mail outbox on ${engine.name}`, () => {
    let smtp: SmtpReceiver;
    let origin: TestOrigin;
    let operator: { token: string };
    before(async () => {
      smtp = await startSmtpReceiver();
      origin = await startTestOrigin({ engine, config: { smtpUrl: smtp.url, mailMaxAttempts: 3 } });
      operator = await origin.userWithRoles(['operator']);
    });
    after(async () => {
      await origin?.close();
      await smtp?.close();
    });

    test('a queued message reaches the SMTP server with its text and its .ics attachment, and is marked sent', async () => {
      const { id } = await origin.mail.enqueue(origin.db.db, booking({ to: ['Dana@Example.ORG', 'eli@example.net'] }));
      assert.equal((await origin.mail.get(id)).status, 'queued');
      assert.equal(await origin.mail.sendDue(), 1);

      assert.equal(smtp.messages.length, 1);
      const got = smtp.messages[0];
      assert.deepEqual(got.from?.value, [{ address: 'cascade@localhost', name: 'Cascade' }]);
      const to = Array.isArray(got.to) ? got.to.flatMap((t) => t.value) : got.to?.value;
      assert.deepEqual(to?.map((a) => a.address), ['Dana@example.org', 'eli@example.net'], 'the domain is lower-cased');
      assert.deepEqual(got.envelopeTo, ['Dana@example.org', 'eli@example.net']);
      assert.equal(got.subject, 'Your booking: a test broadcast');
      assert.equal(got.text?.trim(), 'Hello Dana,\n\nyour slot is booked for 1 March, 18:00 UTC.');
      assert.equal(got.attachments.length, 1);
      const [ics] = got.attachments;
      assert.equal(ics.filename, 'booking.ics');
      assert.equal(ics.contentType, 'text/calendar');
      assert.match(String(ics.headers.get('content-type') && (ics.headers.get('content-type') as { params?: Record<string, string> }).params?.method), /^REQUEST$/);
      assert.equal(ics.content.toString('utf8'), ICS);

      const sent = await origin.mail.get(id);
      assert.equal(sent.status, 'sent');
      assert.equal(sent.attempts, 1);
      assert.equal(sent.sentAt, new Date(origin.clock.now()).toISOString());

      // The operator's views: the list without bodies, the message whole.
      const list = await origin.call('GET', '/mail/outbox?ref=bkg_1', { token: operator.token });
      assert.equal(list.status, 200, JSON.stringify(list.body));
      const item = list.body.items.find((m: { id: string }) => m.id === id);
      assert.equal(item.status, 'sent');
      assert.deepEqual(item.attachments, [{ filename: 'booking.ics', contentType: 'text/calendar; method=REQUEST; charset=utf-8', size: Buffer.byteLength(ICS) }]);
      assert.equal(item.text, undefined, 'no body in the list');
      const one = await origin.call('GET', `/mail/outbox/${id}`, { token: operator.token });
      assert.equal(one.status, 200);
      assert.equal(one.body.text, booking().text);
      assert.equal(one.body.from, 'Cascade <cascade@localhost>');
      assert.equal(one.body.attachments[0].content, ICS);
      assert.equal((await origin.call('GET', '/mail/outbox/mail_nothing', { token: operator.token })).body.error.code, 'unknown_mail');
      assert.match(await (await fetch(`${origin.url}/metrics`)).text(), /^cascade_mail_sent_total 1$/m);
    });

    test('a refused message is tried again after 1 min, then 2 min, and is failed after MAIL_MAX_ATTEMPTS; the operator sees the last error', async () => {
      smtp.refuse = '5.1.1 <nobody@example.org>: no such mailbox';
      const before = smtp.messages.length;
      try {
        const t0 = origin.clock.now();
        const { id } = await origin.mail.enqueue(origin.db.db, booking({ to: ['nobody@example.org'], ref: 'bkg_refused' }));
        assert.equal(await origin.mail.sendDue(), 0);
        let m = await origin.mail.get(id);
        assert.equal(m.status, 'queued');
        assert.equal(m.attempts, 1);
        assert.equal(m.nextAttemptAt, new Date(t0 + 60_000).toISOString(), 'the first back-off is 1 min');
        assert.match(m.lastError ?? '', /no such mailbox/);
        assert.equal(await origin.mail.sendDue(), 0, 'not due before its time');
        assert.equal((await origin.mail.get(id)).attempts, 1);

        // The sending loop wakes when the clock reaches it.
        origin.clock.advance(60_000);
        await waitFor(async () => (await origin.mail.get(id)).attempts === 2, 'the second attempt');
        m = await origin.mail.get(id);
        assert.equal(m.status, 'queued');
        assert.equal(m.nextAttemptAt, new Date(t0 + 60_000 + 120_000).toISOString(), 'then 2 min');

        origin.clock.advance(120_000);
        await waitFor(async () => (await origin.mail.get(id)).status === 'failed', 'the message failing for good');
        m = await origin.mail.get(id);
        assert.equal(m.attempts, 3);
        origin.clock.advance(3_600_000);
        assert.equal(await origin.mail.sendDue(), 0);
        assert.equal((await origin.mail.get(id)).attempts, 3, 'a failed message is not tried again');

        const failed = await origin.call('GET', '/mail/outbox?status=failed', { token: operator.token });
        assert.equal(failed.status, 200);
        assert.deepEqual(failed.body.items.map((i: { id: string }) => i.id), [id]);
        assert.match(failed.body.items[0].lastError, /550.*no such mailbox/);
        assert.equal(smtp.messages.length, before, 'nothing arrived');
        assert.match(await (await fetch(`${origin.url}/metrics`)).text(), /^cascade_mail_failed_total 1$/m);
      } finally {
        smtp.refuse = null;
      }
    });

    test('two senders on one database (two origin processes) never send a message twice', async () => {
      const other = new MailService({ db: origin.db.db, clock: origin.clock, logger: pino({ level: 'silent' }), smtpUrl: smtp.url, from: 'Other <other@localhost>', maxAttempts: 3 });
      const before = smtp.messages.length;
      const subjects = Array.from({ length: 14 }, (_, i) => `concurrent ${i}`);
      for (const subject of subjects) await origin.mail.enqueue(origin.db.db, booking({ subject, attachments: [] }));
      try {
        const counts = await Promise.all([origin.mail.sendDue(), other.sendDue(), origin.mail.sendDue()]);
        assert.equal(counts.reduce((a, b) => a + b, 0), subjects.length);
      } finally {
        await other.stop();
      }
      const arrived = smtp.messages.slice(before).map((m) => m.subject).sort();
      assert.deepEqual(arrived, [...subjects].sort(), 'each message once');
    });

    test('enqueue joins the caller’s transaction: a rollback leaves no message, a commit keeps it', async () => {
      const before = (await rowsOf(origin)).length;
      // Bounded: an enqueue that used its own connection instead of trx would wait for it forever on PGlite.
      await assert.rejects(
        within(
          origin.db.db.transaction().execute(async (trx) => {
            await origin.mail.enqueue(trx, booking({ ref: 'bkg_rolled_back' }));
            throw new Error('the booking failed');
          }),
          'the transaction',
          10_000,
        ),
        /the booking failed/,
      );
      assert.equal((await rowsOf(origin)).length, before);
      const { id } = await origin.db.db.transaction().execute((trx) => origin.mail.enqueue(trx, booking({ ref: 'bkg_committed' })));
      assert.equal((await origin.mail.get(id)).ref, 'bkg_committed');
      origin.mail.wake();
      await waitFor(async () => (await origin.mail.get(id)).status === 'sent', 'wake() sending the committed message');
    });

    test('a message an SMTP server could not take is refused when queued, with a code, and nothing is kept', async () => {
      const before = await snapshotTables(origin.db.db);
      const refusals: [Partial<OutgoingMail>, string][] = [
        [{ to: [] }, 'invalid_recipient'],
        [{ to: ['not-an-address'] }, 'invalid_recipient'],
        [{ to: ['a@localhost'] }, 'invalid_recipient'],
        [{ to: ['ok@example.org', 'two@@example.org'] }, 'invalid_recipient'],
        [{ to: Array.from({ length: 101 }, (_, i) => `u${i}@example.org`) }, 'invalid_recipient'],
        [{ subject: '' }, 'invalid_subject'],
        [{ subject: 'x'.repeat(201) }, 'invalid_subject'],
        [{ subject: 'Hello\r\nBcc: everyone@example.org' }, 'invalid_subject'],
        [{ attachments: [{ filename: '../booking.ics', contentType: 'text/calendar', content: ICS }] }, 'invalid_attachment'],
        [{ attachments: [{ filename: 'booking.ics', contentType: 'text/calendar\r\nX-Evil: 1', content: ICS }] }, 'invalid_attachment'],
        [{ text: 'x'.repeat(256 * 1024) }, 'mail_too_large'],
        [{ kind: 'Not A Kind' }, 'invalid_mail'],
        [{ text: 'bell \u0007' }, 'invalid_mail'],
      ];
      for (const [over, code] of refusals) {
        await assert.rejects(origin.mail.enqueue(origin.db.db, booking(over)), (err: unknown) => err instanceof AppError && err.code === code && err.status === 400, `${JSON.stringify(over).slice(0, 80)} → ${code}`);
      }
      assert.deepEqual(await snapshotTables(origin.db.db), before, 'nothing changed');
    });

    test('the outbox list pages newest first and refuses a cursor it did not hand out', async () => {
      const page1 = await origin.call('GET', '/mail/outbox?limit=2', { token: operator.token });
      assert.equal(page1.status, 200);
      assert.equal(page1.body.items.length, 2);
      const page2 = await origin.call('GET', `/mail/outbox?limit=2&after=${page1.body.nextCursor}`, { token: operator.token });
      const all = await origin.call('GET', '/mail/outbox?limit=200', { token: operator.token });
      assert.deepEqual([...page1.body.items, ...page2.body.items].map((i: { id: string }) => i.id), all.body.items.slice(0, 4).map((i: { id: string }) => i.id));
      const times = all.body.items.map((i: { createdAt: string }) => i.createdAt);
      assert.deepEqual(times, [...times].sort().reverse());
      assert.equal((await origin.call('GET', '/mail/outbox?after=bogus', { token: operator.token })).body.error.code, 'invalid_cursor');
      assert.equal((await origin.call('GET', '/mail/outbox?status=lost', { token: operator.token })).body.error.code, 'invalid_request');
      const member = await origin.userWithRoles(['member', 'publisher']);
      assert.equal((await origin.call('GET', '/mail/outbox', { token: member.token })).status, 403);
    });
  });
}

test('back-off: 1 min doubling, at most 1 h', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map(backoffMs), [60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000]);
});
