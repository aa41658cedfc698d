import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AppError } from '../../src/core/errors.ts';
import {
  WEEKDAYS,
  allOccurrences,
  isOpen,
  localToUtc,
  mergeIntervals,
  nextOpening,
  occurrences,
  openIntervals,
  openUntil,
  parseWindow,
  parseWindows,
  type Interval,
  type Window,
} from '../../src/schedule/windows.ts';

// Distribution windows (S0.1, #5 point 1; docs/schedules.md "Windows"). Every expected
// UTC instant below is written out by hand from the zone's published rules.

const at = (iso: string) => Date.parse(iso);
const H = 3_600_000;
const DAY = 24 * H;
const iv = (start: string, end: string): Interval => ({ start: at(start), end: at(end) });
const win = (spec: Record<string, unknown>) => parseWindow({ days: 'daily', timeZone: 'UTC', ...spec });
const code = (c: string) => (e: unknown) => {
  assert.ok(e instanceof AppError, `expected an AppError, got ${String(e)}`);
  assert.equal(e.code, c, e.message);
  assert.equal(e.status, 400);
  return true;
};

describe('parseWindow: normalising', () => {
  test('day shorthands expand, names merge, order is Monday…Sunday', () => {
    assert.deepEqual(win({ days: 'weekdays', start: '01:00', end: '05:00' }).days, ['mon', 'tue', 'wed', 'thu', 'fri']);
    assert.deepEqual(win({ days: 'weekends', start: '01:00', end: '05:00' }).days, ['sat', 'sun']);
    assert.deepEqual(win({ days: 'daily', start: '01:00', end: '05:00' }).days, WEEKDAYS);
    assert.deepEqual(win({ days: 'wed', start: '01:00', end: '05:00' }).days, ['wed']);
    assert.deepEqual(win({ days: ['sun', 'Mon', 'weekends', 'mon'], start: '01:00', end: '05:00' }).days, ['mon', 'sat', 'sun']);
    assert.deepEqual(win({ days: ['fri', 'weekdays'], start: '01:00', end: '05:00' }).days, ['mon', 'tue', 'wed', 'thu', 'fri']);
  });

  test('the result is frozen, plain JSON, and parses back to itself', () => {
    const w = parseWindow({
      days: ['mon'],
      start: '22:00',
      end: '06:00',
      timeZone: 'Europe/Berlin',
      from: '2026-01-01',
      until: '2026-12-31',
      capBytesPerSecond: 1_000_000,
    });
    assert.ok(Object.isFrozen(w) && Object.isFrozen(w.days));
    const json = JSON.parse(JSON.stringify(w));
    assert.deepEqual(json, {
      days: ['mon'],
      start: '22:00',
      end: '06:00',
      timeZone: 'Europe/Berlin',
      from: '2026-01-01',
      until: '2026-12-31',
      capBytesPerSecond: 1_000_000,
    });
    assert.deepEqual(parseWindow(w), w);
    assert.deepEqual(parseWindow(json), w);
  });

  test('optional fields may be null or absent; the zone name keeps its spelling, case corrected', () => {
    const w = parseWindow({ days: 'daily', start: '00:00', end: '24:00', timeZone: 'europe/berlin', from: null, until: null, capBytesPerSecond: null });
    assert.deepEqual({ ...w }, { days: WEEKDAYS, start: '00:00', end: '24:00', timeZone: 'Europe/Berlin' });
    assert.equal(win({ start: '01:00', end: '02:00', timeZone: 'utc' }).timeZone, 'UTC');
    for (const z of ['Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe', 'UTC', 'Pacific/Chatham']) {
      assert.equal(win({ start: '01:00', end: '02:00', timeZone: z }).timeZone, z);
    }
  });

  test('edge values that are valid', () => {
    assert.equal(win({ start: '23:59', end: '00:00' }).end, '00:00');
    assert.equal(win({ start: '00:00', end: '23:59' }).start, '00:00');
    assert.equal(win({ start: '00:00', end: '24:00' }).end, '24:00');
    assert.equal(win({ start: '01:00', end: '02:00', from: '2026-03-01', until: '2026-03-01' }).until, '2026-03-01');
    assert.equal(win({ start: '01:00', end: '02:00', from: '2024-02-29' }).from, '2024-02-29');
    assert.equal(win({ start: '01:00', end: '02:00', capBytesPerSecond: 1 }).capBytesPerSecond, 1);
    assert.equal(win({ start: '01:00', end: '02:00', capBytesPerSecond: Number.MAX_SAFE_INTEGER }).capBytesPerSecond, Number.MAX_SAFE_INTEGER);
  });
});

describe('parseWindow: refusals', () => {
  const ok = { days: ['mon'], start: '01:00', end: '05:00', timeZone: 'Europe/Berlin' };

  test('invalid_window: not an object, unknown or missing fields', () => {
    for (const v of [null, undefined, 5, 'mon 01:00-05:00', [ok], true]) assert.throws(() => parseWindow(v), code('invalid_window'), JSON.stringify(v));
    assert.throws(() => parseWindow({ ...ok, untill: '2026-01-01' }), code('invalid_window'));
    for (const k of ['days', 'start', 'end', 'timeZone'] as const) {
      const { [k]: _, ...rest } = ok;
      assert.throws(() => parseWindow(rest), code('invalid_window'), k);
    }
  });

  test('invalid_window: days', () => {
    for (const days of [[], 'funday', ['mon', 'funday'], 5, [1], null, ['monday'], ['weekday'], {}, '']) {
      assert.throws(() => parseWindow({ ...ok, days }), code('invalid_window'), JSON.stringify(days));
    }
  });

  test('invalid_window: times', () => {
    for (const start of ['1:00', '01:0', '24:00', '12:60', '25:00', '-1:00', '0100', '01:00:00', ' 01:00', 100, null]) {
      assert.throws(() => parseWindow({ ...ok, start }), code('invalid_window'), `start ${JSON.stringify(start)}`);
    }
    for (const end of ['24:01', '25:00', '5:00', '12:60', '', 5]) {
      assert.throws(() => parseWindow({ ...ok, end }), code('invalid_window'), `end ${JSON.stringify(end)}`);
    }
  });

  test('invalid_window: start equal to end', () => {
    assert.throws(() => parseWindow({ ...ok, start: '03:00', end: '03:00' }), code('invalid_window'));
    assert.throws(() => parseWindow({ ...ok, start: '00:00', end: '00:00' }), code('invalid_window'));
  });

  test('invalid_window: dates, and until before from', () => {
    for (const d of ['2026-02-30', '2025-02-29', '2026-13-01', '2026-00-10', '2026-01-00', '2026-1-1', '20260101', '0000-01-01', 20260101, '2026-04-31']) {
      assert.throws(() => parseWindow({ ...ok, from: d }), code('invalid_window'), `from ${JSON.stringify(d)}`);
      assert.throws(() => parseWindow({ ...ok, until: d }), code('invalid_window'), `until ${JSON.stringify(d)}`);
    }
    assert.throws(() => parseWindow({ ...ok, from: '2026-03-02', until: '2026-03-01' }), code('invalid_window'));
  });

  test('unknown_time_zone; a zone that is not a string is a bad shape', () => {
    for (const z of ['Mars/Olympus', '', 'Europe/Berln', 'Etc/Unknown', '+01:00', 'Europe/Berlin ']) {
      assert.throws(() => parseWindow({ ...ok, timeZone: z }), code('unknown_time_zone'), JSON.stringify(z));
    }
    for (const z of [5, null, ['Europe/Berlin']]) assert.throws(() => parseWindow({ ...ok, timeZone: z }), code('invalid_window'));
  });

  test('invalid_cap', () => {
    for (const cap of [0, -1, 1.5, '1000', Number.NaN, Infinity, 2 ** 53, true]) {
      assert.throws(() => parseWindow({ ...ok, capBytesPerSecond: cap }), code('invalid_cap'), String(cap));
    }
  });

  test('the error names the field', () => {
    assert.throws(
      () => parseWindow({ ...ok, end: '01:00' }),
      (e: unknown) => e instanceof AppError && e.details?.field === 'end',
    );
    assert.throws(
      () => parseWindow({ ...ok, timeZone: 'Mars/Olympus' }),
      (e: unknown) => e instanceof AppError && e.details?.field === 'timeZone' && /Mars\/Olympus/.test(e.message),
    );
  });

  test('parseWindows: a non-empty list; a refusal names the index', () => {
    assert.equal(parseWindows([ok, { ...ok, days: 'weekends' }]).length, 2);
    assert.throws(() => parseWindows([]), code('invalid_window'));
    assert.throws(() => parseWindows(ok), code('invalid_window'));
    assert.throws(
      () => parseWindows([ok, { ...ok, capBytesPerSecond: 0 }]),
      (e: unknown) => e instanceof AppError && e.code === 'invalid_cap' && e.details?.index === 1 && e.message.startsWith('window 1:'),
    );
  });
});

describe('occurrences: plain weeks', () => {
  const weekStart = at('2026-06-01T00:00:00Z'); // a Monday
  const weekEnd = weekStart + 7 * DAY;

  test('UTC weekdays 09:00–17:00', () => {
    const w = win({ days: 'weekdays', start: '09:00', end: '17:00' });
    assert.deepEqual(occurrences(w, weekStart, weekEnd), [
      iv('2026-06-01T09:00Z', '2026-06-01T17:00Z'),
      iv('2026-06-02T09:00Z', '2026-06-02T17:00Z'),
      iv('2026-06-03T09:00Z', '2026-06-03T17:00Z'),
      iv('2026-06-04T09:00Z', '2026-06-04T17:00Z'),
      iv('2026-06-05T09:00Z', '2026-06-05T17:00Z'),
    ]);
  });

  test('overlap with the range decides, intervals come whole; [from, to) is half-open', () => {
    const w = win({ days: 'weekdays', start: '09:00', end: '17:00' });
    // Starting mid-interval returns the whole interval.
    assert.deepEqual(occurrences(w, at('2026-06-01T12:00Z'), at('2026-06-01T13:00Z')), [iv('2026-06-01T09:00Z', '2026-06-01T17:00Z')]);
    // A range ending at a start, or starting at an end, does not overlap it.
    assert.deepEqual(occurrences(w, at('2026-06-01T00:00Z'), at('2026-06-01T09:00Z')), []);
    assert.deepEqual(occurrences(w, at('2026-06-01T17:00Z'), at('2026-06-02T09:00Z')), []);
    assert.deepEqual(occurrences(w, at('2026-06-01T16:59:59.999Z'), at('2026-06-01T17:00Z')), [iv('2026-06-01T09:00Z', '2026-06-01T17:00Z')]);
    // Empty or reversed range.
    assert.deepEqual(occurrences(w, weekEnd, weekStart), []);
    assert.deepEqual(occurrences(w, weekStart, weekStart), []);
    assert.throws(() => occurrences(w, Number.NaN, weekEnd), code('invalid_range'));
    assert.throws(() => occurrences(w, weekStart, Infinity), code('invalid_range'));
  });

  test('a window crossing midnight runs into the next day; days are the days it starts', () => {
    const w = win({ days: ['fri', 'sun'], start: '22:00', end: '02:30' });
    assert.deepEqual(occurrences(w, weekStart, weekEnd), [
      iv('2026-05-31T22:00Z', '2026-06-01T02:30Z'), // the Sunday before reaches into Monday
      iv('2026-06-05T22:00Z', '2026-06-06T02:30Z'), // Fri → Sat
      iv('2026-06-07T22:00Z', '2026-06-08T02:30Z'), // Sun → Mon, overlapping the week's end
    ]);
    assert.deepEqual(occurrences(w, weekStart, weekStart + H), [iv('2026-05-31T22:00Z', '2026-06-01T02:30Z')]);
    // end 00:00 is midnight after the start; end 24:00 is midnight of the same day.
    assert.deepEqual(occurrences(win({ days: 'mon', start: '20:00', end: '00:00' }), weekStart, weekEnd), [iv('2026-06-01T20:00Z', '2026-06-02T00:00Z')]);
    assert.deepEqual(occurrences(win({ days: 'mon', start: '00:00', end: '24:00' }), weekStart, weekEnd), [iv('2026-06-01T00:00Z', '2026-06-02T00:00Z')]);
    // A window a minute short of a day.
    assert.deepEqual(occurrences(win({ days: 'tue', start: '06:00', end: '05:59' }), weekStart, weekEnd), [iv('2026-06-02T06:00Z', '2026-06-03T05:59Z')]);
  });

  test('Asia/Kolkata (UTC+5:30): local days, not UTC days', () => {
    const w = win({ days: 'mon', start: '01:00', end: '05:00', timeZone: 'Asia/Kolkata' });
    // Monday 01:00 IST is Sunday 19:30 UTC.
    assert.deepEqual(occurrences(w, weekStart, weekEnd), [iv('2026-06-07T19:30Z', '2026-06-07T23:30Z')]);
    assert.deepEqual(occurrences(w, weekStart - DAY, weekEnd), [iv('2026-05-31T19:30Z', '2026-05-31T23:30Z'), iv('2026-06-07T19:30Z', '2026-06-07T23:30Z')]);
    const night = win({ days: 'fri', start: '22:00', end: '02:00', timeZone: 'Asia/Kolkata' });
    assert.deepEqual(occurrences(night, weekStart, weekEnd), [iv('2026-06-05T16:30Z', '2026-06-05T20:30Z')]);
  });

  test('Australia/Lord_Howe outside DST (UTC+10:30) and Pacific/Chatham (UTC+12:45)', () => {
    const w = win({ days: 'weekends', start: '01:00', end: '03:00', timeZone: 'Australia/Lord_Howe' });
    assert.deepEqual(occurrences(w, weekStart, weekEnd), [iv('2026-06-05T14:30Z', '2026-06-05T16:30Z'), iv('2026-06-06T14:30Z', '2026-06-06T16:30Z')]);
    const c = win({ days: 'wed', start: '12:45', end: '13:00', timeZone: 'Pacific/Chatham' });
    assert.deepEqual(occurrences(c, weekStart, weekEnd), [iv('2026-06-03T00:00Z', '2026-06-03T00:15Z')]);
  });

  test('America/New_York in summer (UTC−4) crossing midnight into the next UTC day', () => {
    const w = win({ days: 'sat', start: '21:00', end: '01:00', timeZone: 'America/New_York' });
    assert.deepEqual(occurrences(w, weekStart, weekEnd), [iv('2026-06-07T01:00Z', '2026-06-07T05:00Z')]);
  });
});

describe('occurrences: from and until are inclusive local dates of the start', () => {
  test('UTC: three days', () => {
    const w = win({ start: '10:00', end: '11:00', from: '2026-06-03', until: '2026-06-05' });
    assert.deepEqual(occurrences(w, at('2026-06-01T00:00Z'), at('2026-06-10T00:00Z')), [
      iv('2026-06-03T10:00Z', '2026-06-03T11:00Z'),
      iv('2026-06-04T10:00Z', '2026-06-04T11:00Z'),
      iv('2026-06-05T10:00Z', '2026-06-05T11:00Z'),
    ]);
  });

  test('the last occurrence runs whole past midnight of until', () => {
    const w = win({ start: '22:00', end: '02:00', from: '2026-06-03', until: '2026-06-04' });
    assert.deepEqual(occurrences(w, at('2026-06-01T00:00Z'), at('2026-06-10T00:00Z')), [
      iv('2026-06-03T22:00Z', '2026-06-04T02:00Z'),
      iv('2026-06-04T22:00Z', '2026-06-05T02:00Z'),
    ]);
  });

  test('dates are local: in Kolkata the first occurrence starts on the UTC day before from', () => {
    const w = win({ start: '01:00', end: '02:00', timeZone: 'Asia/Kolkata', from: '2026-06-03', until: '2026-06-03' });
    assert.deepEqual(occurrences(w, at('2026-06-01T00:00Z'), at('2026-06-10T00:00Z')), [iv('2026-06-02T19:30Z', '2026-06-02T20:30Z')]);
  });

  test('a from/until range with none of the window days has no occurrences', () => {
    const w = win({ days: 'sun', start: '10:00', end: '11:00', from: '2026-06-01', until: '2026-06-06' });
    assert.deepEqual(occurrences(w, at('2026-05-01T00:00Z'), at('2026-07-01T00:00Z')), []);
  });
});

describe('occurrences: daylight-saving transitions', () => {
  // Europe/Berlin 2026: 03-29 02:00 CET → 03:00 CEST (01:00Z); 10-25 03:00 CEST → 02:00 CET (01:00Z).
  // America/New_York 2026: 03-08 02:00 EST → 03:00 EDT (07:00Z); 11-01 02:00 EDT → 01:00 EST (06:00Z).
  const day = (w: Window, date: string) => occurrences(w, at(`${date}T00:00Z`) - 12 * H, at(`${date}T00:00Z`) + 36 * H).filter((o) => o.start >= at(`${date}T00:00Z`) - 12 * H && o.start < at(`${date}T00:00Z`) + 12 * H);

  test('Europe/Berlin spring forward: 01:00–05:00 is 3 real hours', () => {
    const w = win({ start: '01:00', end: '05:00', timeZone: 'Europe/Berlin' });
    assert.deepEqual(occurrences(w, at('2026-03-28T00:00Z'), at('2026-03-30T12:00Z')), [
      iv('2026-03-28T00:00Z', '2026-03-28T04:00Z'), // CET, 4 h
      iv('2026-03-29T00:00Z', '2026-03-29T03:00Z'), // 01:00 CET → 05:00 CEST, 3 h
      iv('2026-03-29T23:00Z', '2026-03-30T03:00Z'), // CEST, 4 h
    ]);
  });

  test('Europe/Berlin fall back: 01:00–05:00 is 5 real hours', () => {
    const w = win({ start: '01:00', end: '05:00', timeZone: 'Europe/Berlin' });
    assert.deepEqual(occurrences(w, at('2026-10-24T00:00Z'), at('2026-10-26T12:00Z')), [
      iv('2026-10-23T23:00Z', '2026-10-24T03:00Z'), // CEST, 4 h
      iv('2026-10-24T23:00Z', '2026-10-25T04:00Z'), // 01:00 CEST → 05:00 CET, 5 h
      iv('2026-10-26T00:00Z', '2026-10-26T04:00Z'), // CET, 4 h
    ]);
  });

  test('Europe/Berlin: a start in the gap opens at the first instant after it (03:00 CEST)', () => {
    const w = win({ start: '02:30', end: '04:00', timeZone: 'Europe/Berlin' });
    assert.deepEqual(day(w, '2026-03-29'), [iv('2026-03-29T01:00Z', '2026-03-29T02:00Z')]);
    assert.deepEqual(day(w, '2026-03-28'), [iv('2026-03-28T01:30Z', '2026-03-28T03:00Z')]);
    // An end in the gap is the same instant.
    const e = win({ start: '01:00', end: '02:30', timeZone: 'Europe/Berlin' });
    assert.deepEqual(day(e, '2026-03-29'), [iv('2026-03-29T00:00Z', '2026-03-29T01:00Z')]);
    // Both ends in the gap: no occurrence that night, the nights around are untouched.
    const g = win({ start: '02:00', end: '02:59', timeZone: 'Europe/Berlin' });
    assert.deepEqual(occurrences(g, at('2026-03-28T00:00Z'), at('2026-03-31T00:00Z')), [
      iv('2026-03-28T01:00Z', '2026-03-28T01:59Z'),
      iv('2026-03-30T00:00Z', '2026-03-30T00:59Z'),
    ]);
  });

  test('Europe/Berlin: a repeated time is the first 02:30 as a start, the last as an end', () => {
    const s = win({ start: '02:30', end: '04:00', timeZone: 'Europe/Berlin' });
    assert.deepEqual(day(s, '2026-10-25'), [iv('2026-10-25T00:30Z', '2026-10-25T03:00Z')]); // 02:30 CEST → 04:00 CET
    const e = win({ start: '01:00', end: '02:30', timeZone: 'Europe/Berlin' });
    assert.deepEqual(day(e, '2026-10-25'), [iv('2026-10-24T23:00Z', '2026-10-25T01:30Z')]); // 01:00 CEST → 02:30 CET
    const both = win({ start: '02:10', end: '02:50', timeZone: 'Europe/Berlin' });
    assert.deepEqual(day(both, '2026-10-25'), [iv('2026-10-25T00:10Z', '2026-10-25T01:50Z')]); // 1 h 40 real
  });

  test('Europe/Berlin: a night window across each transition', () => {
    const w = win({ days: 'sat', start: '22:00', end: '06:00', timeZone: 'Europe/Berlin' });
    assert.deepEqual(occurrences(w, at('2026-03-28T00:00Z'), at('2026-03-30T00:00Z')), [iv('2026-03-28T21:00Z', '2026-03-29T04:00Z')]); // 7 h
    assert.deepEqual(occurrences(w, at('2026-10-24T00:00Z'), at('2026-10-26T00:00Z')), [iv('2026-10-24T20:00Z', '2026-10-25T05:00Z')]); // 9 h
  });

  test('Europe/Berlin: a nearly-24-hour window overlaps itself on the fall-back night', () => {
    const w = win({ start: '02:30', end: '02:00', timeZone: 'Europe/Berlin' });
    const list = occurrences(w, at('2026-10-24T12:00Z'), at('2026-10-25T12:00Z'));
    assert.deepEqual(list, [
      iv('2026-10-24T00:30Z', '2026-10-25T01:00Z'), // 02:30 CEST → the last 02:00 (CET)
      iv('2026-10-25T00:30Z', '2026-10-26T01:00Z'), // the first 02:30 (CEST) → 02:00 CET
    ]);
    assert.deepEqual(openIntervals([w], at('2026-10-24T12:00Z'), at('2026-10-25T12:00Z')), [iv('2026-10-24T00:30Z', '2026-10-26T01:00Z')]);
    assert.equal(openUntil([w], at('2026-10-25T00:45Z')), at('2026-10-26T01:00Z'));
    assert.deepEqual(nextOpening([w], at('2026-10-25T00:45Z')), { ...iv('2026-10-25T00:30Z', '2026-10-26T01:00Z'), windowIndex: 0, open: true });
  });

  test('America/New_York spring forward: 3 real hours; 02:30 opens at 03:00 EDT', () => {
    const w = win({ start: '01:00', end: '05:00', timeZone: 'America/New_York' });
    assert.deepEqual(occurrences(w, at('2026-03-07T00:00Z'), at('2026-03-09T12:00Z')), [
      iv('2026-03-07T06:00Z', '2026-03-07T10:00Z'), // EST
      iv('2026-03-08T06:00Z', '2026-03-08T09:00Z'), // 01:00 EST → 05:00 EDT
      iv('2026-03-09T05:00Z', '2026-03-09T09:00Z'), // EDT
    ]);
    const g = win({ start: '02:30', end: '03:30', timeZone: 'America/New_York' });
    assert.deepEqual(day(g, '2026-03-08'), [iv('2026-03-08T07:00Z', '2026-03-08T07:30Z')]);
  });

  test('America/New_York fall back: 5 real hours; the repeated 01:30 is first as a start, last as an end', () => {
    const w = win({ start: '01:00', end: '05:00', timeZone: 'America/New_York' });
    assert.deepEqual(occurrences(w, at('2026-10-31T00:00Z'), at('2026-11-02T12:00Z')), [
      iv('2026-10-31T05:00Z', '2026-10-31T09:00Z'), // EDT
      iv('2026-11-01T05:00Z', '2026-11-01T10:00Z'), // 01:00 EDT → 05:00 EST
      iv('2026-11-02T06:00Z', '2026-11-02T10:00Z'), // EST
    ]);
    assert.deepEqual(day(win({ start: '01:30', end: '03:00', timeZone: 'America/New_York' }), '2026-11-01'), [iv('2026-11-01T05:30Z', '2026-11-01T08:00Z')]);
    assert.deepEqual(day(win({ start: '00:00', end: '01:30', timeZone: 'America/New_York' }), '2026-11-01'), [iv('2026-11-01T04:00Z', '2026-11-01T06:30Z')]);
  });

  test('Australia/Lord_Howe: the 30-minute shift, both ways', () => {
    // 2026-04-05 02:00 LHDT (+11) → 01:30 LHST (+10:30), at 04-04T15:00Z: 01:30–02:00 repeats.
    const a = win({ start: '01:45', end: '03:00', timeZone: 'Australia/Lord_Howe' });
    assert.deepEqual(day(a, '2026-04-05'), [iv('2026-04-04T14:45Z', '2026-04-04T16:30Z')]);
    const b = win({ start: '00:00', end: '01:45', timeZone: 'Australia/Lord_Howe' });
    assert.deepEqual(day(b, '2026-04-05'), [iv('2026-04-04T13:00Z', '2026-04-04T15:15Z')]);
    // 2026-10-04 02:00 LHST (+10:30) → 02:30 LHDT (+11), at 10-03T15:30Z: 02:00–02:30 is skipped.
    const c = win({ start: '01:00', end: '03:00', timeZone: 'Australia/Lord_Howe' });
    assert.deepEqual(day(c, '2026-10-04'), [iv('2026-10-03T14:30Z', '2026-10-03T16:00Z')]); // 1 h 30 real
    const d = win({ start: '02:15', end: '03:00', timeZone: 'Australia/Lord_Howe' });
    assert.deepEqual(day(d, '2026-10-04'), [iv('2026-10-03T15:30Z', '2026-10-03T16:00Z')]);
  });

  test('localToUtc applies the same rules', () => {
    assert.equal(localToUtc('Europe/Berlin', '2026-03-29', '02:30'), at('2026-03-29T01:00Z'));
    assert.equal(localToUtc('Europe/Berlin', '2026-03-29', '02:30', 'last'), at('2026-03-29T01:00Z'));
    assert.equal(localToUtc('Europe/Berlin', '2026-10-25', '02:30'), at('2026-10-25T00:30Z'));
    assert.equal(localToUtc('Europe/Berlin', '2026-10-25', '02:30', 'last'), at('2026-10-25T01:30Z'));
    assert.equal(localToUtc('Europe/Berlin', '2026-10-25', '24:00'), at('2026-10-25T23:00Z'));
    assert.equal(localToUtc('Asia/Kolkata', '2026-01-01', '00:00'), at('2025-12-31T18:30Z'));
    assert.throws(() => localToUtc('Mars/Olympus', '2026-01-01', '00:00'), code('unknown_time_zone'));
    assert.throws(() => localToUtc('UTC', '2026-02-30', '00:00'), code('invalid_window'));
  });
});

describe('isOpen, openUntil, nextOpening', () => {
  const office = win({ days: 'weekdays', start: '09:00', end: '12:00' });
  const afternoon = win({ days: 'weekdays', start: '12:00', end: '15:00' });
  const late = win({ days: 'weekdays', start: '14:00', end: '18:00' });

  test('isOpen: start included, end excluded; any window counts', () => {
    assert.equal(isOpen([office], at('2026-06-01T08:59:59.999Z')), false);
    assert.equal(isOpen([office], at('2026-06-01T09:00Z')), true);
    assert.equal(isOpen([office], at('2026-06-01T11:59:59.999Z')), true);
    assert.equal(isOpen([office], at('2026-06-01T12:00Z')), false);
    assert.equal(isOpen([office, afternoon], at('2026-06-01T12:00Z')), true);
    assert.equal(isOpen([office], at('2026-06-06T10:00Z')), false); // Saturday
    assert.equal(isOpen([], at('2026-06-01T10:00Z')), false);
    // Crossing midnight, seen from the next day.
    assert.equal(isOpen([win({ days: 'sun', start: '22:00', end: '02:00' })], at('2026-06-01T01:00Z')), true);
  });

  test('openUntil: merges touching and overlapping intervals of several windows', () => {
    assert.equal(openUntil([office], at('2026-06-01T10:00Z')), at('2026-06-01T12:00Z'));
    assert.equal(openUntil([office, afternoon], at('2026-06-01T10:00Z')), at('2026-06-01T15:00Z')); // touching
    assert.equal(openUntil([office, afternoon, late], at('2026-06-01T10:00Z')), at('2026-06-01T18:00Z')); // overlapping
    assert.equal(openUntil([late, office, afternoon], at('2026-06-01T14:30Z')), at('2026-06-01T18:00Z'));
    assert.equal(openUntil([office, late], at('2026-06-01T10:00Z')), at('2026-06-01T12:00Z')); // a gap stops it
    assert.equal(openUntil([office], at('2026-06-01T12:00Z')), null);
    assert.equal(openUntil([office], at('2026-06-06T10:00Z')), null);
  });

  test('openUntil: consecutive occurrences of one window chain; the horizon caps an endless one', () => {
    const allWeekend = win({ days: 'weekends', start: '00:00', end: '24:00' });
    assert.equal(openUntil([allWeekend], at('2026-06-06T10:00Z')), at('2026-06-08T00:00Z'));
    const nights = win({ days: 'daily', start: '18:00', end: '09:00' });
    assert.equal(openUntil([nights, office, afternoon], at('2026-06-05T20:00Z')), at('2026-06-06T09:00Z')); // Saturday 09:00–18:00 is closed
    assert.equal(openUntil([nights, allWeekend, office, afternoon], at('2026-06-05T20:00Z')), at('2026-06-08T15:00Z')); // Fri night … Mon 15:00
    const always = win({ start: '00:00', end: '24:00' });
    assert.equal(openUntil([always], at('2026-06-01T10:00Z')), at('2026-06-01T10:00Z') + 366 * DAY);
    assert.equal(openUntil([always], at('2026-06-01T10:00Z'), 3 * DAY), at('2026-06-04T10:00Z'));
    const bounded = win({ start: '00:00', end: '24:00', until: '2026-06-20' });
    assert.equal(openUntil([bounded], at('2026-06-01T10:00Z')), at('2026-06-21T00:00Z'));
  });

  test('openUntil across a DST change, in local time', () => {
    const w = win({ days: 'weekends', start: '00:00', end: '24:00', timeZone: 'Europe/Berlin' });
    // Sat 2026-03-28 00:00 CET … Mon 00:00 CEST: 47 real hours.
    assert.equal(openUntil([w], at('2026-03-28T12:00Z')), at('2026-03-29T22:00Z'));
  });

  test('nextOpening: the current interval when open, else the earliest start', () => {
    assert.deepEqual(nextOpening([office], at('2026-06-01T10:00Z')), { ...iv('2026-06-01T09:00Z', '2026-06-01T12:00Z'), windowIndex: 0, open: true });
    assert.deepEqual(nextOpening([office], at('2026-06-01T12:00Z')), { ...iv('2026-06-02T09:00Z', '2026-06-02T12:00Z'), windowIndex: 0, open: false });
    assert.deepEqual(nextOpening([office], at('2026-06-01T09:00Z')), { ...iv('2026-06-01T09:00Z', '2026-06-01T12:00Z'), windowIndex: 0, open: true });
    assert.deepEqual(nextOpening([office], at('2026-06-05T13:00Z')), { ...iv('2026-06-08T09:00Z', '2026-06-08T12:00Z'), windowIndex: 0, open: false }); // over the weekend
    assert.deepEqual(nextOpening([late, office], at('2026-06-01T07:00Z')), { ...iv('2026-06-01T09:00Z', '2026-06-01T12:00Z'), windowIndex: 1, open: false });
    // Open in two windows: the one ending last.
    assert.deepEqual(nextOpening([afternoon, late], at('2026-06-01T14:30Z')), { ...iv('2026-06-01T14:00Z', '2026-06-01T18:00Z'), windowIndex: 1, open: true });
    // Ties go to the lowest index.
    assert.equal(nextOpening([office, office], at('2026-06-01T07:00Z'))?.windowIndex, 0);
    assert.equal(nextOpening([], at('2026-06-01T07:00Z')), null);
  });

  test('nextOpening: from in the future, until in the past', () => {
    const later = win({ days: 'weekdays', start: '09:00', end: '12:00', from: '2027-01-04' });
    assert.deepEqual(nextOpening([later], at('2026-06-01T10:00Z')), { ...iv('2027-01-04T09:00Z', '2027-01-04T12:00Z'), windowIndex: 0, open: false });
    const over = win({ days: 'weekdays', start: '09:00', end: '12:00', until: '2026-05-29' });
    assert.equal(nextOpening([over], at('2026-06-01T10:00Z')), null);
    assert.deepEqual(nextOpening([over, office], at('2026-06-01T07:00Z'))?.windowIndex, 1);
    // The last occurrence is still current.
    const lastNight = win({ start: '22:00', end: '02:00', until: '2026-05-31' });
    assert.deepEqual(nextOpening([lastNight], at('2026-06-01T01:00Z')), { ...iv('2026-05-31T22:00Z', '2026-06-01T02:00Z'), windowIndex: 0, open: true });
    assert.equal(nextOpening([lastNight], at('2026-06-01T02:00Z')), null);
  });

  test('nextOpening: a window starting in the spring-forward gap', () => {
    const w = win({ days: 'sun', start: '02:30', end: '04:00', timeZone: 'Europe/Berlin' });
    assert.deepEqual(nextOpening([w], at('2026-03-28T12:00Z')), { ...iv('2026-03-29T01:00Z', '2026-03-29T02:00Z'), windowIndex: 0, open: false });
  });

  test('allOccurrences, openIntervals and mergeIntervals', () => {
    const from = at('2026-06-01T00:00Z');
    const to = at('2026-06-02T00:00Z');
    assert.deepEqual(allOccurrences([late, office, afternoon], from, to), [
      { ...iv('2026-06-01T09:00Z', '2026-06-01T12:00Z'), windowIndex: 1 },
      { ...iv('2026-06-01T12:00Z', '2026-06-01T15:00Z'), windowIndex: 2 },
      { ...iv('2026-06-01T14:00Z', '2026-06-01T18:00Z'), windowIndex: 0 },
    ]);
    assert.deepEqual(openIntervals([late, office, afternoon], from, to), [iv('2026-06-01T09:00Z', '2026-06-01T18:00Z')]);
    assert.deepEqual(openIntervals([office, late], from, to), [iv('2026-06-01T09:00Z', '2026-06-01T12:00Z'), iv('2026-06-01T14:00Z', '2026-06-01T18:00Z')]);
    assert.deepEqual(
      mergeIntervals([
        { start: 10, end: 20 },
        { start: 0, end: 5 },
        { start: 20, end: 25 },
        { start: 12, end: 15 },
        { start: 30, end: 30 },
        { start: 26, end: 27 },
      ]),
      [
        { start: 0, end: 5 },
        { start: 10, end: 25 },
        { start: 26, end: 27 },
      ],
    );
  });

  test('windows read back from JSON (not made by parseWindow) are validated and work', () => {
    const stored = JSON.parse(JSON.stringify(office)) as Window;
    assert.equal(isOpen([stored], at('2026-06-01T10:00Z')), true);
    assert.deepEqual(occurrences(stored, at('2026-06-01T00:00Z'), at('2026-06-02T00:00Z')), [iv('2026-06-01T09:00Z', '2026-06-01T12:00Z')]);
    const broken = { ...stored, timeZone: 'Mars/Olympus' } as Window;
    assert.throws(() => isOpen([broken], at('2026-06-01T10:00Z')), code('unknown_time_zone'));
  });
});

// ---------------------------------------------------------------------------------
// Properties, checked against Intl directly (not the module's conversion).

const ZONES = [
  'UTC',
  'Europe/Berlin',
  'America/New_York',
  'Asia/Kolkata',
  'Australia/Lord_Howe',
  'Pacific/Chatham',
  'America/St_Johns',
  'America/Santiago', // changes at local midnight: 00:00 is skipped on some days
  'Asia/Tehran',
];

const formats = new Map<string, Intl.DateTimeFormat>();
/** The local wall clock of an instant: date, HH:MM, weekday, and the wall clock as ms since 1970. */
function local(timeZone: string, t: number) {
  let f = formats.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', weekday: 'short', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
    formats.set(timeZone, f);
  }
  const p = Object.fromEntries(f.formatToParts(t).map((x) => [x.type, x.value]));
  const date = `${p.year}-${p.month}-${p.day}`;
  const hm = `${p.hour}:${p.minute}`;
  const wall = Date.parse(`${date}T${hm}:${p.second}Z`) + (t % 1000 + 1000) % 1000;
  return { date, hm, weekday: p.weekday.toLowerCase(), wall };
}

const hhmm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;

/** Local minutes in or next to the skipped and repeated hours of the zones above. */
const NEAR_CHANGES = [0, 15, 30, 45, 60, 75, 90, 105, 120, 135, 150, 165, 179, 180, 195, 225, 1380, 1410, 1425];

const windowArb = fc
  .record({
    days: fc.subarray([...WEEKDAYS], { minLength: 1 }),
    start: fc.oneof(fc.integer({ min: 0, max: 1439 }), fc.constantFrom(...NEAR_CHANGES)),
    end: fc.oneof(fc.integer({ min: 0, max: 1440 }), fc.constantFrom(...NEAR_CHANGES, 1440)),
    timeZone: fc.constantFrom(...ZONES),
    from: fc.option(fc.integer({ min: 0, max: 400 }), { nil: undefined }),
    span: fc.option(fc.integer({ min: 0, max: 120 }), { nil: undefined }),
  })
  .filter((r) => r.start !== r.end)
  .map((r) => {
    const date = (d: number) => new Date(at('2025-12-01T00:00Z') + d * DAY).toISOString().slice(0, 10);
    return parseWindow({
      days: r.days,
      start: hhmm(r.start),
      end: hhmm(r.end),
      timeZone: r.timeZone,
      ...(r.from !== undefined ? { from: date(r.from) } : {}),
      ...(r.from !== undefined && r.span !== undefined ? { until: date(r.from + r.span) } : {}),
    });
  });

// 2026 UTC-offset changes of the zones above (a bias for the instants, so exactness is not needed).
const CHANGES: Record<string, string[]> = {
  'Europe/Berlin': ['2026-03-29T01:00Z', '2026-10-25T01:00Z'],
  'America/New_York': ['2026-03-08T07:00Z', '2026-11-01T06:00Z'],
  'Australia/Lord_Howe': ['2026-04-04T15:00Z', '2026-10-03T15:30Z'],
  'Pacific/Chatham': ['2026-04-04T14:00Z', '2026-09-26T14:00Z'],
  'America/St_Johns': ['2026-03-08T05:30Z', '2026-11-01T04:30Z'],
  'America/Santiago': ['2026-04-05T03:00Z', '2026-09-06T04:00Z'],
};

/** A window and an instant: anywhere from 2025-12-01 to 2027-02-01, or within 30 h of one of its zone's changes. */
const windowAndInstant = windowArb.chain((w) =>
  fc.tuple(
    fc.constant(w),
    fc.oneof(
      fc.integer({ min: at('2025-12-01T00:00Z'), max: at('2027-02-01T00:00Z') }),
      fc.tuple(fc.constantFrom(...(CHANGES[w.timeZone] ?? ['2026-06-01T00:00Z']).map(at)), fc.integer({ min: -30 * H, max: 30 * H })).map(([t, d]) => t + d),
    ),
  ),
);

test('property: isOpen(t) agrees with the occurrences around t containing t', () => {
  fc.assert(
    fc.property(windowAndInstant, ([w, t]) => {
      const around = occurrences(w, t - 3 * DAY, t + 3 * DAY);
      const inside = around.some((o) => o.start <= t && t < o.end);
      assert.equal(isOpen([w], t), inside);
      assert.equal(occurrences(w, t, t + 1).length > 0, inside);
      assert.equal(openUntil([w], t) !== null, inside);
      const next = nextOpening([w], t);
      if (inside) assert.equal(next?.open, true);
      else if (next) assert.ok(next.start > t && !next.open && !isOpen([w], next.start - 1) && isOpen([w], next.start));
    }),
    { numRuns: 1000 },
  );
});

test('property: occurrences start and end at the window times in local wall-clock time, except where those do not exist', () => {
  fc.assert(
    fc.property(windowAndInstant, ([w, t]) => {
      const list = occurrences(w, t - 5 * DAY, t + 5 * DAY);
      for (let i = 1; i < list.length; i++) assert.ok(list[i].start > list[i - 1].start, 'in order');
      for (const o of list) {
        assert.ok(o.end > o.start && o.end - o.start <= 25 * H, 'length');
        const s = local(w.timeZone, o.start);
        assert.ok(w.days.includes(s.weekday as (typeof WEEKDAYS)[number]), `${s.weekday} is a window day`);
        if (w.from) assert.ok(s.date >= w.from);
        if (w.until) assert.ok(s.date <= w.until);
        checkEdge(w.timeZone, o.start, s.date, w.start, 'first');
        const e = local(w.timeZone, o.end);
        checkEdge(w.timeZone, o.end, e.date, w.end === '24:00' ? '00:00' : w.end, 'last');
      }
    }),
    { numRuns: 1000 },
  );
});

/**
 * `t` is where the local clock shows `wanted` on `date`, the first such instant for a
 * start, the last for an end; or `wanted` does not exist that day and `t` is where the
 * clock jumps over it.
 */
function checkEdge(zone: string, t: number, date: string, wanted: string, pick: 'first' | 'last') {
  const target = Date.parse(`${date}T${wanted}:00Z`);
  const here = local(zone, t);
  if (here.hm === wanted) {
    // DST shifts are 30 or 60 minutes: the same wall time must not appear that far before (start) or after (end).
    for (const shift of [30 * 60_000, 60 * 60_000]) {
      const other = local(zone, pick === 'first' ? t - shift : t + shift);
      assert.notEqual(`${other.date} ${other.hm}`, `${date} ${wanted}`, `${pick} occurrence of ${date} ${wanted} in ${zone}`);
    }
    return;
  }
  const before = local(zone, t - 1);
  assert.ok(before.wall < target && here.wall > target, `${date} ${wanted} does not exist in ${zone}: the clock jumps over it at ${new Date(t).toISOString()}`);
}
