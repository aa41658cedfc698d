// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function and per category,
// over the whole profile or a window. Used to write docs/benchmarks.md's "where the time goes".
//   node --import tsx bench/_cpuprofile.ts FILE.cpuprofile… [--top 25] [--window A-B[,C-D…]]
// Windows are in microseconds of the machine's monotonic clock (process.hrtime), which is what
// profiles are stamped with: benches print theirs (`window …`) so that every process's profile
// can be cut to the same moments.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: Node[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' }, window: { type: 'string' }, callers: { type: 'string' }, inclusive: { type: 'boolean', default: false } } });
const windows = (values.window ?? '').split(',').filter(Boolean).map((w) => w.split('-').map(Number) as [number, number]);
const inWindow = (t: number) => windows.length === 0 || windows.some(([a, b]) => t >= a && t <= b);
for (const file of positionals) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let t = p.startTime;
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i];
    if (!inWindow(t)) continue;
    const dt = p.timeDeltas[i + 1] ?? 0;
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + dt);
    total += dt;
  }
  const byFn = new Map<string, number>();
  const byCat = new Map<string, number>();
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const short = url.replace(/^.*\/(node_modules\/)/, '$1').replace(/^.*\/work\/[^/]+\//, '').replace(/^file:\/\//, '');
    const key = `${functionName || '(anonymous)'} ${short}:${lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + us);
    const cat = functionName === '(idle)' ? 'idle' : functionName === '(garbage collector)' ? 'gc' : functionName === '(program)' ? 'program (native, unattributed)'
      : url.startsWith('node:') ? `node:${url.slice(5).split('/')[0]}` : url.includes('node_modules/') ? url.split('node_modules/')[1].split('/')[0] : url.includes('/src/') ? `src/${url.split('/src/')[1].split('/')[0]}` : url ? 'other js' : `native ${functionName}`;
    byCat.set(cat, (byCat.get(cat) ?? 0) + us);
  }
  // --inclusive: time under each of our own functions (src/), callees included: which of our paths cost what.
  if (values.inclusive) {
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const incl = new Map<string, number>();
    for (const [id, us] of self) {
      const seen = new Set<string>();
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const f = byId.get(at)!.callFrame;
        if (!f.url.includes('/src/')) continue;
        const key = `${f.functionName || '(anon)'} src/${f.url.split('/src/')[1]}`;
        if (seen.has(key)) continue;
        seen.add(key);
        incl.set(key, (incl.get(key) ?? 0) + us);
      }
    }
    console.log('-- inclusive, our functions');
    for (const [k, us] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`${((us / total) * 100).toFixed(1).padStart(5)}%  ${k}`);
  }
  // --callers NAME: where the self time of functions named NAME comes from (a few frames up).
  if (values.callers) {
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const stacks = new Map<string, number>();
    for (const [id, us] of self) {
      if (byId.get(id)!.callFrame.functionName !== values.callers) continue;
      const frames: string[] = [];
      for (let at = parent.get(id); at !== undefined && frames.length < 5; at = parent.get(at)) {
        const f = byId.get(at)!.callFrame;
        frames.push(`${f.functionName || '(anon)'}@${f.url.split('/').slice(-1)[0]}:${f.lineNumber + 1}`);
      }
      const key = frames.join(' < ');
      stacks.set(key, (stacks.get(key) ?? 0) + us);
    }
    console.log(`-- callers of ${values.callers}`);
    for (const [k, us] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`${((us / total) * 100).toFixed(1).padStart(5)}%  ${k}`);
  }
  const pct = (us: number) => ((us / total) * 100).toFixed(1).padStart(5) + '%';
  console.log(`\n${file}: ${(total / 1e6).toFixed(2)} s sampled`);
  console.log('-- by category');
  for (const [k, us] of [...byCat].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`${pct(us)}  ${k}`);
  console.log('-- by function (self)');
  for (const [k, us] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`${pct(us)}  ${k}`);
}
