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
// Each (instant, file) is a job of its own, two at a time from one queue (FAKETIME_JOBS);
// one line per instant, then the total; logs in FAKETIME_LOG_DIR (default: a temporary directory).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { summaryLines, totals } from './test-summary.mjs';
import { useBuiltCliForTests } from './cli-build.mjs';

// `quick`: only the files of a second or two (QUICK_FILES) at that instant — the rules of dates
// and zones; every file at the first three, where a leak of the machine's time shows first
// (CI's 30 minutes: the long files at the two other instants took 2–3 minutes of it).
export const INSTANTS = [
  { at: '2027-01-04T02:00:00Z', tz: 'UTC', why: 'a Monday 02:00 UTC: Berlin-night windows are open in real time' },
  { at: '2027-03-28T00:59:30Z', tz: 'Europe/Berlin', why: 'clocks go forward in Europe half a minute later' },
  { at: '2027-10-31T00:59:30Z', tz: 'Europe/Berlin', why: 'clocks go back in Europe half a minute later' },
  { at: '2028-02-29T12:00:00Z', tz: 'America/New_York', why: 'a leap day', quick: true },
  { at: '2027-12-31T23:59:30Z', tz: 'UTC', why: 'the year ends half a minute later', quick: true },
];

// Tests of what depends on time: schedules and windows, off-peak tariffs and settlement,
// expiries (sessions, grants, vouchers, holds), heartbeats and presence, the agent's
// scheduled deliveries and journal, and live bookings' slot rules (S3; test/live/bookings.test.ts passes under faketime too,
// 41 s an instant, left out to keep CI under 30 minutes). A few minutes per instant at most.
export const QUICK_FILES = [
  'test/schedule/windows.test.ts', // about a second or two each
  'test/ledger/tariff.test.ts',
  'test/live/slots.test.ts',
  'test/schedule/plan.test.ts',
  'test/transfer/grant-token.test.ts',
  'test/terminals/presence.test.ts',
  'test/schedule/dispatcher-live.test.ts',
];
// Longest first (rough seconds per instant on the two-core machine): the queue below starts them early.
export const FILES = [
  'test/schedule/delivery.test.ts', // 30–45
  'test/e2e/scheduled-agent.test.ts', // 17–30
  'test/agent/scheduled.test.ts', // 10–25
  'test/schedule/service.test.ts', // 8–20
  'test/agent/heartbeats.test.ts', // 8–20
  'test/terminals/heartbeat.test.ts', // 5–16
  'test/terminals/login.test.ts', // 6–16
  ...QUICK_FILES,
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

/** One test file at one instant: its own run-tests.mjs, whose fake time starts at the instant when the job starts. */
function runJob(job, lib, templateDir) {
  const env = { ...environment(lib, job.at, job.tz), TEST_SUMMARY: job.summaryFile, CASCADE_TEST_TEMPLATE_DIR: templateDir };
  const fd = openSync(job.logFile, 'w');
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['scripts/run-tests.mjs', job.file], { env, stdio: ['ignore', fd, fd] });
    child.on('error', (err) => (closeSync(fd), resolve({ status: 1, error: err.message, ms: Date.now() - started })));
    child.on('exit', (status) => (closeSync(fd), resolve({ status, ms: Date.now() - started })));
  });
}

async function main() {
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
  // One migrated PGlite template for every job (test/helpers/db.ts): it holds no time.
  const templateDir = mkdtempSync(path.join(os.tmpdir(), 'cascade-test-template-'));
  // The jobs' child processes run dist/ (scripts/cli-build.mjs): compiled here once, not by each job.
  useBuiltCliForTests();
  const parallel = Math.max(1, Number(process.env.FAKETIME_JOBS ?? 2));
  const runs = instants.map(({ at, tz, why, quick }) => {
    const env = environment(lib, at, tz);
    const seen = nodeSees(env);
    if (Math.abs(Date.parse(seen.iso) - Date.parse(at)) > 60_000) throw new Error(`under libfaketime node sees ${seen.iso}, not ${at}`);
    return { at, tz, why, quick, seen, jobs: [], first: Infinity, last: 0 };
  });
  // One queue of (instant, file) jobs, `parallel` at a time (FAKETIME_JOBS, default 2: the machines have two cores).
  // The files' order first, so that the long files of every instant start early.
  const queue = [];
  for (const file of files.length ? files : FILES) {
    for (const run of runs) {
      if (run.quick && !files.length && !QUICK_FILES.includes(file)) continue;
      const name = `${run.at.replace(/[:]/g, '')}-${file.replace(/^test\//, '').replace(/[/.]/g, '_')}`;
      const job = { at: run.at, tz: run.tz, file, run, summaryFile: path.join(logs, `${name}.json`), logFile: path.join(logs, `${name}.log`) };
      run.jobs.push(job);
      queue.push(job);
    }
  }
  const started = Date.now();
  const worker = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      job.run.first = Math.min(job.run.first, Date.now());
      job.result = await runJob(job, lib, templateDir);
      job.run.last = Math.max(job.run.last, Date.now());
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  rmSync(templateDir, { recursive: true, force: true });
  let failed = 0;
  for (const { at, tz, why, seen, jobs, first, last } of runs) {
    const merged = { engines: {}, files: {}, fuzz: {}, failed: [] };
    const broken = [];
    for (const job of jobs) {
      const s = existsSync(job.summaryFile) && readFileSync(job.summaryFile, 'utf8').trim() ? JSON.parse(readFileSync(job.summaryFile, 'utf8')) : null;
      if (s) {
        Object.assign(merged.files, s.files);
        merged.failed.push(...s.failed);
      }
      if (!s || job.result.status !== 0 || totals(s).failed) broken.push(job);
    }
    const t = totals(merged);
    const ok = broken.length === 0;
    if (!ok) failed++;
    const seconds = Math.round((last - first) / 1000);
    const busy = Math.round(jobs.reduce((sum, j) => sum + j.result.ms, 0) / 1000);
    console.log(`faketime ${at} (${why}; TZ=${tz}; node saw ${seen.local}): ${ok ? 'pass' : 'FAIL'}, ${t.passed} passed, ${t.failed} failed, ${busy} s of test files (${seconds} s from first to last)`);
    for (const l of summaryLines(merged, 5).filter((l) => /^ {2}(failed|…)/.test(l))) console.log(l);
    for (const job of broken) console.log(`  log: ${job.logFile}${job.result.error ? ` (${job.result.error})` : ''}`);
  }
  const counts = [...new Set(runs.map((r) => r.jobs.length))].join(' or ');
  console.log(`faketime: ${runs.length} instants × ${counts} files, ${parallel} at a time, ${Math.round((Date.now() - started) / 1000)} s`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.log(`faketime: ${err.message}`);
    process.exit(1);
  },
);
