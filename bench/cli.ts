// npm run bench -- cli [--runs 7]
//
// How long a user waits for the compiled CLI (bin/cascade.js, dist/): `cascade --help`,
// a signed-in command (`cascade wallet --json` against an origin that is up and has answered
// once) and the origin's start-up with an existing data directory, from spawn to the first
// 200 from /health (a second origin with its own data directory, started and stopped each
// round); `node -e 0` in the same rounds is the floor (a Node process that does nothing).
// Rounds interleave the four so that the machine's load hits them alike; each figure is
// the median over the rounds. Goals (#12): help < 300 ms, wallet < 600 ms, origin < 3 s.
// dist/ is brought up to date first (`npm run build`), so the figures are of the source as it is.
// Last line: {"bench":"cli","help_ms":…,"wallet_ms":…,"origin_start_ms":…,"node_ms":…}
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { monotonicMs } from '../src/core/clock.ts';
import { BUILT_CLI, ROOT } from '../test/helpers/processes.ts';
import { median } from './_stats.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '7' } } });
const runs = Number(values.runs);
const log = (msg: string) => process.stderr.write(`[bench cli] ${msg}\n`);
const work = mkdtempSync(path.join(os.tmpdir(), 'cascade-bench-cli-'));
const home = path.join(work, 'home');

log('npm run build');
const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
if (build.status !== 0) throw new Error('npm run build failed');

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
// The origin the signed-in commands talk to, and the one whose start-up is measured.
const served = { port: await freePort(), dataDir: path.join(work, 'served') };
const started = { port: await freePort(), dataDir: path.join(work, 'started') };
const origin = `http://127.0.0.1:${served.port}`;
const env = { ...process.env, DATABASE_URL: '', LOG_LEVEL: 'warn', CASCADE_HOME: home, CASCADE_ORIGIN: origin };

/** Milliseconds a process takes from spawn to exit; throws if it fails. */
function timed(args: string[]): Promise<number> {
  const started = monotonicMs();
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.on('exit', (code) => (code === 0 ? resolve(monotonicMs() - started) : reject(new Error(`${args.join(' ')} exited with ${code}: ${stderr}`))));
  });
}

/** Starts the origin; resolves once /health answers 200, with the time that took and a stop function. */
async function startOrigin(o: { port: number; dataDir: string }): Promise<{ ms: number; stop: () => Promise<void> }> {
  const started = monotonicMs();
  const p = spawn(process.execPath, [BUILT_CLI, 'serve'], { env: { ...env, PORT: String(o.port), RTMP_PORT: '0', DATA_DIR: o.dataDir }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  for (;;) {
    if (p.exitCode !== null) throw new Error(`origin exited with ${p.exitCode}: ${stderr}`);
    const ok = await fetch(`http://127.0.0.1:${o.port}/health`).then((r) => r.status === 200, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const ms = monotonicMs() - started;
  return { ms, stop: () => (p.kill('SIGTERM'), exited) };
}

const roundedMedian = (xs: number[]) => Math.round(median(xs));

let stopServed = async () => {};
try {
  // First starts create the data directories (keys, database, operator); not measured.
  log(`first starts in ${work}`);
  await (await startOrigin(started)).stop();
  const o = await startOrigin(served);
  stopServed = o.stop;
  const creds = readFileSync(path.join(served.dataDir, 'operator-credentials.txt'), 'utf8');
  const username = /username=(.*)/.exec(creds)![1];
  const password = /password=(.*)/.exec(creds)![1];
  const login = spawnSync(process.execPath, [BUILT_CLI, 'login', '--username', username], { env: { ...env, CASCADE_PASSWORD: password }, encoding: 'utf8' });
  if (login.status !== 0) throw new Error(`cascade login failed: ${login.stderr}`);
  await timed([BUILT_CLI, 'wallet', '--json']); // the origin's first answer on these routes; not measured

  const times = { help: [] as number[], wallet: [] as number[], origin: [] as number[], node: [] as number[] };
  for (let round = 0; round < runs; round++) {
    times.node.push(await timed(['-e', '0']));
    times.help.push(await timed([BUILT_CLI, '--help']));
    times.wallet.push(await timed([BUILT_CLI, 'wallet', '--json']));
    const s = await startOrigin(started);
    times.origin.push(s.ms);
    await s.stop();
    log(`round ${round + 1}/${runs}: node ${times.node.at(-1)!.toFixed(0)} ms, help ${times.help.at(-1)!.toFixed(0)} ms, wallet ${times.wallet.at(-1)!.toFixed(0)} ms, origin ${times.origin.at(-1)!.toFixed(0)} ms`);
  }
  console.log(JSON.stringify({ bench: 'cli', help_ms: roundedMedian(times.help), wallet_ms: roundedMedian(times.wallet), origin_start_ms: roundedMedian(times.origin), node_ms: roundedMedian(times.node) }));
} finally {
  await stopServed();
  rmSync(work, { recursive: true, force: true });
}
