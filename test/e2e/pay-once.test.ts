import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Api } from '../../src/core/http-client.ts';
import { CLI, runCli, spawnOrigin, type OriginProcess } from '../helpers/processes.ts';

// #10 point 2 with real processes: `cascade get` stopped twice with Ctrl-C (SIGINT) and
// run again reuses its transfer and its single reservation — a wallet of 291 buying a
// content of 120 keeps 171 available throughout and ends at 171 exactly; Ctrl-C says
// what stays reserved and how to resume; fetching the content again on a new device
// costs nothing.

const PRICE = 120;
const CREDIT = 291;
const PIECE = 128 * 1024;
const file = randomBytes(PIECE * 48);
let origin: OriginProcess;
let work: string;
let contentId: string;

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'cascade-payonce-'));
  origin = await spawnOrigin({ env: { SIGNUP_CREDIT: String(CREDIT), PIECE_SIZE: String(PIECE), OFF_PEAK_RATE_PERCENT: '100' } });
  const op = new Api(origin.url, (await new Api(origin.url).post('/auth/login', origin.operator)).token);
  await op.post('/users', { username: 'pat', password: 'publisher-password', roles: ['publisher'] });
  await op.post('/users', { username: 'mel', password: 'member-password', roles: ['member'] });
  const pat = new Api(origin.url, (await new Api(origin.url).post('/auth/login', { username: 'pat', password: 'publisher-password' })).token);
  contentId = (await pat.request('POST', `/contents?title=Once&genre=test&price=${PRICE}`, { body: file, headers: { 'content-type': 'application/octet-stream' } })).id;
});
after(async () => {
  await origin.destroy();
  rmSync(work, { recursive: true, force: true });
});

async function login(home: string) {
  const res = await runCli(['--origin', origin.url, 'login', '--username', 'mel', '--password', 'member-password'], { home });
  assert.equal(res.code, 0, res.stderr);
}
async function wallet() {
  const mel = new Api(origin.url, (await new Api(origin.url).post('/auth/login', { username: 'mel', password: 'member-password' })).token);
  return (await mel.get('/wallet')).balance as { posted: number; pending: number; available: number };
}

/** Runs `cascade get` slowly and presses Ctrl-C once `atPieces` more pieces are verified. */
async function interruptedGet(home: string, dest: string, atPieces: number) {
  const proc = spawn(process.execPath, [CLI, '--json', 'get', contentId, '-o', dest, '--down-rate', '1MB/s'], { env: { ...process.env, CASCADE_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  const lines: any[] = [];
  let start = -1;
  let sent = false;
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    const e = JSON.parse(line);
    lines.push(e);
    if (e.event !== 'progress') return;
    if (start < 0) start = e.pieces;
    if (!sent && e.pieces - start >= atPieces) {
      sent = true;
      proc.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((resolve) => proc.on('exit', (c) => resolve(c)));
  return { code, stderr, stopped: lines.find((e) => e.event === 'stopped') };
}

test('Ctrl-C twice, then the rest: one transfer, one reservation, the price paid once to the unit', async () => {
  const home = path.join(work, 'mel');
  await login(home);
  const dest = path.join(work, 'once.bin');
  assert.deepEqual(await wallet(), { posted: CREDIT, pending: 0, available: CREDIT });

  for (const round of [1, 2]) {
    const heldBefore = -(await wallet()).pending;
    const run = await interruptedGet(home, dest, 3);
    assert.equal(run.code, 130, `round ${round}: ${run.stderr}`);
    assert.ok(run.stopped, `round ${round}: a stopped event`);
    // Round 1 reserves the price; round 2 reuses what is left of that one reservation.
    assert.equal(run.stopped.reservation.held, round === 1 ? PRICE : heldBefore, `round ${round}: the reservation shown`);
    assert.equal(run.stopped.reservation.reused, round === 2);
    assert.match(run.stopped.message, /reserved for this content stays reserved until .*Run the same command again to resume/);
    assert.ok(run.stopped.pieces >= 3 * round && run.stopped.pieces < 48, `round ${round}: stopped part way at ${run.stopped.pieces}`);
    // What was received is paid out of the reservation; the rest stays reserved: 171 available all along.
    const w = await wallet();
    assert.equal(w.available, CREDIT - PRICE, `round ${round}: ${JSON.stringify(w)}`);
    assert.ok(w.posted < CREDIT && w.posted > CREDIT - PRICE, `round ${round}: part of the price paid: ${JSON.stringify(w)}`);
    assert.equal(w.posted + w.pending, CREDIT - PRICE);
  }
  const last = await runCli(['--json', 'get', contentId, '-o', dest], { home });
  assert.equal(last.code, 0, last.stderr);
  const done = JSON.parse(last.stdout.trim().split('\n').pop()!);
  assert.equal(done.event, 'done');
  assert.ok(done.resumedPieces >= 6);
  assert.ok(readFileSync(dest).equals(file));
  assert.deepEqual(await wallet(), { posted: CREDIT - PRICE, pending: 0, available: CREDIT - PRICE });
});

test('the same content on a new device (or after deleting it) costs nothing, and says why', async () => {
  const home = path.join(work, 'mel-laptop');
  await login(home);
  const res = await runCli(['get', contentId, '-o', path.join(work, 'again.bin')], { home });
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stderr, /already paid for this content in full/);
  assert.ok(readFileSync(path.join(work, 'again.bin')).equals(file));
  assert.deepEqual(await wallet(), { posted: CREDIT - PRICE, pending: 0, available: CREDIT - PRICE });
  // And the same device, file deleted: free too.
  rmSync(path.join(work, 'again.bin'));
  const third = await runCli(['--json', 'get', contentId, '-o', path.join(work, 'again.bin')], { home });
  assert.equal(third.code, 0, third.stderr);
  assert.deepEqual(await wallet(), { posted: CREDIT - PRICE, pending: 0, available: CREDIT - PRICE });
});
