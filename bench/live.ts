// npm run bench -- live [--viewers 200] [--seconds 10] [--segment 1] [--quiet-seconds 12] [--baseline-seconds 12]
//                      [--concurrency 16] [--size 640x360] [--bitrate 1000]
//
// #15 point 6: glass-to-viewer latency of live programs, viewers admitted per second, and the
// origin's CPU per 100 viewers (docs/benchmarks.md "live").
//
// A real origin runs in a child process (this file with --serve: startOrigin on port 0 and
// RTMP port 0 on loopback, a temporary data directory, embedded PGlite unless DATABASE_URL is
// set, then a fresh schema there). Setup (not timed): a channel with room for every viewer, a
// premium member's booking of the current slot, reconfirmed, and `--viewers` members with
// tokens. Booking rules refuse a slot that has begun or starts within 5 minutes, so the origin's
// clock reads a few minutes early while the booking is made and reconfirmed, then exactly the
// system clock (offset 0) for the rest: everything measured runs on real time.
//
// Capture time. Debian's ffmpeg publishes testsrc + sine with -re over RTMP (as a camera would:
// the frame at media time p is released at T0 + p). T0, the wall-clock time ffmpeg starts
// releasing frames, is read from ffmpeg's own progress reports (-progress every 100 ms): at wall
// time w it has written up to media time m, so T0 ≈ min(w − m) (within about a frame, 40 ms).
// The origin re-encodes from the first frame it receives, so a segment's media start is the sum
// of the durations of the segments before it in the program's signed manifest
// (GET /live/programs/:id/manifest, `durationMs`); it is checked against the segment's own
// `tfdt` (the decode time of its first video frame). Capture time of a segment = T0 + its media
// start, i.e. the capture of its FIRST frame.
//
// Latency of a segment = the time an admitted viewer polling the playlist every 100 ms has first
// seen it listed AND fetched it in full, minus its capture time. It includes the segment's own
// duration (a segment is listed once its last frame is in). Segments listed before the probing
// viewer's first poll are not counted. Goal (#15): p95 ≤ 2 × segment + 1 s.
//
// Phases: (1) baseline, same run: the same publisher piped straight into the origin's packager
// (src/live/packager.ts: ffmpeg → fMP4 HLS, the directory watched) with no RTMP, origin, log or
// HTTP — what ffmpeg alone costs; (2) the broadcast, with only the probing viewer for
// `--quiet-seconds` (the origin's CPU on air without viewers); (3) GET /health with
// `--concurrency` clients (the baseline for admissions); (4) `--viewers` members join
// (POST /live/programs/:id/viewers, `--concurrency` at a time) → admit_per_s; (5) for `--seconds`
// every viewer fetches the playlist and the newest segment once per segment duration (spread
// evenly) → the origin's CPU per second per 100 viewers, over the quiet phase's.
// CPU from /proc/<pid>/stat (Linux): the origin's node process; its packaging ffmpeg separately.
// Last line: {"bench":"live","segment_s":…,"latency_p50_s":…,"latency_p95_s":…,"viewers":…,"admit_per_s":…,…}
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { hashPassword } from '../src/accounts/passwords.ts';
import { monotonicMs, type WaitClock } from '../src/core/clock.ts';
import { loadConfig } from '../src/core/config.ts';
import { newId } from '../src/core/ids.ts';
import { dropSchema, openDatabase, type DbHandle } from '../src/db/connection.ts';
import { startPackager } from '../src/live/packager.ts';
import type { SignedSegmentEntry } from '../src/live/segment-log.ts';
import { startOrigin } from '../src/server.ts';
import { cpuMs, startServeChild } from './_process.ts';

const { values } = parseArgs({
  options: {
    viewers: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '10' },
    segment: { type: 'string', default: '1' },
    'quiet-seconds': { type: 'string', default: '12' },
    'baseline-seconds': { type: 'string', default: '12' },
    concurrency: { type: 'string', default: '16' },
    size: { type: 'string', default: '640x360' },
    bitrate: { type: 'string', default: '1000' },
    serve: { type: 'boolean', default: false },
    schema: { type: 'string' },
  },
});
const VIEWERS = Number(values.viewers);
const SECONDS = Number(values.seconds);
const SEGMENT = Number(values.segment);
const QUIET_SECONDS = Number(values['quiet-seconds']);
const BASELINE_SECONDS = Number(values['baseline-seconds']);
const CONCURRENCY = Number(values.concurrency);
const SIZE = values.size!;
const BITRATE = Number(values.bitrate);
const DATABASE_URL = process.env.DATABASE_URL || undefined;
const FFMPEG = '/usr/bin/ffmpeg';
const POLL_MS = 100;
const M = 60_000;
const log = (msg: string) => process.stderr.write(`[bench live] ${msg}\n`);
/** Wall-clock time with sub-millisecond resolution (the same clock as Date.now(), which every process here shares). */
const wallMs = () => performance.timeOrigin + performance.now();

interface Setup {
  url: string;
  rtmpUrl: string;
  programId: string;
  probeToken: string;
  viewerTokens: string[];
}

/** The system clock plus an offset: early while the booking is made, then exactly the system clock. */
class OffsetClock implements WaitClock {
  offset = 0;
  now() {
    return Date.now() + this.offset;
  }
  sleepUntil(t: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      let timer: NodeJS.Timeout;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      // Re-armed at least every second: the offset may change while something waits.
      const arm = () => {
        const left = t - this.now();
        if (left <= 0) return done();
        timer = setTimeout(arm, Math.min(left, 1000)).unref();
      };
      signal?.addEventListener('abort', done, { once: true });
      arm();
    });
  }
}

/** The child: an origin with the channel, the confirmed booking and the viewers' accounts. */
async function serveOrigin(schema: string) {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'cascade-bench-live-'));
  const handle: DbHandle | undefined = DATABASE_URL ? await openDatabase({ databaseUrl: DATABASE_URL, schema }) : undefined;
  const clock = new OffsetClock();
  // The slot on air now: the latest 10-minute boundary at most 4 minutes from now (its connectable
  // window, from 5 minutes before, is open), booked as if 6 minutes before it.
  const start = Math.floor((Date.now() + 4 * M) / (10 * M)) * 10 * M;
  clock.offset = start - 6 * M - Date.now();
  const config = { ...loadConfig({}), port: 0, rtmpPort: 0, dataDir, logLevel: 'silent', databaseUrl: DATABASE_URL, signupCredit: 1_000_000, liveSegmentSeconds: SEGMENT };
  const origin = await startOrigin({ config, clock, db: handle });
  const channel = await origin.live.channels.add({ name: 'bench', capacity: VIEWERS + 10, bitrateKbps: BITRATE, tariffPerSlot: 0, slotMinutes: 10 });
  const caster = await origin.accounts.createUser('caster', 'bench password long enough', ['member', 'premium']);
  await origin.accounts.setContact(caster.id, { email: 'caster@example.org' });
  const casterToken = await origin.accounts.issueToken(caster.id, null, 'bench', null);
  const call = async (route: string, json: unknown) => {
    const res = await fetch(origin.url + route, { method: 'POST', headers: { authorization: `Bearer ${casterToken}`, 'content-type': 'application/json' }, body: JSON.stringify(json) });
    const body = await res.json();
    if (!res.ok) throw new Error(`${route}: ${res.status} ${JSON.stringify(body)}`);
    return body;
  };
  const booked = await call('/live/bookings', { channelId: channel.id, start: new Date(start).toISOString(), end: new Date(start + 30 * M).toISOString(), openLevel: 'public', title: 'Bench', genre: 'bench' });
  await call('/live/reconfirm', { reservationId: booked.reservationId });
  // Viewers: members with tokens. One scrypt hash for all (hashing 200 passwords would take
  // longer than the benchmark, and no one signs in with them).
  const passwordHash = await hashPassword('bench password long enough');
  const users = Array.from({ length: VIEWERS + 1 }, (_, i) => ({ id: newId('usr'), username: `viewer${i}`, password_hash: passwordHash, roles: ['member' as const], created_at: new Date(clock.now()), email: null, web_page: null }));
  await origin.db.db.insertInto('users').values(users).execute();
  const tokens = await Promise.all(users.map((u) => origin.accounts.issueToken(u.id, null, 'bench', null)));
  clock.offset = 0; // from here on, the system clock
  const rtmpPort = origin.live.streams.rtmp.address()!.port;
  const setup: Setup = { url: origin.url, rtmpUrl: `rtmp://127.0.0.1:${rtmpPort}/live/${booked.reservationId}`, programId: booked.booking.id, probeToken: tokens[0]!, viewerTokens: tokens.slice(1) };
  return {
    setup,
    engine: origin.db.engine,
    async close() {
      await origin.close();
      await handle?.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

if (values.serve) {
  const served = await serveOrigin(values.schema!);
  process.stdout.write(JSON.stringify({ ...served.setup, engine: served.engine }) + '\n');
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  await served.close();
  process.exit(0);
}

// ---------------------------------------------------------------- the benchmark

const schema = `bench_live_${process.pid}_${randomBytes(3).toString('hex')}`;

/** Debian's ffmpeg publishing a test picture and tone in real time to `out`; T0 from its progress reports. */
function publish(out: string, seconds: number) {
  const args = ['-hide_banner', '-loglevel', 'error', '-nostdin'];
  args.push('-re', '-f', 'lavfi', '-i', `testsrc=size=${SIZE}:rate=25`, '-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000');
  args.push('-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '25', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', String(seconds));
  args.push('-progress', 'pipe:3', '-stats_period', '0.1', '-f', 'flv', out);
  const spawnedAt = wallMs();
  const proc: ChildProcess = spawn(FFMPEG, args, { stdio: ['ignore', out === 'pipe:1' ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  // T0 ≈ min over reports of (wall time of the report − media time written so far).
  let t0 = Infinity;
  let outTimeUs: number | null = null;
  createInterface({ input: proc.stdio[3] as NodeJS.ReadableStream }).on('line', (line) => {
    const [k, v] = line.split('=');
    if (k === 'out_time_us') outTimeUs = Number(v);
    else if (k === 'progress' && outTimeUs !== null && Number.isFinite(outTimeUs) && outTimeUs > 0) t0 = Math.min(t0, wallMs() - outTimeUs / 1000);
  });
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) => proc.on('close', (code) => resolve({ code, stderr })));
  return {
    proc,
    spawnedAt,
    get t0() {
      return t0;
    },
    done,
    stop() {
      if (proc.exitCode === null) proc.kill('SIGINT');
      return done;
    },
  };
}

/** The origin in its own process. */
const startServed = () => startServeChild<Setup & { engine: string }>(['--schema', schema, '--viewers', String(VIEWERS), '--segment', String(SEGMENT), '--bitrate', String(BITRATE)]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN;
};
const r2 = (x: number) => Math.round(x * 100) / 100;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** The ffmpeg processes `pid` started (the origin's packager). */
function ffmpegChildren(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
      .filter((c) => readFileSync(`/proc/${c}/comm`, 'utf8').trim() === 'ffmpeg');
  } catch {
    return [];
  }
}

// ---- fMP4: the decode time of a segment's first video frame (tfdt), to check media times against ----

function* boxes(buf: Buffer, from = 0, to = buf.length): Generator<{ type: string; start: number; end: number }> {
  let at = from;
  while (at + 8 <= to) {
    let size = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    let header = 8;
    if (size === 1) {
      size = Number(buf.readBigUInt64BE(at + 8));
      header = 16;
    } else if (size === 0) size = to - at;
    if (size < header) return;
    yield { type, start: at + header, end: Math.min(to, at + size) };
    at += size;
  }
}
const child = (buf: Buffer, parent: { start: number; end: number }, type: string) => [...boxes(buf, parent.start, parent.end)].find((b) => b.type === type);

/** The video track's ID and timescale from an init segment. */
function videoTrack(init: Buffer): { id: number; timescale: number } | null {
  const moov = [...boxes(init)].find((b) => b.type === 'moov');
  if (!moov) return null;
  for (const trak of boxes(init, moov.start, moov.end)) {
    if (trak.type !== 'trak') continue;
    const tkhd = child(init, trak, 'tkhd');
    const mdia = child(init, trak, 'mdia');
    const hdlr = mdia && child(init, mdia, 'hdlr');
    const mdhd = mdia && child(init, mdia, 'mdhd');
    if (!tkhd || !hdlr || !mdhd || init.toString('latin1', hdlr.start + 8, hdlr.start + 12) !== 'vide') continue;
    const v1 = init[tkhd.start] === 1;
    const id = init.readUInt32BE(tkhd.start + (v1 ? 20 : 12));
    const timescale = init.readUInt32BE(mdhd.start + (init[mdhd.start] === 1 ? 20 : 12));
    return { id, timescale };
  }
  return null;
}

/** Decode time of the first sample of track `id` in a media segment, seconds. */
function tfdtSeconds(seg: Buffer, track: { id: number; timescale: number }): number | null {
  const moof = [...boxes(seg)].find((b) => b.type === 'moof');
  if (!moof) return null;
  for (const traf of boxes(seg, moof.start, moof.end)) {
    if (traf.type !== 'traf') continue;
    const tfhd = child(seg, traf, 'tfhd');
    const tfdt = child(seg, traf, 'tfdt');
    if (!tfhd || !tfdt || seg.readUInt32BE(tfhd.start + 4) !== track.id) continue;
    const t = seg[tfdt.start] === 1 ? Number(seg.readBigUInt64BE(tfdt.start + 4)) : seg.readUInt32BE(tfdt.start + 4);
    return t / track.timescale;
  }
  return null;
}

// ---- phase 1: the baseline, ffmpeg alone ----

async function baselineChain(): Promise<number[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cascade-bench-live-base-'));
  try {
    const pub = publish('pipe:1', BASELINE_SECONDS);
    const ready: { name: string; durationMs: number; at: number }[] = [];
    const packager = startPackager({
      dir,
      prefix: 't1_',
      flv: pub.proc.stdout!,
      bitrateKbps: BITRATE,
      segmentSeconds: SEGMENT,
      log: { info() {}, warn: (o, m) => log(`baseline packager: ${m} ${JSON.stringify(o)}`) },
      onSegment: async (seg) => {
        if (seg.durationMs > 0) ready.push({ name: seg.name, durationMs: seg.durationMs, at: wallMs() });
      },
    });
    const p = await pub.done;
    if (p.code !== 0) log(`baseline publisher exited ${p.code}: ${p.stderr.trim()}`);
    await packager.done;
    let mediaStart = 0;
    const latencies: number[] = [];
    for (const r of ready) {
      latencies.push((r.at - (pub.t0 + mediaStart)) / 1000);
      mediaStart += r.durationMs;
    }
    // The last segment is cut when the publisher stops, not by the next key frame: left out.
    return latencies.slice(0, -1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- the run ----

log(`origin in its own process (${DATABASE_URL ? 'PostgreSQL' : 'embedded PGlite'}), ${VIEWERS} viewers, ${SEGMENT} s segments, ${SIZE} at ${BITRATE} kbit/s; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const served = await startServed();
const { setup } = served;
const probePool = new Pool(setup.url, { connections: 2, pipelining: 1, keepAliveTimeout: 60_000 });
const viewerPool = new Pool(setup.url, { connections: VIEWERS, pipelining: 1, keepAliveTimeout: 60_000 });
let publisher: ReturnType<typeof publish> | null = null;

async function get(pool: Pool, route: string, token?: string): Promise<{ status: number; body: Buffer }> {
  const res = await pool.request({ method: 'GET', path: route, headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
}
async function post(pool: Pool, route: string, token: string, json: unknown): Promise<{ status: number; body: any }> {
  const res = await pool.request({ method: 'POST', path: route, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(json) });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? JSON.parse(text) : null };
}
const programPath = `/live/programs/${setup.programId}`;
/** URIs of a playlist, in order. */
const uris = (text: string) => text.split('\n').filter((l) => l && !l.startsWith('#'));
const nameOf = (uri: string) => uri.split('?')[0]!.slice('segments/'.length);

try {
  // Phase 1.
  log(`baseline: the publisher piped into the packager alone for ${BASELINE_SECONDS} s`);
  const base = await baselineChain();
  log(`baseline (ffmpeg alone): ${base.length} segments, latency p50 ${pct(base, 50).toFixed(2)} s, p95 ${pct(base, 95).toFixed(2)} s`);

  // Phase 2: the broadcast and the probing viewer.
  publisher = publish(setup.rtmpUrl, 600);
  let probe: { session: string; playlist: string } | null = null;
  for (const t = monotonicMs(); !probe; ) {
    const r = await post(probePool, `${programPath}/viewers`, setup.probeToken, {});
    if (r.status === 201) probe = r.body;
    else if (r.status === 409 && r.body?.error?.code === 'not_live' && monotonicMs() - t < 20_000) await sleep(50);
    else throw new Error(`the probing viewer was not admitted: ${r.status} ${JSON.stringify(r.body)}`);
  }
  const probed = new Map<string, { listedAt: number; fetchedAt: number; bytes: Buffer; loaded: boolean }>();
  const excluded = new Set<string>();
  let polls = 0;
  let loaded = false; // the viewers' load is running
  let probing = true;
  let firstSegmentAt = 0;
  let initBytes: Buffer | null = null;
  const probeLoop = (async () => {
    while (probing) {
      const began = monotonicMs();
      const r = await get(probePool, probe!.playlist);
      const listedAt = wallMs();
      if (r.status === 200) {
        const text = r.body.toString('utf8');
        if (!initBytes) {
          const map = /#EXT-X-MAP:URI="([^"]+)"/.exec(text);
          if (map) initBytes = (await get(probePool, `${programPath}/${map[1]}`)).body;
        }
        for (const uri of uris(text)) {
          const name = nameOf(uri);
          if (probed.has(name) || excluded.has(name)) continue;
          if (polls === 0) {
            excluded.add(name); // listed before we watched
            continue;
          }
          const seg = await get(probePool, `${programPath}/${uri}`);
          if (seg.status !== 200) throw new Error(`segment ${name}: ${seg.status}`);
          probed.set(name, { listedAt, fetchedAt: wallMs(), bytes: seg.body, loaded });
          if (!firstSegmentAt) firstSegmentAt = monotonicMs();
        }
      } else if (r.status !== 503) throw new Error(`playlist: ${r.status} ${r.body.toString('utf8').slice(0, 200)}`);
      polls++;
      await sleep(POLL_MS - (monotonicMs() - began));
    }
  })();
  let probeError: unknown = null;
  probeLoop.catch((e: unknown) => (probeError = e));
  while (!firstSegmentAt) {
    if (probeError) throw probeError;
    if (publisher.proc.exitCode !== null) throw new Error(`the publisher stopped: ${(await publisher.done).stderr}`);
    await sleep(50);
  }
  log(`on air: first segment fetched ${((wallMs() - publisher.spawnedAt) / 1000).toFixed(2)} s after ffmpeg was started (T0 ${(publisher.t0 - publisher.spawnedAt).toFixed(0)} ms after)`);
  const packagerPids = ffmpegChildren(served.pid);
  const packagerCpu = () => packagerPids.reduce((s, p) => s + (cpuMs(p) ?? 0), 0);
  const quietFrom = { t: monotonicMs(), cpu: cpuMs(served.pid)!, pkg: packagerCpu() };
  await sleep(QUIET_SECONDS * 1000);
  const quietTo = { t: monotonicMs(), cpu: cpuMs(served.pid)!, pkg: packagerCpu() };
  const quietCpuPerS = (quietTo.cpu - quietFrom.cpu) / ((quietTo.t - quietFrom.t) / 1000);
  const packagerPct = ((quietTo.pkg - quietFrom.pkg) / (quietTo.t - quietFrom.t)) * 100;
  log(`quiet (probe only) ${QUIET_SECONDS} s: origin ${(quietCpuPerS / 10).toFixed(1)} % of a core, its packager ${packagerPct.toFixed(0)} %`);

  // Phase 3: the baseline for admissions, GET /health at the same concurrency.
  const HEALTH_N = Math.max(VIEWERS, 200);
  let next = 0;
  const h0 = monotonicMs();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < HEALTH_N) {
        const r = await get(viewerPool, '/health');
        if (r.status !== 200) throw new Error(`/health: ${r.status}`);
      }
    }),
  );
  const healthPerS = HEALTH_N / ((monotonicMs() - h0) / 1000);

  // Phase 4: admissions.
  const sessions: { playlist: string }[] = [];
  const admitErrors = new Map<string, number>();
  next = 0;
  const a0 = monotonicMs();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < VIEWERS; i = next++) {
        const r = await post(viewerPool, `${programPath}/viewers`, setup.viewerTokens[i]!, {});
        if (r.status === 201) sessions.push(r.body);
        else admitErrors.set(`${r.status} ${r.body?.error?.code}`, (admitErrors.get(`${r.status} ${r.body?.error?.code}`) ?? 0) + 1);
      }
    }),
  );
  const admitSeconds = (monotonicMs() - a0) / 1000;
  const admitPerS = sessions.length / admitSeconds;
  log(`admitted ${sessions.length} of ${VIEWERS} in ${admitSeconds.toFixed(2)} s: ${admitPerS.toFixed(0)}/s (GET /health ${healthPerS.toFixed(0)}/s)${admitErrors.size ? `; refused ${JSON.stringify(Object.fromEntries(admitErrors))}` : ''}`);

  // Phase 5: every viewer fetches the playlist and the newest segment once per segment duration.
  const period = SEGMENT * 1000;
  const fetches = { playlists: 0, segments: 0, bytes: 0, errors: 0 };
  const fetchMs: number[] = [];
  loaded = true;
  const loadFrom = { t: monotonicMs(), cpu: cpuMs(served.pid)! };
  const stopAt = loadFrom.t + SECONDS * 1000;
  await Promise.all(
    sessions.map(async (s, i) => {
      let due = loadFrom.t + (i / sessions.length) * period;
      let newest = '';
      for (;;) {
        await sleep(due - monotonicMs());
        if (monotonicMs() >= stopAt) return;
        const began = monotonicMs();
        const pl = await get(viewerPool, s.playlist);
        fetches.playlists++;
        if (pl.status !== 200) fetches.errors++;
        else {
          const last = uris(pl.body.toString('utf8')).at(-1);
          if (last && last !== newest) {
            const seg = await get(viewerPool, `${programPath}/${last}`);
            fetches.segments++;
            fetches.bytes += seg.body.length;
            if (seg.status !== 200) fetches.errors++;
            newest = last;
          }
        }
        fetchMs.push(monotonicMs() - began);
        due = Math.max(due + period, monotonicMs());
      }
    }),
  );
  const loadTo = { t: monotonicMs(), cpu: cpuMs(served.pid)! };
  loaded = false;
  const loadSeconds = (loadTo.t - loadFrom.t) / 1000;
  const loadCpuPerS = (loadTo.cpu - loadFrom.cpu) / loadSeconds;
  const per100 = sessions.length ? ((loadCpuPerS - quietCpuPerS) / sessions.length) * 100 : NaN;
  log(
    `${sessions.length} viewers for ${loadSeconds.toFixed(1)} s: ${fetches.playlists} playlists, ${fetches.segments} segments (${(fetches.bytes / loadSeconds / 1e6).toFixed(1)} MB/s), ${fetches.errors} errors; ` +
      `playlist + segment p50 ${pct(fetchMs, 50).toFixed(1)} ms, p95 ${pct(fetchMs, 95).toFixed(1)} ms; origin ${(loadCpuPerS / 10).toFixed(1)} % of a core → ${per100.toFixed(1)} ms CPU/s per 100 viewers`,
  );

  // Wrap up: the probe sees the segment in flight, then the publisher stops.
  await sleep(2 * SEGMENT * 1000 + 500);
  probing = false;
  await probeLoop;
  await publisher.stop();

  // Media times from the signed manifest; checked against each segment's tfdt.
  const manifest = JSON.parse((await get(probePool, `${programPath}/manifest`)).body.toString('utf8')) as { entries: SignedSegmentEntry[] };
  const media = new Map<string, { start: number; durationMs: number; at: number }>();
  let mediaStart = 0;
  for (const { entry } of manifest.entries) {
    if (entry.durationMs === 0) continue;
    media.set(entry.name, { start: mediaStart, durationMs: entry.durationMs, at: Date.parse(entry.at) });
    mediaStart += entry.durationMs;
  }
  const track = initBytes ? videoTrack(initBytes) : null;
  let tfdtDiffMs = 0;
  let tfdtOffset: number | null = null;
  const rows: { latency: number; afterLast: number; logged: number; listed: number; fetch: number; loaded: boolean }[] = [];
  for (const [name, p] of probed) {
    const m = media.get(name);
    if (!m) throw new Error(`segment ${name} is not in the manifest`);
    const t = track && tfdtSeconds(p.bytes, track);
    if (t !== null && t !== undefined) {
      tfdtOffset ??= t * 1000 - m.start;
      tfdtDiffMs = Math.max(tfdtDiffMs, Math.abs(t * 1000 - tfdtOffset - m.start));
    }
    const capture = publisher.t0 + m.start;
    rows.push({ latency: (p.fetchedAt - capture) / 1000, afterLast: (p.fetchedAt - capture - m.durationMs) / 1000, logged: (m.at - capture - m.durationMs) / 1000, listed: (p.listedAt - m.at) / 1000, fetch: (p.fetchedAt - p.listedAt) / 1000, loaded: p.loaded });
  }
  if (rows.length < 3) throw new Error(`only ${rows.length} segments measured`);
  log(`media times: tfdt of the first measured segment is ${tfdtOffset?.toFixed(0)} ms after its manifest start; the others within ${tfdtDiffMs.toFixed(0)} ms of it`);
  const worst = rows.reduce((a, b) => (b.latency > a.latency ? b : a));
  log(`worst segment: ${worst.latency.toFixed(2)} s (${worst.loaded ? 'under load' : 'quiet'}): last frame → logged ${worst.logged.toFixed(3)} s, → listed +${worst.listed.toFixed(3)} s, → fetched +${worst.fetch.toFixed(3)} s`);
  const lat = rows.map((r) => r.latency);
  const loadedLat = rows.filter((r) => r.loaded).map((r) => r.latency);
  const median = (k: 'afterLast' | 'logged' | 'listed' | 'fetch') => r3(pct(rows.map((r) => r[k]), 50));
  log(
    `${rows.length} segments: latency p50 ${pct(lat, 50).toFixed(2)} s, p95 ${pct(lat, 95).toFixed(2)} s, max ${Math.max(...lat).toFixed(2)} s (goal p95 ≤ ${2 * SEGMENT + 1} s); ` +
      `medians: last frame → signed in the log ${median('logged')} s (least ${Math.min(...rows.map((r) => r.logged)).toFixed(3)} s), → listed to the viewer +${median('listed')} s, → fetched +${median('fetch')} s`,
  );
  const result = {
    bench: 'live',
    segment_s: SEGMENT,
    latency_p50_s: r2(pct(lat, 50)),
    latency_p95_s: r2(pct(lat, 95)),
    viewers: sessions.length,
    admit_per_s: Math.round(admitPerS),
    goal_p95_s: 2 * SEGMENT + 1,
    latency_max_s: r2(Math.max(...lat)),
    latency_loaded_p95_s: loadedLat.length ? r2(pct(loadedLat, 95)) : null,
    segments: rows.length,
    after_last_frame_p50_s: median('afterLast'),
    logged_after_last_frame_p50_s: median('logged'),
    listed_after_logged_p50_s: median('listed'),
    fetch_p50_s: median('fetch'),
    baseline_ffmpeg_p50_s: r2(pct(base, 50)),
    baseline_ffmpeg_p95_s: r2(pct(base, 95)),
    health_per_s: Math.round(healthPerS),
    admit_ratio: r3(admitPerS / healthPerS),
    origin_cpu_ms_per_s_per_100_viewers: r2(per100),
    origin_cpu_quiet_pct: r2(quietCpuPerS / 10),
    origin_cpu_loaded_pct: r2(loadCpuPerS / 10),
    packager_cpu_pct: Math.round(packagerPct),
    viewer_fetch_p95_ms: r2(pct(fetchMs, 95)),
    viewer_errors: fetches.errors,
    db: setup.engine,
    load_avg: r2(os.loadavg()[0]!),
  };
  console.log(JSON.stringify(result));
} finally {
  await publisher?.stop();
  await probePool.close();
  await viewerPool.close();
  await served.close();
  if (DATABASE_URL) await dropSchema(DATABASE_URL, schema);
}
