import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Api } from '../../src/core/http-client.ts';
import { CLI, runCli, spawnOrigin, type OriginProcess } from '../helpers/processes.ts';
import { waitFor } from '../helpers/wait.ts';
import { windowsAround } from '../helpers/windows.ts';

// #5 with real processes on loopback and the real clock: `cascade serve`, `cascade agent
// --schedule stream|pull` on a member's machine, `cascade schedule add` on that same
// device, and the delivery the origin starts because the window is open (S0.3, S0.4,
// S0.7).

const MIN = 60_000;
let origin: OriginProcess;
let work: string;
let contentId: string;
const size = 3 * 1024 * 1024 + 5;
const agents: ChildProcess[] = [];

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'cascade-e2e-schedule-'));
  origin = await spawnOrigin({ env: { SCHEDULE_TICK_MS: '200', HOLDINGS_SPOT_CHECK: '0' } });
  const op = new Api(origin.url, (await new Api(origin.url).post('/auth/login', origin.operator)).token);
  await op.post('/users', { username: 'pat', password: 'publisher-password', roles: ['publisher'] });
  for (const name of ['sam', 'pia']) await op.post('/users', { username: name, password: 'member-password', roles: ['member'] });
  const home = path.join(work, 'pat');
  await runCli(['--origin', origin.url, 'login', '--username', 'pat', '--password', 'publisher-password'], { home });
  const src = path.join(work, 'episode.bin');
  writeFileSync(src, randomBytes(size));
  const pub = await runCli(['--json', 'publish', src, '--title', 'Night Shift', '--genre', 'series', '--price', '0'], { home });
  assert.equal(pub.code, 0, pub.stderr);
  contentId = JSON.parse(pub.stdout.trim().split('\n').pop()!).id;
});
after(async () => {
  for (const a of agents) if (a.exitCode === null) a.kill('SIGTERM');
  await origin.destroy();
  rmSync(work, { recursive: true, force: true });
});

/** Starts `cascade agent --schedule MODE` in `home`; its JSON event lines collect in `events`. */
async function startAgentProcess(home: string, mode: string): Promise<{ events: any[]; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [CLI, '--json', 'agent', '--schedule', mode, '--cpu-load', '0.1'], { env: { ...process.env, CASCADE_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  agents.push(proc);
  const events: any[] = [];
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    try {
      events.push(JSON.parse(line));
    } catch {}
  });
  await waitFor(() => events.some((e) => e.event === 'ready'), () => `the agent ready (${stderr})`, 30_000);
  return { events, proc };
}


for (const [name, mode] of [['sam', 'stream'], ['pia', 'pull']] as const) {
  test(`cascade agent --schedule ${mode}: a schedule whose window is open now is delivered, and the history says so`, async () => {
    const home = path.join(work, name);
    const login = await runCli(['--origin', origin.url, 'login', '--username', name, '--password', 'member-password'], { home });
    assert.equal(login.code, 0, login.stderr);
    // A window open now (from the last whole minute, five minutes long), in a zone where it is around noon.
    // `schedule add` registers this machine's device as a terminal; the agent then runs as that terminal.
    const now = Date.now();
    const { win } = windowsAround(now);
    const from = Math.floor(now / MIN) * MIN;
    const w = win(from, from + 5 * MIN);
    const add = await runCli(['--json', 'schedule', 'add', '--content', contentId, '--window', `daily ${w.start}-${w.end} ${w.timeZone}`], { home });
    assert.equal(add.code, 0, add.stderr);
    const terminalId = JSON.parse(add.stdout.trim().split('\n')[0]!).terminalId;

    const agent = await startAgentProcess(home, mode);
    assert.equal(agent.events.find((e) => e.event === 'ready').terminalId, terminalId);
    await waitFor(() => agent.events.some((e) => e.event === 'schedule.delivered'), () => `the scheduled delivery (${JSON.stringify(agent.events)})`, 30_000);
    const delivered = agent.events.find((e) => e.event === 'schedule.delivered');
    assert.equal(delivered.contentId, contentId);
    assert.equal(delivered.bytes, size);
    // The first runs with only the origin holding it; the second may get it from the first (a peer).
    if (mode === 'stream') assert.equal(delivered.source, 'origin');
    // The origin records it done at once (the agent's report runs a step).
    const h = await runCli(['--json', 'schedule', 'history'], { home });
    assert.equal(h.code, 0, h.stderr);
    const history = JSON.parse(h.stdout.trim().split('\n')[0]!);
    assert.deepEqual(history.entries.map((e: any) => [e.contentId, e.outcome, e.bytes, e.source]), [[contentId, 'done', size, delivered.source]]);
  });
}
