import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { formatDays, formatWindow, localZone, parseCap, parseWindowArg } from '../../src/cli/schedule.ts';
import { writeProfile } from '../../src/cli/profile.ts';
import { AppError } from '../../src/core/errors.ts';
import { parseWindow } from '../../src/schedule/windows.ts';
import { recorder } from '../helpers/deliveries.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { runCli } from '../helpers/processes.ts';

// `cascade schedule add|list|rm|plan|history` (#5 points 1, 2, 6): the --window words,
// then the real CLI process against an origin, signed in as this device's terminal.

const code = (c: string) => (e: unknown) => {
  assert.ok(e instanceof AppError, String(e));
  assert.equal(e.code, c, e.message);
  return true;
};

describe('--window words', () => {
  test('DAYS START-END [ZONE] [cap=…] [from=…] [until=…]', () => {
    assert.deepEqual(parseWindowArg('weekdays 01:00-05:00 Europe/Berlin'), { days: ['weekdays'], start: '01:00', end: '05:00', timeZone: 'Europe/Berlin' });
    assert.deepEqual(parseWindowArg('sat,SUN 22:00–6:00 UTC cap=2MB/s until=2026-12-31 from=2026-06-01'), {
      days: ['sat', 'sun'],
      start: '22:00',
      end: '06:00',
      timeZone: 'UTC',
      capBytesPerSecond: 2_000_000,
      from: '2026-06-01',
      until: '2026-12-31',
    });
    // No zone: this machine's (the terminal's own); command-wide defaults fill the rest.
    assert.deepEqual(parseWindowArg('daily 00:00-24:00', { capBytesPerSecond: 500, from: '2026-01-01', timeZone: 'Asia/Kolkata' }), {
      capBytesPerSecond: 500,
      from: '2026-01-01',
      days: ['daily'],
      start: '00:00',
      end: '24:00',
      timeZone: 'Asia/Kolkata',
    });
    assert.equal(parseWindowArg('mon 01:00-02:00').timeZone, localZone());
    // A window's own cap wins over --cap.
    assert.equal(parseWindowArg('mon 01:00-02:00 UTC cap=1k', { capBytesPerSecond: 5 }).capBytesPerSecond, 1000);
    // JSON as it is.
    assert.deepEqual(parseWindowArg('{"days":"mon","start":"01:00","end":"02:00","timeZone":"UTC"}'), { days: 'mon', start: '01:00', end: '02:00', timeZone: 'UTC' });
    // The result is what the origin validates.
    assert.deepEqual({ ...parseWindow(parseWindowArg('weekends 22:00-06:00 Europe/Berlin cap=2MB/s')) }, {
      days: ['sat', 'sun'],
      start: '22:00',
      end: '06:00',
      timeZone: 'Europe/Berlin',
      capBytesPerSecond: 2_000_000,
    });
  });

  test('what cannot be split is refused with the origin’s codes', () => {
    assert.throws(() => parseWindowArg('weekdays'), code('invalid_window'));
    assert.throws(() => parseWindowArg('weekdays 1-5 UTC'), code('invalid_window'));
    assert.throws(() => parseWindowArg('mon 01:00-02:00 UTC Europe/Berlin'), code('invalid_window'));
    assert.throws(() => parseWindowArg('{"days":'), code('invalid_window'));
    assert.throws(() => parseWindowArg('[1]'), code('invalid_window'));
    assert.throws(() => parseWindowArg('mon 01:00-02:00 UTC cap=fast'), code('invalid_cap'));
    assert.throws(() => parseCap('0'), code('invalid_cap'));
    assert.equal(parseCap('2MB/s'), 2_000_000);
  });

  test('text forms', () => {
    assert.equal(formatDays(['mon', 'tue', 'wed', 'thu', 'fri']), 'weekdays');
    assert.equal(formatDays(['sat', 'sun']), 'weekends');
    assert.equal(formatDays(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']), 'daily');
    assert.equal(formatDays(['mon', 'wed']), 'mon,wed');
    assert.equal(
      formatWindow(parseWindow({ days: 'weekdays', start: '01:00', end: '05:00', timeZone: 'Europe/Berlin', capBytesPerSecond: 2_000_000, until: '2026-12-31' })),
      'weekdays 01:00-05:00 Europe/Berlin cap 2.0 MB/s until 2026-12-31',
    );
  });
});

describe('cascade schedule (real process)', () => {
  let o: TestOrigin;
  let home: string;
  let publisher: { userId: string; username: string };
  const cli = (...args: string[]) => runCli(args, { home });
  const json = async (...args: string[]) => {
    const r = await cli('--json', ...args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, r.stdout);
    return JSON.parse(lines[0]!);
  };
  const refused = async (expected: string, ...args: string[]) => {
    const r = await cli('--json', ...args);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(JSON.parse(r.stdout.trim()).error.code, expected, r.stdout);
  };

  before(async () => {
    o = await startTestOrigin({ config: { holdingsSpotCheck: false } });
    const member = await o.userWithRoles(['member']);
    publisher = await o.userWithRoles(['publisher']);
    home = mkdtempSync(path.join(os.tmpdir(), 'cascade-home-'));
    const previous = process.env.CASCADE_HOME;
    process.env.CASCADE_HOME = home;
    try {
      writeProfile({ origin: o.url, token: member.token, username: member.username });
    } finally {
      if (previous === undefined) delete process.env.CASCADE_HOME;
      else process.env.CASCADE_HOME = previous;
    }
  });
  after(async () => {
    await o?.close();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  test('add → plan (a new matching content appears) → history → rm, as the device’s terminal', async () => {
    const genre = `drama-${randomBytes(3).toString('hex')}`;
    const s = await json('schedule', 'add', '--genre', genre, '--window', 'weekdays 01:00-05:00 Europe/Berlin', '--window', 'daily 00:00-24:00 UTC cap=1MB/s', '--cap', '2MB/s', '--priority', '4');
    assert.match(s.id, /^sch_/);
    assert.match(s.terminalId, /^trm_/);
    assert.deepEqual(s.select, { genre });
    assert.equal(s.priority, 4);
    assert.deepEqual(
      s.windows.map((w: any) => [w.timeZone, w.capBytesPerSecond]),
      [
        ['Europe/Berlin', 2_000_000],
        ['UTC', 1_000_000],
      ],
    );
    assert.equal(s.next.open, true);

    const empty = await json('schedule', 'plan');
    assert.deepEqual(empty.items, []);
    assert.equal(empty.terminalId, s.terminalId);
    const published = await o.content.publish({ id: publisher.userId, username: publisher.username }, { title: 'The Long Night', genre, price: 0 }, Readable.from([randomBytes(3000)]));
    const p = await json('schedule', 'plan');
    assert.deepEqual(p.items.map((i: any) => [i.contentId, i.scheduleId, i.open, i.capBytesPerSecond]), [[published.id, s.id, true, 1_000_000]]);
    const text = await cli('schedule', 'plan');
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^due\s+window ends\s+title/m);
    assert.match(text.stdout, /now .* The Long Night/);

    const list = await cli('schedule', 'list');
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`${s.id}\\s+genre "${genre}"\\s+weekdays 01:00-05:00 Europe/Berlin cap 2.0 MB/s; daily 00:00-24:00 UTC cap 1.0 MB/s\\s+4\\s+open until`));

    // The dispatcher records a delivery; history shows it.
    const rec = recorder(o.schedules.deliveries, () => o.clock.now());
    const d = await rec.due({ terminalId: s.terminalId, contentId: published.id, scheduleId: s.id, dueAt: o.clock.now() });
    await rec.start(d, 'origin');
    await rec.end(d, 'deferred', { reason: 'window_closed', bytes: 1234 });
    const h = await json('schedule', 'history');
    assert.deepEqual(h.entries.map((e: any) => [e.id, e.outcome, e.reason, e.bytes, e.title]), [[d.id, 'deferred', 'window_closed', 1234, 'The Long Night']]);
    const htext = await cli('schedule', 'history');
    assert.match(htext.stdout, /1234\s+origin\s+deferred \(window_closed\)\s+0\s+The Long Night/);

    const rm = await cli('schedule', 'rm', s.id);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(rm.stdout.trim(), `removed schedule ${s.id}`);
    assert.deepEqual((await json('schedule', 'list')).schedules, []);
    await refused('unknown_schedule', 'schedule', 'rm', s.id);
  });

  // Every refusal path is in service.test.ts; here: that the CLI carries the codes through.
  test('refusals print the code and exit 1; nothing is stored', async () => {
    const before = (await json('schedule', 'list')).schedules.length;
    await refused('empty_selection', 'schedule', 'add', '--window', 'daily 01:00-02:00 UTC');
    await refused('unknown_time_zone', 'schedule', 'add', '--genre', 'a', '--window', 'daily 01:00-02:00 Mars/Olympus');
    await refused('invalid_window', 'schedule', 'add', '--genre', 'a');
    await refused('invalid_cap', 'schedule', 'add', '--genre', 'a', '--window', 'daily 01:00-02:00 UTC', '--cap', 'lots');
    await refused('unknown_content', 'schedule', 'add', '--content', 'a'.repeat(64), '--window', 'daily 01:00-02:00 UTC');
    const text = await cli('schedule', 'add', '--window', 'daily 01:00-02:00 UTC');
    assert.equal(text.code, 1);
    assert.match(text.stderr, /^error \(empty_selection\): /);
    assert.equal((await json('schedule', 'list')).schedules.length, before);
    // A publisher by username works.
    const byName = await json('schedule', 'add', '--publisher', publisher.username, '--window', 'daily 01:00-02:00 UTC');
    assert.deepEqual(byName.select, { publisherId: publisher.userId, publisher: publisher.username });
  });
});
