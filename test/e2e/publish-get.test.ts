import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Api } from '../../src/core/http-client.ts';
import { formatBytes } from '../../src/core/units.ts';
import { CLI, runCli, spawnOrigin, type OriginProcess } from '../helpers/processes.ts';

// The foundation flow with real processes on loopback: `cascade serve`, `cascade
// login`, `cascade publish`, and `cascade get` killed with SIGKILL mid-transfer and
// restarted (S1.1, S1.6).

let origin: OriginProcess;
let work: string;
const file = randomBytes(24 * 1024 * 1024 + 777);
let contentId: string;

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'cascade-e2e-'));
  origin = await spawnOrigin();
  const op = new Api(origin.url, (await new Api(origin.url).post('/auth/login', origin.operator)).token);
  await op.post('/users', { username: 'pat', password: 'publisher-password', roles: ['publisher'] });
  await op.post('/users', { username: 'mel', password: 'member-password', roles: ['member'] });
});
after(async () => {
  await origin.destroy();
  rmSync(work, { recursive: true, force: true });
});

test('the operator credentials are in the data directory, never in the log', () => {
  assert.ok(origin.operator.password.length >= 20);
  assert.equal(origin.output().includes(origin.operator.password), false);
  assert.match(origin.output(), /operator-credentials\.txt/);
});

test('login, publish with the CLI, and the catalog lists it', async () => {
  const home = path.join(work, 'pat');
  const login = await runCli(['--origin', origin.url, 'login', '--username', 'pat'], { home, env: { CASCADE_PASSWORD: 'publisher-password' } });
  assert.equal(login.code, 0, login.stderr);
  const src = path.join(work, 'film.bin');
  writeFileSync(src, file);
  const pub = await runCli(['--json', 'publish', src, '--title', 'Harbour Lights', '--genre', 'documentary', '--price', '250'], { home });
  assert.equal(pub.code, 0, pub.stderr);
  const out = JSON.parse(pub.stdout.trim().split('\n').pop()!);
  contentId = out.id;
  assert.match(contentId, /^[0-9a-f]{64}$/);
  const list = await new Api(origin.url).get(`/contents?q=harbour`);
  assert.deepEqual(list.items.map((i: any) => i.id), [contentId]);
});

test('get is killed mid-transfer, restarted, and resumes from its verified pieces', async () => {
  const home = path.join(work, 'mel');
  const login = await runCli(['--origin', origin.url, 'login', '--username', 'mel', '--password', 'member-password'], { home });
  assert.equal(login.code, 0, login.stderr);
  const dest = path.join(work, 'copy.bin');

  // First run, slowed to 4 MB/s, killed once at least 5 pieces are verified.
  const first = spawn(process.execPath, [CLI, '--json', 'get', contentId, '-o', dest, '--down-rate', '4MB/s'], {
    env: { ...process.env, CASCADE_HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let killedAt = 0;
  await new Promise<void>((resolve) => {
    createInterface({ input: first.stdout }).on('line', (line) => {
      const p = JSON.parse(line);
      if (p.event === 'progress' && p.pieces >= 5 && !killedAt) {
        killedAt = p.pieces;
        first.kill('SIGKILL');
      }
    });
    first.on('exit', () => resolve());
  });
  assert.ok(killedAt >= 5, 'killed mid-transfer');
  assert.equal(first.signalCode, 'SIGKILL');
  assert.equal(existsSync(dest), false, 'no half-written file under the final name');
  assert.ok(existsSync(`${dest}.part.journal`));

  const second = await runCli(['--json', 'get', contentId, '-o', dest], { home });
  assert.equal(second.code, 0, second.stderr);
  const done = JSON.parse(second.stdout.trim().split('\n').pop()!);
  assert.equal(done.event, 'done');
  assert.ok(done.resumedPieces >= killedAt, `resumed ${done.resumedPieces} ≥ ${killedAt}`);
  assert.equal(done.fetchedPieces + done.resumedPieces, done.totalPieces);
  assert.ok(readFileSync(dest).equals(file), 'byte-exact');
  assert.equal(existsSync(`${dest}.part`) || existsSync(`${dest}.part.journal`), false);
  // S1.5, tell people why: who served, and why no peer did (nobody else holds it).
  assert.deepEqual(done.sources, [`Served by the origin: ${formatBytes(done.bySource.origin)}.`, 'Only the origin served: no other terminal holds this content.']);
});

test('get refuses an unknown content ID with a clear code', async () => {
  const res = await runCli(['--json', 'get', 'f'.repeat(64), '-o', path.join(work, 'none.bin')], { home: path.join(work, 'mel') });
  assert.equal(res.code, 1);
  assert.equal(JSON.parse(res.stdout.trim()).error.code, 'unknown_content');
  assert.equal(existsSync(path.join(work, 'none.bin.part')), false);
});
