// npm run bench -- swarm [--mib 64] [--peers 16] [--origin-rate 16] [--peer-rate 8] [--threads 2] [--refresh-ms 1000]
//                        [--slow-fraction 0.25 --slow-rate 1]   (rates in MB/s)
//
// Distributes one content of F bytes from an origin capped at u_s to N agents capped
// at u_i each (token buckets on loopback), and measures the time until the last agent
// holds a verified copy. Compared in the same run with (a) the fluid-model lower bound
// of Kumar & Ross (2006), T_min = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)) — downloads are
// uncapped here, so F/d_min = 0 — and (b) the same distribution from the origin alone.
// Last line: {"bench":"swarm","peers":N,"file_bytes":F,"seconds":…,"settled_seconds":…,"bound_seconds":…,
//   "ratio_to_bound":…,"origin_only_seconds":…,"speedup_vs_origin_only":…,"origin_bytes_over_file":…}
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { AgentOptions } from '../src/agent/agent.ts';
import { Api } from '../src/core/http-client.ts';
import { spawnOrigin, type OriginProcess } from '../test/helpers/processes.ts';
import { median } from './_stats.ts';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '64' },
    peers: { type: 'string', default: '16' },
    'origin-rate': { type: 'string', default: '16' },
    'peer-rate': { type: 'string', default: '8' },
    'skip-origin-only': { type: 'boolean', default: false },
    threads: { type: 'string', default: '2' },
    'refresh-ms': { type: 'string', default: '1000' },
    'slow-fraction': { type: 'string', default: '0' },
    'slow-rate': { type: 'string', default: '1' },
  },
});
const F = Number(values.mib) * 1024 * 1024;
const N = Number(values.peers);
const us = Number(values['origin-rate']) * 1e6;
const ui = Number(values['peer-rate']) * 1e6;
// A mixed population (#19): the first slowCount agents upload at slowRate instead of ui.
const slowCount = Math.round(N * Number(values['slow-fraction']));
const slowRate = Number(values['slow-rate']) * 1e6;
const log = (msg: string) => process.stderr.write(`[bench swarm] ${msg}\n`);
const work = mkdtempSync(path.join(os.tmpdir(), 'cascade-swarm-bench-'));

/** CPU seconds (user + system) a process has used, from /proc. */
function procCpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function originServedBytes(origin: OriginProcess): Promise<number> {
  const text = await (await fetch(`${origin.url}/metrics`)).text();
  const m = /^cascade_piece_bytes_served_total (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** Per route: requests and seconds spent (sum of durations), from the origin's metrics. */
async function originRoutes(origin: OriginProcess): Promise<Map<string, { n: number; s: number }>> {
  const text = await (await fetch(`${origin.url}/metrics`)).text();
  const out = new Map<string, { n: number; s: number }>();
  for (const m of text.matchAll(/^cascade_http_request_seconds_(count|sum)\{method="(\w+)",route="([^"]*)"\} (\S+)$/gm)) {
    const key = `${m[2]} ${m[3]}`;
    const e = out.get(key) ?? { n: 0, s: 0 };
    if (m[1] === 'count') e.n = Number(m[4]);
    else e.s = Number(m[4]);
    out.set(key, e);
  }
  return out;
}

/**
 * One distribution: N fresh agents (in `workers` threads) fetch the content at once;
 * returns seconds until the last one holds a verified copy.
 */
async function distribute(label: string, maxPeers: number): Promise<{ seconds: number; settled: number; originBytes: number; median: number; duplicates: number }> {
  const origin = await spawnOrigin({ dataDir: path.join(work, `${label}-origin`), env: { ORIGIN_UP_RATE: String(us), HEARTBEAT_FLUSH_MS: '1000' } });
  const workers: Worker[] = [];
  try {
    const op = new Api(origin.url, (await new Api(origin.url).post('/auth/login', origin.operator)).token);
    const originKey = (await op.get('/origin')).publicKey;
    await op.post('/users', { username: 'publisher', password: 'publisher-password', roles: ['publisher'] });
    const pub = new Api(origin.url, (await new Api(origin.url).post('/auth/login', { username: 'publisher', password: 'publisher-password' })).token);
    const { id } = await pub.request('POST', '/contents?title=swarm&genre=bench&price=1', { body: randomBytes(F), headers: { 'content-type': 'application/octet-stream' } });
    const configs: AgentOptions[] = [];
    for (let i = 0; i < N; i++) {
      await op.post('/users', { username: `agent${i}`, password: 'agent-password-1', roles: ['member'] });
      const token = (await new Api(origin.url).post('/auth/login', { username: `agent${i}`, password: 'agent-password-1' })).token;
      configs.push({
        origin: origin.url,
        token,
        originKey,
        home: path.join(work, `${label}-agent${i}`),
        name: `agent${i}`,
        region: 'bench',
        network: 'loopback',
        upRate: i < slowCount ? slowRate : ui,
        slots: 4,
        heartbeatMs: 1000,
        downloads: { maxPeers, refreshMs: Number(values['refresh-ms']), stallMs: 5000, perPeer: 2, concurrency: 8 },
      });
    }
    const threads = Number(values.threads);
    for (let w = 0; w < threads; w++) {
      const mine = configs.filter((_, i) => i % threads === w);
      workers.push(new Worker(new URL('./swarm-agents.worker.mjs', import.meta.url), { workerData: { agents: mine, contentId: id } }));
    }
    await Promise.all(workers.map((w) => once(w, 'message')));
    const before = await originServedBytes(origin);
    const routesBefore = await originRoutes(origin);
    log(`${label}: ${N} agents in ${threads} threads start`);
    const started = Date.now();
    const windowStart = process.hrtime.bigint() / 1000n;
    const originCpu0 = procCpuSeconds(origin.proc.pid!);
    const results = workers.map((w) => once(w, 'message').then(([m]) => m as { held: number[]; times: number[]; settled: number[]; cpuSeconds: number; duplicates: number; misses: { busy: number; unavailable: number; asks: number }; firstSeen: [number, number][] }));
    for (const w of workers) w.postMessage({ type: 'go' });
    const done = await Promise.all(results);
    // For cutting CPU profiles to the distribution (bench/_cpuprofile.ts --window).
    log(`${label}: window ${windowStart}-${process.hrtime.bigint() / 1000n}`);
    // Until the last agent holds a whole verified copy; and until its fetch also settled with the origin.
    const seconds = (Math.max(...done.flatMap((d) => d.times)) - started) / 1000;
    const settled = (Math.max(...done.flatMap((d) => d.settled)) - started) / 1000;
    const firstDone = (Math.min(...done.flatMap((d) => d.times)) - started) / 1000;
    const medianDone = median(done.flatMap((d) => d.times.map((t) => (t - started) / 1000)));
    const duplicates = done.reduce((n, d) => n + d.duplicates, 0);
    const originBytes = (await originServedBytes(origin)) - before;
    // What the agents asked of the origin meanwhile (requests/s and the seconds they took, summed): where its CPU went.
    const calls = [...(await originRoutes(origin))].map(([k, e]) => ({ k, n: e.n - (routesBefore.get(k)?.n ?? 0), s: e.s - (routesBefore.get(k)?.s ?? 0) })).filter((c) => c.n > 0);
    calls.sort((a, b) => b.s - a.s);
    const secondsSoFar = (Date.now() - started) / 1000;
    log(`${label}: origin calls: ${calls.slice(0, 8).map((c) => `${c.k} ${(c.n / secondsSoFar).toFixed(0)}/s ${((c.s / c.n) * 1000).toFixed(1)} ms`).join('; ')}`);
    const originCpu = procCpuSeconds(origin.proc.pid!) - originCpu0;
    const cpu = done[0].cpuSeconds; // process-wide: the workers share one process
    log(
      `${label}: first agent done after ${firstDone.toFixed(2)} s, last after ${seconds.toFixed(2)} s (fetches settled after ${settled.toFixed(2)} s); origin served ${(originBytes / F).toFixed(2)}× the file; ` +
        `CPU: agents ${((cpu / seconds) * 100).toFixed(0)}%, origin ${((originCpu / seconds) * 100).toFixed(0)}%`,
    );
    // Pieces verified per half second over all agents: the ramp, the plateau and the tail.
    const held = done[0].held.map((_, k) => done.reduce((n, d) => n + (d.held[k] ?? d.held[d.held.length - 1] ?? 0), 0));
    log(`${label}: pieces held every 0.5 s: ${held.join(' ')}`);
    // When the swarm first held each piece (#19: peer requests once kept the origin's slice waiting, and its last pieces came 8 s in).
    const firstSeen = new Map<number, number>();
    for (const d of done) for (const [i, t] of d.firstSeen) firstSeen.set(i, Math.min(firstSeen.get(i) ?? Infinity, t));
    const entered = [...firstSeen.values()].map((t) => (t - started) / 1000).sort((a, b) => a - b);
    log(`${label}: the swarm held a first copy of every piece after ${entered.length ? entered[entered.length - 1].toFixed(1) : '-'} s (half of them after ${entered.length ? median(entered).toFixed(1) : '-'} s)`);
    const misses = done.reduce((m, d) => ({ busy: m.busy + d.misses.busy, unavailable: m.unavailable + d.misses.unavailable, asks: m.asks + d.misses.asks }), { busy: 0, unavailable: 0, asks: 0 });
    log(`${label}: median agent done after ${medianDone.toFixed(2)} s; end-game duplicates ${duplicates}; round trips without a piece: ${misses.busy} busy (503), ${misses.unavailable} lacking (404), ${misses.asks} /have asks`);
    return { seconds, settled, originBytes, median: medianDone, duplicates };
  } finally {
    for (const w of workers) {
      w.postMessage({ type: 'stop' });
      await Promise.race([once(w, 'message'), new Promise((r) => setTimeout(r, 5000))]).catch(() => {});
      await w.terminate();
    }
    await origin.destroy();
  }
}

try {
  const bound = Math.max(F / us, (N * F) / (us + slowCount * slowRate + (N - slowCount) * ui));
  const swarm = await distribute('swarm', N - 1);
  const originOnly = values['skip-origin-only'] ? null : await distribute('origin-only', 0);
  const r = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
  console.log(
    JSON.stringify({
      bench: 'swarm',
      peers: N,
      file_bytes: F,
      seconds: r(swarm.seconds),
      // The last fetch's end: after its copy was whole, the last receipts, the end report, the
      // holding report and the ledger check went to the (busy) origin.
      settled_seconds: r(swarm.settled),
      bound_seconds: r(bound),
      ratio_to_bound: r(swarm.seconds / bound, 3),
      origin_only_seconds: originOnly ? r(originOnly.seconds) : null,
      speedup_vs_origin_only: originOnly ? r(originOnly.seconds / swarm.seconds) : null,
      origin_bytes_over_file: r(swarm.originBytes / F, 3),
      // How much later than the median agent the last one finished (#19: ≤ 0.2 with a mixed population).
      last_over_median: r(swarm.seconds / swarm.median - 1, 3),
      slow_agents: slowCount,
      end_game_duplicates: swarm.duplicates,
    }),
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
