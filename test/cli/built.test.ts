import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BUILT_CLI, ROOT, SRC_CLI } from '../helpers/processes.ts';

// #12 point 1: users run the compiled CLI (dist/, built by `npm install` through `prepare`),
// and a command loads only what its own action needs.

const run = promisify(execFile);

/** Runs a node script; resolves with its exit code and output whether or not it failed. */
async function node(args: string[], env: NodeJS.ProcessEnv = process.env) {
  try {
    const { stdout, stderr } = await run(process.execPath, args, { cwd: ROOT, env });
    return { code: 0, stdout, stderr };
  } catch (err: any) {
    return { code: err.code as number, stdout: err.stdout as string, stderr: err.stderr as string };
  }
}

describe('the built CLI', { timeout: 240_000 }, () => {
  before(async () => {
    // CI and a fresh clone have dist/ from `npm install`; a development checkout may not.
    if (!existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) {
      await run(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT });
    }
  });

  test('bin/cascade.js (what `npx cascade` runs) answers --help from dist/', async () => {
    const r = await node([BUILT_CLI, '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: cascade /);
    for (const command of ['serve', 'login', 'get', 'wallet']) assert.match(r.stdout, new RegExp(`^  ${command}\\b`, 'm'));
  });

  test('without dist/, bin/cascade.js says in one line how to build it, with no stack trace', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cascade-unbuilt-'));
    try {
      mkdirSync(path.join(dir, 'bin'));
      copyFileSync(BUILT_CLI, path.join(dir, 'bin', 'cascade.js'));
      const r = await node([path.join(dir, 'bin', 'cascade.js'), '--help']);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^cascade is not built \(no dist\/\): run `npm run build` in .+\n$/);
      assert.doesNotMatch(r.stderr, /\n./);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// Loading fastify, PGlite, Kysely, undici… cost ~1.5 s per command; command modules import them
// inside their actions. Checked on the source (through tsx), so a stale dist/ cannot hide a change.
test('`cascade --help` loads no server, database or downloader package', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cascade-loaded-'));
  try {
    const log = path.join(dir, 'loaded.txt');
    // A module resolve hook that writes down every module the process loads.
    const hooks = `import { appendFileSync } from 'node:fs';
      export async function resolve(specifier, context, next) {
        const r = await next(specifier, context);
        appendFileSync(process.env.LOADED_LOG, r.url + '\\n');
        return r;
      }`;
    const register = `import { register } from 'node:module'; register(${JSON.stringify('data:text/javascript,' + encodeURIComponent(hooks))});`;
    const r = await node(['--import', 'data:text/javascript,' + encodeURIComponent(register), SRC_CLI, '--help'], { ...process.env, LOADED_LOG: log });
    assert.equal(r.code, 0, r.stderr);
    const loaded = readFileSync(log, 'utf8').split('\n');
    assert.ok(loaded.some((u) => u.endsWith('/src/cli/main.ts')), 'the hook saw the CLI load');
    const heavy = ['fastify', '@fastify/swagger', '@electric-sql/pglite', 'kysely', 'pg', 'nats', 'undici', 'pino', 'prom-client', 'ajv'];
    const packages = new Set(loaded.map((u) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1]).filter(Boolean));
    assert.deepEqual(heavy.filter((p) => packages.has(p)), []);
    const origin = loaded.filter((u) => /\/src\/(server|db\/|transfer\/downloader|agent\/agent)/.test(u));
    assert.deepEqual(origin, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
