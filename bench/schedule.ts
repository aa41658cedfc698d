// npm run bench -- schedule [--terminals 100000] [--windows 3] [--from 2026-03-23T00:00:00Z] [--budget 2000000000] [--share 0.3] [--max-dispatch-seconds 120] [--seed 1]
//
// #5 point 8. Plans one week for 100,000 terminals with 3 windows each, then replays
// that week in 1-minute steps, asking the S0.6 policy (ordering.ts `admit`) at each step
// which of the due deliveries start.
//
//  - plan_ms: `planWeek` (src/schedule/plan.ts) over every terminal's parsed windows:
//    every interval of the week, bucketed by the minute it opens and closes. Pure and in
//    memory: no database I/O (`plan_scope` says so). The windows are parsed once first
//    (`parse_ms`, not part of planning: schedules are validated when they are stored).
//    Median of 3 runs after one warm-up run on 1,000 terminals; `plan_cold_ms` is the
//    first full run. Same-run baseline: the naive planner with the public API
//    (`allOccurrences` per terminal, then one sort of every interval by start):
//    `plan_vs_baseline` = plan_ms / baseline_plan_ms.
//  - dispatch_per_s: admission decisions per second of replay, a decision being one
//    candidate in one `admit` call. A step: apply the openings and closings of that
//    minute (from the week plan), advance running deliveries, build the candidates (open
//    window, something due, not running, not carried this window), call `admit`, act on
//    it (start at its rate, carry to the next window). Everything in the step counts,
//    not just `admit` (`admit_per_s` is admit alone). Workload: a random 30 % (--share)
//    of terminals has a delivery due (100 MB–1 GB) at the start of the week, and each day
//    at 06:00 UTC another 30 % gets one; links 20–1000 Mbit/s, 10 % congested;
//    tiers premium 15 % / member 60 % / none 25 %; origin egress budget 2 GB/s. The
//    replay stops after --max-dispatch-seconds of step time (then `dispatch_minutes` <
//    10080). Same-run baseline: sorting the same candidate sets by tier and id
//    (`dispatch_vs_sort` = dispatch_per_s / sort_per_s: the cost of the whole decision
//    relative to a bare sort).
// Last line: {"bench":"schedule","terminals":100000,"plan_ms":…,"dispatch_per_s":…,…}
import { parseArgs } from 'node:util';
import { admit, type Candidate, type LinkState, type Tier } from '../src/schedule/ordering.ts';
import { closedAt, openedAt, planWeek, WEEK_MS } from '../src/schedule/plan.ts';
import { allOccurrences, parseWindow, type Window } from '../src/schedule/windows.ts';
import { median } from './_stats.ts';

const { values } = parseArgs({
  options: {
    terminals: { type: 'string', default: '100000' },
    windows: { type: 'string', default: '3' },
    from: { type: 'string', default: '2026-03-23T00:00:00Z' }, // a Monday; Europe switches to summer time that Sunday
    budget: { type: 'string', default: '2000000000' },
    'max-dispatch-seconds': { type: 'string', default: '120' },
    share: { type: 'string', default: '0.3' },
    seed: { type: 'string', default: '1' },
  },
});
const N = Number(values.terminals);
const W = Number(values.windows);
const FROM = Date.parse(values.from!);
const BUDGET = Number(values.budget);
const MAX_DISPATCH_MS = Number(values['max-dispatch-seconds']) * 1000;
const SHARE = Number(values.share);
const log = (msg: string) => process.stderr.write(`[bench schedule] ${msg}\n`);

// ---- a deterministic population ----

let seed = Number(values.seed) >>> 0 || 1;
function rand(): number {
  // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

const ZONES = [
  'UTC', 'Europe/London', 'Europe/Dublin', 'Europe/Berlin', 'Europe/Moscow', 'Africa/Lagos', 'Asia/Tehran', 'Asia/Dubai', 'Asia/Kolkata',
  'Asia/Kathmandu', 'Asia/Shanghai', 'Asia/Tokyo', 'Australia/Sydney', 'Australia/Lord_Howe', 'Pacific/Auckland', 'Pacific/Chatham',
  'America/Sao_Paulo', 'America/Santiago', 'America/St_Johns', 'America/New_York', 'America/Chicago', 'America/Denver', 'America/Los_Angeles', 'Pacific/Honolulu',
];
const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
const hm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;

function randomWindowSpec(zone: string) {
  const r = rand();
  const days = r < 0.4 ? 'daily' : r < 0.65 ? 'weekdays' : r < 0.8 ? 'weekends' : DAYS.filter(() => rand() < 0.5);
  const start = Math.floor(rand() * 96) * 15;
  const length = (1 + Math.floor(rand() * 32)) * 15; // 15 min – 8 h
  const endMin = (start + length) % 1440;
  return {
    days: Array.isArray(days) && days.length === 0 ? ['sun'] : days,
    start: hm(start),
    end: endMin === 0 ? '24:00' : hm(endMin),
    timeZone: zone,
    ...(rand() < 0.4 ? { capBytesPerSecond: Math.round(500_000 + rand() * 9_500_000) } : {}),
  };
}

log(`generating ${N} terminals × ${W} windows`);
const specs = Array.from({ length: N }, () => {
  const zone = pick(ZONES); // a terminal's windows are in its own zone
  return Array.from({ length: W }, () => randomWindowSpec(zone));
});
let t0 = performance.now();
const windows: Window[][] = specs.map((ws) => ws.map((w) => parseWindow(w)));
const parseMs = performance.now() - t0;

// ---- plan ----

planWeek(windows.slice(0, 1000), FROM); // warm-up: JIT
const planRuns: number[] = [];
let plan = planWeek([], FROM);
for (let run = 0; run < 4; run++) {
  t0 = performance.now();
  plan = planWeek(windows, FROM);
  planRuns.push(performance.now() - t0);
}
const planCold = planRuns[0]!;
const planMs = median(planRuns.slice(1));
log(`planWeek: ${plan.count} intervals; runs ${planRuns.map((x) => x.toFixed(0)).join(', ')} ms`);

t0 = performance.now();
const naive: { terminal: number; start: number; end: number; windowIndex: number }[] = [];
for (let i = 0; i < N; i++) for (const o of allOccurrences(windows[i]!, FROM, FROM + WEEK_MS)) naive.push({ terminal: i, start: o.start, end: o.end, windowIndex: o.windowIndex });
naive.sort((a, b) => a.start - b.start || a.terminal - b.terminal);
const baselinePlanMs = performance.now() - t0;
if (naive.length !== plan.count) throw new Error(`plan has ${plan.count} intervals, the baseline ${naive.length}`);
log(`baseline (allOccurrences + sort): ${baselinePlanMs.toFixed(0)} ms`);

// ---- dispatch replay ----

const STEP = plan.stepMs;
const ids = Array.from({ length: N }, (_, i) => `t${i}`);
const tiers: Tier[] = Array.from({ length: N }, () => {
  const r = rand();
  return r < 0.15 ? 'premium' : r < 0.75 ? 'member' : '';
});
const links: LinkState[] = Array.from({ length: N }, () => {
  const downBps = Math.round((20 + rand() * 980) * 1e6);
  const congested = rand() < 0.1;
  return { downBps, recvLoadBps: Math.round(downBps * (congested ? 0.8 + rand() * 0.2 : rand() * 0.5)) };
});
const itemSize = () => Math.round(100e6 + rand() * 900e6);

const pending = new Int32Array(N); // deliveries queued for the terminal (the head is the one being delivered)
const bytesLeft = new Float64Array(N);
const dueAt = new Float64Array(N);
const deferrals = new Int32Array(N);
const rate = new Float64Array(N); // > 0 while running
const openCount = new Int32Array(N);
const winStart = new Float64Array(N);
const winEnd = new Float64Array(N);
const carried = new Uint8Array(N); // carried to the next window: not a candidate until the window closes

/** An indexable set of terminal indices: O(1) add, remove, iterate. */
class IndexSet {
  items = new Int32Array(N);
  pos = new Int32Array(N).fill(-1);
  size = 0;
  add(i: number) {
    if (this.pos[i] !== -1) return;
    this.pos[i] = this.size;
    this.items[this.size++] = i;
  }
  delete(i: number) {
    const p = this.pos[i]!;
    if (p === -1) return;
    const last = this.items[--this.size]!;
    this.items[p] = last;
    this.pos[last] = p;
    this.pos[i] = -1;
  }
}
const waiting = new IndexSet(); // open window, something due, not running, not carried
const running = new IndexSet();
const refresh = (i: number) => {
  if (openCount[i]! > 0 && pending[i]! > 0 && rate[i] === 0 && carried[i] === 0) waiting.add(i);
  else waiting.delete(i);
};
const capOf = (i: number): number | null => {
  // The cap of the open windows: none if any open one is uncapped, else the largest.
  let cap = 0;
  for (const w of windows[i]!) {
    if (w.capBytesPerSecond === undefined) return null;
    cap = Math.max(cap, w.capBytesPerSecond);
  }
  return cap;
};
const caps = Array.from({ length: N }, (_, i) => capOf(i));

// The week starts with a day's worth of new content due (the same share as each day brings).
let arrived = 0;
for (let i = 0; i < N; i++) {
  if (rand() >= SHARE) continue;
  pending[i] = 1;
  bytesLeft[i] = itemSize();
  dueAt[i] = FROM;
  arrived++;
}

/** The head delivery is through: the next queued one (if any) becomes due now. */
function finish(i: number, now: number) {
  if (rate[i]! > 0) inUse -= rate[i]!;
  rate[i] = 0;
  running.delete(i);
  delivered++;
  if (--pending[i]! > 0) {
    bytesLeft[i] = itemSize();
    dueAt[i] = now;
    deferrals[i] = 0;
  }
  refresh(i);
}

let inUse = 0;
let decisions = 0;
let stepMs = 0;
let admitMs = 0;
let sortMs = 0;
let maxCandidates = 0;
let started = 0;
let carriedCount = 0;
let pausedAtClose = 0;
let delivered = 0;
let deliveredBytes = 0;
let steps = 0;
const tierPoints = (t: Tier) => (t === 'premium' ? 200 : t === 'member' ? 100 : 0);

log(`replaying the week in ${STEP / 1000}-second steps (budget ${BUDGET / 1e9} GB/s)`);
for (let s = 0; s < plan.steps && stepMs < MAX_DISPATCH_MS; s++) {
  const now = FROM + s * STEP;
  const begin = performance.now();
  // New content at 06:00 UTC each day, for a random share of terminals.
  if (s % 1440 === 360) {
    for (let i = 0; i < N; i++) {
      if (rand() >= SHARE) continue;
      if (pending[i] === 0) {
        bytesLeft[i] = itemSize();
        dueAt[i] = now;
        deferrals[i] = 0;
      }
      pending[i]!++;
      arrived++;
      refresh(i);
    }
  }
  for (const k of openedAt(plan, s)) {
    const i = plan.terminal[k]!;
    if (openCount[i]! === 0) {
      winStart[i] = plan.start[k]!;
      winEnd[i] = plan.end[k]!;
    } else winEnd[i] = Math.max(winEnd[i]!, plan.end[k]!);
    openCount[i]!++;
    refresh(i);
  }
  for (const k of closedAt(plan, s)) {
    const i = plan.terminal[k]!;
    if (--openCount[i]! > 0) continue;
    carried[i] = 0;
    if (rate[i]! > 0) {
      // The window closed mid-transfer: pause; it resumes in the next window from where it was.
      inUse -= rate[i]!;
      rate[i] = 0;
      running.delete(i);
      deferrals[i]!++;
      pausedAtClose++;
    }
    refresh(i);
  }
  // Running deliveries progress by one step.
  for (let r = running.size - 1; r >= 0; r--) {
    const i = running.items[r]!;
    const sent = Math.min(bytesLeft[i]!, rate[i]! * (STEP / 1000));
    bytesLeft[i] -= sent;
    deliveredBytes += sent;
    if (bytesLeft[i]! <= 0) finish(i, now);
  }
  if (waiting.size > 0) {
    const candidates: Candidate[] = new Array(waiting.size);
    for (let w = 0; w < waiting.size; w++) {
      const i = waiting.items[w]!;
      candidates[w] = {
        id: ids[i]!,
        terminalId: ids[i]!,
        dueAt: Math.max(dueAt[i]!, winStart[i]!),
        windowStart: winStart[i]!,
        windowEnd: winEnd[i]!,
        bytesLeft: Math.max(0, Math.ceil(bytesLeft[i]!)),
        tier: tiers[i]!,
        link: links[i]!,
        deferrals: deferrals[i]!,
        capBytesPerSecond: caps[i]!,
      };
    }
    const a0 = performance.now();
    const decision = admit(candidates, { egressBudgetBps: BUDGET, egressInUseBps: Math.max(0, inUse), now });
    admitMs += performance.now() - a0;
    decisions += candidates.length;
    maxCandidates = Math.max(maxCandidates, candidates.length);
    for (const st of decision.start) {
      const i = Number(st.terminalId.slice(1));
      started++;
      if (st.rateBytesPerSecond === 0) {
        finish(i, now); // nothing left to send
        continue;
      }
      rate[i] = st.rateBytesPerSecond;
      inUse += st.rateBytesPerSecond;
      running.add(i);
      refresh(i);
    }
    for (const c of decision.carry) {
      const i = Number(c.terminalId.slice(1));
      deferrals[i] = c.deferrals;
      carried[i] = 1;
      carriedCount++;
      refresh(i);
    }
    // Baseline: the same candidate set, just sorted by tier and id.
    const b0 = performance.now();
    const copy = candidates.slice();
    copy.sort((x, y) => tierPoints(y.tier) - tierPoints(x.tier) || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
    sortMs += performance.now() - b0;
  }
  stepMs += performance.now() - begin;
  steps = s + 1;
}
// The baseline sort ran inside the step timer; take it out again.
stepMs -= sortMs;
const dispatchPerS = decisions / (stepMs / 1000);
const pendingEnd = pending.reduce((a, b) => a + b, 0);
log(
  `replayed ${steps} minutes: ${decisions} decisions in ${(stepMs / 1000).toFixed(1)} s (admit ${(admitMs / 1000).toFixed(1)} s); ` +
    `${started} starts, ${carriedCount} carried, ${pausedAtClose} paused at a window's end, ${delivered}/${arrived} delivered, ${pendingEnd} still due`,
);
if (delivered + pendingEnd !== arrived) throw new Error(`lost deliveries: ${arrived} arrived, ${delivered} delivered, ${pendingEnd} pending`);

console.log(
  JSON.stringify({
    bench: 'schedule',
    terminals: N,
    plan_ms: round(planMs),
    dispatch_per_s: Math.round(dispatchPerS),
    plan_scope: 'planWeek (src/schedule/plan.ts) over parsed windows, in memory; no database I/O',
    windows: N * W,
    week_from: new Date(FROM).toISOString(),
    intervals: plan.count,
    plan_cold_ms: round(planCold),
    plan_runs_ms: planRuns.map((x) => round(x)),
    parse_ms: round(parseMs),
    baseline_plan_ms: round(baselinePlanMs),
    plan_vs_baseline: round(planMs / baselinePlanMs, 3),
    admit_per_s: Math.round(decisions / (admitMs / 1000)),
    sort_per_s: Math.round(decisions / (sortMs / 1000)),
    dispatch_vs_sort: round(dispatchPerS / (decisions / (sortMs / 1000)), 3),
    dispatch_minutes: steps,
    dispatch_decisions: decisions,
    mean_candidates: round(decisions / steps, 1),
    max_candidates: maxCandidates,
    egress_budget_Bps: BUDGET,
    starts: started,
    carried: carriedCount,
    paused_at_window_end: pausedAtClose,
    arrived,
    delivered,
    delivered_TB: round(deliveredBytes / 1e12, 2),
    still_due: pendingEnd,
  }),
);


function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
