import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

// Real processes on loopback, for end-to-end tests and benchmarks.

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
/** The CLI from src/ through tsx, always: for tests that hook modules of src/ (settle-crash) or check what the source loads. */
export const SRC_CLI = path.join(ROOT, 'scripts', 'cascade-src.mjs');
/** The compiled CLI users run (`npx cascade`; dist/ is built by `npm install`): see test/cli/built.test.ts. */
export const BUILT_CLI = path.join(ROOT, 'bin', 'cascade.js');
/**
 * The CLI the tests' child processes run: the code as it is in the tree. `npm test`
 * (scripts/run-tests.mjs) compiles src/ to dist/ first when src/ changed, and says so with
 * CASCADE_TEST_CLI=built: then the compiled CLI (a second of CPU less per command, three per
 * origin). Otherwise — a test file run on its own — src/ through tsx.
 */
export const CLI = process.env.CASCADE_TEST_CLI === 'built' ? BUILT_CLI : SRC_CLI;
/** Origins tests start hash passwords at scrypt N = 2^10, not 2^15 (test files that make many accounts ran a third faster; test/accounts tests the default). */
export const TEST_SCRYPT_N = 1024;

export interface OriginProcess {
  url: string;
  dataDir: string;
  proc: ChildProcess;
  operator: { username: string; password: string };
  /** Everything the process has written to stdout and stderr so far. */
  output(): string;
  /** Resolves once the output (so far or later) matches `pattern`; rejects after `timeoutMs` or if the process exits first. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Stops the process (SIGTERM, or the given signal) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Stops it and removes its data directory. */
  destroy(): Promise<void>;
}

/**
 * Starts `cascade serve` as a child process on a free port and waits until it listens.
 * `nodeArgs` go to node before the CLI (after ORIGIN_NODE_ARGS), e.g. `--import <hook>`.
 */
export async function spawnOrigin(opts: { dataDir?: string; env?: Record<string, string>; nodeArgs?: string[]; /** the CLI to run (default: CLI) */ cli?: string } = {}): Promise<OriginProcess> {
  const dataDir = opts.dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'cascade-origin-'));
  // Embedded PGlite unless the caller names a database: test processes must not share one.
  // Ample sign-up credit unless a test says otherwise (see startTestOrigin).
  // Agents in tests and benchmarks serve on loopback, which the default PEER_ADDRESSES (private) refuses.
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: '0', RTMP_PORT: '0', DATA_DIR: dataDir, LOG_LEVEL: 'info', DATABASE_URL: '', SIGNUP_CREDIT: '1000000000', PEER_ADDRESSES: 'any', PASSWORD_SCRYPT_N: String(TEST_SCRYPT_N), ...opts.env };
  // ORIGIN_NODE_ARGS lets a benchmark profile the origin, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = process.env.ORIGIN_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const proc = spawn(process.execPath, [...nodeArgs, ...(opts.nodeArgs ?? []), opts.cli ?? CLI, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let output = '';
  const watchers = new Set<() => void>();
  const grew = () => watchers.forEach((w) => w());
  proc.stderr!.on('data', (d) => ((stderr += d), (output += d), grew()));
  proc.stdout!.on('data', (d) => ((output += d), grew()));
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.on('line', (line) => {
      try {
        const entry = JSON.parse(line);
        if (entry.msg === 'origin listening') resolve(entry.url);
      } catch {}
    });
    proc.once('exit', (code) => reject(new Error(`origin exited with ${code} before listening: ${stderr}`)));
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const creds = readFileSync(path.join(dataDir, 'operator-credentials.txt'), 'utf8');
  const operator = {
    username: /username=(.*)/.exec(creds)![1],
    password: /password=(.*)/.exec(creds)![1],
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    await exited;
  };
  const waitForOutput = (pattern: RegExp, timeoutMs = 30_000) =>
    new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        watchers.delete(check);
        clearTimeout(timer);
        proc.off('exit', onExit);
        if (err) reject(err);
        else resolve();
      };
      const check = () => pattern.test(output) && done();
      const onExit = () => done(new Error(`origin exited before its output matched ${pattern}`));
      const timer = setTimeout(() => done(new Error(`origin output did not match ${pattern} within ${timeoutMs} ms`)), timeoutMs);
      watchers.add(check);
      proc.once('exit', onExit);
      if (!pattern.test(output) && (proc.exitCode !== null || proc.signalCode !== null)) onExit();
      else check();
    });
  return {
    url,
    dataDir,
    proc,
    operator,
    output: () => output,
    waitForOutput,
    stop,
    async destroy() {
      await stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the `cascade` CLI with CASCADE_HOME pointing at `home`. */
export function runCli(args: string[], opts: { home: string; env?: Record<string, string>; input?: string }): Promise<CliRun> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, CASCADE_HOME: opts.home, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    proc.stdin.end(opts.input ?? '');
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
