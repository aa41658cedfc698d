// A node:test reporter for CI: counts results by database engine, by file and for the fuzz
// test, and writes them as one JSON object when the run ends (run-tests.mjs adds it when
// TEST_SUMMARY names a file). `summaryLines` turns that object into the lines CI prints.
//
// A test's engine is the one its enclosing suites name ("ledger (pglite)", "… on postgres",
// see test/helpers/db.ts testEngines()); tests under no such suite count as "no database".

const ENGINE = /\b(pglite|postgres)\b/;
const FUZZ = /fuzz/i;

export default async function* summary(source) {
  const out = { engines: {}, files: {}, fuzz: {}, failed: [] };
  const entry = (table, key) => (table[key] ??= { passed: 0, failed: 0, ms: 0 });
  const count = (table, key, passed) => entry(table, key)[passed ? 'passed' : 'failed']++;
  const engineOf = (path) => path.map((n) => ENGINE.exec(n)?.[1]).find(Boolean) ?? 'no database';
  // Per file, the names of the suites enclosing the test that is starting (by nesting).
  const stacks = new Map();
  for await (const ev of source) {
    const d = ev.data ?? {};
    const file = d.file ? relative(d.file) : '(unknown file)';
    if (ev.type === 'test:start') {
      const stack = stacks.get(file) ?? [];
      stack.length = d.nesting;
      stack.push(d.name);
      stacks.set(file, stack);
      continue;
    }
    if (ev.type === 'test:complete' && d.name === d.file) entry(out.files, file).ms = d.details?.duration_ms ?? 0;
    if (ev.type !== 'test:pass' && ev.type !== 'test:fail') continue;
    const passed = ev.type === 'test:pass';
    const path = [...(stacks.get(file) ?? []).slice(0, d.nesting), d.name];
    const error = d.details?.error;
    const failure = () => out.failed.push(`${file} › ${path.join(' › ')}${error?.message ? `: ${String(error.message).split('\n')[0]}` : ''}`);
    // Time per engine: its top-level suites' durations (the engines' suites run side by side in one run).
    if (d.nesting === 0) entry(out.engines, engineOf(path)).ms += d.details?.duration_ms ?? 0;
    if (d.details?.type === 'suite') {
      // A suite fails through its tests, except when one of its hooks fails: that counts as one failure.
      if (!passed && error?.failureType === 'hookFailed') {
        count(out.files, file, false);
        count(out.engines, engineOf(path), false);
        failure();
      }
      continue;
    }
    // The file itself (d.name is its path) fails when it does not load or exits early.
    const engine = d.name === d.file ? 'no database' : engineOf(path);
    count(out.engines, engine, passed);
    count(out.files, file, passed);
    if (FUZZ.test(file)) count(out.fuzz, file, passed);
    if (!passed) failure();
  }
  yield JSON.stringify(out) + '\n';
}

function relative(file) {
  const cwd = process.cwd() + '/';
  return file.startsWith(cwd) ? file.slice(cwd.length) : file;
}

/** The per-engine and fuzz lines of a summary, and the failed tests (at most `maxFailed`). */
export function summaryLines(s, maxFailed = 20) {
  const n = (c) => `${c.passed} passed, ${c.failed} failed`;
  const lines = Object.entries(s.engines)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([engine, c]) => `tests (${engine}): ${n(c)}, ${Math.round(c.ms / 1000)} s in its suites`);
  const fuzz = Object.entries(s.fuzz);
  lines.push(fuzz.length ? `fuzz: ${fuzz.map(([file, c]) => `${file} ${n(c)}`).join('; ')}` : 'fuzz: no test file matching *fuzz* (nothing to run)');
  for (const f of s.failed.slice(0, maxFailed)) lines.push(`  failed: ${f}`);
  if (s.failed.length > maxFailed) lines.push(`  … and ${s.failed.length - maxFailed} more`);
  return lines;
}

/** Totals of a summary. */
export function totals(s) {
  const t = { passed: 0, failed: 0 };
  for (const c of Object.values(s.files)) {
    t.passed += c.passed;
    t.failed += c.failed;
  }
  return t;
}
