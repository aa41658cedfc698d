import type { Candidate, LinkState, Tier } from './ordering.ts';
import type { SelectKind } from './tables.ts';
import { allOccurrences, nextOpening, occurrences, type Opening, type Window } from './windows.ts';

/*
 * # Planning (S0.5): what is due for a terminal, and when
 *
 * Pure: no clock, no database. The planner (planning.ts) reads a terminal's schedules
 * and the matching contents it does not hold yet, and hands them here; the dispatcher
 * (dispatcher.ts, driven at the origin by runner.ts) uses the same functions, and `planWeek` for
 * the whole population at once.
 *
 * ## One terminal (`planItems`)
 *
 * A content is due for a terminal when one of its schedules selects it (`selects`) and
 * the terminal does not hold it whole. It is due at the next opening of that schedule's
 * windows (`nextOpening` over the schedule's windows): the current interval when one is
 * open now (`open: true`, dueAt = the interval's start, which is ≤ now), otherwise the
 * next one. When several schedules select the same content, the one that serves it
 * first wins (`better`): an open window before a closed one; of two open ones the one
 * that stays open longer; of two closed ones the one opening first; then the higher
 * schedule priority, the older schedule, the lower schedule id. A content whose
 * schedules never open again (every `until` passed) is not due and is left out.
 *
 * Items are ordered by when they can start (open ones: now; others: their opening),
 * then schedule priority (higher first), then the window's end (sooner first), then
 * the newest content first, then content id: a total order.
 *
 * ## Everyone (`planWeek`)
 *
 * The dispatcher needs, for every terminal, the concrete intervals of all its windows
 * over the coming week, and at each dispatch step (a minute) which intervals open and
 * which close. `planWeek` computes the occurrences of every window (windows.ts
 * `occurrences`, cached zone offsets: integer arithmetic) into flat typed arrays and
 * buckets them by the step in which they open and in which they close (a counting sort:
 * O(occurrences + steps), no comparison sort). The dispatcher then walks the steps:
 * `openedAt(plan, s)` / `closedAt(plan, s)` are index lists, and `firstStart` per
 * terminal is its earliest opening (the due time of anything due for it now).
 */

// ---- one terminal ----

/** What a schedule selects, as stored: the value is normalised (see requests.ts `parseSelection`). */
export interface Selection {
  kind: SelectKind;
  /** content ID; publisher user ID; genre lower-cased; series (title prefix) lower-cased. */
  value: string;
}

export interface PlanSchedule {
  id: string;
  select: Selection;
  windows: readonly Window[];
  priority: number;
  /** ms */
  createdAt: number;
}

/** A content as the planner sees it. */
export interface PlanContent {
  id: string;
  title: string;
  genre: string;
  publisherId: string;
  /** The publisher's username (display only). */
  publisher: string;
  totalSize: number;
  /** ms */
  createdAt: number;
  /** Piece ranges the terminal already holds ("0-9,12") while it is still fetching; null: none. */
  heldPieces: string | null;
}

/** What the records say about the item (schedule_deliveries), if anything. */
export interface ItemRecord {
  /** The open attempt (due or running), if there is one. */
  openDeliveryId: string | null;
  /** Windows the item was already carried over: the aging count for S0.6. */
  deferrals: number;
  lastOutcome: string | null;
}

export interface PlanItem {
  contentId: string;
  title: string;
  genre: string;
  publisher: string;
  totalSize: number;
  heldPieces: string | null;
  /** The schedule it is due under (see "One terminal"), and every schedule that selects it. */
  scheduleId: string;
  matchedBy: string[];
  priority: number;
  /** Start of the interval it is due in (≤ now when open), ms. */
  dueAt: number;
  /** End of that interval, ms. */
  windowEnd: number;
  windowIndex: number;
  open: boolean;
  /** The window's bandwidth cap, bytes/s; null: none. */
  capBytesPerSecond: number | null;
  deferrals: number;
  deliveryId: string | null;
  lastOutcome: string | null;
}

/** Whether a schedule's selection takes this content. Case-insensitive for genre and series. */
export function selects(sel: Selection, c: Pick<PlanContent, 'id' | 'title' | 'genre' | 'publisherId'>): boolean {
  switch (sel.kind) {
    case 'content':
      return c.id === sel.value;
    case 'publisher':
      return c.publisherId === sel.value;
    case 'genre':
      return c.genre.toLowerCase() === sel.value;
    case 'series':
      return c.title.toLowerCase().startsWith(sel.value);
  }
}

/** Each schedule's next opening at `now` (null: its windows never open again). */
export function openings(schedules: readonly PlanSchedule[], now: number): Map<string, Opening | null> {
  const out = new Map<string, Opening | null>();
  for (const s of schedules) out.set(s.id, nextOpening(s.windows, now));
  return out;
}

interface Choice {
  s: PlanSchedule;
  o: Opening;
}

/** Whether schedule choice `a` serves a content before `b` (see "One terminal"). */
function better(a: Choice, b: Choice): boolean {
  if (a.o.open !== b.o.open) return a.o.open;
  if (a.o.open ? a.o.end !== b.o.end : a.o.start !== b.o.start) return a.o.open ? a.o.end > b.o.end : a.o.start < b.o.start;
  if (a.s.priority !== b.s.priority) return a.s.priority > b.s.priority;
  if (a.s.createdAt !== b.s.createdAt) return a.s.createdAt < b.s.createdAt;
  return a.s.id < b.s.id;
}

/**
 * S0.5 for one terminal: every content selected by one of `schedules`, with when it is
 * due, ordered (see the header). `contents` are those the terminal does not hold whole
 * (the caller filters); `records` adds what the delivery records say.
 */
export function planItems(
  schedules: readonly PlanSchedule[],
  contents: readonly PlanContent[],
  now: number,
  records: ReadonlyMap<string, ItemRecord> = new Map(),
): PlanItem[] {
  const next = openings(schedules, now);
  const items: (PlanItem & { createdAt: number })[] = [];
  for (const c of contents) {
    let best: Choice | null = null;
    const matchedBy: string[] = [];
    for (const s of schedules) {
      if (!selects(s.select, c)) continue;
      matchedBy.push(s.id);
      const o = next.get(s.id);
      if (!o) continue;
      const choice = { s, o };
      if (best === null || better(choice, best)) best = choice;
    }
    if (best === null) continue;
    const rec = records.get(c.id);
    const w = best.s.windows[best.o.windowIndex];
    items.push({
      contentId: c.id,
      title: c.title,
      genre: c.genre,
      publisher: c.publisher,
      totalSize: c.totalSize,
      heldPieces: c.heldPieces,
      scheduleId: best.s.id,
      matchedBy,
      priority: best.s.priority,
      dueAt: best.o.start,
      windowEnd: best.o.end,
      windowIndex: best.o.windowIndex,
      open: best.o.open,
      capBytesPerSecond: w?.capBytesPerSecond ?? null,
      deferrals: rec?.deferrals ?? 0,
      deliveryId: rec?.openDeliveryId ?? null,
      lastOutcome: rec?.lastOutcome ?? null,
      createdAt: c.createdAt,
    });
  }
  const startsAt = (i: PlanItem) => (i.open ? now : i.dueAt);
  items.sort(
    (a, b) =>
      startsAt(a) - startsAt(b) ||
      b.priority - a.priority ||
      a.windowEnd - b.windowEnd ||
      b.createdAt - a.createdAt ||
      (a.contentId < b.contentId ? -1 : a.contentId > b.contentId ? 1 : 0),
  );
  return items.map(({ createdAt: _, ...item }) => item);
}

export interface ScheduleOpening {
  scheduleId: string;
  windowIndex: number;
  /** ms */
  start: number;
  end: number;
  capBytesPerSecond: number | null;
}

/** The concrete intervals of a terminal's schedules overlapping [fromMs, toMs), by start (then schedule order). */
export function scheduleOpenings(schedules: readonly PlanSchedule[], fromMs: number, toMs: number): ScheduleOpening[] {
  const out: (ScheduleOpening & { order: number })[] = [];
  schedules.forEach((s, order) => {
    for (const o of allOccurrences(s.windows, fromMs, toMs)) {
      out.push({ scheduleId: s.id, windowIndex: o.windowIndex, start: o.start, end: o.end, capBytesPerSecond: s.windows[o.windowIndex]?.capBytesPerSecond ?? null, order });
    }
  });
  out.sort((a, b) => a.start - b.start || a.order - b.order || a.windowIndex - b.windowIndex);
  return out.map(({ order: _, ...o }) => o);
}

// ---- the dispatcher's bridge to S0.6 ----

/** The plan tier of a user from its roles (S0.6 priority): premium, member, or '' (lowest). */
export function tierOf(roles: readonly string[]): Tier {
  return roles.includes('premium') ? 'premium' : roles.includes('member') ? 'member' : '';
}

/**
 * An admission candidate (ordering.ts `admit`) for a due plan item. `id` is the open
 * delivery record's id (deliveries.ts `recordBatch`), so admit's decisions map back to records.
 */
export function toCandidate(
  item: PlanItem,
  ctx: { terminalId: string; deliveryId: string; tier: Tier; link: LinkState | null; bytesLeft?: number; capLeftBytesPerSecond?: number | null },
): Candidate {
  return {
    id: ctx.deliveryId,
    terminalId: ctx.terminalId,
    dueAt: item.dueAt,
    windowStart: item.dueAt,
    windowEnd: item.windowEnd,
    bytesLeft: ctx.bytesLeft ?? item.totalSize,
    tier: ctx.tier,
    link: ctx.link,
    deferrals: item.deferrals,
    capBytesPerSecond: ctx.capLeftBytesPerSecond !== undefined ? ctx.capLeftBytesPerSecond : item.capBytesPerSecond,
  };
}

// ---- everyone: a week of windows ----

export const WEEK_MS = 7 * 86_400_000;

/**
 * Every terminal's window intervals over [from, to), bucketed by dispatch step. Indices:
 * occurrence `k` belongs to terminal `terminal[k]` (its index in the input) and to that
 * terminal's window `window[k]`; it is open over [start[k], end[k]) (whole, not clipped).
 */
export interface WeekPlan {
  from: number;
  to: number;
  stepMs: number;
  /** Number of steps: ceil((to − from) / stepMs). Step s is the instant from + s·stepMs. */
  steps: number;
  terminals: number;
  /** Number of occurrences. */
  count: number;
  terminal: Uint32Array;
  window: Uint16Array;
  start: Float64Array;
  end: Float64Array;
  /** Occurrence indices by opening step (the first step at or after their start): byOpen[openOffsets[s] … openOffsets[s+1]). */
  byOpen: Uint32Array;
  openOffsets: Uint32Array;
  /** Occurrence indices by closing step (the first step at or after their end). */
  byClose: Uint32Array;
  closeOffsets: Uint32Array;
  /** Per terminal: start of its first interval ending after `from` (≤ from when open then), or NaN if none in range. */
  firstStart: Float64Array;
}

/** The step at or after instant t (clamped to [0, steps]). */
function stepAtOrAfter(t: number, from: number, stepMs: number, steps: number): number {
  const s = Math.ceil((t - from) / stepMs);
  return s < 0 ? 0 : s > steps ? steps : s;
}

/**
 * Plans [fromMs, toMs) (default: a week) for every terminal, given each terminal's
 * parsed windows (all its schedules' windows together; the caller maps window indices
 * back to schedules). An interval that opens and closes between two steps (shorter
 * than a step, between its ticks) is listed in both buckets of the same step.
 */
export function planWeek(terminals: readonly (readonly Window[])[], fromMs: number, toMs = fromMs + WEEK_MS, stepMs = 60_000): WeekPlan {
  if (!(toMs > fromMs) || !(stepMs > 0)) throw new RangeError('planWeek needs from < to and a positive step');
  const steps = Math.ceil((toMs - fromMs) / stepMs);
  let cap = Math.max(16, terminals.length * 8);
  let terminal = new Uint32Array(cap);
  let window = new Uint16Array(cap);
  let start = new Float64Array(cap);
  let end = new Float64Array(cap);
  const firstStart = new Float64Array(terminals.length).fill(NaN);
  let n = 0;
  for (let t = 0; t < terminals.length; t++) {
    const ws = terminals[t]!;
    let first = NaN;
    for (let w = 0; w < ws.length; w++) {
      for (const o of occurrences(ws[w]!, fromMs, toMs)) {
        if (n === cap) {
          cap *= 2;
          terminal = grow(terminal, cap);
          window = grow(window, cap);
          start = grow(start, cap);
          end = grow(end, cap);
        }
        terminal[n] = t;
        window[n] = w;
        start[n] = o.start;
        end[n] = o.end;
        n++;
        if (!(o.start >= first)) first = o.start; // NaN-safe minimum
      }
    }
    firstStart[t] = first;
  }
  const openOffsets = new Uint32Array(steps + 2);
  const closeOffsets = new Uint32Array(steps + 2);
  const openStep = new Uint32Array(n);
  const closeStep = new Uint32Array(n);
  for (let k = 0; k < n; k++) {
    const so = stepAtOrAfter(start[k]!, fromMs, stepMs, steps);
    const sc = stepAtOrAfter(end[k]!, fromMs, stepMs, steps);
    openStep[k] = so;
    closeStep[k] = sc;
    openOffsets[so + 1]++;
    closeOffsets[sc + 1]++;
  }
  for (let s = 0; s <= steps; s++) {
    openOffsets[s + 1] += openOffsets[s]!;
    closeOffsets[s + 1] += closeOffsets[s]!;
  }
  const byOpen = new Uint32Array(n);
  const byClose = new Uint32Array(n);
  const oFill = openOffsets.slice(0, steps + 1);
  const cFill = closeOffsets.slice(0, steps + 1);
  for (let k = 0; k < n; k++) {
    byOpen[oFill[openStep[k]!]!++] = k;
    byClose[cFill[closeStep[k]!]!++] = k;
  }
  return {
    from: fromMs,
    to: toMs,
    stepMs,
    steps,
    terminals: terminals.length,
    count: n,
    terminal: terminal.subarray(0, n),
    window: window.subarray(0, n),
    start: start.subarray(0, n),
    end: end.subarray(0, n),
    // Bucket `steps` (after the last step instant) holds openings in the last partial step
    // and intervals still open at the end of the plan: neither is an event of any step.
    byOpen,
    openOffsets,
    byClose,
    closeOffsets,
    firstStart,
  };
}

function grow<T extends Uint32Array | Uint16Array | Float64Array>(a: T, cap: number): T {
  const b = new (a.constructor as new (n: number) => T)(cap);
  b.set(a);
  return b;
}

const none = new Uint32Array(0);

/** Occurrence indices that open at step s, 0 ≤ s < steps (s = 0: also those already open at `from`). */
export function openedAt(plan: WeekPlan, s: number): Uint32Array {
  return s < 0 || s >= plan.steps ? none : plan.byOpen.subarray(plan.openOffsets[s]!, plan.openOffsets[s + 1]!);
}

/** Occurrence indices that close at step s, 0 ≤ s < steps (their end is in (from + (s−1)·step, from + s·step]). */
export function closedAt(plan: WeekPlan, s: number): Uint32Array {
  return s < 0 || s >= plan.steps ? none : plan.byClose.subarray(plan.closeOffsets[s]!, plan.closeOffsets[s + 1]!);
}
