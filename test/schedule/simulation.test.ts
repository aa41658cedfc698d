// #5 point 7: 1,000 terminals with random windows across time zones and a finite egress
// budget, simulated over a week in test time (ManualClock, 1-minute ticks, no sleeping).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.ts';
import { ScheduleService } from '../../src/schedule/service.ts';
import { testEngines } from '../helpers/db.ts';
import { Dispatcher, MemoryRecorder, serviceRecorder, type RecordService, type Delivery, type DeliverySink, type DispatchTerminal, type TickReport } from '../../src/schedule/dispatcher.ts';
import { isCongested, type LinkState, type Tier } from '../../src/schedule/ordering.ts';
import { openIntervals, parseWindow, WEEKDAYS, type Interval, type Window } from '../../src/schedule/windows.ts';

const iso = (ms: number) => new Date(ms).toISOString();

const FROM = Date.UTC(2026, 2, 23); // Monday; Europe springs forward on Sunday the 29th
const WEEK = 7 * 86_400_000;
const STEP = 60_000;
const N = 1000;
const ZONES = [
  'Europe/Berlin',
  'Europe/London',
  'America/New_York',
  'America/Los_Angeles',
  'America/Sao_Paulo',
  'Asia/Kolkata',
  'Asia/Tokyo',
  'Australia/Sydney',
  'Pacific/Auckland',
  'Africa/Lagos',
];

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface World {
  terminals: DispatchTerminal[];
  items: { terminalId: string; contentId: string; totalSize: number }[];
  /** Arrivals after the start: [minute, item]. */
  later: { at: number; item: { terminalId: string; contentId: string; totalSize: number } }[];
}

const hhmm = (min: number) => `${String(Math.floor(min / 60)).padStart(2, '0')}:${String(min % 60).padStart(2, '0')}`;

function world(seed: number, opts: { dailyArrivals: number }): World {
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const terminals: DispatchTerminal[] = [];
  const items: World['items'] = [];
  const later: World['later'] = [];
  for (let i = 0; i < N; i++) {
    const zone = pick(ZONES);
    const windows: Window[] = [];
    const nw = 1 + Math.floor(rand() * 3);
    for (let w = 0; w < nw; w++) {
      const r = rand();
      // At least four days a week, so every terminal has several windows in the week.
      const days = r < 0.4 ? 'daily' : r < 0.7 ? 'weekdays' : WEEKDAYS.filter(() => rand() < 0.6).concat(['sat', 'sun', 'wed']);
      const start = Math.floor(rand() * 96) * 15;
      const len = 30 + Math.floor(rand() * 23) * 15; // 30 min – 6 h
      windows.push(
        parseWindow({
          days: [...new Set(Array.isArray(days) ? days : [days])],
          start: hhmm(start),
          end: hhmm((start + len) % 1440),
          timeZone: zone,
          capBytesPerSecond: rand() < 0.3 ? (1 + Math.floor(rand() * 10)) * 1_000_000 : null,
        }),
      );
    }
    const downBps = (20 + Math.floor(rand() * 980)) * 1_000_000;
    const congested = rand() < 0.1;
    const link: LinkState = { downBps, recvLoadBps: congested ? downBps * 0.85 : downBps * 0.1 * rand() };
    const tier: Tier = rand() < 0.3 ? 'premium' : 'member';
    const id = `t${String(i).padStart(4, '0')}`;
    terminals.push({ id, windows, tier, link });
    const ni = 1 + Math.floor(rand() * 3);
    // 20 MB – 1 GB; one in twenty 2–4 GB (longer than some windows: paused and resumed).
    for (let j = 0; j < ni; j++) items.push({ terminalId: id, contentId: `c${j}`, totalSize: (rand() < 0.05 ? 2000 + Math.floor(rand() * 2000) : 20 + Math.floor(rand() * 980)) * 1_000_000 });
    for (let d = 1; d < 7; d++) {
      if (rand() < opts.dailyArrivals) later.push({ at: FROM + d * 86_400_000 + 6 * 3_600_000, item: { terminalId: id, contentId: `d${d}`, totalSize: (20 + Math.floor(rand() * 480)) * 1_000_000 } });
    }
  }
  later.sort((a, b) => a.at - b.at);
  return { terminals, items, later };
}

/** A simulated transfer: keeps its own account of the rates in use and of every [start, stop] segment. */
class SimSink implements DeliverySink {
  inUse = 0;
  maxInUse = 0;
  readonly live = new Map<string, { rate: number; at: number }>();
  readonly segments = new Map<string, Interval[]>();
  start(d: Delivery, rate: number, at: number): void {
    assert.ok(!this.live.has(d.key), `${d.key} started twice`);
    this.live.set(d.key, { rate, at });
    this.inUse += rate;
    this.maxInUse = Math.max(this.maxInUse, this.inUse);
  }
  stop(d: Delivery, at: number): void {
    const l = this.live.get(d.key);
    assert.ok(l, `${d.key} stopped but not running`);
    this.live.delete(d.key);
    this.inUse -= l.rate;
    let segs = this.segments.get(d.key);
    if (!segs) this.segments.set(d.key, (segs = []));
    segs.push({ start: l.at, end: at });
  }
}

interface Run {
  dispatcher: Dispatcher;
  sink: SimSink;
  recorder: MemoryRecorder;
  w: World;
  steps: number;
  admissions: number;
  decisions: number;
  ms: number;
}

function simulate(seed: number, budget: number, dailyArrivals: number, onTick?: (r: TickReport, d: Dispatcher) => void): Run {
  const w = world(seed, { dailyArrivals });
  const clock = new ManualClock(FROM);
  const sink = new SimSink();
  const recorder = new MemoryRecorder();
  const dispatcher = new Dispatcher({ terminals: w.terminals, from: FROM, egressBudgetBps: budget, sink, recorder });
  for (const it of w.items) dispatcher.addItem(it);
  const t0 = performance.now();
  let steps = 0;
  let admissions = 0;
  let decisions = 0;
  let next = 0;
  for (; clock.now() < FROM + WEEK; clock.advance(STEP)) {
    while (next < w.later.length && w.later[next]!.at <= clock.now()) dispatcher.addItem(w.later[next++]!.item);
    const r = dispatcher.tick(clock.now());
    steps++;
    if (r.admission) {
      admissions++;
      decisions += r.candidates!.length;
    }
    // The budget holds at every step, by the dispatcher's account and by the sink's own.
    assert.ok(r.egressInUseBps <= budget, `egress ${r.egressInUseBps} over budget ${budget} at ${new Date(clock.now()).toISOString()}`);
    assert.ok(sink.inUse <= budget + 1e-6, `sink egress ${sink.inUse} over budget at ${new Date(clock.now()).toISOString()}`);
    onTick?.(r, dispatcher);
  }
  return { dispatcher, sink, recorder, w, steps, admissions, decisions, ms: performance.now() - t0 };
}

/** Nothing lost: every item is done, or pending/running with its deferrals counted; the records add up. */
function checkNothingLost(run: Run): { done: number; pending: number } {
  const { dispatcher, recorder, w } = run;
  const all = [...w.items, ...w.later.map((l) => l.item)];
  const byKey = new Map<string, { deferred: number; bytes: number; done: number; open: number }>();
  for (const a of recorder.attempts.values()) {
    const key = `${a.terminalId}/${a.contentId}`;
    const s = byKey.get(key) ?? { deferred: 0, bytes: 0, done: 0, open: 0 };
    if (a.outcome === 'deferred' || a.outcome === 'failed') s.deferred++;
    if (a.outcome === 'done') s.done++;
    if (a.outcome === 'due' || a.outcome === 'running') s.open++;
    s.bytes += a.bytes;
    byKey.set(key, s);
  }
  let done = 0;
  let pending = 0;
  for (const it of all) {
    const key = `${it.terminalId}/${it.contentId}`;
    const d = dispatcher.get(key);
    assert.ok(d, `${key} lost`);
    const s = byKey.get(key) ?? { deferred: 0, bytes: 0, done: 0, open: 0 };
    assert.ok(s.open <= 1, `${key}: ${s.open} open attempts`);
    assert.equal(d.deferrals, s.deferred, `${key}: deferrals ${d.deferrals} but ${s.deferred} deferred attempts`);
    if (d.state === 'done') {
      done++;
      assert.equal(s.done, 1, `${key} done but ${s.done} done records`);
      assert.equal(s.open, 0);
      const attempts = s.deferred + 1;
      assert.ok(Math.abs(s.bytes - it.totalSize) <= attempts, `${key}: recorded ${s.bytes} of ${it.totalSize} bytes`);
    } else {
      pending++;
      assert.equal(s.done, 0);
      assert.ok(d.bytesDone < it.totalSize);
    }
  }
  return { done, pending };
}

/** Every [start, stop] a delivery was sending lies inside one open interval of its terminal's windows. */
function checkInsideWindows(run: Run): number {
  const { dispatcher, sink, w } = run;
  const intervals = new Map(w.terminals.map((t) => [t.id, openIntervals(t.windows, FROM - 86_400_000, FROM + 2 * WEEK)]));
  let segments = 0;
  for (const d of dispatcher.deliveries()) {
    const live = sink.live.get(d.key);
    // Still sending at the end of the week: up to the last instant simulated.
    const segs = (sink.segments.get(d.key) ?? []).concat(live ? [{ start: live.at, end: FROM + WEEK }] : []);
    for (const seg of segs) {
      segments++;
      const ivs = intervals.get(d.terminalId)!;
      assert.ok(
        ivs.some((iv) => iv.start <= seg.start && seg.end <= iv.end),
        `${d.key}: sent over [${new Date(seg.start).toISOString()}, ${new Date(seg.end).toISOString()}) outside its windows`,
      );
    }
  }
  return segments;
}

test('ample budget: every due item is delivered, every byte inside a window of its terminal', () => {
  const run = simulate(7, 1e12, 0);
  const { sink } = run;
  const { done, pending } = checkNothingLost(run);
  const segments = checkInsideWindows(run);
  console.log(
    JSON.stringify({ case: 'ample', terminals: N, items: done + pending, done, pending, steps: run.steps, admissions: run.admissions, decisions: run.decisions, segments, maxEgressBps: sink.maxInUse, ms: Math.round(run.ms) }),
  );
  // Capacity allows: every item of the week is delivered.
  assert.equal(pending, 0, `${pending} items not delivered with ample budget`);
});

test('tight budget: within budget at every step, nothing lost, priority order and aging', () => {
  const BUDGET = 5_000_000; // 5 MB/s for 1,000 terminals and ~4,500 items
  let orderChecks = 0;
  let agedAheadOfFreshPremium = 0;
  const run = simulate(11, BUDGET, 0.4, (r) => {
    if (!r.admission) return;
    const cand = new Map(r.candidates!.map((c) => [c.id, c]));
    // Premium before member at equal deferrals (both uncongested): no member starts while such a premium waits with nothing left of the budget.
    const starvedPremium = new Set<number>();
    for (const wt of r.admission.wait) {
      const c = cand.get(wt.id)!;
      if (wt.reason === 'budget_exhausted' && c.tier === 'premium' && !isCongested(c.link)) starvedPremium.add(c.deferrals);
    }
    // Aging, explicitly: a member carried over 5 windows or more (100 + 5·25 = 225) ranks before a fresh
    // premium (200) on an equally congested (or uncongested) link in the same admission.
    const freshPremiumLast = [-1, -1]; // by congested 0/1: the last rank of a fresh premium
    const entries = [...r.admission.start, ...r.admission.wait, ...r.admission.carry];
    for (const e of entries) {
      const c = cand.get(e.id)!;
      const k = +isCongested(c.link);
      if (c.tier === 'premium' && c.deferrals === 0) freshPremiumLast[k] = Math.max(freshPremiumLast[k]!, e.rank);
    }
    for (const e of entries) {
      const c = cand.get(e.id)!;
      if (c.tier === 'member' && c.deferrals >= 5 && e.rank < freshPremiumLast[+isCongested(c.link)]!) agedAheadOfFreshPremium++;
    }
    for (const s of r.admission.start) {
      const c = cand.get(s.id)!;
      if (c.tier !== 'member' || isCongested(c.link) || s.rateBytesPerSecond === 0) continue;
      orderChecks++;
      assert.ok(!starvedPremium.has(c.deferrals), `member ${s.id} (deferrals ${c.deferrals}) started while a premium with equal deferrals waited for budget`);
    }
  });
  const { dispatcher, recorder, sink } = run;
  const { done, pending } = checkNothingLost(run);
  const segments = checkInsideWindows(run);

  // Attempts due at the same window opening (same dueAt) with equal deferrals, uncongested links: premium ones start no later on average.
  const groups = new Map<string, { premium: number[]; member: number[] }>();
  const terminal = new Map(run.w.terminals.map((t) => [t.id, t]));
  for (const a of recorder.attempts.values()) {
    if (a.startedAt === null) continue;
    const t = terminal.get(a.terminalId)!;
    if (isCongested(t.link)) continue;
    const k = `${a.dueAt}/${a.deferrals}`;
    const g = groups.get(k) ?? { premium: [], member: [] };
    g[t.tier as 'premium' | 'member'].push(a.startedAt - a.dueAt);
    groups.set(k, g);
  }
  let pSum = 0;
  let pN = 0;
  let mSum = 0;
  let mN = 0;
  for (const g of groups.values()) {
    if (g.premium.length === 0 || g.member.length === 0) continue;
    for (const x of g.premium) (pSum += x), pN++;
    for (const x of g.member) (mSum += x), mN++;
  }
  const premiumWaitMin = pN ? pSum / pN / 60_000 : 0;
  const memberWaitMin = mN ? mSum / mN / 60_000 : 0;

  // Aging: members deferred at least 5 times that were then delivered.
  let agedMembersDelivered = 0;
  let maxDeferrals = 0;
  for (const d of dispatcher.deliveries()) {
    maxDeferrals = Math.max(maxDeferrals, d.deferrals);
    if (d.state === 'done' && d.deferrals >= 5 && terminal.get(d.terminalId)!.tier === 'member') agedMembersDelivered++;
  }
  const reasons: Record<string, number> = {};
  for (const a of recorder.attempts.values()) if (a.reason) reasons[a.reason] = (reasons[a.reason] ?? 0) + 1;
  console.log(
    JSON.stringify({
      case: 'tight',
      budgetBps: BUDGET,
      items: done + pending,
      done,
      pending,
      steps: run.steps,
      admissions: run.admissions,
      decisions: run.decisions,
      attempts: recorder.attempts.size,
      segments,
      reasons,
      maxEgressBps: sink.maxInUse,
      orderChecks,
      comparedStarts: { premium: pN, member: mN },
      premiumWaitMin: +premiumWaitMin.toFixed(1),
      memberWaitMin: +memberWaitMin.toFixed(1),
      maxDeferrals,
      agedMembersDelivered,
      agedAheadOfFreshPremium,
      ms: Math.round(run.ms),
    }),
  );
  assert.ok(sink.maxInUse <= BUDGET);
  assert.ok(pending > 0, 'the budget should be tight enough that not everything is delivered');
  assert.ok(orderChecks > 100, 'the order check compared too few starts');
  assert.ok(pN > 0 && mN > 0 && premiumWaitMin <= memberWaitMin, `premium waited ${premiumWaitMin} min, member ${memberWaitMin} min`);
  // Aging: members deferred 5 times or more get through, some of them while a fresh premium waits for budget (100 + 5·25 > 200).
  assert.ok(agedMembersDelivered > 0, 'aging: no member deferred ≥ 5 times was delivered');
  assert.ok(agedAheadOfFreshPremium > 0, 'aging: no member deferred ≥ 5 times ranked ahead of a fresh premium');
});

test('one terminal: a delivery longer than its window pauses at the close and resumes in the next window', () => {
  const from = Date.UTC(2026, 2, 23);
  const windows = [parseWindow({ days: 'daily', start: '01:00', end: '02:00', timeZone: 'UTC', capBytesPerSecond: 1_000_000 })];
  const sink = new SimSink();
  const recorder = new MemoryRecorder();
  const d = new Dispatcher({ terminals: [{ id: 't', windows, tier: 'member', link: null }], from, egressBudgetBps: 10_000_000, sink, recorder });
  d.addItem({ terminalId: 't', contentId: 'big', totalSize: 5_400_000_000 }); // 1.5 windows at 1 MB/s
  const clock = new ManualClock(from);
  for (; clock.now() < from + 2 * 86_400_000; clock.advance(STEP)) d.tick(clock.now());
  const item = d.get('t/big')!;
  assert.equal(item.state, 'done');
  assert.equal(item.deferrals, 1);
  const attempts = [...recorder.attempts.values()];
  assert.deepEqual(
    attempts.map((a) => [a.outcome, a.reason, a.bytes, new Date(a.startedAt!).toISOString(), new Date(a.endedAt!).toISOString(), a.deferrals]),
    [
      ['deferred', 'window_closed', 3_600_000_000, '2026-03-23T01:00:00.000Z', '2026-03-23T02:00:00.000Z', 0],
      ['done', null, 1_800_000_000, '2026-03-24T01:00:00.000Z', '2026-03-24T01:30:00.000Z', 1],
    ],
  );
  assert.deepEqual(sink.segments.get('t/big'), [
    { start: Date.UTC(2026, 2, 23, 1), end: Date.UTC(2026, 2, 23, 2) },
    { start: Date.UTC(2026, 2, 24, 1), end: Date.UTC(2026, 2, 24, 1, 30) },
  ]);
});

test('fail(): the attempt is recorded failed and the item comes back in the next window, one deferral older', () => {
  const from = Date.UTC(2026, 2, 23);
  const windows = [parseWindow({ days: 'daily', start: '01:00', end: '02:00', timeZone: 'UTC' })];
  const sink = new SimSink();
  const recorder = new MemoryRecorder();
  const d = new Dispatcher({ terminals: [{ id: 't', windows, tier: 'premium', link: null }], from, egressBudgetBps: 1_000_000, sink, recorder });
  d.addItem({ terminalId: 't', contentId: 'x', totalSize: 600_000_000 });
  d.tick(Date.UTC(2026, 2, 23, 1));
  assert.equal(d.get('t/x')!.state, 'running');
  d.fail('t/x', 'piece_corrupt', Date.UTC(2026, 2, 23, 1, 5));
  for (let t = Date.UTC(2026, 2, 23, 1, 5); t < Date.UTC(2026, 2, 24, 3); t += STEP) d.tick(t);
  assert.equal(d.get('t/x')!.state, 'done');
  assert.deepEqual(
    [...recorder.attempts.values()].map((a) => [a.outcome, a.reason, a.deferrals]),
    [
      ['failed', 'piece_corrupt', 0],
      ['done', null, 1],
    ],
  );
  assert.equal(d.egressInUse(), 0);
});

// The origin's recorder against a real database (both engines): per-step batches, and one
// batch for two days (several generations: the item is opened again after it ended).
for (const engine of testEngines()) {
  for (const flushEvery of ['step', 'end'] as const) {
    test(`serviceRecorder on ${engine.name}, flushed at each ${flushEvery}: the dispatcher's attempts become the service records, in order, aging continued`, async () => {
      const handle = await engine.open();
      try {
        const db = handle.db;
        const from = Date.UTC(2026, 2, 23);
        const now = new Date(from);
        await db.insertInto('users').values({ id: 'usr_sim', username: 'sim', password_hash: 'x', roles: ['member'], created_at: now } as any).execute();
        await db.insertInto('terminals').values({ id: 't', user_id: 'usr_sim', name: 't', public_key: 'k', region: '', network: '', serve_url: null, created_at: now, last_seen_at: null, last_state: null } as any).execute();
        const content = 'c'.repeat(64);
        await db
          .insertInto('contents')
          .values({ id: content, title: 'Big', summary: '', author: '', genre: 'g', price: 0, publisher_id: 'usr_sim', piece_size: 1, piece_count: 1, total_size: 5_400_000_000, manifest: { body: {} }, created_at: now } as any)
          .execute();
        const clock = new ManualClock(from);
        const svc = new ScheduleService({ db, clock });
        const windows = [parseWindow({ days: 'daily', start: '01:00', end: '02:00', timeZone: 'UTC', capBytesPerSecond: 1_000_000 })];
        const d = new Dispatcher({ terminals: [{ id: 't', windows, tier: 'member', link: null }], from, egressBudgetBps: 10_000_000, sink: new SimSink(), recorder: serviceRecorder(svc.deliveries) });
        d.addItem({ terminalId: 't', contentId: content, totalSize: 5_400_000_000 });
        for (let t = from; t < from + 2 * 86_400_000; t += STEP) {
          clock.set(t);
          d.tick(t);
          if (flushEvery === 'step') await d.flush();
        }
        await d.flush();
        const rows = (await svc.deliveries.history('t', { limit: 10 })).entries.reverse();
        const day1 = from + 3_600_000;
        const day2 = day1 + 86_400_000;
        assert.deepEqual(
          rows.map((r) => [r.outcome, r.reason, r.bytes, r.deferrals, r.dueAt, r.startedAt, r.endedAt, r.source]),
          [
            ['deferred', 'window_closed', 3_600_000_000, 0, iso(day1), iso(day1), iso(day1 + 3_600_000), 'origin'],
            ['done', null, 1_800_000_000, 1, iso(day2), iso(day2), iso(day2 + 1_800_000), 'origin'],
          ],
        );
        assert.notEqual(rows[0]!.id, rows[1]!.id);
        assert.deepEqual(await svc.deliveries.openDeliveries(), []);
      } finally {
        await handle.close();
      }
    });
  }
}

test('serviceRecorder: events naming attempts with no record are reported (unknown_delivery), the rest is written', async () => {
  const events: unknown[][] = [];
  const svc: RecordService = { recordBatch: async (batch, known) => (events.push([batch.length, known.size]), new Map([['t/a#1', 'sdl_1']])) };
  const r = serviceRecorder(svc);
  r.due({ id: 't/a#1', terminalId: 't', contentId: 'a', scheduleId: null, dueAt: 0, windowEnd: 1, deferrals: 0 });
  r.start('t/a#1', { at: 0, rateBytesPerSecond: 1, source: 'origin' });
  await r.flush!();
  r.done('t/a#1', { at: 1, bytes: 1 });
  await r.flush!();
  await r.flush!(); // nothing queued: no call
  assert.deepEqual(events, [
    [2, 0],
    [1, 1], // the attempt's record id from the first batch is known to the second
  ]);
});
