// npm run bench -- memory [--terminals 10000] [--rounds 5] [--transfers 100] [--engines pglite,postgres] [--settle-ms 6000]
//
// #19 point 5: how much memory an origin holds. For each engine, a real origin process (the
// built CLI, as `npm start` runs it) starts on an empty data directory (PGlite) or an empty
// database (PostgreSQL, a fresh database in the server of DATABASE_URL, dropped afterwards);
// its resident set (VmRSS from /proc) is read once it is idle, then after a warm-up (50
// terminals, each opening a transfer: first requests compile code and fill caches), after each of
// `--rounds` rounds that together register `--terminals` terminals and sign them in through the
// API (challenge, Ed25519 signature, session) — the per-terminal figures are the Theil–Sen slope
// over those readings (the median of the slopes between any two), so that one-off steps (a Map
// doubling, code optimized, an allocator's burst) are not divided by one round's count — and
// again after `--transfers` of them each opened a transfer of a published content
// (`POST /grants/auto`; the transfers stay open). The baseline in the same run is a bare Node
// HTTP server's resident set. Each reading is the median of three, one second apart, after
// `--settle-ms` of quiet. Beside each resident-set figure, the JavaScript heap the origin keeps
// after a full collection (the origin runs with bench/_gc-probe.cjs, which collects on SIGUSR2):
// what it retains, apart from garbage not collected yet.
// Last line: {"bench":"memory","results":[{engine, idle_rss_mb, …}, …], "pglite_idle_mb", "postgres_idle_mb", "per_terminal_bytes", "per_100_transfers_mb", "node_baseline_mb"}
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { Api } from '../src/core/http-client.ts';
import { deviceSession } from '../src/terminals/device.ts';
import { BUILT_CLI, ROOT, spawnOrigin } from '../test/helpers/processes.ts';
import { median } from './_stats.ts';

const { values } = parseArgs({
  options: {
    terminals: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '5' },
    transfers: { type: 'string', default: '100' },
    engines: { type: 'string', default: 'pglite,postgres' },
    'settle-ms': { type: 'string', default: '6000' },
  },
});
const TERMINALS = Number(values.terminals);
const ROUNDS = Math.max(1, Number(values.rounds));
const TRANSFERS = Math.min(Number(values.transfers), TERMINALS);
const SETTLE_MS = Number(values['settle-ms']);
/** Terminals registered (each opening a transfer) before the counted ones. */
const WARM_UP = 50;
const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const MB = 1024 * 1024;
const log = (msg: string) => process.stderr.write(`[bench memory] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** VmRSS and VmHWM of a process, in bytes. */
function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)![1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** The median of three readings a second apart, after `SETTLE_MS` of quiet. */
async function settledRss(pid: number): Promise<number> {
  await sleep(SETTLE_MS);
  const xs: number[] = [];
  for (let i = 0; i < 3; i++) {
    if (i) await sleep(1000);
    xs.push(memoryOf(pid).rss);
  }
  return median(xs);
}

/** The origin's JavaScript heap in use right after a full collection (bench/_gc-probe.cjs). */
async function heapAfterGc(pid: number, probeFile: string): Promise<{ heapUsed: number; heapTotal: number }> {
  rmSync(probeFile, { force: true });
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 1200 && !existsSync(probeFile); i++) await sleep(50); // (a heap snapshot, when asked for, takes seconds)
  await sleep(50); // (written in one call; give it a moment to land)
  const { heapUsed, heapTotal } = JSON.parse(readFileSync(probeFile, 'utf8'));
  return { heapUsed, heapTotal };
}

async function nodeBaseline(): Promise<number> {
  const proc = spawn(process.execPath, ['-e', "require('node:http').createServer((q, s) => s.end('ok')).listen(0, '127.0.0.1', () => console.log('ready'))"], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((r) => proc.stdout.once('data', r));
  const rss = await settledRss(proc.pid!);
  proc.kill();
  return rss;
}

/** Runs `fn` over `items` with at most `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (item: T, i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  }));
}

/** The node flags `npm start` runs the origin with (package.json), so that this measures what it runs. */
const START_NODE_FLAGS: string[] = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.start.split(' ').filter((a: string) => a.startsWith('--'));

async function measure(engine: 'pglite' | 'postgres') {
  const work = mkdtempSync(path.join(os.tmpdir(), 'cascade-bench-memory-'));
  const dbName = `cascade_bench_memory_${process.pid}`;
  let env: Record<string, string> = {}; // (info: spawnOrigin waits for the "origin listening" line)
  if (engine === 'postgres') {
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    await admin.query(`drop database if exists ${dbName}`);
    await admin.query(`create database ${dbName}`);
    await admin.end();
    const url = new URL(DATABASE_URL);
    url.pathname = `/${dbName}`;
    env = { ...env, DATABASE_URL: url.toString() };
  }
  const probe = path.join(work, 'gc-probe.json');
  env = { ...env, GC_PROBE_FILE: probe };
  const origin = await spawnOrigin({ dataDir: path.join(work, 'origin'), env, cli: BUILT_CLI, nodeArgs: [...START_NODE_FLAGS, '--expose-gc', '--require', path.join(import.meta.dirname, '_gc-probe.cjs')] });
  const pid = origin.proc.pid!;
  try {
    const idle = await settledRss(pid);
    const startPeak = memoryOf(pid).peak;
    log(`${engine}: idle ${(idle / MB).toFixed(1)} MB (peak during start-up ${(startPeak / MB).toFixed(1)} MB)`);

    const operator = new Api(origin.url, (await new Api(origin.url).post('/auth/login', origin.operator)).token);
    const login = async (username: string, password: string, roles: string[]) => {
      await operator.post('/users', { username, password, roles });
      return new Api(origin.url, (await new Api(origin.url).post('/auth/login', { username, password })).token);
    };
    const publisher = await login('bench-publisher', 'bench-password-1', ['publisher']);
    const members = await Promise.all(Array.from({ length: 10 }, (_, i) => login(`bench-member-${i}`, `bench-password-m${i}`, ['member'])));
    const published = await publisher.request('POST', '/contents?title=bench&genre=bench&price=100', {
      body: Buffer.alloc(4 * MB, 7),
      headers: { 'content-type': 'application/octet-stream' },
    });
    const register = async (n: number, prefix: string) => {
      const sessions: Api[] = [];
      await pool([...Array(n).keys()], 8, async (i) => {
        const device = await deviceSession(members[i % members.length], path.join(work, 'terminals', `${prefix}${i}`), { name: `bench-${prefix}${i}` });
        sessions[i] = new Api(origin.url, device.token);
      });
      return sessions;
    };
    const open = (sessions: Api[]) =>
      pool(sessions, 8, async (api) => {
        const offer = await api.post<{ transferId: string }>('/grants/auto', { contentId: published.id, maxPeers: 6 });
        if (!offer.transferId) throw new Error('no transfer opened');
      });
    // Warm-up, not counted: the first requests of each kind compile code and fill caches.
    await open(await register(WARM_UP, 'warm-'));
    // Readings each follow a full collection; per-terminal figures are slopes over the rounds.
    const heap0 = (await heapAfterGc(pid, probe)).heapUsed;
    const points = [{ n: 0, rss: await settledRss(pid), heap: heap0 }];
    log(`${engine}: after the warm-up, ${(points[0].rss / MB).toFixed(1)} MB resident, JavaScript heap kept ${(heap0 / MB).toFixed(1)} MB`);
    const sessions: Api[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      const n = Math.round((TERMINALS * r) / ROUNDS) - sessions.length;
      sessions.push(...(await register(n, `r${r}-`)));
      const heap = (await heapAfterGc(pid, probe)).heapUsed;
      points.push({ n: sessions.length, rss: await settledRss(pid), heap });
      log(`${engine}: ${sessions.length} terminals, ${(points.at(-1)!.rss / MB).toFixed(1)} MB resident, JavaScript heap kept ${(heap / MB).toFixed(1)} MB`);
    }
    const perTerminal = slope(points.map((p) => [p.n, p.rss]));
    const heapPerTerminal = slope(points.map((p) => [p.n, p.heap]));
    const endToEnd = (points.at(-1)!.rss - points[0].rss) / TERMINALS;
    log(`${engine}: ${perTerminal.toFixed(0)} bytes resident per terminal (JavaScript heap kept: ${heapPerTerminal.toFixed(0)} bytes), slope over ${ROUNDS} rounds; first to last reading ${endToEnd.toFixed(0)} bytes`);
    const afterTerminals = points.at(-1)!.rss;
    const heapAfterTerminals = points.at(-1)!.heap;

    log(`${engine}: opening ${TRANSFERS} transfers`);
    await open(sessions.slice(0, TRANSFERS));
    const final = await heapAfterGc(pid, probe);
    const heapPer100 = ((final.heapUsed - heapAfterTerminals) / TRANSFERS) * 100;
    const afterTransfers = await settledRss(pid);
    const perHundred = ((afterTransfers - afterTerminals) / TRANSFERS) * 100;
    log(`${engine}: ${(afterTransfers / MB).toFixed(1)} MB with ${TRANSFERS} open transfers (${(perHundred / MB).toFixed(2)} MB per 100; heap kept ${(heapPer100 / MB).toFixed(2)} MB per 100; V8 heap reserved ${(final.heapTotal / MB).toFixed(1)} MB)`);
    return {
      engine,
      idle_rss_mb: round(idle / MB),
      start_peak_mb: round(startPeak / MB),
      terminals: TERMINALS,
      per_terminal_bytes: Math.round(perTerminal),
      per_terminal_heap_bytes: Math.round(heapPerTerminal),
      per_terminal_first_to_last_bytes: Math.round(endToEnd),
      transfers: TRANSFERS,
      per_100_transfers_mb: round(perHundred / MB),
      per_100_transfers_heap_mb: round(heapPer100 / MB),
      final_rss_mb: round(afterTransfers / MB),
      final_heap_reserved_mb: round(final.heapTotal / MB),
    };
  } finally {
    await origin.stop();
    rmSync(work, { recursive: true, force: true });
    if (engine === 'postgres') {
      const admin = new pg.Client({ connectionString: DATABASE_URL });
      await admin.connect();
      await admin.query(`drop database if exists ${dbName}`);
      await admin.end();
    }
  }
}

const round = (x: number) => Math.round(x * 10) / 10;

/**
 * The Theil–Sen slope of y over x: the median of the slopes between every two readings. One
 * reading taken while the allocator still held a burst (a 70 MB one was seen once, gone at the
 * next) moves a least-squares fit by kilobytes per terminal; it moves this median little.
 */
function slope(xy: [number, number][]): number {
  const slopes: number[] = [];
  for (let a = 0; a < xy.length; a++) for (let b = a + 1; b < xy.length; b++) if (xy[b][0] !== xy[a][0]) slopes.push((xy[b][1] - xy[a][1]) / (xy[b][0] - xy[a][0]));
  return slopes.length ? median(slopes) : 0;
}

async function main() {
  // The origin runs as `npm start` runs it: the built CLI (compiled src/, no TypeScript loader).
  log('building (tsc -p tsconfig.build.json)');
  const built = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  if (built.status !== 0) throw new Error('the build failed');
  const baseline = await nodeBaseline();
  log(`a bare Node HTTP server: ${(baseline / MB).toFixed(1)} MB`);
  const results: Awaited<ReturnType<typeof measure>>[] = [];
  for (const engine of String(values.engines).split(',') as ('pglite' | 'postgres')[]) results.push(await measure(engine));
  const of = (e: string) => results.find((r) => r.engine === e);
  console.log(
    JSON.stringify({
      bench: 'memory',
      results,
      pglite_idle_mb: of('pglite')?.idle_rss_mb ?? null,
      postgres_idle_mb: of('postgres')?.idle_rss_mb ?? null,
      per_terminal_bytes: Math.max(...results.map((r) => r.per_terminal_bytes)),
      per_terminal_heap_bytes: Math.max(...results.map((r) => r.per_terminal_heap_bytes)),
      per_100_transfers_mb: Math.max(...results.map((r) => r.per_100_transfers_mb)),
      node_baseline_mb: round(baseline / MB),
    }),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
