import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { CLI, ROOT, spawnOrigin, type OriginProcess } from '../helpers/processes.ts';

// Issue 12 #2 and #7: docs/quickstart.md, run as written, from a fresh data directory on a
// port other than 8080 to a download served by another terminal and a voucher top-up, with
// nothing but `cascade` (no curl). Every command below must appear verbatim in the guide;
// each runs in bash as its own process, in the window's environment (its `export` line,
// with the guide's http://127.0.0.1:8090 replaced by this origin's address). Two
// substitutions, both the same program: `npx cascade` runs bin/cascade.js directly (npx
// costs seconds per call), and `npm start` is spawnOrigin (`cascade serve` on a free port).

const GUIDE = readFileSync(path.join(ROOT, 'docs/quickstart.md'), 'utf8');
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const GUIDE_ORIGIN = 'http://127.0.0.1:8090';

let origin: OriginProcess;
let work: string;
const film = randomBytes(3 * 1024 * 1024 + 123);
const agents: ChildProcess[] = [];

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'cascade-quickstart-'));
  // As `PORT=8090 PEER_ADDRESSES=any npm start` with a fresh data directory, on a free port;
  // no sign-up credit (the default): the members pay with the store's vouchers.
  origin = await spawnOrigin({ dataDir: path.join(work, 'data'), env: { PEER_ADDRESSES: 'any', SIGNUP_CREDIT: '0' } });
  assert.doesNotMatch(origin.url, /:8080$/);
  writeFileSync(path.join(work, 'film.mp4'), film);
});
after(async () => {
  for (const a of agents) if (a.exitCode === null) a.kill('SIGTERM');
  await origin?.destroy();
  rmSync(work, { recursive: true, force: true });
});

type Env = Record<string, string>;

/** The environment an `export …` line of the guide sets (values: $PWD and the guide's origin replaced). */
function window(exportLine: string): Env {
  assert.ok(GUIDE.includes(exportLine), `the guide has: ${exportLine}`);
  const env: Env = {};
  for (const [, k, v] of exportLine.replace(/^export /, '').matchAll(/(\w+)=(\S+)/g)) env[k] = v.replace('$PWD', work).replace(GUIDE_ORIGIN, origin.url);
  return env;
}

/** `command` from the guide in bash; `suffix` is what the test adds after it (said where used). */
function shell(command: string, env: Env, suffix = '') {
  assert.ok(GUIDE.includes(command), `the guide has: ${command}`);
  const script = command.replaceAll('npx cascade ', `"${process.execPath}" "${CLI}" `) + suffix;
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['CASCADE_ORIGIN', 'CASCADE_TOKEN', 'CASCADE_PASSWORD', 'CASCADE_HOME']) delete base[k];
  return spawn('bash', ['-c', script], { cwd: work, env: { ...base, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Runs one command of the guide; `input` is what the person types (passwords), one answer a line. */
async function run(command: string, env: Env, input = '', suffix = ''): Promise<string> {
  const started = performance.now();
  const p = shell(command, env, suffix);
  let stdout = '';
  let stderr = '';
  p.stdout!.on('data', (d) => (stdout += d));
  p.stderr!.on('data', (d) => (stderr += d));
  p.stdin!.end(input);
  const code = await new Promise<number | null>((r) => p.on('exit', r));
  assert.equal(code, 0, `${command}\n${stderr}`);
  if (process.env.QUICKSTART_LOG) process.stderr.write(`${Math.round(performance.now() - started)} ms  ${command}\n`);
  return stdout;
}

test('the README quick start names --origin/CASCADE_ORIGIN, a port of your choice and no curl; so does the guide', () => {
  for (const text of [README, GUIDE]) {
    assert.match(text, /CASCADE_ORIGIN/);
    assert.match(text, /--origin/);
    assert.doesNotMatch(text, /\bcurl\b/);
  }
  assert.match(README, /docs\/quickstart\.md/);
  assert.match(README, /PORT=8090/);
});

test('docs/quickstart.md as written: operator, publisher, store, two members, a peer-served download, vouchers, a schedule', { timeout: 900_000 }, async () => {
  const password = (who: string) => `${who}-has-a-long-password`;

  // 2. The operator.
  const operator = { ...window('export CASCADE_ORIGIN=http://127.0.0.1:8090'), ...window('export CASCADE_HOME=$PWD/.cascade/operator') };
  assert.match(await run('npx cascade login --username operator', operator, `${origin.operator.password}\n`), /signed in to .* as operator/);
  await run('npx cascade user add pat --role publisher', operator, `${password('pat')}\n`);
  await run('npx cascade user add corner-shop --role store', operator, `${password('corner-shop')}\n`);
  const users = await run('npx cascade user list', operator);
  assert.match(users, /^pat +publisher/m);
  assert.match(users, /^corner-shop +store/m);

  // 3. The publisher; 4. the store (same window, other homes).
  const pat = { ...operator, ...window('export CASCADE_HOME=$PWD/.cascade/pat') };
  await run('npx cascade login --username pat', pat, `${password('pat')}\n`);
  const published = await run('npx cascade publish film.mp4 --title "Harbour Lights" --genre documentary --price 300', pat);
  const contentId = published.trim().split('\n').at(-1)!;
  assert.match(contentId, /^[0-9a-f]{64}$/);
  const shop = { ...operator, ...window('export CASCADE_HOME=$PWD/.cascade/corner-shop') };
  await run('npx cascade login --username corner-shop', shop, `${password('corner-shop')}\n`);
  const codes = (await run('npx cascade voucher issue --amount 5000 --count 2', shop)).trim().split('\n');
  assert.equal(codes.length, 2);

  // 5. Ann: signs up, tops up, finds the film, runs an agent that fetches it and serves it.
  const ann = { ...window('export CASCADE_ORIGIN=http://127.0.0.1:8090 CASCADE_HOME=$PWD/.cascade/ann'), CODE: codes[0] };
  await run('npx cascade signup --username ann', ann, `${password('ann')}\n`);
  assert.match(await run('npx cascade wallet topup "$CODE"', ann), /5000/);
  const catalog = await run('npx cascade catalog harbour', ann);
  assert.ok(catalog.startsWith(`${contentId}  Harbour Lights`), catalog);
  // The script line of the guide: a closed pipe (`| head -1`) ends `cascade catalog` quietly.
  const short = (await run('ID=$(npx cascade catalog harbour | head -1 | cut -c1-8)', ann, '', '; printf %s "$ID"')).trim();
  assert.equal(short, contentId.slice(0, 8));
  // --json appended by the test, to read the agent's events.
  const annAgent = shell('npx cascade agent --get "$ID"', { ...ann, ID: short }, ' --json');
  agents.push(annAgent);
  annAgent.stdin!.end();
  let agentErr = '';
  annAgent.stderr!.on('data', (d) => (agentErr += d));
  let annTerminal = '';
  const fetched = await new Promise<any>((resolve, reject) => {
    createInterface({ input: annAgent.stdout! }).on('line', (line) => {
      const e = JSON.parse(line);
      if (e.event === 'ready') annTerminal = e.terminalId;
      if (e.event === 'done') resolve(e);
    });
    annAgent.on('exit', (code) => reject(new Error(`ann's agent exited with ${code}: ${agentErr}`)));
  });
  assert.equal(fetched.contentId, contentId);
  assert.equal(fetched.pieces, fetched.totalPieces);

  // 6. Bob fetches it; Ann's agent serves pieces of it.
  const bob = { ...window('export CASCADE_ORIGIN=http://127.0.0.1:8090 CASCADE_HOME=$PWD/.cascade/bob'), CODE: codes[1], ID: short };
  await run('npx cascade signup --username bob', bob, `${password('bob')}\n`);
  await run('npx cascade wallet topup "$CODE"', bob);
  // --json appended by the test: the last line then says which source served how many bytes.
  const got = JSON.parse((await run('npx cascade get "$ID" -o film-copy.mp4', bob, '', ' --json')).trim().split('\n').at(-1)!);
  assert.ok(readFileSync(path.join(work, 'film-copy.mp4')).equals(film), 'byte-exact');
  assert.ok(annTerminal && got.bySource[annTerminal] > 0, `ann's agent served bob: ${JSON.stringify(got.bySource)} (ann: ${annTerminal})`);
  assert.match(await run('npx cascade wallet', bob), /balance \d+/);
  // Ann's earnings are booked once her agent reports what it served (at its next heartbeat): the command is shown, not its timing.
  assert.match(await run('npx cascade wallet', ann), /balance \d+/);

  // 7. A schedule.
  await run('npx cascade schedule add --genre documentary --window "daily 01:00-05:00"', bob);
  assert.match(await run('npx cascade schedule list', bob), /documentary/);
});
