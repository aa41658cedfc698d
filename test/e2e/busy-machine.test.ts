import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Api } from '../../src/core/http-client.ts';
import { CLI, spawnOrigin, type OriginProcess } from '../helpers/processes.ts';
import { waitFor, within } from '../helpers/wait.ts';

// #12 point 3, S1.5 "not overloaded": on a machine whose CPU is at 100 % from unrelated
// work, a holder with free upload slots and link is still a source. An origin and two
// `cascade agent` processes that measure the machine's real CPU (no --cpu-load), while
// busy loops (`for(;;){}`) keep every core busy for the whole test. The second agent
// must fetch from the first, and say so in words.

const PIECE = 64 * 1024;
const PIECES = 24;
const file = randomBytes(PIECE * PIECES);
let origin: OriginProcess;
let work: string;
let contentId: string;
let originKey: string;
let op: Api;
const procs: ChildProcess[] = [];

interface AgentProc {
  proc: ChildProcess;
  terminalId: Promise<string>;
  done: Promise<any>;
}

function startAgent(name: string, token: string, args: string[]): AgentProc {
  const home = path.join(work, name);
  mkdirSync(home, { recursive: true });
  writeFileSync(path.join(home, 'profile.json'), JSON.stringify({ origin: origin.url, token, originKey }));
  const proc = spawn(process.execPath, [CLI, '--json', 'agent', '--region', 'eu', '--network', 'lab', ...args], {
    env: { ...process.env, CASCADE_HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(proc);
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  let ready!: (id: string) => void;
  let finished!: (e: any) => void;
  const terminalId = new Promise<string>((r) => (ready = r));
  const done = new Promise<any>((resolve, reject) => {
    finished = resolve;
    proc.on('exit', (code) => reject(new Error(`${name} exited ${code}: ${stderr}`)));
  });
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    const e = JSON.parse(line);
    if (e.event === 'ready') ready(e.terminalId);
    if (e.event === 'done') finished(e);
  });
  return { proc, terminalId, done };
}

async function member(name: string): Promise<string> {
  await op.post('/users', { username: name, password: 'agent-password-1', roles: ['member'] });
  return (await new Api(origin.url).post('/auth/login', { username: name, password: 'agent-password-1' })).token;
}

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'cascade-busy-'));
  origin = await spawnOrigin({ env: { PIECE_SIZE: String(PIECE), HEARTBEAT_FLUSH_MS: '500' } });
  op = new Api(origin.url, (await new Api(origin.url).post('/auth/login', origin.operator)).token);
  originKey = (await op.get<{ publicKey: string }>('/origin')).publicKey;
  await op.post('/users', { username: 'pub', password: 'publisher-password', roles: ['publisher'] });
  const pub = new Api(origin.url, (await new Api(origin.url).post('/auth/login', { username: 'pub', password: 'publisher-password' })).token);
  contentId = (await pub.request<{ id: string }>('POST', '/contents?title=Busy&genre=test&price=10', { body: file, headers: { 'content-type': 'application/octet-stream' } })).id;
});

after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await origin?.destroy();
  rmSync(work, { recursive: true, force: true });
});

test('with the CPU at 100 % from unrelated work, a second agent still fetches from the first', { timeout: 300_000 }, async () => {
  // Unrelated work: one busy loop per core, for the whole test (the origin is already up).
  for (let i = 0; i < os.availableParallelism(); i++) procs.push(spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
  const first = startAgent('first', await member('first'), ['--get', contentId]);
  const firstId = await within(first.terminalId, 'the first agent to start', 60_000);
  const fetched = await within(first.done, 'the first agent to fetch from the origin', 120_000);
  assert.deepEqual(Object.keys(fetched.bySource), ['origin']);

  // The premise: the origin sees the first agent's own measurement of the busy machine
  // (its heartbeats go out every 5 s, each measuring the time since the previous one).
  let seen: any = null;
  await waitFor(
    async () => {
      const { holders } = await op.get<{ holders: any[] }>(`/contents/${contentId}/holders`);
      seen = holders.find((h) => h.terminalId === firstId)?.state ?? null;
      return seen !== null && seen.cpu >= 0.95;
    },
    () => `the first agent to report the machine's CPU at ≥ 95 % (last state: ${JSON.stringify(seen)})`,
    60_000,
    250,
  );
  // Its slots and link are free (but for the origin's spot check of one piece): nothing else is downloading.
  assert.equal(seen.slots, 4);
  assert.ok(seen.slotsBusy < 1, `slots in use: ${seen.slotsBusy}`);

  const second = startAgent('second', await member('second'), ['--get', contentId]);
  const result = await within(second.done, 'the second agent to fetch', 120_000);
  assert.ok(readFileSync(path.join(work, 'second', 'store', 'contents', contentId, 'data')).equals(file));
  assert.ok((result.bySource[firstId] ?? 0) > 0, `the first agent served: ${JSON.stringify({ bySource: result.bySource, skipped: result.skipped })}`);
  assert.deepEqual(result.skipped, []);
  // …and it says so in words.
  assert.match(result.sources[0], new RegExp(`^Served by .*terminal ${firstId}: [0-9.]+ [kM]?B`));
});
