// npm run bench -- all [--only transfer,swarm] [--skip watermark] [--record] [--results bench/results.json]
//
// #19 point 6, the regression guard: runs every benchmark one after the other (each with its
// own defaults, as `npm run bench -- NAME` does), reads the JSON of its last line, and compares
// the figures below with the last recorded results in bench/results.json. Most are ratios to a
// baseline measured in the same run (these machines are shared and noisy); a few are absolute
// (memory). A figure that got worse by more than 15 % is flagged, and the run exits 1.
// `--record` writes the results of this run to bench/results.json (only on purpose: the file is
// the reference the next runs are judged against; commit it with a note of the machine's state).
// Last line: {"bench":"all","figures":{name: {value, recorded, change, flagged}}, "flagged":[…], "benches_run":[…]}
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { systemClock } from '../src/core/clock.ts';

import { FIGURES, judge, type Json } from './_guard.ts';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    skip: { type: 'string' },
    record: { type: 'boolean', default: false },
    results: { type: 'string', default: path.join(import.meta.dirname, 'results.json') },
  },
});

const log = (msg: string) => process.stderr.write(`[bench all] ${msg}\n`);

/** Runs one benchmark; answers its last line, parsed, and how long it took. */
function runBench(name: string): Promise<{ last: Json; seconds: number }> {
  return new Promise((resolve, reject) => {
    const started = systemClock.now();
    const proc = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, `${name}.ts`)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let tail = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => {
      process.stdout.write(d.replace(/^/gm, `  ${name} | `).replace(/ {2}\S+ \| $/, ''));
      tail = (tail + d).slice(-64 * 1024);
    });
    proc.once('error', reject);
    proc.once('exit', (code) => {
      const lastLine = tail.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`${name} exited with ${code}`));
      try {
        resolve({ last: JSON.parse(lastLine), seconds: (systemClock.now() - started) / 1000 });
      } catch {
        reject(new Error(`${name}: the last line is not JSON: ${lastLine.slice(0, 200)}`));
      }
    });
  });
}

async function main() {
  const only = values.only ? values.only.split(',') : null;
  const skip = new Set(values.skip ? values.skip.split(',') : []);
  for (const n of [...(only ?? []), ...skip]) if (!FIGURES[n]) throw new Error(`unknown benchmark ${n} (known: ${Object.keys(FIGURES).join(', ')})`);
  const names = Object.keys(FIGURES).filter((n) => (!only || only.includes(n)) && !skip.has(n));
  const recorded: { recorded_at?: string; figures?: Record<string, number>; benches?: Record<string, Json> } = existsSync(values.results!) ? JSON.parse(readFileSync(values.results!, 'utf8')) : {};
  if (!recorded.figures) log(`no recorded results in ${values.results}: this run only reports (record with --record)`);

  const lasts: Record<string, Json> = {};
  const failed: Record<string, string> = {};
  for (const name of names) {
    log(`${name}: running`);
    try {
      const { last, seconds } = await runBench(name);
      lasts[name] = last;
      log(`${name}: done in ${seconds.toFixed(0)} s`);
    } catch (err) {
      failed[name] = (err as Error).message;
      log(`${name}: FAILED: ${(err as Error).message}`);
    }
  }

  const figures: Record<string, { value: number | null; recorded: number | null; change: number | null; flagged: boolean; better: string }> = {};
  for (const name of names) {
    for (const f of FIGURES[name]) {
      const raw = lasts[name] ? f.of(lasts[name]) : undefined;
      const value = typeof raw === 'number' && Number.isFinite(raw) ? raw : undefined;
      const before = recorded.figures?.[f.name];
      const j = value !== undefined && typeof before === 'number' ? judge(value, before, f.better) : null;
      // A benchmark that failed or no longer prints a figure it printed before is flagged too.
      const lost = value === undefined && typeof before === 'number';
      figures[f.name] = { value: value ?? null, recorded: before ?? null, change: j ? round(j.change, 3) : null, flagged: !!j?.flagged || lost, better: f.better };
    }
  }

  const rows = Object.entries(figures).map(([name, f]) => [name, fmt(f.value), fmt(f.recorded), f.change === null ? '—' : `${f.change.toFixed(3)}`, `${f.better} is better`, f.flagged ? 'WORSE BY > 15 %' : '']);
  const header = ['figure', 'this run', 'recorded', 'change', '', ''];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  console.log(line(header));
  for (const r of rows) console.log(line(r));
  if (recorded.recorded_at) console.log(`(recorded ${recorded.recorded_at}; change = this run against it, oriented so that under 1 is worse)`);
  for (const [name, why] of Object.entries(failed)) console.log(`${name} did not finish: ${why}`);

  if (values.record) {
    if (Object.keys(failed).length) throw new Error('not recording: some benchmarks failed');
    const recordedAt = new Date(systemClock.now()).toISOString();
    const machine = `${os.cpus().length} cores, ${Math.round(os.totalmem() / 1024 ** 3)} GiB, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} at the end`;
    // A run of some benchmarks (--only) records those: each benchmark keeps when and on what it was recorded.
    const kept = Object.fromEntries(
      Object.entries(recorded.benches ?? {}).map(([n, j]) => [n, { ...j, recorded_at: j.recorded_at ?? recorded.recorded_at, machine: j.machine ?? (recorded as Json).machine }]),
    );
    const next = {
      recorded_at: recordedAt,
      machine,
      figures: { ...recorded.figures, ...Object.fromEntries(Object.entries(figures).filter(([, f]) => f.value !== null).map(([n, f]) => [n, round(f.value!, 4)])) },
      benches: { ...kept, ...Object.fromEntries(Object.entries(lasts).map(([n, j]) => [n, { ...j, recorded_at: recordedAt, machine }])) },
    };
    writeFileSync(values.results!, `${JSON.stringify(next, null, 2)}\n`);
    log(`recorded in ${values.results}`);
  }
  const flagged = Object.entries(figures).filter(([, f]) => f.flagged).map(([n]) => n);
  console.log(JSON.stringify({ bench: 'all', figures, flagged, failed: Object.keys(failed), benches_run: Object.keys(lasts) }));
  if (flagged.length || Object.keys(failed).length) process.exitCode = 1;
}

const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;
const fmt = (x: number | null) => (x === null ? '—' : String(round(x, 3)));

if (process.argv[1] === import.meta.filename) await main();
