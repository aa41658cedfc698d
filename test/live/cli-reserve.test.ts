import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { verifySettings } from '../../src/live/settings.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { runCli } from '../helpers/processes.ts';

// `cascade channel …`, `cascade reserve …` and `cascade time` (#14, S3.1–S3.8, S3.10) as users
// run them: child processes signed in through their own profiles, against an origin whose
// clock is set two hours ahead of the real one (so the offset shows) and does not move.
// One engine: the commands only speak HTTP; storage is tested on both in bookings.test.ts.

const AHEAD_MS = 2 * 3_600_000;
const SLOT = 10 * 60_000;

for (const engine of testEngines().slice(0, 1)) {
  describe(`cascade reserve (${engine.name})`, () => {
    let origin: TestOrigin;
    let dir: string;
    let operator: string;
    let member: string;
    let memberToken: string;
    let plain: string;

    /** A CASCADE_HOME signed in with `token`. */
    function home(name: string, token: string, username: string): string {
      const h = path.join(dir, name);
      mkdirSync(h, { recursive: true, mode: 0o700 });
      writeFileSync(path.join(h, 'profile.json'), JSON.stringify({ origin: origin.url, token, username, originKey: origin.keys.publicKeyB64 }), { mode: 0o600 });
      return h;
    }
    const cli = (h: string, args: string[]) => runCli(args, { home: h, env: { TZ: 'UTC', CASCADE_ORIGIN: '', CASCADE_PROGRAM_PASSWORD: '' } });
    async function json(h: string, args: string[]) {
      const r = await cli(h, ['--json', ...args]);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines.length, 1, `one JSON line: ${r.stdout}`);
      return JSON.parse(lines[0]!);
    }
    async function refusal(h: string, args: string[]): Promise<string> {
      const r = await cli(h, ['--json', ...args]);
      assert.equal(r.code, 1, `${args.join(' ')} should fail: ${r.stdout}${r.stderr}`);
      return JSON.parse(r.stdout.trim()).error.code;
    }

    before(async () => {
      origin = await startTestOrigin({ engine, now: Date.now() + AHEAD_MS });
      dir = mkdtempSync(path.join(os.tmpdir(), 'cascade-reserve-'));
      const op = await origin.userWithRoles(['operator']);
      const premium = await origin.userWithRoles(['member', 'premium']);
      const other = await origin.userWithRoles(['member']);
      operator = home('operator', op.token, op.username);
      member = home('member', premium.token, premium.username);
      memberToken = premium.token;
      plain = home('plain', other.token, other.username);
      const contact = await origin.call('PUT', '/me/contact', { token: premium.token, json: { email: 'broadcaster@example.org' } });
      assert.equal(contact.status, 200, JSON.stringify(contact.body));
    });
    after(async () => {
      await origin?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('an operator adds, lists and sets channels; a member books, lists, confirms, changes and cancels', async () => {
      const added = await json(operator, ['channel', 'add', 'Studio A', '--capacity', '50', '--bitrate', '2500', '--tariff', '100']);
      assert.equal(added.name, 'Studio A');
      assert.equal(added.slotMinutes, 10);
      assert.equal((await json(operator, ['channel', 'set', 'Studio A', '--quota', '90'])).monthlyQuotaSlots, 90);
      const listed = await cli(operator, ['channel', 'list']);
      assert.match(listed.stdout, /Studio A\s+50\s+2500\s+100\s+10\s+90\s+chn_/);
      assert.equal(await refusal(member, ['channel', 'add', 'Mine', '--capacity', '5', '--bitrate', '100', '--tariff', '0']), 'forbidden');

      // A day ahead by the origin's clock, on a slot boundary; given as local time in UTC.
      const start = Math.ceil((origin.clock.now() + 86_400_000) / SLOT) * SLOT;
      const local = new Date(start).toISOString().slice(0, 16).replace('T', ' ');
      const fields = ['--channel', 'Studio A', '--start', local, '--slots', '3', '--level', 'password', '--password', 'open sesame', '--title', 'Night Talk', '--genre', 'talk', '--friend', 'pal@example.org'];

      const quote = await json(member, ['reserve', 'quote', ...fields]);
      assert.equal(quote.charge, 300);
      assert.equal(quote.slots, 3);
      assert.equal(quote.start, new Date(start).toISOString());
      assert.equal(quote.deadline, new Date(start - 6 * 3_600_000).toISOString());
      assert.equal(quote.quota.afterBooking, 3);

      // Without a terminal and without --yes nothing is booked, and the user is told why.
      const unasked = await cli(member, ['reserve', 'book', ...fields]);
      assert.equal(unasked.code, 1);
      assert.match(unasked.stdout, /charge\s+300 \(3 × 100 per slot\)/, 'the quote is shown first');
      assert.match(unasked.stderr, /error \(confirmation_required\): Nothing booked.*--yes/);
      assert.equal(await refusal(member, ['reserve', 'book', ...fields]), 'confirmation_required');
      assert.deepEqual((await origin.call('GET', '/live/bookings', { token: memberToken })).body.items, []);

      const booked = await json(member, ['reserve', 'book', '--yes', ...fields]);
      const rsv: string = booked.reservationId;
      assert.match(rsv, /^rsv_/);
      assert.equal(booked.booking.status, 'awaiting_reconfirmation');
      assert.equal(booked.next, `cascade reserve confirm ${rsv} -o settings.json`);
      const id: string = booked.booking.id;

      const calendar = await cli(member, ['reserve', 'calendar', '--date', new Date(start).toISOString().slice(0, 10), '--tz', 'UTC']);
      assert.equal(calendar.code, 0, calendar.stderr);
      assert.match(calendar.stdout, /^origin time .* UTC: your clock is \d+ s \(about [12]\.\d h\) behind the origin's; round trip \d+ ms$/m);
      assert.match(calendar.stdout, /Studio A: capacity 50 viewers, 2500 kbps, 100 per 10-minute slot/);
      const hour = new Date(start).toISOString().slice(11, 13);
      assert.match(calendar.stdout, new RegExp(`\\n  ${hour}:00 .*\\*`), 'my slots are marked');
      assert.match(calendar.stdout, /Night Talk\s+\(yours\)/);
      assert.match(calendar.stdout, /legend: \. free {2}# taken {2}\* yours/);

      const list = await json(member, ['reserve', 'list']);
      assert.deepEqual(list.items.map((b: any) => [b.id, b.status]), [[id, 'awaiting_reconfirmation']]);
      const listText = await cli(member, ['reserve', 'list']);
      // The end shows its date when the booking crosses midnight (as the start hour allows, whatever the time of day).
      assert.match(listText.stdout, new RegExp(`${id}\\s+${local}–(\\d{4}-\\d\\d-\\d\\d )?\\d\\d:\\d\\d\\s+Studio A\\s+Night Talk\\s+awaiting reconfirmation\\s+300\\s+no`));

      const file = path.join(dir, 'settings.json');
      const confirmed = await json(member, ['reserve', 'confirm', rsv, '-o', file]);
      assert.equal(confirmed.charged, 300);
      assert.equal(confirmed.already, false);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      const saved = JSON.parse(readFileSync(file, 'utf8'));
      assert.ok(verifySettings(saved, origin.keys.publicKeyB64), 'the saved settings verify with the origin key');
      assert.equal(saved.document.reservationId, rsv);
      assert.equal(saved.document.password, 'open sesame');
      const again = await cli(member, ['reserve', 'confirm', rsv, '-o', file]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /already confirmed, nothing charged/);
      assert.match(again.stdout, /ingest\s+rtmp:\/\/.*\/live\/rsv_/);
      assert.equal(await refusal(member, ['reserve', 'confirm', 'rsv_' + 'x'.repeat(32)]), 'unknown_reservation');

      const changed = await json(member, ['reserve', 'change', id, '--title', 'Late Night Talk']);
      assert.equal(changed.title, 'Late Night Talk');
      const shown = await cli(member, ['reserve', 'show', id]);
      assert.match(shown.stdout, /changed\s+confirmed\s+title/);
      assert.match(shown.stdout, /reconfirmed\s+confirmed\s+charged 300/);

      const cancelled = await cli(member, ['reserve', 'cancel', id]);
      assert.equal(cancelled.code, 0, cancelled.stderr);
      assert.match(cancelled.stdout, /the charge of 300 stands/);
      assert.equal((await json(member, ['reserve', 'show', id])).status, 'cancelled');

      // Booked again and cancelled before reconfirmation: free.
      const rebooked = await json(member, ['reserve', 'book', '--yes', ...fields]);
      const free = await cli(member, ['reserve', 'cancel', rebooked.booking.id]);
      assert.match(free.stdout, /nothing charged: it was not yet reconfirmed/);

      const feed = await json(member, ['reserve', 'feed']);
      assert.match(feed.url, /\/live\/feeds\/[A-Za-z0-9_-]+\.ics$/);
    });

    test('a member who is not premium is told so by quote; bad input is refused before asking the origin', async () => {
      const start = Math.ceil((origin.clock.now() + 2 * 86_400_000) / SLOT) * SLOT;
      const args = ['reserve', 'quote', '--channel', 'Studio A', '--start', new Date(start).toISOString(), '--slots', '1', '--level', 'public', '--title', 'x', '--genre', 'y'];
      assert.equal(await refusal(plain, args), 'premium_required');
      const text = await cli(plain, args);
      assert.match(text.stderr, /error \(premium_required\): .*premium members/);
      assert.equal(await refusal(member, ['reserve', 'quote', '--channel', 'Nowhere', '--start', '2030-01-01 10:00', '--slots', '1', '--level', 'public', '--title', 'x', '--genre', 'y']), 'unknown_channel');
      assert.equal(await refusal(member, ['reserve', 'quote', '--channel', 'Studio A', '--start', 'soon', '--slots', '1', '--level', 'public', '--title', 'x', '--genre', 'y']), 'invalid_time');
      assert.equal(await refusal(member, ['reserve', 'quote', '--channel', 'Studio A', '--start', '2030-01-01 10:00', '--level', 'public', '--title', 'x', '--genre', 'y']), 'missing_option');
      assert.equal(await refusal(member, ['reserve', 'calendar', '--tz', 'Mars/Olympus']), 'invalid_time_zone');
    });

    test('cascade time shows the offset from the origin’s clock', async () => {
      const t = await json(member, ['time']);
      // The origin's clock stands two hours ahead of the real one when it started, and stays put.
      assert.ok(t.offsetMs > AHEAD_MS - 600_000 && t.offsetMs <= AHEAD_MS, `offset ${t.offsetMs}`);
      assert.equal(t.origin.epochMs, origin.clock.now());
      assert.ok(t.roundTripMs >= 0 && t.roundTripMs < 5000);
      const text = await cli(member, ['time']);
      assert.match(text.stdout, /^offset {2}\+\d+ ms \(\+\d+(\.\d)? s\): your clock is \d+ s \(about [12]\.\d h\) behind the origin's; round trip \d+ ms$/m);
    });
  });
}
