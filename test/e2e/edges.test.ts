import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { generateKeyPair, loadOrCreateKeyPair } from '../../src/core/crypto.ts';
import { Api } from '../../src/core/http-client.ts';
import { originIdOf } from '../../src/edge/delivery-hook.ts';
import { signRentalTicket } from '../../src/edge/rental-ticket.ts';
import { CLI, runCli, spawnOrigin, type OriginProcess } from '../helpers/processes.ts';
import { waitFor } from '../helpers/wait.ts';

// #17 point 1 with real processes on loopback: `cascade serve`, two `cascade edge` processes
// (one pre-distributing recently added contents, one manual), `cascade get` directed to the
// nearest edge that holds the content, and `cascade edge status`.

let origin: OriginProcess;
let work: string;
let op: Api;
const edges: ChildProcess[] = [];
const MiB = 1024 * 1024;

function startEdgeProcess(args: string[]): Promise<{ proc: ChildProcess; ready: any }> {
  const proc = spawn(process.execPath, [CLI, '--json', 'edge', ...args], { env: { ...process.env, CASCADE_HOME: path.join(work, 'op'), LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  edges.push(proc);
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const e = JSON.parse(line);
      if (e.event === 'ready') resolve({ proc, ready: e });
    });
    proc.once('exit', (code) => reject(new Error(`edge exited with ${code}: ${stderr}`)));
  });
}

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'cascade-e2e-edges-'));
  origin = await spawnOrigin();
  op = new Api(origin.url, (await new Api(origin.url).post('/auth/login', origin.operator)).token);
  await op.post('/users', { username: 'pat', password: 'publisher-password', roles: ['publisher'] });
  await op.post('/users', { username: 'mel', password: 'member-password', roles: ['member'] });
  const login = await runCli(['--origin', origin.url, 'login', '--username', origin.operator.username, '--password', origin.operator.password], { home: path.join(work, 'op') });
  assert.equal(login.code, 0, login.stderr);
});

after(async () => {
  for (const e of edges) if (e.exitCode === null) e.kill('SIGTERM');
  await Promise.all(edges.map((e) => (e.exitCode === null && e.signalCode === null ? new Promise((r) => e.once('exit', r)) : null)));
  await origin.destroy();
  rmSync(work, { recursive: true, force: true });
});

test('S2.1, S2.2: two edge processes; the recently-added one is filled ahead of demand and `cascade get` is served by it', async () => {
  // A mistake first: no --cache.
  const missing = await runCli(['edge', '--kind', 'delivery', '--label', 'eu/paris'], { home: path.join(work, 'op') });
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /--cache is required/);

  const paris = await startEdgeProcess(['--kind', 'delivery', '--label', 'eu/paris', '--cache', '64MB', '--policy', 'recently-added', '--report-ms', '500', '--home', path.join(work, 'edge-paris')]);
  const nyc = await startEdgeProcess(['--kind', 'delivery', '--label', 'us/nyc', '--cache', '64MB', '--policy', 'manual', '--report-ms', '500', '--home', path.join(work, 'edge-nyc')]);
  assert.match(paris.ready.edgeId, /^edg_/);

  // Publish; the paris edge gets it by itself (recently added), the manual one does not.
  const pat = new Api(origin.url, (await new Api(origin.url).post('/auth/login', { username: 'pat', password: 'publisher-password' })).token);
  const file = randomBytes(6 * MiB + 123);
  const published = await pat.request('POST', '/contents?title=Harbour&genre=doc&price=500', { body: file, headers: { 'content-type': 'application/octet-stream' } });
  await waitFor(async () => {
    const d = await op.get(`/edges/${paris.ready.edgeId}`);
    return d.holdings.some((h: any) => h.contentId === published.id && h.complete);
  }, 'the paris edge holds the new content', 30_000);
  const nycDetail = await op.get(`/edges/${nyc.ready.edgeId}`);
  assert.equal(nycDetail.holdings.length, 0);

  // A member in Paris gets it: directed to the paris edge, the origin sends nothing.
  const mel = path.join(work, 'mel');
  assert.equal((await runCli(['--origin', origin.url, 'login', '--username', 'mel', '--password', 'member-password'], { home: mel })).code, 0);
  // A member cannot run an edge, and is told so before the device registers anything.
  const notOperator = await runCli(['edge', '--label', 'eu/paris', '--cache', '1GB'], { home: mel });
  assert.notEqual(notOperator.code, 0);
  assert.match(notOperator.stderr, /operator_required.*mel is signed in here/);
  assert.equal(existsSync(path.join(mel, 'edge-delivery')), false, 'no edge home, no terminal registered');
  assert.equal((await runCli(['terminal', 'register', '--region', 'eu/paris/b7'], { home: mel })).code, 0);
  const out = path.join(work, 'copy.bin');
  const get = await runCli(['--json', 'get', published.id, '-o', out], { home: mel });
  assert.equal(get.code, 0, get.stderr);
  const done = JSON.parse(get.stdout.trim().split('\n').pop()!);
  assert.deepEqual(readFileSync(out), file);
  const parisTerminal = Object.keys(done.bySource).find((id) => id !== 'origin')!;
  assert.equal(done.bySource[parisTerminal], file.length);
  assert.equal(done.bySource.origin ?? 0, 0, JSON.stringify(done.bySource));
  assert.ok(done.sources.some((l: string) => /The origin directed you to edge eu\/paris: nearest holder/.test(l)), done.sources.join('\n'));
  assert.match(done.sources[0], /Served by edge eu\/paris: /);

  // The operator's view: edges, caches, hit rates, load.
  await waitFor(async () => (await op.get(`/edges/${paris.ready.edgeId}`)).stats?.hits >= 7, 'the paris edge reported its hits', 15_000);
  const status = await runCli(['edge', 'status'], { home: path.join(work, 'op') });
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /EDGE\s+KIND\s+LABEL\s+ONLINE\s+CACHE USED\s+HITS\s+LOAD/);
  assert.match(status.stdout, new RegExp(`${paris.ready.edgeId}\\s+delivery\\s+eu/paris\\s+yes\\s+6\\.\\d MB / 64\\.0 MB\\s+100%`));
  assert.match(status.stdout, new RegExp(`${nyc.ready.edgeId}\\s+delivery\\s+us/nyc\\s+yes\\s+0 B / 64\\.0 MB\\s+-`));
  const one = await runCli(['edge', 'status', paris.ready.edgeId], { home: path.join(work, 'op') });
  assert.match(one.stdout, /hit rate 100% \(7 hits, 0 misses\)/);
  assert.match(one.stdout, /Harbour/);
  // S2.4: its deliveries on the origin and its own journal (a delivery edge has none).
  assert.match(one.stdout, /deliveries: 0 opened, 0 billed \(fees 0\), 0 waiting for their final report; its journal: 0 reports recorded, 0 acknowledged, 0 refused, 0 to send/);
  // A member may not see the operator's figures.
  const refused = await runCli(['edge', 'status', paris.ready.edgeId], { home: mel });
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /forbidden|role/i);
  writeFileSync(path.join(work, 'done'), '');
});

test('S2.5: `cascade edge --kind home` plays a rental ticket the origin signed: file by Range, VOD HLS packaged by ffmpeg, forged tickets refused', async () => {
  const video = path.join(work, 'home-film.mp4');
  const made = spawnSync('/usr/bin/ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=160x90:rate=10', '-t', '9', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10', '-pix_fmt', 'yuv420p', video]);
  assert.equal(made.status, 0, made.stderr.toString());
  const pat = new Api(origin.url, (await new Api(origin.url).post('/auth/login', { username: 'pat', password: 'publisher-password' })).token);
  const published = await pat.request('POST', '/contents?title=Film&genre=film&price=100', { body: readFileSync(video), headers: { 'content-type': 'application/octet-stream' } });
  const home = await startEdgeProcess(['--kind', 'home', '--label', 'eu/paris/building-7', '--cache', '64MB', '--policy', 'manual', '--home', path.join(work, 'edge-home')]);
  const keys = loadOrCreateKeyPair(path.join(origin.dataDir, 'keys', 'origin.key'));
  const now = Date.now();
  const fields = { rentalId: 'rnt_e2e', deliveryId: 'dlv_e2e', serial: 1, userId: 'usr_e2e', contentId: published.id, edgeId: home.ready.edgeId, originId: originIdOf(keys.publicKeyB64), plan: 'days' as const, days: 1, unitPrice: 10, maxFee: 10, startsAt: now, endsAt: now + 86_400_000 };
  const base = `${home.ready.url}/play/${signRentalTicket(fields, keys.privateKey)}`;
  // The edge gets the content over the piece protocol on the first play.
  const range = await fetch(`${base}/file`, { headers: { range: 'bytes=100-199' } });
  assert.equal(range.status, 206);
  assert.deepEqual(Buffer.from(await range.arrayBuffer()), readFileSync(video).subarray(100, 200));
  const playlist = await fetch(`${base}/index.m3u8`);
  assert.equal(playlist.status, 200);
  const text = await playlist.text();
  assert.match(text, /#EXT-X-PLAYLIST-TYPE:VOD[\s\S]*#EXT-X-ENDLIST/);
  const seg = await fetch(`${base}/${text.split('\n').find((l) => l.startsWith('seg/seg_'))}`);
  assert.equal(seg.status, 200);
  assert.ok((await seg.arrayBuffer()).byteLength > 0);
  const forged = await fetch(`${home.ready.url}/play/${signRentalTicket(fields, generateKeyPair().privateKey)}/file`);
  assert.equal(forged.status, 401);
  assert.equal((await forged.json()).error.code, 'rental_invalid');
});
