import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { admit } from '../../src/schedule/ordering.ts';
import {
  closedAt,
  openedAt,
  planItems,
  planWeek,
  scheduleOpenings,
  selects,
  tierOf,
  toCandidate,
  WEEK_MS,
  type PlanContent,
  type PlanSchedule,
} from '../../src/schedule/plan.ts';
import { isOpen, nextOpening, occurrences, parseWindow, WEEKDAYS, type Window } from '../../src/schedule/windows.ts';

// plan.ts (S0.5), pure: which schedule a content is due under and when, the order of a
// terminal's plan, and the week plan of a whole population checked against isOpen at
// every step instant (DST weeks included).

const at = (iso: string) => Date.parse(iso);
const MIN = 60_000;
const H = 60 * MIN;
const T0 = at('2026-03-27T12:00:00Z'); // a Friday

const win = (spec: Record<string, unknown>) => parseWindow({ days: 'daily', timeZone: 'UTC', ...spec });
const content = (id: string, over: Partial<PlanContent> = {}): PlanContent => ({
  id,
  title: `Title ${id}`,
  genre: 'drama',
  publisherId: 'usr_p',
  publisher: 'p',
  totalSize: 1000,
  createdAt: 0,
  heldPieces: null,
  ...over,
});
let seq = 0;
const schedule = (over: Partial<PlanSchedule> & Pick<PlanSchedule, 'select' | 'windows'>): PlanSchedule => ({
  id: `sch_${String(++seq).padStart(3, '0')}`,
  priority: 0,
  createdAt: seq,
  ...over,
});

describe('selects', () => {
  const c = { id: 'c1', title: 'Planet Earth II: Islands', genre: 'Nature', publisherId: 'usr_bbc' };
  test('content, publisher, genre (case-insensitive), series (title prefix, case-insensitive)', () => {
    assert.equal(selects({ kind: 'content', value: 'c1' }, c), true);
    assert.equal(selects({ kind: 'content', value: 'c2' }, c), false);
    assert.equal(selects({ kind: 'publisher', value: 'usr_bbc' }, c), true);
    assert.equal(selects({ kind: 'publisher', value: 'usr_other' }, c), false);
    assert.equal(selects({ kind: 'genre', value: 'nature' }, c), true);
    assert.equal(selects({ kind: 'genre', value: 'natur' }, c), false);
    assert.equal(selects({ kind: 'series', value: 'planet earth ii' }, c), true);
    assert.equal(selects({ kind: 'series', value: 'earth' }, c), false);
  });
});

describe('planItems', () => {
  const nights = [win({ start: '01:00', end: '05:00' })]; // daily 01:00–05:00 UTC
  const evenings = [win({ start: '18:00', end: '20:00', capBytesPerSecond: 5000 })];
  const allDay = [win({ start: '00:00', end: '24:00' })];

  test('due at the schedule’s next opening; an open window makes it due since its start', () => {
    const s = schedule({ select: { kind: 'genre', value: 'drama' }, windows: evenings });
    const [item] = planItems([s], [content('a')], T0);
    assert.equal(item.dueAt, at('2026-03-27T18:00:00Z'));
    assert.equal(item.windowEnd, at('2026-03-27T20:00:00Z'));
    assert.equal(item.open, false);
    assert.equal(item.capBytesPerSecond, 5000);
    const [inside] = planItems([s], [content('a')], at('2026-03-27T19:00:00Z'));
    assert.equal(inside.open, true);
    assert.equal(inside.dueAt, at('2026-03-27T18:00:00Z'));
  });

  test('of several schedules the one serving first wins: open > closed; longer open; earlier opening; priority; age', () => {
    const closedLate = schedule({ select: { kind: 'genre', value: 'drama' }, windows: nights });
    const closedSoon = schedule({ select: { kind: 'content', value: 'a' }, windows: evenings });
    let [item] = planItems([closedLate, closedSoon], [content('a')], T0);
    assert.equal(item.scheduleId, closedSoon.id);
    assert.deepEqual(item.matchedBy, [closedLate.id, closedSoon.id]);

    const openShort = schedule({ select: { kind: 'genre', value: 'drama' }, windows: [win({ start: '11:00', end: '13:00' })] });
    const openLong = schedule({ select: { kind: 'publisher', value: 'usr_p' }, windows: [win({ start: '10:00', end: '16:00' })] });
    [item] = planItems([closedSoon, openShort, openLong], [content('a')], T0);
    assert.equal(item.scheduleId, openLong.id);
    assert.equal(item.open, true);

    const same1 = schedule({ select: { kind: 'genre', value: 'drama' }, windows: evenings, priority: 1 });
    const same2 = schedule({ select: { kind: 'genre', value: 'drama' }, windows: evenings, priority: 9 });
    assert.equal(planItems([same1, same2], [content('a')], T0)[0].scheduleId, same2.id);
    const older = schedule({ select: { kind: 'genre', value: 'drama' }, windows: evenings, priority: 1, createdAt: -5 });
    assert.equal(planItems([same1, older], [content('a')], T0)[0].scheduleId, older.id);
  });

  test('a schedule whose windows never open again makes nothing due; unmatched contents are left out', () => {
    const expired = schedule({ select: { kind: 'genre', value: 'drama' }, windows: [win({ start: '01:00', end: '02:00', until: '2026-01-01' })] });
    assert.deepEqual(planItems([expired], [content('a')], T0), []);
    const other = schedule({ select: { kind: 'genre', value: 'comedy' }, windows: allDay });
    assert.deepEqual(planItems([other], [content('a')], T0), []);
  });

  test('order: by when it can start, then priority, window end, newest content, id; records are merged', () => {
    const open = schedule({ select: { kind: 'genre', value: 'drama' }, windows: allDay });
    const prio = schedule({ select: { kind: 'genre', value: 'news' }, windows: allDay, priority: 5 });
    const later = schedule({ select: { kind: 'genre', value: 'kids' }, windows: evenings, priority: 99 });
    const contents = [
      content('k', { genre: 'kids' }),
      content('d-old', { createdAt: 1 }),
      content('d-new', { createdAt: 2 }),
      content('n', { genre: 'News' }),
      content('d-twin', { createdAt: 2 }),
    ];
    const records = new Map([['d-old', { openDeliveryId: 'sdl_1', deferrals: 3, lastOutcome: 'due' }]]);
    const items = planItems([open, prio, later], contents, T0, records);
    assert.deepEqual(
      items.map((i) => i.contentId),
      ['n', 'd-new', 'd-twin', 'd-old', 'k'],
    );
    const old = items.find((i) => i.contentId === 'd-old')!;
    assert.deepEqual([old.deliveryId, old.deferrals, old.lastOutcome], ['sdl_1', 3, 'due']);
    assert.deepEqual(Object.keys(items[0]).sort(), [
      'capBytesPerSecond', 'contentId', 'deferrals', 'deliveryId', 'dueAt', 'genre', 'heldPieces', 'lastOutcome', 'matchedBy',
      'open', 'priority', 'publisher', 'scheduleId', 'title', 'totalSize', 'windowEnd', 'windowIndex',
    ]);
  });

  test('scheduleOpenings lists the intervals of every schedule by start', () => {
    const a = schedule({ select: { kind: 'genre', value: 'x' }, windows: nights });
    const b = schedule({ select: { kind: 'genre', value: 'y' }, windows: evenings });
    const list = scheduleOpenings([a, b], T0, T0 + 2 * 24 * H);
    assert.deepEqual(
      list.map((o) => [o.scheduleId, new Date(o.start).toISOString(), o.capBytesPerSecond]),
      [
        [b.id, '2026-03-27T18:00:00.000Z', 5000],
        [a.id, '2026-03-28T01:00:00.000Z', null],
        [b.id, '2026-03-28T18:00:00.000Z', 5000],
        [a.id, '2026-03-29T01:00:00.000Z', null],
      ],
    );
  });

  test('toCandidate feeds admit (S0.6): a due item starts in its open window at its cap', () => {
    const s = schedule({ select: { kind: 'genre', value: 'drama' }, windows: evenings });
    const now = at('2026-03-27T18:30:00Z');
    const [item] = planItems([s], [content('a', { totalSize: 1_000_000 })], now);
    const c = toCandidate(item, { terminalId: 'trm_1', deliveryId: 'sdl_1', tier: tierOf(['member']), link: null });
    assert.deepEqual(c, {
      id: 'sdl_1', terminalId: 'trm_1', dueAt: item.dueAt, windowStart: item.dueAt, windowEnd: item.windowEnd,
      bytesLeft: 1_000_000, tier: 'member', link: null, deferrals: 0, capBytesPerSecond: 5000,
    });
    const decision = admit([c], { egressBudgetBps: 1e9, egressInUseBps: 0, now });
    assert.equal(decision.start.length, 1);
    assert.equal(decision.start[0].rateBytesPerSecond, 5000);
    assert.equal(decision.start[0].limitedBy, 'cap');
  });

  test('tierOf: premium over member; other roles are the lowest tier', () => {
    assert.equal(tierOf(['member', 'premium']), 'premium');
    assert.equal(tierOf(['member']), 'member');
    assert.equal(tierOf(['publisher']), '');
  });
});

describe('planWeek', () => {
  const ZONES = ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe', 'America/Santiago', 'Pacific/Chatham'];
  const hm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
  const windowArb = fc
    .record({
      days: fc.subarray([...WEEKDAYS], { minLength: 1 }),
      start: fc.integer({ min: 0, max: 1439 }),
      length: fc.integer({ min: 1, max: 1439 }),
      zone: fc.constantFrom(...ZONES),
    })
    .map(({ days, start, length, zone }) => {
      const end = start + length === 1440 ? '24:00' : hm((start + length) % 1440);
      return parseWindow({ days, start: hm(start), end, timeZone: zone });
    });

  /** Walks the steps keeping a count of open intervals per terminal; checks it against isOpen at every step instant. */
  function checkAgainstIsOpen(terminals: Window[][], from: number, stepMs: number) {
    const plan = planWeek(terminals, from, from + WEEK_MS, stepMs);
    assert.equal(plan.steps, Math.ceil(WEEK_MS / stepMs));
    const expected = terminals.reduce((n, ws) => n + ws.reduce((m, w) => m + occurrences(w, from, from + WEEK_MS).length, 0), 0);
    assert.equal(plan.count, expected);
    const open = new Int32Array(terminals.length);
    for (let s = 0; s < plan.steps; s++) {
      for (const k of openedAt(plan, s)) open[plan.terminal[k]!]++;
      for (const k of closedAt(plan, s)) open[plan.terminal[k]!]--;
      const t = from + s * stepMs;
      for (let i = 0; i < terminals.length; i++) {
        if (open[i]! > 0 !== isOpen(terminals[i]!, t)) {
          assert.fail(`terminal ${i} at step ${s} (${new Date(t).toISOString()}): plan says ${open[i]! > 0 ? 'open' : 'closed'}; windows ${JSON.stringify(terminals[i])}`);
        }
      }
    }
    for (let i = 0; i < terminals.length; i++) {
      const o = nextOpening(terminals[i]!, from);
      if (o && o.start < from + WEEK_MS) assert.equal(plan.firstStart[i], o.open ? Math.min(o.start, plan.firstStart[i]!) : o.start, `terminal ${i}`);
      else assert.ok(Number.isNaN(plan.firstStart[i]));
    }
  }

  test('open at every step instant exactly when isOpen says so, across both DST changes', () => {
    for (const from of [at('2026-03-25T00:00:00Z'), at('2026-10-21T00:00:00Z'), at('2026-04-01T00:00:00Z') + 7 * MIN + 13_000]) {
      fc.assert(
        fc.property(fc.array(fc.array(windowArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 6 }), (terminals) => {
          checkAgainstIsOpen(terminals, from, 15 * MIN);
        }),
        { numRuns: 15, seed: 5 },
      );
    }
  });

  test('minute steps: the interval indices, windows and buckets line up', () => {
    const terminals = [
      [win({ start: '01:00', end: '05:00', timeZone: 'Europe/Berlin' }), win({ days: 'weekends', start: '22:00', end: '06:00', timeZone: 'Europe/Berlin' })],
      [],
      [win({ start: '00:00', end: '24:00' })],
    ];
    const from = at('2026-03-27T12:00:00Z');
    checkAgainstIsOpen(terminals, from, MIN);
    const plan = planWeek(terminals, from);
    assert.ok(Number.isNaN(plan.firstStart[1]));
    assert.equal(plan.firstStart[2], at('2026-03-27T00:00:00Z')); // open at `from`: since midnight
    // Saturday 00:00 UTC (step 720): the Berlin nightly window opens (01:00 CET), and the UTC day.
    const sat = openedAt(plan, 720);
    assert.deepEqual([...sat].map((k) => [plan.terminal[k], plan.window[k]]), [[0, 0], [2, 0]]);
  });

  test('refuses an empty range or step', () => {
    assert.throws(() => planWeek([], T0, T0), RangeError);
    assert.throws(() => planWeek([], T0, T0 + H, 0), RangeError);
    const empty = planWeek([], T0);
    assert.equal(empty.count, 0);
    assert.equal(openedAt(empty, 0).length, 0);
    assert.equal(closedAt(empty, -1).length, 0);
  });
});
