// Compiles src/ to dist/ (the CLI users run, bin/cascade.js) when the build is missing or older
// than a file of src/. `npm test` runs it first and then starts the child processes of the tests
// (origins, agents, CLI commands) from dist/: compiled from the tree as it is, and about a second
// of CPU cheaper per CLI command and three per origin than loading src/ through tsx (CI time, #19).
import { existsSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { newest } from './web-build.mjs';

const root = path.resolve(import.meta.dirname, '..');
/** Written after each build that succeeded: the build is as new as this file. */
const stamp = path.join(root, 'dist', '.built-from-src');

export function cliBuildIsStale() {
  return !existsSync(stamp) || !existsSync(path.join(root, 'dist', 'cli', 'main.js')) || newest(path.join(root, 'src')) > statSync(stamp).mtimeMs;
}

/** Compiles src/ to dist/ when stale, or always (`npm run build`: `node scripts/cli-build.mjs --always`). */
export function ensureCliBuilt({ always = false } = {}) {
  if (!always && !cliBuildIsStale()) return;
  if (!always) console.error('compiling src/ to dist/ (src/ changed since it was built)…');
  const started = Date.now();
  const res = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
  if (res.status !== 0) throw new Error('src/ did not compile (tsc -p tsconfig.build.json failed above)');
  // Dated when the build started: a file saved during the build is newer, and is compiled next time.
  writeFileSync(stamp, `built ${new Date(started).toISOString()}\n`);
  utimesSync(stamp, started / 1000, started / 1000);
}

/**
 * For a test run: unless CASCADE_TEST_CLI=src, compiles src/ if stale and sets
 * CASCADE_TEST_CLI=built, which the test processes (and theirs) inherit (test/helpers/processes.ts CLI).
 */
export function useBuiltCliForTests() {
  if (process.env.CASCADE_TEST_CLI === 'src') return;
  ensureCliBuilt();
  process.env.CASCADE_TEST_CLI = 'built';
}

if (import.meta.url === `file://${process.argv[1]}`) ensureCliBuilt({ always: process.argv.includes('--always') });
