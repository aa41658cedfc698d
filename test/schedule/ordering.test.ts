import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  admit,
  AGING_STEP,
  agingBonus,
  compareRanked,
  CONGESTED_LOAD,
  CONGESTION_PENALTY,
  congestionPenalty,
  deferralsToOutrank,
  finishesInTime,
  formatDuration,
  isCongested,
  linkFreeBytesPerSecond,
  notDueYet,
  priorityOf,
  rateWithin,
  tierPriority,
  timeLeftMs,
  TIER_PRIORITY,
  UNKNOWN_TIER_PRIORITY,
  windowClosed,
  windowLengthMs,
  type Admission,
  type Candidate,
  type LinkState,
  type OriginState,
  type RankKey,
} from '../../src/schedule/ordering.ts';

// S0.6 ordering and admission, rule by rule. As in the selection tests, every ordering
// test names the delivery that should win so that it sorts AFTER the other by id:
// if the rule did nothing, the id tie-break would put them the other way round.

const NOW = Date.UTC(2026, 0, 5, 2, 0);
const S = 1000;
const MIN = 60 * S;
const H = 60 * MIN;
const MB = 1_000_000;
/** Link rates are bits/s, as heartbeats report them: 800 Mbit/s = 100 MB/s. */
const Mbit = 1_000_000;

/** A due delivery of 100 MB in a 4 h window (1 h gone), link with 100 MB/s free. */
function cand(id: string, o: Partial<Candidate> = {}): Candidate {
  return {
    id,
    terminalId: `trm_${id}`,
    dueAt: NOW - H,
    windowStart: NOW - H,
    windowEnd: NOW + 3 * H,
    bytesLeft: 100 * MB,
    tier: 'member',
    link: { downBps: 800 * Mbit, recvLoadBps: 0 },
    deferrals: 0,
    ...o,
  };
}

function origin(o: Partial<OriginState> = {}): OriginState {
  return { egressBudgetBps: 1000 * MB, egressInUseBps: 0, now: NOW, ...o };
}

/** Budget for exactly one default delivery (100 MB/s, its link's free capacity). */
const ONE = origin({ egressBudgetBps: 100 * MB });

type AnyEntry = Admission['start'][number] | Admission['wait'][number] | Admission['carry'][number];

function all(a: Admission): AnyEntry[] {
  return [...a.start, ...a.wait, ...a.carry].sort((x, y) => x.rank - y.rank);
}

/** Ids in the total order. */
function order(cands: Candidate[], st: OriginState = origin()): string[] {
  return all(admit(cands, st)).map((e) => e.id);
}

function find(a: Admission, id: string): { list: 'start' | 'wait' | 'carry'; entry: AnyEntry } {
  for (const list of ['start', 'wait', 'carry'] as const) {
    const entry = (a[list] as AnyEntry[]).find((e) => e.id === id);
    if (entry) return { list, entry };
  }
  throw new Error(`${id} missing`);
}

describe('rule 1: base priority by tier', () => {
  test('the documented table; unknown tiers rank lowest', () => {
    assert.deepEqual([...TIER_PRIORITY], [['premium', 200], ['member', 100]]);
    assert.deepEqual(tierPriority('premium'), { points: 200, why: 'tier premium: +200' });
    assert.deepEqual(tierPriority('member'), { points: 100, why: 'tier member: +100' });
    for (const t of ['gold', '', 'operator', 'publisher', '__proto__', 'constructor', 'Premium']) {
      assert.equal(tierPriority(t).points, UNKNOWN_TIER_PRIORITY, t);
      assert.match(tierPriority(t).why!, /unknown: lowest/);
    }
    assert.ok(UNKNOWN_TIER_PRIORITY < Math.min(...TIER_PRIORITY.values()));
  });

  test('premium before member before unknown, against the id tie-break', () => {
    assert.deepEqual(order([cand('a-unknown', { tier: 'gold' }), cand('b-member'), cand('c-premium', { tier: 'premium' })]), ['c-premium', 'b-member', 'a-unknown']);
  });

  test('with budget for one, the premium delivery starts and the member one waits', () => {
    const res = admit([cand('a-member'), cand('z-premium', { tier: 'premium' })], ONE);
    assert.deepEqual(res.start.map((s) => s.id), ['z-premium']);
    assert.deepEqual(res.wait.map((w) => [w.id, w.reason]), [['a-member', 'budget_exhausted']]);
    assert.deepEqual(res.start[0]!.why.slice(0, 1), ['tier premium: +200']);
  });
});

describe('rule 2: aging', () => {
  test('each deferral adds AGING_STEP points, without limit', () => {
    assert.equal(AGING_STEP, 25);
    assert.deepEqual(agingBonus(0), { points: 0, why: null });
    assert.deepEqual(agingBonus(1), { points: 25, why: 'carried over 1 window: +25' });
    assert.deepEqual(agingBonus(3), { points: 75, why: 'carried over 3 windows: +75' });
    assert.equal(agingBonus(1000).points, 25_000);
    assert.equal(priorityOf({ tier: 'member', deferrals: 4, link: null }).priority, 200);
  });

  test('deferralsToOutrank gives the documented counts', () => {
    assert.equal(deferralsToOutrank(100, 200), 5); // member over fresh premium
    assert.equal(deferralsToOutrank(0, 100), 5); // unknown over fresh member
    assert.equal(deferralsToOutrank(0, 200), 9); // unknown over fresh premium
    assert.equal(deferralsToOutrank(200 - CONGESTION_PENALTY, 200), 11); // congested premium over fresh premium
    assert.equal(deferralsToOutrank(200, 100), 0);
  });

  test('a member delivery outranks a fresh premium one after exactly 5 deferrals', () => {
    // Same window, same link: only tier and deferrals differ. Budget for one.
    const winner = (d: number) => admit([cand('a-premium', { tier: 'premium' }), cand('z-member', { deferrals: d })], ONE).start[0]!.id;
    const firstWin = [...Array(20).keys()].find((d) => winner(d) === 'z-member');
    assert.equal(firstWin, 5);
    assert.equal(firstWin, deferralsToOutrank(TIER_PRIORITY.get('member')!, TIER_PRIORITY.get('premium')!));
    // At 4 they tie on priority (200 = 200) and the tie-breakers decide:
    assert.equal(winner(4), 'a-premium'); // same time left, so by id
    const urgent = admit([cand('a-premium', { tier: 'premium' }), cand('z-member', { deferrals: 4, windowEnd: NOW + 2 * H })], ONE);
    assert.equal(urgent.start[0]!.id, 'z-member'); // less time left goes first
    // And an unknown tier needs 9:
    const unknownWins = [...Array(20).keys()].find((d) => admit([cand('a-premium', { tier: 'premium' }), cand('z-gold', { tier: 'gold', deferrals: d })], ONE).start[0]!.id === 'z-gold');
    assert.equal(unknownWins, 9);
  });

  test('no terminal waits forever: a member carried past a fresh premium delivery each night starts on the 6th night', () => {
    // Every night one terminal's window opens 01:00–03:00; each night a fresh premium
    // delivery is due too, and the budget fits one delivery at a time (each takes the
    // whole window's worth of budget: 100 MB/s for 1 h = 360 GB).
    let deferrals = 0;
    let startedOnNight = -1;
    for (let night = 0; night < 20 && startedOnNight < 0; night++) {
      const open = NOW + night * 24 * H;
      const w = { dueAt: open, windowStart: open, windowEnd: open + 2 * H, bytesLeft: 360_000 * MB };
      const member = cand('z-member', { ...w, terminalId: 'trm_member', deferrals });
      const premium = cand(`a-premium-${night}`, { ...w, tier: 'premium' });
      const atOpen = admit([member, premium], { egressBudgetBps: 100 * MB, egressInUseBps: 0, now: open });
      if (atOpen.start.some((s) => s.id === 'z-member')) {
        startedOnNight = night;
        assert.deepEqual(atOpen.wait.map((x) => [x.id, x.reason]), [[premium.id, 'budget_exhausted']]);
        break;
      }
      assert.deepEqual(atOpen.start.map((s) => s.id), [premium.id]);
      assert.deepEqual(atOpen.wait.map((x) => [x.id, x.reason]), [['z-member', 'budget_exhausted']]);
      // Half-way through, the premium delivery still runs: the member keeps waiting but
      // could no longer finish at full speed, so it is carried now (the premium one has
      // the budget: egressInUse).
      const later = admit([member], { egressBudgetBps: 100 * MB, egressInUseBps: 100 * MB, now: open + 90 * MIN });
      assert.equal(later.carry.length, 1);
      assert.equal(later.carry[0]!.reason, 'cannot_finish');
      assert.equal(later.carry[0]!.deferrals, deferrals + 1);
      deferrals = later.carry[0]!.deferrals;
    }
    assert.equal(startedOnNight, 5);
    assert.equal(deferrals, 5);
  });
});

describe('rule 3: congestion (later, not throttled)', () => {
  const link = (downBps: number, recvLoadBps: number, congested?: boolean): LinkState => ({ downBps, recvLoadBps, congested });

  test('isCongested: the terminal’s flag, or receive load at 80% of the down link', () => {
    assert.equal(CONGESTED_LOAD, 0.8);
    assert.equal(isCongested(link(100 * Mbit, 80 * Mbit)), true);
    assert.equal(isCongested(link(100 * Mbit, 79.9 * Mbit)), false);
    assert.equal(isCongested(link(100 * Mbit, 110 * Mbit)), true); // heartbeats allow 110%
    assert.equal(isCongested(link(100 * Mbit, 0, true)), true);
    assert.equal(isCongested(link(100 * Mbit, 90 * Mbit, false)), true); // the numbers still count
    // unmeasured: we cannot know
    assert.equal(isCongested(link(0, 0)), false);
    assert.equal(isCongested(null), false);
  });

  test('congestionPenalty: a fixed penalty larger than the tier spread, with the reason', () => {
    assert.deepEqual(congestionPenalty(link(800 * Mbit, 0)), { points: 0, why: null });
    assert.deepEqual(congestionPenalty(link(800 * Mbit, 720 * Mbit)), { points: -250, why: 'congested link (receiving 90% of 800.0 Mbit/s): −250, goes later' });
    assert.deepEqual(congestionPenalty(link(800 * Mbit, 0, true)), { points: -250, why: 'link reported congested: −250, goes later' });
    const tiers = [...TIER_PRIORITY.values(), UNKNOWN_TIER_PRIORITY];
    assert.ok(CONGESTION_PENALTY > Math.max(...tiers) - Math.min(...tiers));
  });

  test('a congested premium terminal goes after uncongested member and unknown-tier ones; tiers still order the congested', () => {
    const congested = link(800 * Mbit, 720 * Mbit);
    assert.deepEqual(
      order([
        cand('a-congested-member', { link: congested }),
        cand('b-congested-premium', { tier: 'premium', link: congested }),
        cand('c-unknown', { tier: 'gold' }),
        cand('d-member'),
      ]),
      ['d-member', 'c-unknown', 'b-congested-premium', 'a-congested-member'],
    );
  });

  test('admitted congested terminals get their free link capacity, not a fraction of it', () => {
    const res = admit([cand('a', { link: link(800 * Mbit, 720 * Mbit) }), cand('b', { link: link(800 * Mbit, 0, true) })], origin());
    assert.deepEqual(
      res.start.map((s) => [s.id, s.rateBytesPerSecond, s.limitedBy]),
      [
        ['a', 10 * MB, 'link'], // 80 Mbit/s free = 10 MB/s
        ['b', 100 * MB, 'link'],
      ],
    );
  });

  test('with budget for one, the uncongested terminal starts first', () => {
    const res = admit([cand('a-congested', { tier: 'premium', link: link(800 * Mbit, 0, true) }), cand('z-clear')], ONE);
    assert.deepEqual(res.start.map((s) => s.id), ['z-clear']);
    assert.deepEqual(res.wait.map((w) => [w.id, w.reason]), [['a-congested', 'budget_exhausted']]);
  });

  test('aging lifts congested terminals too', () => {
    const congested = link(800 * Mbit, 0, true);
    const winner = (d: number) => admit([cand('a-premium', { tier: 'premium' }), cand('z-congested', { tier: 'premium', link: congested, deferrals: d })], ONE).start[0]!.id;
    assert.equal(winner(10), 'a-premium');
    assert.equal(winner(11), 'z-congested');
  });
});

describe('rule 4: deadline urgency breaks priority ties', () => {
  test('less time left in the window goes first', () => {
    assert.equal(timeLeftMs({ windowEnd: NOW + 5 * MIN }, NOW), 5 * MIN);
    assert.deepEqual(order([cand('a-later', { windowEnd: NOW + 3 * H }), cand('z-sooner', { windowEnd: NOW + 1 * H })]), ['z-sooner', 'a-later']);
  });

  test('urgency does not beat priority', () => {
    assert.deepEqual(order([cand('a-premium', { tier: 'premium', windowEnd: NOW + 3 * H }), cand('z-urgent', { windowEnd: NOW + 1 * MIN, bytesLeft: MB })]), ['a-premium', 'z-urgent']);
  });
});

describe('rule 5: a deterministic total order', () => {
  test('equal priority and time left: by id, in code-unit order', () => {
    assert.deepEqual(order([cand('b'), cand('B'), cand('a'), cand('a1')]), ['B', 'a', 'a1', 'b']);
  });

  test('compareRanked: priority, then time left, then id', () => {
    const k = (id: string, priority: number, timeLeftMs: number): RankKey => ({ id, priority, timeLeftMs });
    assert.ok(compareRanked(k('z', 2, 9), k('a', 1, 0)) < 0);
    assert.ok(compareRanked(k('z', 1, 0), k('a', 1, 9)) < 0);
    assert.ok(compareRanked(k('a', 1, 0), k('b', 1, 0)) < 0);
    assert.equal(compareRanked(k('a', 1, 0), k('a', 1, 0)), 0);
  });

  test('duplicate ids are refused (they would make the order depend on input order)', () => {
    assert.throws(() => admit([cand('x'), cand('x', { tier: 'premium' })], origin()), /appears twice/);
  });

  test('malformed input is refused with the field named', () => {
    assert.throws(() => admit([cand('x', { bytesLeft: -1 })], origin()), /"x": bytesLeft/);
    assert.throws(() => admit([cand('x', { bytesLeft: NaN })], origin()), /bytesLeft/);
    assert.throws(() => admit([cand('x', { deferrals: 1.5 })], origin()), /deferrals/);
    assert.throws(() => admit([cand('x', { windowEnd: Infinity })], origin()), /windowEnd/);
    assert.throws(() => admit([cand('x', { capBytesPerSecond: NaN })], origin()), /capBytesPerSecond/);
    assert.throws(() => admit([cand('x', { link: { downBps: -1, recvLoadBps: 0 } })], origin()), /link.downBps/);
    assert.throws(() => admit([], origin({ egressBudgetBps: Infinity })), /egressBudgetBps/);
    assert.throws(() => admit([], origin({ egressInUseBps: -1 })), /egressInUseBps/);
    assert.throws(() => admit([], origin({ now: NaN })), /now/);
  });
});

describe('window rules', () => {
  test('windowClosed, notDueYet and windowLengthMs', () => {
    assert.equal(windowClosed({ windowEnd: NOW }, NOW), true);
    assert.equal(windowClosed({ windowEnd: NOW + 1 }, NOW), false);
    assert.equal(notDueYet({ dueAt: NOW + 1 }, NOW), true);
    assert.equal(notDueYet({ dueAt: NOW }, NOW), false);
    assert.equal(windowLengthMs({ windowStart: NOW - H, dueAt: NOW, windowEnd: NOW + H }), 2 * H);
    assert.equal(windowLengthMs({ dueAt: NOW, windowEnd: NOW + H }), H); // no windowStart: dueAt
  });

  test('a closed window: carried, with the new deferral count and the reason', () => {
    const res = admit([cand('x', { windowEnd: NOW - 5 * MIN, deferrals: 2 })], origin());
    assert.equal(res.carry.length, 1);
    const c = res.carry[0]!;
    assert.equal(c.reason, 'window_closed');
    assert.equal(c.deferrals, 3);
    assert.deepEqual(c.why, ['tier member: +100', 'carried over 2 windows: +50', 'window closed 5m 00s ago: carried to the next window (deferral 3)']);
    // exactly at windowEnd counts as closed
    assert.equal(admit([cand('x', { windowEnd: NOW })], origin()).carry[0]!.reason, 'window_closed');
  });

  test('not due yet: waits', () => {
    const res = admit([cand('x', { dueAt: NOW + 10 * MIN })], origin());
    assert.deepEqual(res.wait.map((w) => [w.id, w.reason, w.why.at(-1)]), [['x', 'not_due', 'not due for 10m 00s']]);
  });

  test('a window about to close: carried to the next window when even its best rate cannot finish in time', () => {
    // 10 GB at 100 MB/s needs 100 s; the window closes in 60 s; a whole window (4 h) would do.
    const res = admit([cand('x', { bytesLeft: 10_000 * MB, windowEnd: NOW + 60 * S }), cand('y', { bytesLeft: 5_000 * MB, windowEnd: NOW + 60 * S })], origin());
    assert.deepEqual(res.carry.map((c) => [c.id, c.reason, c.deferrals]), [['x', 'cannot_finish', 1]]);
    assert.equal(
      res.carry[0]!.why.at(-1),
      "needs 1m 40s at 100.0 MB/s (limited by the terminal's free link capacity) but the window closes in 1m 00s: carried to the next window (deferral 1)",
    );
    // 5 GB needs 50 s: it fits, and starts
    assert.deepEqual(res.start.map((s) => [s.id, s.rateBytesPerSecond, s.finishesAt]), [['y', 100 * MB, NOW + 50 * S]]);
    assert.equal(res.start[0]!.why.at(-1), 'finishes in 50s, before the window closes in 1m 00s');
  });

  test('too big for any whole window: starts for partial progress instead of being carried for ever', () => {
    // 10 TB at 100 MB/s = 27.8 h > the 4 h window
    const res = admit([cand('x', { bytesLeft: 10_000_000 * MB })], origin());
    assert.deepEqual(res.start.map((s) => [s.id, s.rateBytesPerSecond, s.finishesAt]), [['x', 100 * MB, null]]);
    assert.match(res.start[0]!.why.at(-1)!, /more than a whole window \(4h 00m\): starts for partial progress/);
    // 1 TB needs 2.8 h. Without windowStart, the window is taken to open at dueAt:
    // 10 h ago, so an 11 h window would hold it and it is carried, 1 h before the end.
    const fromDue = admit([cand('z', { bytesLeft: 1_000_000 * MB, windowStart: undefined, dueAt: NOW - 10 * H, windowEnd: NOW + H })], origin());
    assert.equal(fromDue.carry[0]?.reason, 'cannot_finish');
    // told that the window opened 1 h ago (2 h long), it can never fit one: partial progress
    const opened = admit([cand('z', { bytesLeft: 1_000_000 * MB, windowStart: NOW - H, dueAt: NOW - 10 * H, windowEnd: NOW + H })], origin());
    assert.equal(opened.start[0]?.finishesAt, null);
  });
});

describe('rates and caps', () => {
  test('rateWithin: the smallest limit, whole bytes/s, and which it was', () => {
    assert.deepEqual(rateWithin(5, 7, 9), { rate: 5, limitedBy: 'cap' });
    assert.deepEqual(rateWithin(9, 7.9, 9), { rate: 7, limitedBy: 'link' });
    assert.deepEqual(rateWithin(Infinity, Infinity, 3), { rate: 3, limitedBy: 'budget' });
    assert.deepEqual(rateWithin(4, 4, 4), { rate: 4, limitedBy: 'cap' }); // ties: cap, link, budget
    assert.deepEqual(rateWithin(4, -2, 4), { rate: 0, limitedBy: 'link' });
  });

  test('linkFreeBytesPerSecond: (down − receiving) / 8; unmeasured links do not limit', () => {
    assert.equal(linkFreeBytesPerSecond({ downBps: 800 * Mbit, recvLoadBps: 160 * Mbit }), 80 * MB);
    assert.equal(linkFreeBytesPerSecond({ downBps: 100 * Mbit, recvLoadBps: 110 * Mbit }), 0);
    assert.equal(linkFreeBytesPerSecond({ downBps: 0, recvLoadBps: 0 }), Infinity);
    assert.equal(linkFreeBytesPerSecond(null), Infinity);
  });

  test('finishesInTime', () => {
    assert.equal(finishesInTime(100, 10, 10 * S), true);
    assert.equal(finishesInTime(101, 10, 10 * S), false);
    assert.equal(finishesInTime(0, 0, 0), true);
    assert.equal(finishesInTime(1, 0, H), false);
  });

  test('each limit can set the rate: window cap, link, budget', () => {
    const res = admit(
      [
        cand('cap', { capBytesPerSecond: 2.5 * MB + 0.7 }),
        cand('link', { link: { downBps: 80 * Mbit, recvLoadBps: 16 * Mbit } }),
        cand('no-heartbeat', { link: null }),
        cand('unmeasured', { link: { downBps: 0, recvLoadBps: 0 } }),
      ],
      origin({ egressBudgetBps: 400 * MB, egressInUseBps: 150 * MB }),
    );
    assert.equal(res.headroomBps, 250 * MB);
    assert.deepEqual(
      res.start.map((s) => [s.id, s.rateBytesPerSecond, s.limitedBy]),
      [
        ['cap', 2_500_000, 'cap'],
        ['link', 8 * MB, 'link'],
        ['no-heartbeat', 239.5 * MB, 'budget'], // all that is left
      ],
    );
    assert.deepEqual(res.wait.map((w) => [w.id, w.reason]), [['unmeasured', 'budget_exhausted']]);
    assert.equal(res.admittedBps, 250 * MB);
    assert.equal(res.start[0]!.why.at(-2), "starts at 2.5 MB/s (limited by the window's cap)");
  });

  test('maxDeliveryBps: no delivery gets more of the budget than that, so unmeasured links cannot hold it all; the rest goes to the next', () => {
    const cands = [cand('a', { link: null }), cand('b', { link: null }), cand('c', { link: null }), cand('d', { link: null })];
    const greedy = admit(cands, origin({ egressBudgetBps: 100 * MB }));
    assert.deepEqual(greedy.start.map((s) => [s.id, s.rateBytesPerSecond]), [['a', 100 * MB]]);
    const shared = admit(cands, origin({ egressBudgetBps: 100 * MB, maxDeliveryBps: 30 * MB }));
    assert.deepEqual(
      shared.start.map((s) => [s.id, s.rateBytesPerSecond, s.limitedBy]),
      [
        ['a', 30 * MB, 'budget'],
        ['b', 30 * MB, 'budget'],
        ['c', 30 * MB, 'budget'],
        ['d', 10 * MB, 'budget'], // what is left: 100 MB at 10 MB/s finishes within the 3 h left
      ],
    );
    // The best rate is capped too: at 30 MB/s, 600 GB cannot finish in any 4-hour window (432 GB), so it starts for partial progress.
    const big = admit([cand('big', { link: null, bytesLeft: 600_000 * MB })], origin({ egressBudgetBps: 100 * MB, maxDeliveryBps: 30 * MB }));
    assert.equal(big.start[0]!.rateBytesPerSecond, 30 * MB);
    assert.equal(big.start[0]!.finishesAt, null);
    // A window's cap or a link below the maximum still sets the rate.
    const low = admit([cand('capped', { capBytesPerSecond: 5 * MB })], origin({ maxDeliveryBps: 30 * MB }));
    assert.deepEqual([low.start[0]!.rateBytesPerSecond, low.start[0]!.limitedBy], [5 * MB, 'cap']);
    for (const bad of [0, -1, NaN]) assert.throws(() => admit([], origin({ maxDeliveryBps: bad })), /maxDeliveryBps/);
  });

  test('caps are respected: a window cap is shared by the terminal’s deliveries in that window', () => {
    const t = { terminalId: 'trm_1', capBytesPerSecond: 30 * MB };
    const res = admit(
      [
        cand('a', { ...t, bytesLeft: 10 * MB }),
        cand('b', { ...t, bytesLeft: 10 * MB }),
        cand('c', { ...t, bytesLeft: 10 * MB }),
        cand('d', { ...t, windowEnd: NOW + 5 * H, bytesLeft: 10 * MB }), // another window: its own cap
      ],
      origin(),
    );
    // a takes the whole cap (finishing fastest); b and c find none left; d has its own window's cap,
    // but the link (100 MB/s) is the terminal's, shared: 70 MB/s left of it
    assert.deepEqual(res.start.map((s) => [s.id, s.rateBytesPerSecond, s.limitedBy]), [['a', 30 * MB, 'cap'], ['d', 30 * MB, 'cap']]);
    assert.deepEqual(res.wait.map((w) => [w.id, w.reason]), [['b', 'cap_busy'], ['c', 'cap_busy']]);
    assert.match(res.wait[0]!.why.at(-1)!, /its window's cap is taken by this terminal's higher-ranked deliveries/);
  });

  test('a terminal’s link is shared by its deliveries', () => {
    const res = admit([cand('a', { terminalId: 'trm_1', capBytesPerSecond: 70 * MB }), cand('b', { terminalId: 'trm_1', windowEnd: NOW + 4 * H }), cand('c', { terminalId: 'trm_1', windowEnd: NOW + 5 * H })], origin());
    assert.deepEqual(res.start.map((s) => [s.id, s.rateBytesPerSecond, s.limitedBy]), [['a', 70 * MB, 'cap'], ['b', 30 * MB, 'link']]);
    assert.deepEqual(res.wait.map((w) => [w.id, w.reason]), [['c', 'link_busy']]);
  });

  test('nothing to give: cap used up, link full, no budget', () => {
    const res = admit(
      [cand('cap0', { capBytesPerSecond: 0 }), cand('full', { link: { downBps: 100 * Mbit, recvLoadBps: 105 * Mbit } })],
      origin(),
    );
    assert.deepEqual(res.wait.map((w) => [w.id, w.reason]), [['cap0', 'cap_busy'], ['full', 'link_busy']]);
    assert.match(res.wait[1]!.why.at(-1)!, /^its link has no free capacity \(receiving 105.0 Mbit\/s of 100.0 Mbit\/s\); waits within its window \(closes in 3h 00m\)$/);
    const broke = admit([cand('x')], origin({ egressBudgetBps: 0 }));
    assert.deepEqual(broke.wait.map((w) => [w.id, w.reason]), [['x', 'budget_exhausted']]);
    // in use beyond the budget: no headroom, everyone waits
    const over = admit([cand('x'), cand('y')], origin({ egressBudgetBps: 100 * MB, egressInUseBps: 120 * MB }));
    assert.equal(over.headroomBps, 0);
    assert.deepEqual(over.wait.map((w) => w.reason), ['budget_exhausted', 'budget_exhausted']);
  });

  test('nothing left to send: starts (to be recorded done) without using budget', () => {
    const res = admit([cand('x', { bytesLeft: 0 }), cand('y')], ONE);
    assert.deepEqual(res.start.map((s) => [s.id, s.rateBytesPerSecond, s.limitedBy, s.finishesAt]), [['x', 0, null, NOW], ['y', 100 * MB, 'link', NOW + S]]);
  });
});

describe('budget exhaustion', () => {
  test('more due than the budget allows: highest priority first, the rest wait', () => {
    const cands = [
      ...['p1', 'p2'].map((id) => cand(id, { tier: 'premium' })),
      ...['m1', 'm2', 'm3'].map((id) => cand(id)),
      ...['u1', 'u2'].map((id) => cand(id, { tier: '' })),
    ];
    // 350 MB/s: three at 100 MB/s, then 50 MB/s left (100 MB in 2 s: enough)
    const res = admit(cands, origin({ egressBudgetBps: 400 * MB, egressInUseBps: 50 * MB }));
    assert.deepEqual(res.start.map((s) => [s.id, s.rateBytesPerSecond, s.limitedBy]), [['p1', 100 * MB, 'link'], ['p2', 100 * MB, 'link'], ['m1', 100 * MB, 'link'], ['m2', 50 * MB, 'budget']]);
    assert.deepEqual(res.wait.map((w) => [w.id, w.reason]), [['m3', 'budget_exhausted'], ['u1', 'budget_exhausted'], ['u2', 'budget_exhausted']]);
    assert.equal(res.carry.length, 0);
    assert.equal(res.admittedBps, 350 * MB);
    assert.equal(
      res.wait[0]!.why.at(-1),
      "the origin's egress budget is taken (50.0 MB/s running, 350.0 MB/s just admitted, of 400.0 MB/s); waits within its window (closes in 3h 00m)",
    );
  });

  test('budget too short to finish in time: waits, and leaves the rest to one that can finish', () => {
    // 150 MB/s: a takes 100; b (600 GB, needs ~1.7 h at full speed, 3.3 h at the 50 left) waits;
    // c (small) finishes with the 50 left.
    const res = admit(
      [cand('a', { tier: 'premium' }), cand('b', { bytesLeft: 600_000 * MB }), cand('c', { tier: '' })],
      origin({ egressBudgetBps: 150 * MB }),
    );
    assert.deepEqual(res.start.map((s) => [s.id, s.rateBytesPerSecond]), [['a', 100 * MB], ['c', 50 * MB]]);
    assert.deepEqual(res.wait.map((w) => [w.id, w.reason]), [['b', 'budget_short']]);
    assert.match(res.wait[0]!.why.at(-1)!, /^it would need 3h 20m at the 50.0 MB\/s left of the origin's egress budget \(1h 40m at its best rate\); waits within its window/);
  });

  test('budget busy with running deliveries is not a reason to carry: the best rate counts the whole budget', () => {
    // All the budget is in use; 600 GB needs 1.7 h at 100 MB/s and 3 h are left: wait, not carry.
    const res = admit([cand('x', { bytesLeft: 600_000 * MB })], origin({ egressBudgetBps: 100 * MB, egressInUseBps: 100 * MB }));
    assert.deepEqual(res.wait.map((w) => [w.id, w.reason]), [['x', 'budget_exhausted']]);
  });
});

describe('why', () => {
  test('a started delivery explains its priority, rate and finish', () => {
    const res = admit([cand('x', { tier: 'premium', deferrals: 1, bytesLeft: 3_600_000 * MB, link: { downBps: 1000 * Mbit, recvLoadBps: 900 * Mbit } })], origin());
    assert.deepEqual(res.start[0]!.why, [
      'tier premium: +200',
      'carried over 1 window: +25',
      'congested link (receiving 90% of 1.0 Gbit/s): −250, goes later',
      "starts at 12.5 MB/s (limited by the terminal's free link capacity)",
      'needs 3d 8h, more than a whole window (4h 00m): starts for partial progress and resumes in the next window',
    ]);
    assert.equal(res.start[0]!.priority, -25);
  });

  test('formatDuration', () => {
    assert.deepEqual([0, 999, 45 * S, 12 * MIN + 5 * S, 3 * H + 20 * MIN, 50 * H, Infinity].map(formatDuration), ['0s', '1s', '45s', '12m 05s', '3h 20m', '2d 2h', 'forever']);
  });
});

// ---- properties ----

const linkArb: fc.Arbitrary<LinkState | null> = fc.option(
  fc
    .record({
      downBps: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2_000_000_000 })),
      load: fc.double({ min: 0, max: 1.1, noNaN: true }),
      congested: fc.option(fc.boolean(), { nil: undefined }),
    })
    .map(({ downBps, load, congested }) => ({ downBps, recvLoadBps: Math.floor(downBps * load), congested })),
  { nil: null },
);

const windowArb = fc.record({
  startOff: fc.integer({ min: -8 * H, max: 0 }),
  endOff: fc.integer({ min: -H, max: 8 * H }),
  cap: fc.option(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 1000 }), fc.double({ min: 0, max: 500 * MB, noNaN: true })), { nil: undefined }),
});

const terminalArb = fc.record({ link: linkArb, windows: fc.uniqueArray(windowArb, { minLength: 1, maxLength: 3, selector: (w) => w.endOff }) });

const deliveryArb = fc.record({
  id: fc.string({ maxLength: 4 }),
  t: fc.nat(),
  w: fc.nat(),
  dueOff: fc.integer({ min: -10 * H, max: H }),
  bytesLeft: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 1e13 })),
  tier: fc.constantFrom('premium', 'member', 'gold', ''),
  deferrals: fc.integer({ min: 0, max: 30 }),
  withStart: fc.boolean(),
});

const scenarioArb = fc.record({
  terminals: fc.array(terminalArb, { minLength: 1, maxLength: 6 }),
  deliveries: fc.uniqueArray(deliveryArb, { maxLength: 40, selector: (d) => d.id }),
  budget: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2_000_000_000 }), fc.double({ min: 0, max: 2e9, noNaN: true })),
  inUse: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 2.5e9, noNaN: true })),
  seed: fc.integer(),
});

type Scenario = { cands: Candidate[]; state: OriginState; seed: number };

type ScenarioInput = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

function build(s: ScenarioInput): Scenario {
  const cands: Candidate[] = s.deliveries.map((d) => {
    const term = s.terminals[d.t % s.terminals.length]!;
    const win = term.windows[d.w % term.windows.length]!;
    return {
      id: d.id,
      terminalId: `trm_${d.t % s.terminals.length}`,
      dueAt: NOW + d.dueOff,
      windowStart: d.withStart ? NOW + win.startOff : undefined,
      windowEnd: NOW + win.endOff,
      bytesLeft: d.bytesLeft,
      tier: d.tier,
      link: term.link,
      deferrals: d.deferrals,
      capBytesPerSecond: win.cap,
    };
  });
  return { cands, state: { egressBudgetBps: s.budget, egressInUseBps: s.inUse, now: NOW }, seed: s.seed };
}

function shuffled<T>(xs: T[], seed: number): T[] {
  const out = [...xs];
  let x = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const j = (x >>> 0) % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const sgn = (x: number) => (x < 0 ? -1 : x > 0 ? 1 : 0);

function checkConservation(cands: Candidate[], state: OriginState, res: Admission) {
  // every candidate in exactly one list
  const seen = all(res).map((e) => e.id);
  assert.equal(seen.length, cands.length);
  assert.deepEqual([...seen].sort(), cands.map((c) => c.id).sort());
  assert.deepEqual(all(res).map((e) => e.rank), [...cands.keys()]);
  for (const list of [res.start, res.wait, res.carry] as AnyEntry[][]) {
    for (let i = 1; i < list.length; i++) assert.ok(list[i - 1]!.rank < list[i]!.rank, 'each list in rank order');
  }
  // budget
  const headroom = Math.max(0, Math.floor(state.egressBudgetBps - state.egressInUseBps));
  assert.equal(res.headroomBps, headroom);
  const total = res.start.reduce((n, s) => n + s.rateBytesPerSecond, 0);
  assert.equal(res.admittedBps, total);
  assert.ok(total <= headroom, `admitted ${total} > headroom ${headroom}`);
  assert.ok(total <= Math.max(0, state.egressBudgetBps - state.egressInUseBps));
  // caps and links, per delivery and per terminal / window
  const byId = new Map(cands.map((c) => [c.id, c]));
  const perLink = new Map<string, number>();
  const perCap = new Map<string, number>();
  for (const s of res.start) {
    const c = byId.get(s.id)!;
    assert.ok(Number.isInteger(s.rateBytesPerSecond) && s.rateBytesPerSecond >= 0);
    assert.equal(s.rateBytesPerSecond === 0, c.bytesLeft === 0, 'rate 0 only with nothing to send');
    assert.ok(s.rateBytesPerSecond <= (c.capBytesPerSecond ?? Infinity), 'above its cap');
    assert.ok(s.rateBytesPerSecond <= linkFreeBytesPerSecond(c.link), 'above its link');
    assert.ok(c.windowEnd > state.now && c.dueAt <= state.now, 'started outside its window');
    if (s.finishesAt !== null) assert.ok(s.finishesAt <= c.windowEnd || c.bytesLeft === 0, 'started but cannot finish');
    perLink.set(c.terminalId, (perLink.get(c.terminalId) ?? 0) + s.rateBytesPerSecond);
    const k = `${c.terminalId}|${c.windowEnd}`;
    perCap.set(k, (perCap.get(k) ?? 0) + s.rateBytesPerSecond);
  }
  for (const [t, sum] of perLink) assert.ok(sum <= linkFreeBytesPerSecond(cands.find((c) => c.terminalId === t)!.link), `terminal ${t} over its link`);
  for (const [k, sum] of perCap) {
    const c = cands.find((x) => `${x.terminalId}|${x.windowEnd}` === k)!;
    assert.ok(sum <= (c.capBytesPerSecond ?? Infinity), `window ${k} over its cap`);
  }
  // carried: one more deferral; every closed window is carried
  for (const c of res.carry) assert.equal(c.deferrals, byId.get(c.id)!.deferrals + 1);
  const carried = new Set(res.carry.map((c) => c.id));
  for (const c of cands) if (c.windowEnd <= state.now) assert.ok(carried.has(c.id), 'closed window not carried');
  // the ranks follow compareRanked, strictly (a total order)
  const keys = all(res).map((e) => {
    const c = byId.get(e.id)!;
    assert.equal(e.priority, priorityOf(c).priority);
    return { id: c.id, priority: e.priority, timeLeftMs: timeLeftMs(c, state.now) };
  });
  for (let i = 1; i < keys.length; i++) assert.ok(compareRanked(keys[i - 1]!, keys[i]!) < 0, 'rank order is not strictly increasing');
}

describe('properties (fast-check)', () => {
  test('conservation: every candidate in exactly one list; budget, caps and links respected; ranks a total order', () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const { cands, state } = build(s);
        checkConservation(cands, state, admit(cands, state));
      }),
      { numRuns: 400 },
    );
  });

  test('the result does not depend on the input order', () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const { cands, state, seed } = build(s);
        assert.deepEqual(admit(shuffled(cands, seed), state), admit(cands, state));
      }),
      { numRuns: 300 },
    );
  });

  test('compareRanked is a total order: antisymmetric, transitive, 0 only for equal keys', () => {
    const key = fc.record({ id: fc.string({ maxLength: 2 }), priority: fc.integer({ min: -300, max: 500 }), timeLeftMs: fc.integer({ min: -H, max: H }) });
    fc.assert(
      fc.property(key, key, key, (a, b, c) => {
        assert.equal(sgn(compareRanked(a, b)), -sgn(compareRanked(b, a)));
        assert.equal(compareRanked(a, a), 0);
        if (compareRanked(a, b) === 0) assert.deepEqual(a, b);
        if (compareRanked(a, b) < 0 && compareRanked(b, c) < 0) assert.ok(compareRanked(a, c) < 0);
        if (compareRanked(a, b) <= 0 && compareRanked(b, c) <= 0) assert.ok(compareRanked(a, c) <= 0);
      }),
      { numRuns: 2000 },
    );
  });

  test('more deferrals never rank a delivery lower', () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), fc.integer({ min: 1, max: 10 }), (s, pick, extra) => {
        const { cands, state } = build(s);
        if (cands.length === 0) return;
        const i = pick % cands.length;
        const before = all(admit(cands, state)).findIndex((e) => e.id === cands[i]!.id);
        const aged = cands.map((c, j) => (j === i ? { ...c, deferrals: c.deferrals + extra } : c));
        const after = all(admit(aged, state)).findIndex((e) => e.id === cands[i]!.id);
        assert.ok(after <= before);
      }),
      { numRuns: 200 },
    );
  });
});

describe('scale', () => {
  test('100,000 candidates: conserved, and well within a second-scale budget (O(n log n))', () => {
    let x = 42;
    const rnd = () => ((x = (x * 1664525 + 1013904223) >>> 0), x / 2 ** 32);
    const tiers = ['premium', 'member', 'member', 'gold'];
    const cands: Candidate[] = [];
    for (let i = 0; i < 100_000; i++) {
      const down = Math.floor(rnd() * 500 * Mbit);
      cands.push({
        id: `dlv_${i}`,
        terminalId: `trm_${Math.floor(rnd() * 70_000)}`,
        dueAt: NOW - Math.floor(rnd() * H),
        windowStart: NOW - H,
        windowEnd: NOW + Math.floor(rnd() * 4 * H) - 10 * MIN,
        bytesLeft: Math.floor(rnd() * 20_000 * MB),
        tier: tiers[Math.floor(rnd() * tiers.length)]!,
        link: rnd() < 0.05 ? null : { downBps: down, recvLoadBps: Math.floor(rnd() * down), congested: rnd() < 0.05 },
        deferrals: Math.floor(rnd() * 6),
        capBytesPerSecond: rnd() < 0.5 ? Math.floor(rnd() * 10 * MB) : undefined,
      });
    }
    const state = origin({ egressBudgetBps: 1250 * MB, egressInUseBps: 200 * MB });
    const t0 = performance.now();
    const res = admit(cands, state);
    const ms = performance.now() - t0;
    assert.equal(res.start.length + res.wait.length + res.carry.length, 100_000);
    assert.ok(res.admittedBps <= res.headroomBps);
    // Generous: measured ~0.2–0.5 s of CPU on a loaded 2-core machine; a quadratic
    // algorithm would take minutes. The bound is for regressions, not a benchmark.
    assert.ok(ms < 15_000, `admit(100k) took ${ms.toFixed(0)} ms`);
  });
});
