// Runs every test/**/*.test.ts with node's test runner through tsx.
// Two files at a time (TEST_CONCURRENCY): the machines have two cores. Three was measured slower
// (CI's tests stage 1530 s against 1371 s), though at two the cores are not always both busy.
// The PGlite test databases are copies of one migrated template made once per run (test/helpers/db.ts):
// a new directory for it each run, unless the caller (scripts/faketime-tests.mjs) gives one.
// TEST_SUMMARY=<file>: also write counts by engine, file and fuzz test there (scripts/test-summary.mjs; CI prints them).
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ensureWebBuilt } from './web-build.mjs';
import { useBuiltCliForTests } from './cli-build.mjs';

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? find(p) : p.endsWith('.test.ts') ? [p] : [];
  });
}

// The browser tests (test/web) drive the built app: build it first if web/ changed.
ensureWebBuilt();
// The tests' child processes (origins, agents, CLI commands) run dist/, compiled first if src/ changed
// (scripts/cli-build.mjs); CASCADE_TEST_CLI=src runs them through tsx instead.
useBuiltCliForTests();

const only = process.argv.slice(2);
const files = only.length ? only : find('test').sort();
const reporters = process.env.TEST_SUMMARY
  ? [
      // With a reporter named, node no longer picks its default: name it (spec on a terminal, TAP otherwise).
      `--test-reporter=${process.stdout.isTTY ? 'spec' : 'tap'}`, '--test-reporter-destination=stdout',
      `--test-reporter=${path.join(import.meta.dirname, 'test-summary.mjs')}`, `--test-reporter-destination=${process.env.TEST_SUMMARY}`,
    ]
  : [];
const templateDir = process.env.CASCADE_TEST_TEMPLATE_DIR ? null : mkdtempSync(path.join(os.tmpdir(), 'cascade-test-template-'));
const res = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${process.env.TEST_CONCURRENCY ?? 2}`, ...reporters, ...files], {
  stdio: 'inherit',
  env: templateDir ? { ...process.env, CASCADE_TEST_TEMPLATE_DIR: templateDir } : process.env,
});
if (templateDir) rmSync(templateDir, { recursive: true, force: true });
process.exit(res.status ?? 1);
