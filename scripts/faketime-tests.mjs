// Runs the time-sensitive test files under libfaketime (Debian: `apt-get install faketime`)
// at instants where a read of the machine's time would show: code under test must take
// its time from the injected Clock, and tests must pass whatever the hour and date.
//
//   node scripts/faketime-tests.mjs            every instant below, the files below
//   node scripts/faketime-tests.mjs --list     the files
//   node scripts/faketime-tests.mjs [--at 2028-02-29T12:00:00Z] [files…]
//
// The fake time starts at the instant and then runs on (FAKETIME "+offset"), the same in
// every process the tests start; timers stay on the real monotonic clock. PGlite only
// (the engines differ in storage, not in time; FAKETIME_POSTGRES=1 keeps DATABASE_URL).
// One line per instant; logs in FAKETIME_LOG_DIR (default: a temporary directory).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { summaryLines, totals } from './test-summary.mjs';

export const INSTANTS = [
  { at: '2027-01-04T02:00:00Z', tz: 'UTC', why: 'a Monday 02:00 UTC: Berlin-night windows are open in real time' },
  { at: '2027-03-28T00:59:30Z', tz: 'Europe/Berlin', why: 'clocks go forward in Europe half a minute later' },
  { at: '2027-10-31T00:59:30Z', tz: 'Europe/Berlin', why: 'clocks go back in Europe half a minute later' },
  { at: '2028-02-29T12:00:00Z', tz: 'America/New_York', why: 'a leap day' },
  { at: '2027-12-31T23:59:30Z', tz: 'UTC', why: 'the year ends half a minute later' },
];

// Tests of what depends on time: schedules and windows, off-peak tariffs and settlement,
// expiries (sessions, grants, vouchers, holds), heartbeats and presence, the agent's
// scheduled deliveries and journal, and live bookings' slot rules (S3; test/live/bookings.test.ts passes under faketime too,
// 41 s an instant, left out to keep CI under 30 minutes). A few minutes per instant at most.
export const FILES = [
  'test/schedule/service.test.ts',
  'test/schedule/delivery.test.ts',
  'test/schedule/windows.test.ts',
  'test/schedule/plan.test.ts',
  'test/schedule/dispatcher-live.test.ts',
  'test/e2e/scheduled-agent.test.ts',
  'test/agent/scheduled.test.ts',
  'test/agent/heartbeats.test.ts',
  'test/ledger/tariff.test.ts',
  'test/terminals/login.test.ts',
  'test/terminals/heartbeat.test.ts',
  'test/terminals/presence.test.ts',
  'test/transfer/grant-token.test.ts',
  'test/live/slots.test.ts',
];

function findLibfaketime() {
  if (process.env.FAKETIME_LIB) return process.env.FAKETIME_LIB;
  const dirs = ['/usr/lib', '/usr/local/lib', ...readdirSync('/usr/lib').map((d) => path.join('/usr/lib', d))];
  for (const d of dirs) {
    const lib = path.join(d, 'faketime', 'libfaketime.so.1');
    if (existsSync(lib)) return lib;
  }
  throw new Error('libfaketime not found: install the Debian package `faketime` (or set FAKETIME_LIB)');
}

function environment(lib, at, tz) {
  const offset = Math.ceil((Date.parse(at) - Date.now()) / 1000); // whole seconds: it starts at the instant or within a second after
  const env = { ...process.env, LD_PRELOAD: lib, FAKETIME: `${offset >= 0 ? '+' : '-'}${Math.abs(offset)}`, FAKETIME_DONT_FAKE_MONOTONIC: '1', TZ: tz };
  if (!process.env.FAKETIME_POSTGRES) delete env.DATABASE_URL;
  return env;
}

/** What node's Date says under this environment: the fake time must really reach it. */
function nodeSees(env) {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(JSON.stringify({ iso: new Date().toISOString(), local: new Date().toString().slice(0, 33) }))'], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`node did not start under libfaketime: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function main() {
  const args = process.argv.slice(2);
  if (args.includes('--list')) {
    console.log(FILES.join('\n'));
    return 0;
  }
  const atIndex = args.indexOf('--at');
  const instants = atIndex >= 0 ? [{ at: args[atIndex + 1], tz: process.env.TZ ?? 'UTC', why: 'chosen' }] : INSTANTS;
  const files = args.filter((a, i) => a !== '--at' && (atIndex < 0 || i !== atIndex + 1));
  const lib = findLibfaketime();
  const logs = process.env.FAKETIME_LOG_DIR ?? mkdtempSync(path.join(os.tmpdir(), 'cascade-faketime-'));
  mkdirSync(logs, { recursive: true });
  let failed = 0;
  for (const { at, tz, why } of instants) {
    const env = environment(lib, at, tz);
    const seen = nodeSees(env);
    if (Math.abs(Date.parse(seen.iso) - Date.parse(at)) > 60_000) throw new Error(`under libfaketime node sees ${seen.iso}, not ${at}`);
    const name = at.replace(/[:]/g, '');
    const summaryFile = path.join(logs, `${name}.json`);
    const logFile = path.join(logs, `${name}.log`);
    const started = Date.now();
    const r = spawnSync(`${process.execPath} scripts/run-tests.mjs ${(files.length ? files : FILES).join(' ')} > ${logFile} 2>&1`, {
      shell: true,
      env: { ...env, TEST_SUMMARY: summaryFile },
      stdio: 'inherit',
    });
    const seconds = Math.round((Date.now() - started) / 1000);
    let t = { passed: 0, failed: 0 };
    let lines = [];
    if (existsSync(summaryFile) && readFileSync(summaryFile, 'utf8').trim()) {
      const s = JSON.parse(readFileSync(summaryFile, 'utf8'));
      t = totals(s);
      lines = summaryLines(s, 5).filter((l) => /^ {2}(failed|…)/.test(l));
    }
    const ok = r.status === 0 && t.failed === 0;
    if (!ok) failed++;
    console.log(`faketime ${at} (${why}; TZ=${tz}; node saw ${seen.local}): ${ok ? 'pass' : 'FAIL'}, ${t.passed} passed, ${t.failed} failed, ${seconds} s`);
    for (const l of lines) console.log(l);
    if (!ok) console.log(`  log: ${logFile}`);
  }
  return failed ? 1 : 0;
}

try {
  process.exit(main());
} catch (err) {
  console.log(`faketime: ${err.message}`);
  process.exit(1);
}
