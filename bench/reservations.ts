// npm run bench -- reservations [--clients 16] [--seconds 10] [--warmup 1] [--channels 8] [--days 90]
//                              [--health-seconds 3] [--pool N] [--keep]
//
// #14: live channel bookings under concurrent load, end to end. A real origin runs in a child
// process (this file with --serve: startOrigin, the real clock, port 0 on loopback, a temporary
// data directory), so the clients' own work does not take the origin's thread; --in-process
// runs it in this process instead. It runs on
// PostgreSQL (DATABASE_URL; without it the local server's Unix socket when there is one, as an
// operator would connect an origin on the database's machine, else postgres://postgres@127.0.0.1:5432/test; a fresh schema,
// dropped after unless --keep). Setup (not timed): `--channels` channels (10-minute slots,
// tariff 1, a monthly quota large enough never to refuse) and `--clients` premium members,
// each with an e-mail address and a token.
//
// Timed: `--clients` concurrent HTTP clients (undici, one keep-alive connection each), each as
// its own member, each POSTing /live/bookings one after another: a random channel, a random
// 10-minute-aligned start between 1 hour and `--days` days ahead, 1–3 slots. After `--warmup`
// seconds the counts start; they run `--seconds` more. Answers: 201 (booked), 409 slot_taken
// (a conflict: the slots were held already, by the database's exclusion constraint), anything
// else an error (printed; there should be none). p50/p99 are over every timed request.
//
// Checked after (not timed): no two bookings on a channel that are not cancelled overlap (a
// self-join on live_bookings) → double_bookings, and the table holds exactly the 201s.
// Same-run baseline: GET /health with the same clients for `--health-seconds` → health_per_s.
// CPU over the timed part, per request (Linux /proc): the origin process, every local process
// named postgres (a local server's backends), and this process (the clients) — what a booking
// costs each, steadier than the rates on a shared machine.
// Last line: {"bench":"reservations","bookings_per_s":…,"conflicts":…,"double_bookings":0,…}
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { monotonicMs, systemClock } from '../src/core/clock.ts';
import { loadConfig } from '../src/core/config.ts';
import { dropSchema, openDatabase, sql } from '../src/db/connection.ts';
import { startOrigin } from '../src/server.ts';
import { cpuMs, startServeChild } from './_process.ts';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '1' },
    channels: { type: 'string', default: '8' },
    days: { type: 'string', default: '90' },
    'health-seconds': { type: 'string', default: '3' },
    keep: { type: 'boolean', default: false },
    serve: { type: 'boolean', default: false },
    'in-process': { type: 'boolean', default: false },
    schema: { type: 'string' },
  },
});
const CLIENTS = Number(values.clients);
const SECONDS = Number(values.seconds);
const WARMUP = Number(values.warmup);
const CHANNELS = Number(values.channels);
const DAYS = Number(values.days);
const HEALTH_SECONDS = Number(values['health-seconds']);
const LOCAL_SOCKET_DIR = '/var/run/postgresql';
const DATABASE_URL =
  process.env.DATABASE_URL ??
  (existsSync(`${LOCAL_SOCKET_DIR}/.s.PGSQL.5432`) ? `postgresql://postgres@localhost/test?host=${LOCAL_SOCKET_DIR}` : 'postgres://postgres@127.0.0.1:5432/test');
/** How the origin reaches PostgreSQL, for the result line: a Unix socket or TCP. */
const DB_CONNECTION = /[?&]host=\//.test(DATABASE_URL) ? 'socket' : 'tcp';
const SLOT = 10 * 60_000;
const log = (msg: string) => process.stderr.write(`[bench reservations] ${msg}\n`);

const schema = values.schema ?? `bench_rsv_${process.pid}_${randomBytes(3).toString('hex')}`;

/** Starts the origin on `schema` and sets up channels and members; answers where and who. */
async function serveOrigin() {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'cascade-bench-rsv-'));
  const handle = await openDatabase({ databaseUrl: DATABASE_URL, schema });
  const config = {
    ...loadConfig({}),
    port: 0,
    rtmpPort: 0,
    dataDir,
    logLevel: 'silent',
    databaseUrl: DATABASE_URL,
    signupCredit: 1_000_000_000,
    liveMonthlyQuotaSlots: 1_000_000,
    liveBookAheadDays: Math.max(90, DAYS + 1),
  };
  const origin = await startOrigin({ config, db: handle });
  const channels: string[] = [];
  for (let i = 0; i < CHANNELS; i++) {
    const c = await origin.live.channels.add({ name: `bench ${i}`, capacity: 100, bitrateKbps: 2500, tariffPerSlot: 1, slotMinutes: 10, monthlyQuotaSlots: 1_000_000 });
    channels.push(c.id);
  }
  const tokens: string[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const user = await origin.accounts.createUser(`bench${i}`, 'bench password long enough', ['member', 'premium'] as any);
    await origin.accounts.setContact(user.id, { email: `bench${i}@example.org` });
    tokens.push(await origin.accounts.issueToken(user.id, null, 'bench', null));
  }
  return {
    setup: { url: origin.url, channels, tokens },
    async close() {
      await origin.close();
      await handle.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

if (values.serve) {
  // The child: serve until the parent closes our stdin.
  const served = await serveOrigin();
  process.stdout.write(JSON.stringify(served.setup) + '\n');
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  await served.close();
  process.exit(0);
}

/** The origin in a child process (default) or in this one. */
async function startServed(): Promise<{ setup: { url: string; channels: string[]; tokens: string[] }; pid: number; close(): Promise<void> }> {
  if (values['in-process']) return { ...(await serveOrigin()), pid: process.pid };
  return startServeChild(['--schema', schema, '--clients', String(CLIENTS), '--channels', String(CHANNELS), '--days', String(DAYS)]);
}

const served = await startServed();
const handle = await openDatabase({ databaseUrl: DATABASE_URL, schema, migrate: false });
const pool = new Pool(served.setup.url, { connections: CLIENTS, pipelining: 1, keepAliveTimeout: 60_000 });

try {
  const { channels, tokens } = served.setup;
  log(`${CHANNELS} channels, ${CLIENTS} premium members on ${served.setup.url} (schema ${schema}; origin ${values['in-process'] ? 'in this process' : 'in its own process'})`);

  // ---- the timed run ----
  let seed = 1;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const base = Math.ceil((systemClock.now() + 3_600_000) / SLOT) * SLOT;
  const span = Math.floor((DAYS * 86_400_000 - 3_600_000) / SLOT);
  const booking = () => {
    const start = base + Math.floor(rand() * span) * SLOT;
    return {
      channelId: channels[Math.floor(rand() * channels.length)]!,
      start: new Date(start).toISOString(),
      end: new Date(start + (1 + Math.floor(rand() * 3)) * SLOT).toISOString(),
      openLevel: 'public',
      title: 'Bench program',
      genre: 'bench',
    };
  };

  const counts = { booked: 0, conflicts: 0, errors: 0 };
  const errors = new Map<string, number>();
  const latencies: number[] = [];
  const t0 = monotonicMs();
  const measureFrom = t0 + WARMUP * 1000;
  const stopAt = measureFrom + SECONDS * 1000;
  // The origin's CPU over the timed part: what one booking costs it, less sensitive to a busy machine than the rate.
  // The database's backends too, when it runs here (backends that end meanwhile are not counted).
  let cpuFrom: number | null = null;
  let dbCpuFrom: number | null = null;
  let clientCpuFrom = process.cpuUsage();
  const cpuTimer = setTimeout(() => {
    clientCpuFrom = process.cpuUsage();
    cpuFrom = cpuMs(served.pid);
    dbCpuFrom = postgresCpuMs();
  }, Math.max(0, measureFrom - monotonicMs()));
  let warm = { booked: 0, conflicts: 0 };
  await Promise.all(
    tokens.map(async (token) => {
      for (;;) {
        const sent = monotonicMs();
        if (sent >= stopAt) return;
        const r = await call('POST', '/live/bookings', token, booking());
        const done = monotonicMs();
        const timed = sent >= measureFrom;
        if (timed) latencies.push(done - sent);
        const code = r.status === 409 ? JSON.parse(r.text)?.error?.code : undefined;
        const bucket = r.status === 201 ? 'booked' : code === 'slot_taken' ? 'conflicts' : 'errors';
        if (bucket === 'errors') {
          const key = `${r.status} ${r.text.slice(0, 200)}`;
          errors.set(key, (errors.get(key) ?? 0) + 1);
        }
        if (timed) counts[bucket]++;
        else if (bucket !== 'errors') warm[bucket]++;
      }
    }),
  );
  const elapsed = (monotonicMs() - measureFrom) / 1000;
  clearTimeout(cpuTimer);
  const cpuTo = cpuMs(served.pid);
  const clientCpu = process.cpuUsage(clientCpuFrom);
  const dbCpuTo = postgresCpuMs();
  const attempts = counts.booked + counts.conflicts + counts.errors;
  const originCpuMsPerAttempt = cpuFrom !== null && cpuTo !== null && attempts > 0 ? Math.round(((cpuTo - cpuFrom) / attempts) * 100) / 100 : null;
  const dbCpuMsPerAttempt = dbCpuFrom !== null && dbCpuTo !== null && attempts > 0 ? Math.round(((dbCpuTo - dbCpuFrom) / attempts) * 100) / 100 : null;
  if (dbCpuMsPerAttempt) log(`local postgres processes' CPU: ${dbCpuMsPerAttempt} ms a request`);
  log(`clients' CPU (this process): ${((clientCpu.user + clientCpu.system) / 1000 / Math.max(1, attempts)).toFixed(2)} ms a request`);
  if (originCpuMsPerAttempt !== null) log(`origin CPU: ${originCpuMsPerAttempt} ms a request (${(((cpuTo! - cpuFrom!) / 1000 / elapsed) * 100).toFixed(0)} % of a core)`);
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => Math.round((latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0) * 10) / 10;
  log(`timed ${elapsed.toFixed(1)} s: ${counts.booked} booked, ${counts.conflicts} conflicts, ${counts.errors} errors (warm-up: ${warm.booked} booked, ${warm.conflicts} conflicts)`);
  for (const [e, n] of errors) log(`error ×${n}: ${e}`);

  // ---- checks ----
  const overlaps = await sql<{ n: number }>`
    select count(*)::int as n from live_bookings a join live_bookings b
      on a.channel_id = b.channel_id and a.id < b.id
     and a.status <> 'cancelled' and b.status <> 'cancelled'
     and a.start_at < b.end_at and b.start_at < a.end_at`.execute(handle.db);
  const doubleBookings = overlaps.rows[0]!.n;
  const stored = (await sql<{ n: number }>`select count(*)::int as n from live_bookings`.execute(handle.db)).rows[0]!.n;
  const answered201 = counts.booked + warm.booked;
  log(`live_bookings holds ${stored} rows; ${answered201} answered 201; ${doubleBookings} overlapping pairs`);
  if (stored !== answered201) log(`MISMATCH: ${stored} rows stored, ${answered201} bookings answered 201`);

  // ---- baseline: GET /health with the same clients ----
  let healthy = 0;
  const h0 = monotonicMs();
  const hStop = h0 + HEALTH_SECONDS * 1000;
  await Promise.all(
    tokens.map(async () => {
      while (monotonicMs() < hStop) {
        const r = await call('GET', '/health');
        if (r.status === 200) healthy++;
      }
    }),
  );
  const healthPerS = Math.round(healthy / ((monotonicMs() - h0) / 1000));
  log(`baseline GET /health: ${healthPerS}/s`);

  const result = {
    bench: 'reservations',
    bookings_per_s: Math.round(counts.booked / elapsed),
    attempts_per_s: Math.round(attempts / elapsed),
    origin_cpu_ms_per_request: originCpuMsPerAttempt,
    db_cpu_ms_per_request: dbCpuMsPerAttempt,
    booked: counts.booked,
    conflicts: counts.conflicts,
    double_bookings: doubleBookings,
    p99_ms: pct(99),
    p50_ms: pct(50),
    errors: counts.errors,
    clients: CLIENTS,
    channels: CHANNELS,
    seconds: SECONDS,
    health_per_s: healthPerS,
    ratio: Math.round((counts.booked / elapsed / healthPerS) * 1000) / 1000,
    engine: 'postgres',
    db_connection: DB_CONNECTION,
    origin_process: values['in-process'] ? 'same' : 'own',
  };
  console.log(JSON.stringify(result));
  if (doubleBookings > 0) process.exitCode = 1;
} finally {
  await pool.close();
  await served.close();
  await handle.close();
  if (!values.keep) await dropSchema(DATABASE_URL, schema);
  else log(`kept schema ${schema}`);
}

/** CPU time of every process named `postgres` on this machine (a local database's backends), in ms; null without /proc. */
function postgresCpuMs(): number | null {
  try {
    let total = 0;
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres') total += cpuMs(Number(pid)) ?? 0;
      } catch {
        // gone meanwhile
      }
    }
    return total;
  } catch {
    return null;
  }
}

async function call(method: string, route: string, token?: string, json?: unknown): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (json !== undefined) headers['content-type'] = 'application/json';
  const res = await pool.request({ method: method as 'GET', path: route, headers, body: json === undefined ? undefined : JSON.stringify(json) });
  return { status: res.statusCode, text: await res.body.text() };
}
