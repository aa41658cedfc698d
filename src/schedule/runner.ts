import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import type { AddressPolicy } from '../core/address-policy.ts';
import { monotonicMs, type Clock } from '../core/clock.ts';
import { badRequest, conflict, notFound } from '../core/errors.ts';
import type { EventBus } from '../core/event-bus.ts';
import type { Db } from '../db/connection.ts';
import type { TerminalState } from '../terminals/tables.ts';
import { terminalOwners, wholeHolders } from '../terminals/queries.ts';
import { rolesOf } from '../accounts/queries.ts';
import { Dispatcher, serviceRecorder, type Delivery, type DeliverySink, type DispatchTerminal } from './dispatcher.ts';
import type { LinkState } from './ordering.ts';
import type { DeliverySource } from './tables.ts';
import { tierOf } from './plan.ts';
import { PLAN_MAX_LIMIT } from './planning.ts';
import { PushAddresses } from './push.ts';
import type { ScheduleService } from './service.ts';
import { nextOpening, parseWindow, type Window } from './windows.ts';

/*
 * # The origin's scheduler (S0.3 pull, S0.4 push, S0.6 admission, S0.7 records)
 *
 * One `Dispatcher` (dispatcher.ts — the engine the week simulation tests) over every
 * terminal that has a schedule, ticked by a timer and whenever something happens (a
 * terminal calls in, reports progress, connects). Its sink turns an admitted delivery
 * into a *delivery order* — content, admitted rate, window end — and gets it to the
 * terminal:
 *
 *   - pull (S0.3): the agent calls in (`POST /schedules/check-in`) when its window
 *     opens; the answer carries its orders and when to call again;
 *   - push (S0.4): the agent holds `GET /schedules/orders` open (server-sent events),
 *     or registered an address (`PUT /schedules/push-address`) that the origin POSTs
 *     the order to, signed with the origin key. The origin initiates at the opening.
 *
 * The agent fetches with the ordinary piece transfer (peers and the origin, receipts,
 * billing) capped at the admitted rate, pauses at the window's end and resumes in the
 * next window from its verified pieces. It reports progress
 * (`POST /schedules/deliveries/report`); those bytes are the dispatcher's progress, and
 * "done" is believed only once the origin's holder registry has the content whole.
 *
 * Who is reachable: a terminal holding the event stream, one with a push address, or
 * one that called in within `presenceMs`. Items of other open terminals are due
 * (recorded) and wait with `terminal_absent`; at the window's end they are deferred.
 * A running delivery without a report for `silentMs` fails (`terminal_silent`) and is
 * tried again in the next window.
 *
 * One process runs the scheduler (SCHEDULER=off on the others): the dispatcher's state
 * is in memory; the records are in the database and a restarted scheduler picks the
 * open ones up (opening an attempt is idempotent, `recordBatch`).
 */

export interface DeliveryOrder {
  terminalId: string;
  contentId: string;
  title: string;
  totalSize: number;
  /** The admitted rate (S0.6): the agent caps this download at it. */
  rateBytesPerSecond: number;
  /** The window closes: the agent pauses then; the rest comes in its next window. */
  windowEnd: string;
  /** The dispatcher's attempt (`terminal/content#n`). */
  attempt: string;
  issuedAt: string;
}

export interface CheckIn {
  terminalId: string;
  at: string;
  /** Whether one of its windows is open now. */
  open: boolean;
  /** What it is to fetch now (admitted): its running deliveries. */
  orders: DeliveryOrder[];
  /** Items due in this window still waiting for the origin's budget (or their turn). */
  waiting: number;
  /** When to call in again: soon while a window is open, else the next opening; null: no window ever opens again. */
  nextCheckInAt: string | null;
}

export type ReportState = 'running' | 'done' | 'paused' | 'failed';

export interface ProgressReport {
  contentId: string;
  /** Bytes fetched in this attempt so far (cumulative). */
  bytes: number;
  state: ReportState;
  reason?: string;
  /** With `done`: who delivered most of it — the origin, or a peer (its terminal ID in sourceId). */
  source?: 'origin' | 'peer';
  sourceId?: string;
}

export type StreamEvent = { event: 'order'; data: DeliveryOrder } | { event: 'stop'; data: { contentId: string; reason: string } };

export interface ScheduleRunnerDeps {
  db: Db;
  clock: Clock;
  schedules: ScheduleService;
  latestStates(ids: readonly string[]): Promise<Map<string, TerminalState>>;
  /** Signs orders pushed to registered addresses. */
  originKey: KeyObject;
  /** Issue 10 #8: which push addresses are accepted and called (checked again at every push). */
  peers: AddressPolicy;
  logger: Logger;
  bus?: EventBus;
  /** S0.6: bytes/s the origin spends on scheduled deliveries at most. */
  egressBudgetBps: number;
  /** The most one delivery is given, bytes/s. */
  maxDeliveryBps?: number;
  /** Timer period; the dispatcher steps in minutes, so a few seconds is plenty. */
  tickMs?: number;
  silentMs?: number;
  presenceMs?: number;
  /** While a window is open, a pull agent is told to call in again this often. */
  recheckMs?: number;
  /** Steps asked for by calls run at most this often (real time, ms); default 100. */
  minStepGapMs?: number;
}

interface Running {
  order: DeliveryOrder;
  lastReportAt: number;
  /** Cumulative bytes the terminal reported for this attempt. */
  reported: number;
  /** Reported but not yet handed to the dispatcher. */
  unclaimed: number;
}

const STEP_MS = 60_000;
const HORIZON_MS = 2 * 86_400_000;
/** An agent's clock may run a little ahead: a "paused" this close to the window's end is the window closing. */
const CLOSE_SLACK_MS = 120_000;

export class ScheduleRunner {
  private dispatcher: Dispatcher | null = null;
  private readonly terminals = new Map<string, DispatchTerminal>();
  /** Per terminal, the end of the window its items were last loaded for (they are loaded as its windows open). */
  private readonly itemsLoadedFor = new Map<string, number>();
  private readonly running = new Map<string, Running>();
  /** Orders paused by their window's end, until the next window: the agent's final count may still come. */
  private readonly closedAtWindowEnd = new Map<string, DeliveryOrder>();
  private readonly streams = new Map<string, Set<(e: StreamEvent) => void>>();
  private readonly calledIn = new Map<string, number>();
  /** Failures found outside a tick (a push that could not be delivered); applied at the next. */
  private readonly failures: { key: string; reason: string }[] = [];
  /** Deliveries the holder registry confirmed whole; applied at the next step. */
  private readonly completions: { key: string; via?: { source: DeliverySource; sourceId?: string | null } }[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private lastNow = 0;
  private timer: NodeJS.Timeout | null = null;
  private pendingStep: Promise<void> | null = null;
  /** monotonicMs() of the last step's start (pacing is real time; the steps themselves run on `clock`). */
  private lastStepAt = -Infinity;
  private readonly unsubscribe: (() => void)[] = [];
  private readonly sink: DeliverySink;
  /** Push to registered addresses (S0.4). */
  private readonly pushes: PushAddresses;

  constructor(private readonly deps: ScheduleRunnerDeps) {
    this.sink = {
      start: (d, rate, at, windowEnd) => this.started(d, rate, at, windowEnd),
      stop: (d, _at, why) => this.stopped(d, why),
      progress: (d) => this.claim(d),
    };
    this.pushes = new PushAddresses({ db: deps.db, peers: deps.peers, originKey: deps.originKey, now: () => this.now() });
  }

  // ---- life ----

  async start(): Promise<void> {
    await this.pushes.load();
    // Items are loaded per terminal as its windows open (step), not all at start: start-up
    // costs one query for the schedules, whatever the number of terminals.
    await this.serial(async () => {
      await this.loadTerminals();
      await this.step();
    });
    const bus = this.deps.bus;
    if (bus) {
      this.unsubscribe.push(
        bus.subscribe('schedules.changed', (e) => void this.onSchedulesChanged((e as { terminalId: string }).terminalId)),
        bus.subscribe('content.published', (e) => void this.onPublished((e as { contentId: string }).contentId)),
      );
    }
    this.timer = setInterval(() => this.tick().catch(() => {}), this.deps.tickMs ?? 5000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const u of this.unsubscribe.splice(0)) u();
    await this.pendingStep?.catch(() => {});
    await this.chain;
    await this.pushes.close();
  }

  /** A step nobody waits for (connection, failed push); its errors are logged by `serial`. */
  private kick(): void {
    this.stepSoon().catch(() => {});
  }

  /**
   * A step soon: the calls of a burst (check-ins, reports, connections) share one, and
   * steps run at most once per `minStepGapMs` of real time — a step costs O(open
   * terminals), so it must not run once per call.
   */
  private stepSoon(): Promise<void> {
    if (this.pendingStep) return this.pendingStep;
    const wait = Math.max(0, this.lastStepAt + (this.deps.minStepGapMs ?? 100) - monotonicMs());
    const next = new Promise<void>((resolve) => setTimeout(resolve, wait)).then(() => {
      this.pendingStep = null;
      return this.tick();
    });
    this.pendingStep = next;
    return next;
  }

  /** Steps the dispatcher to now (the timer calls it; tests too). */
  tick(): Promise<void> {
    return this.serial(() => this.step());
  }

  // ---- pull (S0.3) ----

  /** The terminal calls in: it is present; what is due is admitted now if the budget allows. */
  async checkIn(terminalId: string): Promise<CheckIn> {
    const now = await this.serial(async () => {
      const now = this.now();
      this.calledIn.set(terminalId, now);
      // A schedule added on another origin process may not have reached us yet (the bus is asynchronous).
      if (!this.terminals.has(terminalId) && (await this.hasSchedules(terminalId))) await this.loadTerminals();
      await this.loadItems([terminalId]);
      this.dispatcher?.wake();
      return now;
    });
    await this.stepSoon();
    return this.view(terminalId, now);
  }

  // ---- push (S0.4) ----

  /** A held connection: orders go down it as they are admitted; the ones running now go first. Returns the hang-up. */
  openStream(terminalId: string, send: (e: StreamEvent) => void): () => void {
    const set = this.streams.get(terminalId) ?? new Set();
    set.add(send);
    this.streams.set(terminalId, set);
    for (const r of this.running.values()) if (r.order.terminalId === terminalId) send({ event: 'order', data: r.order });
    this.dispatcher?.wake();
    this.kick();
    return () => {
      set.delete(send);
      if (set.size === 0) this.streams.delete(terminalId);
    };
  }

  /** Registers (or with null, removes) the address orders are POSTed to. */
  async setPushAddress(terminalId: string, url: string | null): Promise<{ terminalId: string; url: string | null }> {
    await this.pushes.set(terminalId, url);
    this.dispatcher?.wake();
    this.kick();
    return { terminalId, url };
  }

  // ---- progress ----

  /**
   * The agent's word on a delivery. Refusals: `unknown_order` (404: nothing running for
   * this terminal and content), `invalid_report` (400), `not_held` (409: "done" while the
   * holder registry does not have the content whole). Answers whether to go on.
   */
  async report(terminalId: string, input: ProgressReport): Promise<{ continue: boolean }> {
    checkReport(input);
    const key = `${terminalId}/${input.contentId}`;
    const ends = await this.serial(async () => {
      const r = this.running.get(key);
      const closed = this.closedAtWindowEnd.get(key);
      if (!r && closed && input.state !== 'done') {
        await this.deps.schedules.deliveries.amendClosedBytes(terminalId, input.contentId, Date.parse(closed.windowEnd), input.bytes);
        return false;
      }
      if (!r) throw notFound('unknown_order', 'Nothing scheduled is running for this terminal and content (it ended, or its window closed); call in again.');
      const now = this.now();
      if (input.state === 'done') {
        if (!(await wholeHolders(this.deps.db, input.contentId, [terminalId])).has(terminalId)) throw conflict('not_held', 'The origin does not list this content as held whole by the terminal: report the holdings first.');
      }
      r.lastReportAt = now;
      if (input.bytes > r.reported) {
        r.unclaimed += input.bytes - r.reported;
        r.reported = input.bytes;
      }
      if (input.state === 'done') this.completions.push({ key, via: input.source ? { source: input.source, sourceId: input.sourceId ?? null } : undefined });
      else if (input.state === 'failed') this.failures.push({ key, reason: input.reason ?? 'terminal_failed' });
      else if (input.state === 'paused' && Date.parse(r.order.windowEnd) - now > CLOSE_SLACK_MS) this.failures.push({ key, reason: input.reason ?? 'terminal_paused' });
      return input.state !== 'running';
    });
    // Progress alone waits for the next step; an end is applied (and recorded) before the answer.
    if (ends) await this.stepSoon();
    return { continue: this.running.has(key) };
  }

  /** The orders running for a terminal now. */
  orders(terminalId: string): DeliveryOrder[] {
    return [...this.running.values()].filter((r) => r.order.terminalId === terminalId).map((r) => r.order);
  }

  // ---- the dispatcher's sink ----

  private started(d: Delivery, rate: number, at: number, windowEnd: number): void {
    const order: DeliveryOrder = {
      terminalId: d.terminalId,
      contentId: d.contentId,
      title: d.title,
      totalSize: d.totalSize,
      rateBytesPerSecond: Math.floor(rate),
      windowEnd: new Date(windowEnd).toISOString(),
      attempt: d.attemptId ?? d.key,
      issuedAt: new Date(at).toISOString(),
    };
    this.running.set(d.key, { order, lastReportAt: at, reported: 0, unclaimed: 0 });
    this.closedAtWindowEnd.delete(d.key);
    const streams = this.streams.get(d.terminalId);
    const url = this.pushes.get(d.terminalId);
    if (streams) for (const send of streams) send({ event: 'order', data: order });
    else if (url) void this.pushTo(url, d.key, order);
    // Otherwise (pull) it waits for the terminal's check-in, which answers with it.
  }

  private stopped(d: Delivery, why: 'done' | 'paused' | 'failed'): void {
    const r = this.running.get(d.key);
    this.running.delete(d.key);
    if (why === 'paused' && r) this.closedAtWindowEnd.set(d.key, r.order);
    if (why === 'done') return;
    const reason = why === 'paused' ? 'window_closed' : 'failed';
    for (const send of this.streams.get(d.terminalId) ?? []) send({ event: 'stop', data: { contentId: d.contentId, reason } });
  }

  /** Reported bytes since the last call. A delivery is done when the holder registry says so (`complete`), not by a count. */
  private claim(d: Delivery): number {
    const r = this.running.get(d.key);
    if (!r) return 0;
    const b = r.unclaimed;
    r.unclaimed = 0;
    return b;
  }

  private async pushTo(url: string, key: string, order: DeliveryOrder): Promise<void> {
    const failed = await this.pushes.send(url, order);
    if (!failed) return;
    this.deps.logger.warn({ url, key, err: failed.err.message }, 'push to the terminal’s address failed');
    this.failures.push({ key, reason: failed.reason });
    this.kick();
  }

  // ---- the loop ----

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.chain.then(f);
    this.chain = run.catch((err) => this.deps.logger.error({ err }, 'scheduler step failed'));
    return run;
  }

  private now(): number {
    this.lastNow = Math.max(this.lastNow, this.deps.clock.now()); // never backwards (a stepped system clock)
    return this.lastNow;
  }

  private async step(): Promise<void> {
    const d = this.dispatcher;
    if (!d) return;
    this.lastStepAt = monotonicMs();
    const now = this.now();
    if (now >= d.horizonEnd - 3_600_000) d.replan([...this.terminals.values()], now);
    for (const [key, r] of this.running) {
      if (now - r.lastReportAt > (this.deps.silentMs ?? 120_000)) this.failures.push({ key, reason: 'terminal_silent' });
    }
    for (const c of this.completions.splice(0)) d.complete(c.key, now, c.via);
    for (const f of this.failures.splice(0)) d.fail(f.key, f.reason, now);
    // Openings first, so that terminals whose window opens now are admitted with their plan and fresh link states.
    d.advanceTo(now);
    await this.loadItems(d.openWindows().filter((w) => this.itemsLoadedFor.get(w.terminalId) !== w.windowEnd).map((w) => w.terminalId));
    await this.refreshLinks(d);
    d.tick(now);
    try {
      await d.flush();
    } catch (err) {
      this.deps.logger.error({ err }, 'a scheduled-delivery record could not be written');
    }
  }

  /** Link states of the open terminals (S0.6), without what their own running deliveries add. */
  private async refreshLinks(d: Dispatcher): Promise<void> {
    const open = d.openWindows().map((w) => w.terminalId);
    if (!open.length) return;
    const states = await this.deps.latestStates(open);
    for (const id of open) {
      const s = states.get(id);
      const ours = d.itemsOf(id).reduce((sum, item) => sum + item.rate * 8, 0);
      const link: LinkState | null = s ? { downBps: s.downBps, recvLoadBps: Math.max(0, s.recvLoadBps - ours) } : null;
      d.setLink(id, link);
    }
  }

  private reachable = (terminalId: string): boolean =>
    this.streams.has(terminalId) || this.pushes.has(terminalId) || this.now() - (this.calledIn.get(terminalId) ?? -Infinity) <= (this.deps.presenceMs ?? 180_000);

  /** Every terminal with a schedule, its windows and its owner's tier. */
  private async loadTerminals(): Promise<void> {
    const rows = await this.deps.db.selectFrom('schedules').select(['terminal_id', 'windows']).orderBy('terminal_id').orderBy('created_at').orderBy('id').execute();
    const owners = await terminalOwners(this.deps.db, [...new Set(rows.map((r) => r.terminal_id))]);
    const roles = await rolesOf(this.deps.db, [...new Set(owners.values())]);
    const next = new Map<string, DispatchTerminal>();
    for (const r of rows) {
      const owner = owners.get(r.terminal_id);
      const userRoles = owner === undefined ? undefined : roles.get(owner);
      if (!userRoles) continue; // the terminal or its account is gone
      const windows: Window[] = r.windows.map((w) => parseWindow(w));
      const t = next.get(r.terminal_id);
      if (t) (t.windows as Window[]).push(...windows);
      else next.set(r.terminal_id, { id: r.terminal_id, windows, tier: tierOf(userRoles), link: null });
    }
    this.terminals.clear();
    for (const [id, t] of next) this.terminals.set(id, t);
    const now = this.now();
    if (this.dispatcher) this.dispatcher.replan([...next.values()], now);
    else {
      const from = Math.floor(now / STEP_MS) * STEP_MS;
      this.dispatcher = new Dispatcher({
        terminals: [...next.values()],
        from,
        horizonMs: HORIZON_MS,
        stepMs: STEP_MS,
        egressBudgetBps: this.deps.egressBudgetBps,
        maxDeliveryBps: this.deps.maxDeliveryBps,
        sink: this.sink,
        recorder: serviceRecorder(this.deps.schedules.deliveries),
        reachable: this.reachable,
      });
    }
  }

  /** The terminals' plans (S0.5, read together) as dispatcher items: new ones added, ones no longer due withdrawn. */
  private async loadItems(terminalIds: readonly string[]): Promise<void> {
    const d = this.dispatcher;
    const ids = terminalIds.filter((id) => this.terminals.has(id));
    if (!d || !ids.length) return;
    const plans = await this.deps.schedules.planner.plans(ids, { limit: PLAN_MAX_LIMIT });
    for (const terminalId of ids) {
      this.itemsLoadedFor.set(terminalId, d.windowEndOf(terminalId));
      const due = new Set<string>();
      for (const i of plans.get(terminalId) ?? []) {
        due.add(`${terminalId}/${i.contentId}`);
        d.addItem({ terminalId, contentId: i.contentId, totalSize: i.totalSize, scheduleId: i.scheduleId, priority: i.priority, title: i.title, deferrals: i.deferrals });
      }
      for (const item of [...d.itemsOf(terminalId)]) {
        // A running one ends by its own report, its window or silence: its holdings may turn whole just before "done" arrives.
        if (!due.has(item.key) && item.state === 'pending') d.removeItem(item.key, this.now(), 'unscheduled');
      }
    }
  }

  private async hasSchedules(terminalId: string): Promise<boolean> {
    return !!(await this.deps.db.selectFrom('schedules').select('id').where('terminal_id', '=', terminalId).limit(1).executeTakeFirst());
  }

  private async onSchedulesChanged(terminalId: string): Promise<void> {
    await this.serial(async () => {
      await this.loadTerminals();
      await this.loadItems([terminalId]);
      await this.step();
    }).catch(() => {});
  }

  private async onPublished(contentId: string): Promise<void> {
    await this.serial(async () => {
      await this.loadItems((await this.deps.schedules.planner.matchingTerminals(contentId)).map((m) => m.terminalId));
      await this.step();
    }).catch(() => {});
  }

  private view(terminalId: string, now: number): CheckIn {
    const t = this.terminals.get(terminalId);
    const d = this.dispatcher;
    const open = !!t && !!d && d.isOpen(terminalId);
    const waiting = d ? d.waiting(terminalId) : 0;
    let next: number | null = null;
    if (t) {
      const o = nextOpening(t.windows, now);
      // Waiting for the budget: sooner, its turn may come any moment.
      if (o?.open) next = Math.min(now + (waiting > 0 ? 10_000 : (this.deps.recheckMs ?? 60_000)), o.end);
      else if (o) next = o.start;
    }
    return { terminalId, at: new Date(now).toISOString(), open, orders: this.orders(terminalId), waiting, nextCheckInAt: next === null ? null : new Date(next).toISOString() };
  }
}

function checkReport(r: ProgressReport): void {
  const states: ReportState[] = ['running', 'done', 'paused', 'failed'];
  if (!states.includes(r.state)) throw badRequest('invalid_report', `state is one of ${states.join(', ')}.`, { field: 'state' });
  if (!Number.isSafeInteger(r.bytes) || r.bytes < 0) throw badRequest('invalid_report', 'bytes is a whole number ≥ 0 (cumulative for this delivery).', { field: 'bytes' });
  if (r.reason !== undefined && (typeof r.reason !== 'string' || r.reason.length === 0 || r.reason.length > 200)) {
    throw badRequest('invalid_report', 'reason is 1–200 characters.', { field: 'reason' });
  }
  if (r.source !== undefined && r.source !== 'origin' && r.source !== 'peer') throw badRequest('invalid_report', 'source is origin or peer.', { field: 'source' });
  if (r.sourceId !== undefined && (typeof r.sourceId !== 'string' || r.sourceId.length === 0 || r.sourceId.length > 64)) {
    throw badRequest('invalid_report', 'sourceId is 1–64 characters.', { field: 'sourceId' });
  }
}
