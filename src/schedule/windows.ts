import { AppError, badRequest } from '../core/errors.ts';

// Distribution windows (S0.1, #5 point 1): recurring local wall-clock windows in a
// terminal's own IANA time zone, and the arithmetic the planner needs (#5 point 2):
// the concrete UTC intervals of a window, whether several windows are open at an
// instant, until when, and when they open next. Pure: no clock, no database.
// Rules, formats and codes: docs/schedules.md "Windows".
//
// Local → UTC conversion uses only Intl. The UTC offsets of a (zone, local date) are
// computed once and cached, and each zone has one cached Intl.DateTimeFormat, so the
// planning loop is plain arithmetic (a week of one window is about a microsecond).
//
// DST rules (one place, `resolve` below):
//  - a local time that does not exist (skipped by a spring-forward gap) resolves to the
//    first instant after the gap, for a start and for an end alike;
//  - a local time that exists twice (fall-back overlap) resolves to its FIRST instant
//    as a start and its LAST instant as an end, so a window never loses time to a
//    repeated hour;
//  - an occurrence that resolves to zero length (both ends in the same gap) is dropped;
//  - hence on a fall-back night two occurrences of one window nearly 24 h long may
//    overlap (`openIntervals` and `openUntil` merge them).
// Windows are half-open [start, end); `days` are the local days an occurrence STARTS.

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Weekday = (typeof WEEKDAYS)[number];
export type DayShorthand = 'weekdays' | 'weekends' | 'daily';

const SHORTHANDS: Record<DayShorthand, readonly Weekday[]> = {
  weekdays: ['mon', 'tue', 'wed', 'thu', 'fri'],
  weekends: ['sat', 'sun'],
  daily: WEEKDAYS,
};

/** What a terminal may send: `days` may use shorthands, optional fields may be null. */
export interface WindowSpec {
  days: Weekday | DayShorthand | (Weekday | DayShorthand)[];
  start: string;
  end: string;
  timeZone: string;
  from?: string | null;
  until?: string | null;
  capBytesPerSecond?: number | null;
}

/** A validated, normalised window (frozen; JSON-serialisable; `parseWindow` accepts it back unchanged). */
export interface Window {
  /** Local days on which an occurrence STARTS, unique, in Monday…Sunday order. */
  readonly days: readonly Weekday[];
  /** Local wall-clock time 'HH:MM' (00:00–23:59). */
  readonly start: string;
  /** Local wall-clock time 'HH:MM' (00:00–24:00); at or before `start` means the next day. */
  readonly end: string;
  /** IANA zone name. */
  readonly timeZone: string;
  /** First local date on which an occurrence may start, 'YYYY-MM-DD' (inclusive). */
  readonly from?: string;
  /** Last local date on which an occurrence may start, 'YYYY-MM-DD' (inclusive). */
  readonly until?: string;
  /** Bandwidth cap while this window is open, bytes per second. */
  readonly capBytesPerSecond?: number;
}

/** A half-open UTC interval [start, end), epoch milliseconds. */
export interface Interval {
  start: number;
  end: number;
}

export interface Occurrence extends Interval {
  /** Index of the window (in the array given) this interval belongs to. */
  windowIndex: number;
}

export interface Opening extends Occurrence {
  /** True when `now` is inside this interval (start ≤ now < end). */
  open: boolean;
}

const MINUTE = 60_000;
const DAY = 86_400_000;
/** Wider than any UTC offset ever used (−12:00 … +14:00, historic LMT up to ±15:xx). */
const OFFSET_MARGIN = 16 * 3_600_000;
/** How far `nextOpening` looks past `now` (or a window's `from`) before giving up. */
const SEARCH_DAYS = 400;

// ---------------------------------------------------------------------------------
// Validation

const KEYS = new Set(['days', 'start', 'end', 'timeZone', 'from', 'until', 'capBytesPerSecond']);
const TIME = /^([01]\d|2[0-3]):([0-5]\d)$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

const invalid = (field: string, message: string) => badRequest('invalid_window', message, { field });

/**
 * Validates and normalises one window. Refusals: `invalid_window` (shape, days, times,
 * dates, start = end, until before from), `unknown_time_zone`, `invalid_cap`.
 */
export function parseWindow(input: unknown): Window {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw invalid('window', 'a window must be an object with days, start, end and timeZone');
  }
  const o = input as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KEYS.has(k)) throw invalid(k, `unknown window field "${k}"`);
  const days = parseDays(o.days);
  const start = parseTime(o.start, 'start', false);
  const end = parseTime(o.end, 'end', true);
  if (start === end) throw invalid('end', `start and end are both ${start}: a window needs a length (end 24:00 makes a whole day)`);
  const timeZone = checkTimeZone(o.timeZone);
  const from = parseDate(o.from, 'from');
  const until = parseDate(o.until, 'until');
  if (from !== undefined && until !== undefined && until < from) throw invalid('until', `until ${until} is before from ${from}`);
  const cap = parseCap(o.capBytesPerSecond);
  const w: { -readonly [K in keyof Window]: Window[K] } = { days: Object.freeze(days), start, end, timeZone };
  if (from !== undefined) w.from = from;
  if (until !== undefined) w.until = until;
  if (cap !== undefined) w.capBytesPerSecond = cap;
  // The compiled form rides along as a hidden (non-enumerable symbol) property: cheaper
  // than a WeakMap entry per window, and invisible to JSON and deepEqual.
  Object.defineProperty(w, COMPILED, { value: compile(w) });
  return Object.freeze(w);
}

/** A terminal's list of windows: a non-empty array; a refusal names the window's index. */
export function parseWindows(input: unknown): Window[] {
  if (!Array.isArray(input) || input.length === 0) throw invalid('windows', 'windows must be a non-empty array');
  return input.map((w, i) => {
    try {
      return parseWindow(w);
    } catch (e) {
      if (e instanceof AppError) throw badRequest(e.code, `window ${i}: ${e.message}`, { ...e.details, index: i });
      throw e;
    }
  });
}

function parseDays(v: unknown): Weekday[] {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0) {
    throw invalid('days', 'days must be a non-empty list of mon…sun (or weekdays, weekends, daily)');
  }
  const set = new Set<Weekday>();
  for (const d of list) {
    const name = typeof d === 'string' ? d.toLowerCase() : d;
    if ((WEEKDAYS as readonly unknown[]).includes(name)) set.add(name as Weekday);
    else if (typeof name === 'string' && Object.hasOwn(SHORTHANDS, name)) SHORTHANDS[name as DayShorthand].forEach((x) => set.add(x));
    else throw invalid('days', `unknown day ${JSON.stringify(d)}: use mon, tue, wed, thu, fri, sat, sun, weekdays, weekends or daily`);
  }
  return WEEKDAYS.filter((d) => set.has(d));
}

function parseTime(v: unknown, field: string, allow24: boolean): string {
  if (typeof v === 'string' && (TIME.test(v) || (allow24 && v === '24:00'))) return v;
  throw invalid(field, `${field} must be a local time HH:MM from 00:00 to ${allow24 ? '24:00' : '23:59'}, got ${JSON.stringify(v)}`);
}

function parseDate(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  const m = typeof v === 'string' ? DATE.exec(v) : null;
  if (m) {
    const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (y >= 1 && mo >= 1 && mo <= 12 && d >= 1 && d <= daysInMonth(y, mo)) return v as string;
  }
  throw invalid(field, `${field} must be a calendar date YYYY-MM-DD, got ${JSON.stringify(v)}`);
}

function parseCap(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return v;
  throw badRequest('invalid_cap', `capBytesPerSecond must be a positive whole number of bytes per second, got ${JSON.stringify(v)}`, {
    field: 'capBytesPerSecond',
  });
}

/**
 * Refuses a zone Intl does not know (`unknown_time_zone`); returns the name, with its
 * case corrected when Intl spells the same zone differently ('europe/berlin' → 'Europe/Berlin').
 */
export function checkTimeZone(v: unknown): string {
  if (typeof v !== 'string') throw invalid('timeZone', 'timeZone must be an IANA time zone name such as Europe/Berlin');
  let name = zoneNames.get(v);
  if (name === undefined) {
    let resolved: string;
    try {
      resolved = new Intl.DateTimeFormat('en-US', { timeZone: v }).resolvedOptions().timeZone;
    } catch {
      throw badRequest('unknown_time_zone', `unknown time zone ${JSON.stringify(v)}: use an IANA name such as Europe/Berlin`, { field: 'timeZone' });
    }
    name = resolved.toLowerCase() === v.toLowerCase() ? resolved : v;
    if (zoneNames.size >= 10_000) zoneNames.clear();
    zoneNames.set(v, name);
  }
  return name;
}

/** Checked zone names: as given → as stored. */
const zoneNames = new Map<string, string>();

// ---------------------------------------------------------------------------------
// Calendar arithmetic (proleptic Gregorian, days since 1970-01-01; H. Hinnant's algorithms)

function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function daysInMonth(y: number, m: number): number {
  return m === 12 ? 31 : daysFromCivil(y, m + 1, 1) - daysFromCivil(y, m, 1);
}

function dayOfDate(s: string): number {
  return daysFromCivil(Number(s.slice(0, 4)), Number(s.slice(5, 7)), Number(s.slice(8, 10)));
}

/** Monday = 0 … Sunday = 6 for a day number (1970-01-01 was a Thursday). */
const weekdayOf = (day: number) => (((day + 3) % 7) + 7) % 7;

const minutesOf = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

// ---------------------------------------------------------------------------------
// Zones: one formatter per zone, offsets cached per local date

/**
 * The UTC offsets around one local date. Offsets are assumed to change at most once
 * within the 56 hours around a date (true of every zone in the tz database since 1970).
 * `before` applies to instants < `at`, `after` to instants ≥ `at`; no change: at = ∞.
 */
interface DayOffsets {
  before: number;
  after: number;
  at: number;
}

interface Zone {
  fmt: Intl.DateTimeFormat;
  days: Map<number, DayOffsets>;
}

const zones = new Map<string, Zone>();
/** Bound on cached dates per zone (a few years of planning); the cache is simply emptied past it. */
const MAX_CACHED_DAYS = 20_000;

function zone(name: string): Zone {
  let z = zones.get(name);
  if (!z) {
    const fmt = new Intl.DateTimeFormat('en-US', {
      timeZone: name,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    z = { fmt, days: new Map() };
    zones.set(name, z);
  }
  return z;
}

/** UTC offset (ms) in effect at instant `t`, to the second. */
function offsetAt(z: Zone, t: number): number {
  const secs = Math.floor(t / 1000) * 1000;
  let y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  for (const p of z.fmt.formatToParts(secs)) {
    switch (p.type) {
      case 'year': y = Number(p.value); break;
      case 'month': mo = Number(p.value); break;
      case 'day': d = Number(p.value); break;
      case 'hour': h = Number(p.value) % 24; break;
      case 'minute': mi = Number(p.value); break;
      case 'second': s = Number(p.value); break;
    }
  }
  return daysFromCivil(y, mo, d) * DAY + h * 3_600_000 + mi * MINUTE + s * 1000 - secs;
}

function dayOffsets(z: Zone, day: number): DayOffsets {
  let info = z.days.get(day);
  if (info) return info;
  let lo = day * DAY - OFFSET_MARGIN;
  let hi = (day + 1) * DAY + OFFSET_MARGIN;
  const before = offsetAt(z, lo);
  const after = offsetAt(z, hi);
  if (before === after) {
    info = { before, after, at: Infinity };
  } else {
    // Binary search for the first second with the new offset (tz transitions are on whole seconds).
    while (hi - lo > 1000) {
      const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
      if (offsetAt(z, mid) === before) lo = mid;
      else hi = mid;
    }
    info = { before, after: offsetAt(z, hi), at: hi };
  }
  if (z.days.size >= MAX_CACHED_DAYS) z.days.clear();
  z.days.set(day, info);
  return info;
}

/**
 * The UTC instant of local time `local` (ms since 1970-01-01 on the local wall clock) on
 * local date `day`, by the DST rules above: a skipped time → the first instant after the
 * gap; a repeated time → its first instant (`last` false) or its last (`last` true).
 */
function resolve(z: Zone, day: number, local: number, last: boolean): number {
  const o = dayOffsets(z, day);
  const u1 = local - o.before;
  if (o.at === Infinity) return u1;
  const u2 = local - o.after;
  const ok1 = u1 < o.at;
  const ok2 = u2 >= o.at;
  if (ok1 && ok2) return last ? Math.max(u1, u2) : Math.min(u1, u2);
  if (ok1) return u1;
  if (ok2) return u2;
  return o.at; // in the gap
}

/**
 * The UTC instant of a local date and time in a zone, by the window DST rules
 * (`pick` 'first' as for a start, 'last' as for an end). `time` may be '24:00'.
 */
export function localToUtc(timeZone: string, date: string, time: string, pick: 'first' | 'last' = 'first'): number {
  const z = zone(checkTimeZone(timeZone));
  const d = parseDate(date, 'date');
  if (d === undefined) throw invalid('date', 'a calendar date YYYY-MM-DD is needed');
  let day = dayOfDate(d);
  let minutes = minutesOf(parseTime(time, 'time', true));
  if (minutes === 1440) (day += 1), (minutes = 0);
  return resolve(z, day, day * DAY + minutes * MINUTE, pick === 'last');
}

// ---------------------------------------------------------------------------------
// Occurrences

interface Compiled {
  z: Zone;
  /** Bit (1 << weekday) per allowed start day, Monday = bit 0. */
  mask: number;
  startMin: number;
  /** End minute of the end day (0 when end is 24:00 — the end day is then the next one). */
  endMin: number;
  /** 0: the occurrence ends the day it starts; 1: the next day. */
  endDayOffset: number;
  fromDay: number;
  untilDay: number;
}

const COMPILED = Symbol('compiled window');
/** Compiled forms of windows that did not come from `parseWindow` (e.g. read back from JSON). */
const compiledWindows = new WeakMap<object, Compiled>();

function dayMask(days: readonly Weekday[]): number {
  let mask = 0;
  for (const d of days) mask |= DAY_BIT[d];
  return mask;
}
const DAY_BIT: Record<Weekday, number> = { mon: 1, tue: 2, wed: 4, thu: 8, fri: 16, sat: 32, sun: 64 };

function compile(w: Window): Compiled {
  const startMin = minutesOf(w.start);
  let endMin = minutesOf(w.end);
  let endDayOffset = endMin <= startMin ? 1 : 0;
  if (endMin === 1440) (endMin = 0), (endDayOffset = 1);
  return {
    z: zone(w.timeZone),
    mask: dayMask(w.days),
    startMin,
    endMin,
    endDayOffset,
    fromDay: w.from !== undefined ? dayOfDate(w.from) : -Infinity,
    untilDay: w.until !== undefined ? dayOfDate(w.until) : Infinity,
  };
}

/** Compiled form of a window; a window not made by `parseWindow` (e.g. read back from JSON) is validated first. */
function compiled(w: Window): Compiled {
  let c = (w as { [COMPILED]?: Compiled })[COMPILED] ?? compiledWindows.get(w);
  if (!c) {
    c = compile(parseWindow(w));
    compiledWindows.set(w, c);
  }
  return c;
}

/** The interval of the occurrence starting on local date `day`, or null (not a window day, or zero length). */
function occurrenceOn(c: Compiled, day: number): Interval | null {
  if (day < c.fromDay || day > c.untilDay || ((c.mask >> weekdayOf(day)) & 1) === 0) return null;
  const start = resolve(c.z, day, day * DAY + c.startMin * MINUTE, false);
  const endDay = day + c.endDayOffset;
  const end = resolve(c.z, endDay, endDay * DAY + c.endMin * MINUTE, true);
  return end > start ? { start, end } : null;
}

function checkRange(fromMs: number, toMs: number) {
  if (!Number.isFinite(fromMs) || !Number.isFinite(toMs)) throw badRequest('invalid_range', 'a time range needs finite instants');
}

// Local date of an instant is floor((t + offset) / DAY) with |offset| < 16 h, so an
// occurrence overlapping [from, to) starts on a local date in [⌊from/DAY⌋−2, ⌊to/DAY⌋+1].

/**
 * Every interval of the window that overlaps [fromMs, toMs), whole (not clipped), in order.
 * Intervals are half-open [start, end) in UTC epoch ms.
 */
export function occurrences(window: Window, fromMs: number, toMs: number): Interval[] {
  checkRange(fromMs, toMs);
  const out: Interval[] = [];
  if (!(toMs > fromMs)) return out;
  const c = compiled(window);
  const first = Math.max(Math.floor(fromMs / DAY) - 2, c.fromDay);
  const last = Math.min(Math.floor(toMs / DAY) + 1, c.untilDay);
  for (let day = first; day <= last; day++) {
    const o = occurrenceOn(c, day);
    if (o === null || o.end <= fromMs) continue;
    if (o.start >= toMs) break;
    out.push(o);
  }
  return out;
}

/** The intervals of several windows overlapping [fromMs, toMs), by start (then window index). */
export function allOccurrences(windows: readonly Window[], fromMs: number, toMs: number): Occurrence[] {
  const out: Occurrence[] = [];
  windows.forEach((w, windowIndex) => {
    for (const o of occurrences(w, fromMs, toMs)) out.push({ start: o.start, end: o.end, windowIndex });
  });
  return out.sort((a, b) => a.start - b.start || a.windowIndex - b.windowIndex);
}

/** The union of intervals: sorted, overlapping or touching (end = next start) intervals merged. */
export function mergeIntervals(intervals: readonly Interval[]): Interval[] {
  const sorted = intervals.filter((i) => i.end > i.start).sort((a, b) => a.start - b.start);
  const out: Interval[] = [];
  for (const i of sorted) {
    const top = out[out.length - 1];
    if (top && i.start <= top.end) top.end = Math.max(top.end, i.end);
    else out.push({ start: i.start, end: i.end });
  }
  return out;
}

/** When any of the windows is open within [fromMs, toMs): merged intervals, whole (not clipped). */
export function openIntervals(windows: readonly Window[], fromMs: number, toMs: number): Interval[] {
  return mergeIntervals(allOccurrences(windows, fromMs, toMs));
}

/** The occurrence of one window containing `t` (start ≤ t < end), or null. */
function containing(c: Compiled, t: number): Interval | null {
  const d = Math.floor(t / DAY);
  for (let day = d + 1; day >= d - 2; day--) {
    const o = occurrenceOn(c, day);
    if (o !== null && o.start <= t && t < o.end) return o;
  }
  return null;
}

/** Whether any of the windows is open at `nowMs` (intervals are half-open: open at start, closed at end). */
export function isOpen(windows: readonly Window[], nowMs: number): boolean {
  checkRange(nowMs, nowMs);
  return windows.some((w) => containing(compiled(w), nowMs) !== null);
}

/**
 * The end of the merged open interval containing `nowMs`: overlapping and touching
 * intervals of all windows (and consecutive ones of one window) count as one. Null when
 * closed at `nowMs`. The search stops at nowMs + horizonMs (default 366 days): if the
 * windows are still open there, that instant is returned (open at least until then).
 */
export function openUntil(windows: readonly Window[], nowMs: number, horizonMs = 366 * DAY): number | null {
  checkRange(nowMs, horizonMs);
  const cs = windows.map(compiled);
  const limit = nowMs + horizonMs;
  let t = nowMs;
  for (;;) {
    let end = t;
    for (const c of cs) {
      const o = containing(c, t);
      if (o !== null && o.end > end) end = o.end;
    }
    if (end === t) return t === nowMs ? null : t;
    if (end >= limit) return limit;
    t = end;
  }
}

/** The first occurrence of one window that ends after `t` (contains t or starts after it), or null. */
function firstEndingAfter(c: Compiled, t: number): Interval | null {
  const first = Math.max(Math.floor(t / DAY) - 2, c.fromDay);
  const last = Math.min(first + SEARCH_DAYS, c.untilDay);
  for (let day = first; day <= last; day++) {
    const o = occurrenceOn(c, day);
    if (o !== null && o.end > t) return o;
  }
  return null;
}

/**
 * When the windows are next open. If `nowMs` is inside an interval, that interval with
 * `open: true` (of several, the one ending last; ties: lowest window index). Otherwise
 * the interval with the earliest start after now (ties: lowest index), `open: false`.
 * Null when no window opens again (every `until` has passed).
 */
export function nextOpening(windows: readonly Window[], nowMs: number): Opening | null {
  checkRange(nowMs, nowMs);
  let best: Opening | null = null;
  for (let windowIndex = 0; windowIndex < windows.length; windowIndex++) {
    const c = compiled(windows[windowIndex]);
    let o = firstEndingAfter(c, nowMs);
    if (o === null) continue;
    // On a fall-back night two occurrences of one long window can overlap: take the later.
    if (o.start <= nowMs) o = containing(c, nowMs) ?? o;
    const cand: Opening = { start: o.start, end: o.end, windowIndex, open: o.start <= nowMs };
    if (best === null || (cand.open && !best.open) || (cand.open === best.open && (cand.open ? cand.end > best.end : cand.start < best.start))) best = cand;
  }
  return best;
}
