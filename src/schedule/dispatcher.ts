import { admit, type Admission, type Candidate, type LinkState, type Tier } from './ordering.ts';
import { closedAt, openedAt, planWeek, toCandidate, WEEK_MS, type PlanItem, type WeekPlan } from './plan.ts';
import type { RecordEvent } from './deliveries.ts';
import type { DeliverySource } from './tables.ts';
import type { Window } from './windows.ts';

/*
 * # The origin-side dispatcher (S0.3/S0.4 driver, S0.6 policy, S0.7 records)
 *
 * Clock-driven and in memory: the caller calls `tick(now)` (a timer at the origin, a
 * loop over a ManualClock in tests). A tick
 *
 *   1. walks the plan steps (`planWeek`, default 1 minute) up to `now`; for each step it
 *      a. advances running deliveries by rate × elapsed time (or asks the sink for the
 *         bytes, `DeliverySink.progress`), never past the end of the terminal's open
 *         window; a delivery whose bytes are all through is `done` at the exact instant;
 *      b. applies the window openings of that step (a terminal is open while any of its
 *         windows is; overlapping or touching intervals keep it open);
 *      c. applies the closings: when a terminal's last open window closes, its running
 *         deliveries are paused and everything not delivered is deferred (carried to the
 *         next window, deferrals + 1): reason `window_closed` for a paused one, the last
 *         wait reason (`budget_exhausted`, `budget_short`, …) for one that never started;
 *   2. if anything changed (an opening, a closing, a delivery ending, an item added, a
 *      link report) — or `admitEveryMs` passed — it builds one candidate per pending item
 *      of every open terminal (`toCandidate`) and asks `admit` (ordering.ts), then acts:
 *      `start` → the sink starts it at the admitted rate; `carry` → deferred; `wait` →
 *      stays pending in the window.
 *
 * Egress: the sum of the admitted rates of running deliveries (`egressInUse()`) is
 * passed to admit as `egressInUseBps`, so it never exceeds the budget. A running
 * delivery keeps its admitted rate until it ends or pauses.
 *
 * Records: one attempt per item per window, through a `DeliveryRecorder` — in memory in
 * tests (`MemoryRecorder`), the service's record* methods at the origin
 * (`serviceRecorder`). Attempt ids are the dispatcher's own (`terminal/content#n`);
 * `serviceRecorder` maps them to the service's record ids.
 *
 * Nothing is dropped: an item is `pending` (waiting for, or in, a window), `running`
 * or `done`; failures and deferrals keep it pending with deferrals + 1 (aging).
 *
 * Ticks should fall on plan step instants (from + k·stepMs): windows start and end on
 * whole minutes, so with 1-minute steps every opening and closing is seen at its exact
 * instant. The plan covers [from, from + horizonMs) (default a week); ticks past it throw.
 *
 * Live use (the origin's scheduler, runner.ts): `replan(terminals, now)` swaps in a new
 * set of terminals and windows (a schedule added or removed, or the horizon running
 * out) and keeps every item's state — running deliveries keep running while their
 * terminal stays open, an item carried out of a window is not tried again in that same
 * window; items of terminals that left are withdrawn (`removeItem`). `reachable` keeps a
 * terminal that has not called in (pull) or connected (push) out of admission: its items
 * are due (recorded) and wait with `terminal_absent`.
 */

export interface DispatchTerminal {
  id: string;
  /** All windows of the terminal's schedules (parsed). */
  windows: readonly Window[];
  tier: Tier;
  /** Last heartbeat's link, not counting what this dispatcher sends it (added per tick). */
  link: LinkState | null;
}

export interface DispatchItem {
  terminalId: string;
  contentId: string;
  totalSize: number;
  /** Bytes the terminal holds already (resume from verified pieces); default 0. */
  bytesDone?: number;
  scheduleId?: string | null;
  /** The schedule's priority (orders the terminal's own items; not used by admit). */
  priority?: number;
  title?: string;
  /** Windows already carried over (from the records, after a restart); default 0. */
  deferrals?: number;
}

export type DeliveryState = 'pending' | 'running' | 'done';

/** One item's state; the sink and recorder get it read-only. */
export interface Delivery {
  readonly key: string;
  readonly terminalId: string;
  readonly contentId: string;
  readonly scheduleId: string | null;
  readonly title: string;
  readonly totalSize: number;
  readonly bytesDone: number;
  readonly deferrals: number;
  readonly state: DeliveryState;
  /** The open attempt's id (`key#n`), or null between windows / when done. */
  readonly attemptId: string | null;
  /** Admitted rate while running, bytes/s; else 0. */
  readonly rate: number;
}

/** Moves the bytes. In the simulation nothing (or a recorder of segments); at the origin a transfer (push) or a grant the agent pulls with. */
export interface DeliverySink {
  /** `windowEnd`: when the terminal's open window closes (the delivery pauses then). */
  start(d: Delivery, rateBytesPerSecond: number, at: number, windowEnd: number): void;
  /** The transfer stops: all bytes through, the window closed, or failed. */
  stop?(d: Delivery, at: number, why: 'done' | 'paused' | 'failed'): void;
  /** Bytes sent over (fromMs, toMs] (capped to what is left); omitted: rate × elapsed, and reaching the size ends the delivery (simulated). A sink that reports bytes ends deliveries with `complete`. */
  progress?(d: Delivery, fromMs: number, toMs: number): number;
}

export interface AttemptDue {
  id: string;
  terminalId: string;
  contentId: string;
  scheduleId: string | null;
  dueAt: number;
  windowEnd: number;
  deferrals: number;
}

/** S0.7. Methods may return a promise; `Dispatcher.flush()` awaits them. */
export interface DeliveryRecorder {
  due(a: AttemptDue): unknown;
  start(id: string, e: { at: number; rateBytesPerSecond: number; source: DeliverySource }): unknown;
  /** `source`/`sourceId`: who delivered most of it, when the sink knows (production: the agent says). */
  done(id: string, e: { at: number; bytes: number; source?: DeliverySource; sourceId?: string | null }): unknown;
  deferred(id: string, reason: string, e: { at: number; bytes: number }): unknown;
  failed(id: string, reason: string, e: { at: number; bytes: number }): unknown;
  /** Writes what the calls since the last flush queued (a batching recorder); `Dispatcher.flush` calls it. */
  flush?(): Promise<void>;
}

export interface DispatcherOptions {
  terminals: readonly DispatchTerminal[];
  /** Start of the plan, ms (a step instant). */
  from: number;
  horizonMs?: number;
  stepMs?: number;
  egressBudgetBps: number;
  /** The most one delivery is admitted at, bytes/s (ordering.ts `maxDeliveryBps`); default: no such limit. */
  maxDeliveryBps?: number;
  sink: DeliverySink;
  recorder: DeliveryRecorder;
  /** Re-run admission at least this often even when nothing changed (default: only on change). */
  admitEveryMs?: number;
  source?: DeliverySource;
  /** Whether a terminal can take a delivery now (it called in / is connected); default: always. */
  reachable?: (terminalId: string) => boolean;
}

export interface TickReport {
  now: number;
  /** Present when admission ran this tick. */
  candidates?: Candidate[];
  admission?: Admission;
  egressInUseBps: number;
}

interface Item extends Delivery {
  key: string;
  t: number;
  bytesDone: number;
  deferrals: number;
  state: DeliveryState;
  attemptId: string | null;
  rate: number;
  attempts: number;
  attemptBytes: number;
  /** End of the window admit carried it out of (no new attempt while that window is open); -Infinity: none. */
  carriedUntil: number;
  lastWait: string | null;
  plan: PlanItem | null;
  title: string;
  priority: number;
}

export class Dispatcher {
  private weekPlan: WeekPlan;
  private terminals: readonly DispatchTerminal[] = [];
  private readonly index = new Map<string, number>();
  private readonly items = new Map<string, Item>();
  private byTerminal: Item[][] = [];
  private openCount = new Int32Array(0);
  private winStart = new Float64Array(0);
  private winEnd = new Float64Array(0);
  /** Open occurrence indices per terminal (for the caps). */
  private openOcc: number[][] = [];
  private readonly running = new Set<Item>();
  private runningRate = new Float64Array(0);
  private readonly openTerminals = new Set<number>();
  private links: (LinkState | null)[] = [];
  private inUse = 0;
  private nextStep = 0;
  private lastNow: number;
  private lastAdmit = -Infinity;
  private dirty = true;
  private readonly pending: Promise<unknown>[] = [];
  private readonly errors: unknown[] = [];
  readonly budget: number;

  constructor(private readonly opts: DispatcherOptions) {
    this.budget = opts.egressBudgetBps;
    this.lastNow = opts.from;
    this.weekPlan = this.load(opts.terminals, opts.from);
  }

  /** The windows planned from the last (re)plan on. */
  get plan(): WeekPlan {
    return this.weekPlan;
  }

  /** Indexes the terminals and plans their windows from `from`; the open state starts empty (step 0 opens what is open at `from`). */
  private load(terminals: readonly DispatchTerminal[], from: number): WeekPlan {
    const index = new Map<string, number>();
    terminals.forEach((t, i) => {
      if (index.has(t.id)) throw new RangeError(`terminal ${t.id} appears twice`);
      index.set(t.id, i);
    });
    const plan = planWeek(
      terminals.map((t) => t.windows),
      from,
      from + (this.opts.horizonMs ?? WEEK_MS),
      this.opts.stepMs ?? 60_000,
    );
    const n = terminals.length;
    this.terminals = terminals;
    this.index.clear();
    for (const [id, i] of index) this.index.set(id, i);
    this.byTerminal = Array.from({ length: n }, () => []);
    this.openOcc = Array.from({ length: n }, () => []);
    this.openCount = new Int32Array(n);
    this.winStart = new Float64Array(n).fill(NaN);
    this.winEnd = new Float64Array(n).fill(NaN);
    this.runningRate = new Float64Array(n);
    this.links = terminals.map((t) => t.link);
    this.openTerminals.clear();
    this.nextStep = 0;
    return plan;
  }

  /**
   * Live: a new set of terminals (schedules changed) or a fresh horizon, from `now` on.
   * Items keep their state; a running one stays running (same rate, same attempt) while
   * its terminal is still open at `now`. Items of terminals no longer in the set are
   * withdrawn (`removeItem`, reason `unscheduled`); running ones of terminals now closed
   * pause (`window_closed`).
   */
  replan(terminals: readonly DispatchTerminal[], now: number): void {
    if (!(now >= this.lastNow)) throw new RangeError(`replan(${now}) goes back in time (last ${this.lastNow})`);
    this.advance(now);
    const ids = new Set(terminals.map((t) => t.id));
    for (const item of [...this.items.values()]) if (!ids.has(item.terminalId)) this.removeItem(item.key, now, 'unscheduled');
    const stepMs = this.plan.stepMs;
    const from = this.plan.from + Math.floor((now - this.plan.from) / stepMs) * stepMs;
    this.weekPlan = this.load(terminals, from);
    for (const item of this.items.values()) {
      item.t = this.index.get(item.terminalId)!;
      this.byTerminal[item.t]!.push(item);
      if (item.state === 'running') this.runningRate[item.t] += item.rate;
    }
    this.walk(now);
    // Terminals that were open and are not any more (their schedule went): close their items now.
    for (let t = 0; t < terminals.length; t++) if (this.openCount[t] === 0) this.closeItems(t, now);
    this.dirty = true;
  }

  /** The first instant the plan does not cover: replan before it. */
  get horizonEnd(): number {
    return this.plan.from + this.plan.steps * this.plan.stepMs;
  }

  // ---- inputs ----

  /** A content becomes due for a terminal (plan, publish). Idempotent per terminal and content while not done. */
  addItem(it: DispatchItem): Delivery {
    const t = this.index.get(it.terminalId);
    if (t === undefined) throw new RangeError(`unknown terminal ${it.terminalId}`);
    if (!(it.totalSize >= 0)) throw new RangeError('totalSize must be ≥ 0');
    const key = `${it.terminalId}/${it.contentId}`;
    const old = this.items.get(key);
    if (old && old.state !== 'done') return old;
    const item: Item = {
      key,
      t,
      terminalId: it.terminalId,
      contentId: it.contentId,
      scheduleId: it.scheduleId ?? null,
      totalSize: it.totalSize,
      bytesDone: Math.min(it.totalSize, it.bytesDone ?? 0),
      deferrals: it.deferrals ?? 0,
      state: 'pending',
      attemptId: null,
      rate: 0,
      attempts: 0,
      attemptBytes: 0,
      carriedUntil: -Infinity,
      lastWait: null,
      plan: null,
      title: it.title ?? it.contentId,
      priority: it.priority ?? 0,
    };
    this.items.set(key, item);
    if (old) this.byTerminal[t] = this.byTerminal[t]!.filter((x) => x !== old);
    this.byTerminal[t]!.push(item);
    this.dirty = true;
    return item;
  }

  /** A heartbeat's link state, without what this dispatcher sends it (that is added per admission). */
  setLink(terminalId: string, link: LinkState | null): void {
    const t = this.index.get(terminalId);
    if (t === undefined) throw new RangeError(`unknown terminal ${terminalId}`);
    this.links[t] = link;
    this.dirty = true;
  }

  /** The transfer failed (production sink): the attempt is recorded failed; the item waits for its next window with deferrals + 1. */
  fail(key: string, reason: string, at: number): void {
    const item = this.items.get(key);
    if (!item || item.state === 'done') return;
    this.advance(at); // the bytes it did send count
    if (item.state === 'running') this.stopRunning(item, at, 'failed');
    this.endAttempt(item, at, 'failed', reason);
    item.carriedUntil = this.winEnd[item.t]!; // not again in this window
  }

  /** The sink says the terminal has it all (production: the holder registry confirms it): done now, whatever the byte count says. */
  complete(key: string, at: number, via?: { source: DeliverySource; sourceId?: string | null }): void {
    const item = this.items.get(key);
    if (!item || item.state !== 'running') return;
    this.advance(at); // the bytes reported up to now belong to this attempt
    if (item.state !== 'running') return;
    item.bytesDone = item.totalSize;
    this.stopRunning(item, at, 'done');
    this.endAttempt(item, at, 'done', null, via);
    item.state = 'done';
  }

  /** Withdraws an item (its schedule went, or the terminal got the content some other way): a running delivery stops; an open attempt is recorded failed with `reason`. */
  removeItem(key: string, at: number, reason: string): void {
    const item = this.items.get(key);
    if (!item) return;
    if (item.state === 'running') this.stopRunning(item, at, 'failed');
    this.endAttempt(item, at, 'failed', reason);
    this.items.delete(key);
    const list = this.byTerminal[item.t];
    if (list) this.byTerminal[item.t] = list.filter((x) => x !== item);
    this.dirty = true;
  }

  /** Something the dispatcher cannot see changed (a terminal called in): run admission at the next tick. */
  wake(): void {
    this.dirty = true;
  }

  // ---- reading ----

  egressInUse(): number {
    return this.inUse;
  }
  get(key: string): Delivery | undefined {
    return this.items.get(key);
  }
  deliveries(): IterableIterator<Delivery> {
    return this.items.values();
  }
  /** The terminals open now, and when each one's current window closes. */
  openWindows(): { terminalId: string; windowEnd: number }[] {
    return [...this.openTerminals].map((t) => ({ terminalId: this.terminals[t]!.id, windowEnd: this.winEnd[t]! }));
  }

  /** The terminal's items (any state). */
  itemsOf(terminalId: string): readonly Delivery[] {
    const t = this.index.get(terminalId);
    return t === undefined ? [] : this.byTerminal[t]!;
  }

  /** When the terminal's current window closes; NaN when it is not open (or unknown). */
  windowEndOf(terminalId: string): number {
    const t = this.index.get(terminalId);
    return t === undefined ? NaN : this.winEnd[t]!;
  }

  /** Items of an open terminal that wait for admission in its current window (not carried out of it). */
  waiting(terminalId: string): number {
    const t = this.index.get(terminalId);
    if (t === undefined || this.openCount[t]! === 0) return 0;
    let n = 0;
    for (const item of this.byTerminal[t]!) if (item.state === 'pending' && item.carriedUntil < this.winEnd[t]!) n++;
    return n;
  }
  isOpen(terminalId: string): boolean {
    const t = this.index.get(terminalId);
    return t !== undefined && this.openCount[t]! > 0;
  }
  /** Recorder promises settle and a batching recorder (serviceRecorder) writes; throws the first error. */
  async flush(): Promise<void> {
    const ps = this.pending.splice(0);
    await Promise.all(ps);
    await this.opts.recorder.flush?.().catch((e) => this.errors.push(e));
    const errors = this.errors.splice(0);
    if (errors.length) throw errors[0];
  }

  // ---- the clock ----

  tick(now: number): TickReport {
    if (!(now >= this.lastNow)) throw new RangeError(`tick(${now}) goes back in time (last ${this.lastNow})`);
    this.walk(now);
    const report: TickReport = { now, egressInUseBps: this.inUse };
    const every = this.opts.admitEveryMs;
    if (this.dirty || (every !== undefined && now - this.lastAdmit >= every)) {
      this.dirty = false;
      this.lastAdmit = now;
      const candidates = this.candidates(now);
      if (candidates.length > 0) {
        const admission = admit(candidates, { egressBudgetBps: this.budget, egressInUseBps: this.inUse, maxDeliveryBps: this.opts.maxDeliveryBps, now });
        this.act(admission, now);
        report.candidates = candidates;
        report.admission = admission;
      }
    }
    report.egressInUseBps = this.inUse;
    return report;
  }

  /**
   * Walks the plan steps up to `now` — progress, openings, closings — without admitting:
   * a caller that needs to know who is open now (to give them fresh link states) calls
   * this, then `tick(now)`.
   */
  advanceTo(now: number): void {
    if (!(now >= this.lastNow)) throw new RangeError(`advanceTo(${now}) goes back in time (last ${this.lastNow})`);
    this.walk(now);
  }

  /** Walks the plan steps up to `now`: progress, openings, closings. */
  private walk(now: number): void {
    const { plan } = this;
    const last = Math.floor((now - plan.from) / plan.stepMs);
    if (last >= plan.steps) throw new RangeError('tick past the planned horizon');
    for (let s = this.nextStep; s <= last; s++) {
      const at = plan.from + s * plan.stepMs;
      this.advance(at);
      for (const k of openedAt(plan, s)) this.opened(k);
      for (const k of closedAt(plan, s)) this.closed(k, at);
    }
    this.nextStep = Math.max(this.nextStep, last + 1);
    this.advance(now);
  }

  private advance(to: number): void {
    const from = this.lastNow;
    const sink = this.opts.sink;
    // A sink that reports bytes is asked even when no time passed (a delivery may end at the same instant).
    if (to < from || (to === from && !sink.progress)) return;
    for (const item of this.running) {
      const end = Math.min(to, this.winEnd[item.t]!);
      // NaN: its terminal is not open (yet) — mid-replan; it is advanced once reopened.
      if (!(end >= from) || (end === from && !sink.progress)) continue;
      const left = item.totalSize - item.bytesDone;
      let sent = sink.progress ? sink.progress(item, from, end) : (item.rate * (end - from)) / 1000;
      if (!(sent > 0)) continue;
      if (sink.progress) sent = Math.min(sent, Math.max(0, left)); // a reporting sink ends deliveries with `complete`
      else if (sent >= left) {
        const doneAt = Math.min(end, from + Math.ceil((left / item.rate) * 1000));
        sent = left;
        item.bytesDone = item.totalSize;
        item.attemptBytes += sent;
        this.stopRunning(item, doneAt, 'done');
        this.endAttempt(item, doneAt, 'done', null);
        item.state = 'done';
        this.dirty = true;
        continue;
      }
      item.bytesDone += sent;
      item.attemptBytes += sent;
    }
    this.lastNow = to;
  }

  private opened(k: number): void {
    const t = this.plan.terminal[k]!;
    const start = this.plan.start[k]!;
    const end = this.plan.end[k]!;
    if (this.openCount[t]! === 0) {
      this.winStart[t] = start;
      this.winEnd[t] = end;
      this.openTerminals.add(t);
    } else if (end > this.winEnd[t]!) this.winEnd[t] = end;
    this.openCount[t]!++;
    this.openOcc[t]!.push(k);
    this.dirty = true;
  }

  private closed(k: number, at: number): void {
    const t = this.plan.terminal[k]!;
    const occ = this.openOcc[t]!;
    const i = occ.indexOf(k);
    if (i < 0) return; // opened before the plan's range and never seen open: cannot happen (step 0 lists them)
    occ.splice(i, 1);
    this.dirty = true;
    if (--this.openCount[t]! > 0) return;
    this.closeItems(t, Math.min(at, this.winEnd[t]!));
  }

  /** The terminal's last window closed: running deliveries pause, open attempts are deferred. */
  private closeItems(t: number, closeAt: number): void {
    this.openTerminals.delete(t);
    for (const item of this.byTerminal[t]!) {
      if (item.state === 'running') {
        this.stopRunning(item, closeAt, 'paused');
        this.endAttempt(item, closeAt, 'deferred', 'window_closed');
      } else if (item.state === 'pending' && item.attemptId !== null) {
        this.endAttempt(item, closeAt, 'deferred', item.lastWait ?? 'window_closed');
      }
    }
    this.winStart[t] = NaN;
    this.winEnd[t] = NaN;
  }

  /** The cap of the terminal's open windows: none if one is uncapped, else the largest. */
  private capOf(t: number): number | null {
    let cap = 0;
    for (const k of this.openOcc[t]!) {
      const c = this.terminals[t]!.windows[this.plan.window[k]!]?.capBytesPerSecond;
      if (c == null) return null;
      if (c > cap) cap = c;
    }
    return cap;
  }

  private candidates(now: number): Candidate[] {
    const out: Candidate[] = [];
    const reachable = this.opts.reachable;
    for (const t of this.openTerminals) {
      let cap: number | null | undefined;
      let link: LinkState | null | undefined;
      const absent = reachable !== undefined && !reachable(this.terminals[t]!.id);
      for (const item of this.byTerminal[t]!) {
        const ws = this.winStart[t]!;
        const we = this.winEnd[t]!;
        if (item.state !== 'pending' || item.carriedUntil >= we) continue;
        if (item.attemptId === null) {
          item.attempts++;
          item.attemptId = `${item.key}#${item.attempts}`;
          item.attemptBytes = 0;
          item.lastWait = null;
          this.record((r) => r.due({ id: item.attemptId!, terminalId: item.terminalId, contentId: item.contentId, scheduleId: item.scheduleId, dueAt: ws, windowEnd: we, deferrals: item.deferrals }));
        }
        if (absent) {
          item.lastWait = 'terminal_absent';
          continue;
        }
        if (!item.plan || item.plan.dueAt !== ws || item.plan.windowEnd !== we) item.plan = this.planItem(item, t, ws, we);
        item.plan.deferrals = item.deferrals;
        if (cap === undefined) {
          const c = this.capOf(t);
          cap = c === null ? null : Math.max(0, c - this.runningRate[t]!);
          const base = this.links[t];
          link = base && this.runningRate[t]! > 0 ? { ...base, recvLoadBps: base.recvLoadBps + this.runningRate[t]! * 8 } : base;
        }
        out.push(
          toCandidate(item.plan, {
            terminalId: item.terminalId,
            deliveryId: item.key,
            tier: this.terminals[t]!.tier,
            link: link ?? null,
            bytesLeft: Math.max(0, Math.ceil(item.totalSize - item.bytesDone)),
            capLeftBytesPerSecond: cap,
          }),
        );
      }
    }
    return out;
  }

  private planItem(item: Item, t: number, ws: number, we: number): PlanItem {
    return {
      contentId: item.contentId,
      title: item.title,
      genre: '',
      publisher: '',
      totalSize: item.totalSize,
      heldPieces: null,
      scheduleId: item.scheduleId ?? '',
      matchedBy: item.scheduleId ? [item.scheduleId] : [],
      priority: item.priority,
      dueAt: ws,
      windowEnd: we,
      windowIndex: 0,
      open: true,
      capBytesPerSecond: this.capOf(t),
      deferrals: item.deferrals,
      deliveryId: item.attemptId,
      lastOutcome: null,
    };
  }

  private act(a: Admission, now: number): void {
    for (const s of a.start) {
      const item = this.items.get(s.id)!;
      if (s.rateBytesPerSecond === 0) {
        this.endAttempt(item, now, 'done', null);
        item.state = 'done';
        continue;
      }
      item.state = 'running';
      item.rate = s.rateBytesPerSecond;
      this.inUse += item.rate;
      this.runningRate[item.t] += item.rate;
      this.running.add(item);
      this.record((r) => r.start(item.attemptId!, { at: now, rateBytesPerSecond: item.rate, source: this.opts.source ?? 'origin' }));
      this.opts.sink.start(item, item.rate, now, this.winEnd[item.t]!);
    }
    for (const c of a.carry) {
      const item = this.items.get(c.id)!;
      this.endAttempt(item, now, 'deferred', c.reason);
      item.carriedUntil = this.winEnd[item.t]!;
    }
    for (const w of a.wait) this.items.get(w.id)!.lastWait = w.reason;
  }

  private stopRunning(item: Item, at: number, why: 'done' | 'paused' | 'failed'): void {
    this.running.delete(item);
    this.inUse -= item.rate;
    this.runningRate[item.t] -= item.rate;
    if (this.running.size === 0) this.inUse = 0; // no float dust
    item.rate = 0;
    item.state = 'pending';
    this.dirty = true;
    this.opts.sink.stop?.(item, at, why);
  }

  /** Ends the open attempt; deferred and failed ones age the item. */
  private endAttempt(item: Item, at: number, outcome: 'done' | 'deferred' | 'failed', reason: string | null, via?: { source: DeliverySource; sourceId?: string | null }): void {
    const id = item.attemptId;
    if (id === null) return;
    const bytes = Math.round(item.attemptBytes);
    if (outcome === 'done') this.record((r) => r.done(id, { at, bytes, ...via }));
    else {
      item.deferrals++;
      this.record((r) => (outcome === 'deferred' ? r.deferred(id, reason!, { at, bytes }) : r.failed(id, reason!, { at, bytes })));
    }
    item.attemptId = null;
    item.attemptBytes = 0;
    item.lastWait = null;
  }

  private record(f: (r: DeliveryRecorder) => unknown): void {
    try {
      const p = f(this.opts.recorder);
      if (p && typeof (p as Promise<unknown>).then === 'function') this.pending.push((p as Promise<unknown>).catch((e) => this.errors.push(e)));
    } catch (e) {
      this.errors.push(e);
    }
  }
}

// ---- recorders ----

export interface MemoryAttempt extends AttemptDue {
  outcome: 'due' | 'running' | 'done' | 'deferred' | 'failed';
  reason: string | null;
  startedAt: number | null;
  endedAt: number | null;
  bytes: number;
  rate: number;
}

/** Every attempt in memory, for tests and the benchmark. */
export class MemoryRecorder implements DeliveryRecorder {
  readonly attempts = new Map<string, MemoryAttempt>();
  due(a: AttemptDue): void {
    if (this.attempts.has(a.id)) throw new Error(`attempt ${a.id} opened twice`);
    this.attempts.set(a.id, { ...a, outcome: 'due', reason: null, startedAt: null, endedAt: null, bytes: 0, rate: 0 });
  }
  start(id: string, e: { at: number; rateBytesPerSecond: number }): void {
    const a = this.open(id);
    a.outcome = 'running';
    a.startedAt ??= e.at;
    a.rate = e.rateBytesPerSecond;
  }
  done(id: string, e: { at: number; bytes: number }): void {
    this.end(id, 'done', null, e);
  }
  deferred(id: string, reason: string, e: { at: number; bytes: number }): void {
    this.end(id, 'deferred', reason, e);
  }
  failed(id: string, reason: string, e: { at: number; bytes: number }): void {
    this.end(id, 'failed', reason, e);
  }
  private open(id: string): MemoryAttempt {
    const a = this.attempts.get(id);
    if (!a) throw new Error(`unknown attempt ${id}`);
    if (a.outcome !== 'due' && a.outcome !== 'running') throw new Error(`attempt ${id} already ${a.outcome}`);
    return a;
  }
  private end(id: string, outcome: 'done' | 'deferred' | 'failed', reason: string | null, e: { at: number; bytes: number }): void {
    const a = this.open(id);
    a.outcome = outcome;
    a.reason = reason;
    a.endedAt = e.at;
    a.bytes = e.bytes;
  }
}

/** The part of the delivery records (deliveries.ts) the origin's recorder needs. */
export interface RecordService {
  recordBatch(events: readonly RecordEvent[], known: ReadonlyMap<string, string>): Promise<Map<string, string>>;
}

/**
 * Records through the service (schedule_deliveries), a step at a time: the dispatcher's
 * calls are queued in order and written by `flush` (Dispatcher.flush, after each tick)
 * with `recordBatch` — a few statements per step however many deliveries opened,
 * started or ended. The service's record ids replace the dispatcher's attempt ids.
 */
export function serviceRecorder(svc: RecordService): DeliveryRecorder {
  let queue: RecordEvent[] = [];
  const recordIds = new Map<string, string>();
  return {
    due: (a) => void queue.push({ kind: 'due', attempt: a.id, terminalId: a.terminalId, contentId: a.contentId, scheduleId: a.scheduleId, dueAt: a.dueAt, windowEnd: a.windowEnd }),
    start: (id, e) => void queue.push({ kind: 'start', attempt: id, at: e.at, source: e.source }),
    done: (id, e) => void queue.push({ kind: 'end', attempt: id, outcome: 'done', reason: null, at: e.at, bytes: e.bytes, source: e.source, sourceId: e.sourceId }),
    deferred: (id, reason, e) => void queue.push({ kind: 'end', attempt: id, outcome: 'deferred', reason, at: e.at, bytes: e.bytes }),
    failed: (id, reason, e) => void queue.push({ kind: 'end', attempt: id, outcome: 'failed', reason, at: e.at, bytes: e.bytes }),
    async flush() {
      const batch = queue;
      queue = [];
      if (!batch.length) return;
      try {
        for (const [attempt, id] of await svc.recordBatch(batch, recordIds)) recordIds.set(attempt, id);
      } finally {
        for (const e of batch) if (e.kind === 'end') recordIds.delete(e.attempt);
      }
    },
  };
}
