import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeProfile } from '../../src/cli/profile.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { runCli } from '../helpers/processes.ts';

// S3.8 without SMTP_URL: a queued message is held — kept in the outbox for the operator,
// never sent — and readable through the API and `cascade outbox`.

for (const engine of testEngines()) {
  describe(`held mail on ${engine.name}`, () => {
    let origin: TestOrigin;
    let home: string;
    before(async () => {
      origin = await startTestOrigin({ engine });
      home = mkdtempSync(path.join(os.tmpdir(), 'cascade-outbox-'));
    });
    after(async () => {
      await origin?.close();
      if (home) rmSync(home, { recursive: true, force: true });
    });

    test('without SMTP_URL a message is held, not sent, and the operator reads it through the API and the CLI', async () => {
      assert.equal(origin.config.smtpUrl, undefined);
      const { id } = await origin.mail.enqueue(origin.db.db, {
        kind: 'live.booked',
        to: ['dana@example.org'],
        subject: 'Your booking',
        text: 'Booked.',
        attachments: [{ filename: 'booking.ics', contentType: 'text/calendar', content: 'BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n' }],
        ref: 'bkg_held',
      });
      origin.mail.wake();
      origin.clock.advance(3_600_000);
      assert.equal(await origin.mail.sendDue(), 0);
      const m = await origin.mail.get(id);
      assert.equal(m.status, 'held');
      assert.equal(m.attempts, 0);
      assert.equal(m.sentAt, null);

      const op = await origin.userWithRoles(['operator']);
      const api = await origin.call('GET', '/mail/outbox?status=held', { token: op.token });
      assert.equal(api.status, 200);
      assert.deepEqual(api.body.items.map((i: { id: string; status: string }) => [i.id, i.status]), [[id, 'held']]);

      const previous = process.env.CASCADE_HOME;
      process.env.CASCADE_HOME = home;
      try {
        writeProfile({ origin: origin.url, token: op.token, username: 'operator', originKey: origin.keys.publicKeyB64 });
      } finally {
        if (previous === undefined) delete process.env.CASCADE_HOME;
        else process.env.CASCADE_HOME = previous;
      }
      const list = await runCli(['--json', 'outbox', '--status', 'held'], { home });
      assert.equal(list.code, 0, list.stderr);
      const page = JSON.parse(list.stdout);
      assert.deepEqual(page.items.map((i: { id: string; status: string; subject: string }) => [i.id, i.status, i.subject]), [[id, 'held', 'Your booking']]);

      const [text, shown, bad] = await Promise.all([
        runCli(['outbox', '--kind', 'live.booked'], { home }),
        runCli(['outbox', 'show', id], { home }),
        runCli(['--json', 'outbox', '--status', 'lost'], { home }),
      ]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^id\s+created\s+status\s+attempts\s+kind\s+to\s+subject\s+last error$/m);
      assert.match(text.stdout, new RegExp(`^${id}\\s.*\\sheld\\s+0\\s+live\\.booked\\s+dana@example\\.org\\s+Your booking`, 'm'));
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, /^status:\s+held, 0 attempts$/m);
      assert.match(shown.stdout, /^To:\s+dana@example\.org$/m);
      assert.match(shown.stdout, /^Booked\.$/m);
      assert.match(shown.stdout, /^  booking\.ics  text\/calendar  32 bytes$/m);
      assert.equal(bad.code, 1);
      assert.equal(JSON.parse(bad.stdout).error.code, 'invalid_argument');
    });
  });
}
