import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { TerminalState } from '../../src/terminals/tables.ts';
import {
  completedUploadsScore,
  coverageOf,
  formatRate,
  isSaturated,
  linkClass,
  saturation,
  SATURATED_LOAD,
  spareCapacityScore,
  W_SPARE_CAPACITY,
  needIndex,
  parseHeldRanges,
  rankHolders,
  scoreHolder,
  W_BAD_PIECE,
  W_SAME_NETWORK,
  W_STALL,
  type HolderCandidate,
  type RequesterProfile,
} from '../../src/transfer/selection.ts';

// S1.5 automatic holder selection, rule by rule. Every ordering test builds two
// holders equal in everything but the one thing under test, and names the better
// one so that it sorts AFTER the worse one by terminalId: if the rule did nothing,
// the tie-break would put them the other way round and the test would fail.

const M = 1_000_000;

function state(o: Partial<TerminalState> = {}): TerminalState {
  return { uptimeRatio: 0.9, upBps: 20 * M, downBps: 40 * M, sendLoadBps: 2 * M, recvLoadBps: 0, cpu: 0.2, at: 0, ...o };
}

const me: RequesterProfile = { terminalId: 'trm_me', region: 'eu-west', network: 'isp-a', state: state({ downBps: 40 * M }) };

function holder(terminalId: string, o: Partial<HolderCandidate> = {}): HolderCandidate {
  return {
    terminalId,
    serveUrl: `http://127.0.0.1:9/${terminalId}`,
    region: 'us-east',
    network: 'isp-b',
    online: true,
    state: state(),
    reputation: { completedUploads: 0, bytesUploaded: 0, badPieces: 0, stalls: 0 },
    excluded: false,
    pieces: null,
    ...o,
  };
}

/** Scores are rounded to 1e-6, so differences of scores are only that close. */
function assertClose(actual: number, expected: number) {
  assert.ok(Math.abs(actual - expected) < 1e-5, `${actual} is not ${expected}`);
}

const rep = (o: Partial<HolderCandidate['reputation']>) => ({ completedUploads: 0, bytesUploaded: 0, badPieces: 0, stalls: 0, ...o });

function rank(cands: HolderCandidate[], o: { max?: number; needed?: (i: number) => boolean; pieceCount?: number; requester?: RequesterProfile } = {}) {
  return rankHolders(o.requester ?? me, cands, { max: o.max ?? 10, needed: o.needed, pieceCount: o.pieceCount ?? 10 });
}

/** The rejections without their words (the words are checked where they are the point). */
const reasons = (res: ReturnType<typeof rank>) => res.rejected.map(({ terminalId, reason }) => ({ terminalId, reason }));

const order = (cands: HolderCandidate[], o?: Parameters<typeof rank>[1]) => rank(cands, o).ranked.map((r) => r.terminalId);

/** The better holder ("z…") must come first although the tie-break favours "a…". */
function assertPrefers(better: Partial<HolderCandidate>, worse: Partial<HolderCandidate>, o?: Parameters<typeof rank>[1]) {
  const res = rank([holder('a-worse', worse), holder('z-better', better)], o);
  assert.deepEqual(res.rejected, []);
  assert.deepEqual(res.ranked.map((r) => r.terminalId), ['z-better', 'a-worse']);
  assert.ok(res.ranked[0]!.score > res.ranked[1]!.score);
  return res;
}

describe('linkClass (S1.5 link speed)', () => {
  test('buckets by measured rates at the documented thresholds', () => {
    assert.equal(linkClass(null), 'unknown');
    assert.equal(linkClass(state({ downBps: 0, upBps: 50 * M })), 'unknown');
    assert.equal(linkClass(state({ downBps: 100 * M, upBps: 100 * M })), 'fiber');
    assert.equal(linkClass(state({ downBps: 1000 * M, upBps: 99.9 * M })), 'cable');
    assert.equal(linkClass(state({ downBps: 50 * M, upBps: 5 * M })), 'cable');
    assert.equal(linkClass(state({ downBps: 49.9 * M, upBps: 5 * M })), 'dsl');
    assert.equal(linkClass(state({ downBps: 8 * M, upBps: 1 * M })), 'dsl');
    assert.equal(linkClass(state({ downBps: 7.9 * M, upBps: 1 * M })), 'mobile');
    assert.equal(linkClass(state({ downBps: 1, upBps: 0 })), 'mobile');
  });
});

describe('rejection rules (S1.5)', () => {
  test('self: the requester never serves itself', () => {
    assert.deepEqual(rank([holder(me.terminalId)]), { ranked: [], rejected: [{ terminalId: me.terminalId, reason: 'self', why: 'it is you' }] });
  });

  test('offline: holders without a recent heartbeat are never returned', () => {
    assert.deepEqual(reasons(rank([holder('h1', { online: false })])), [{ terminalId: 'h1', reason: 'offline' }]);
  });

  test('saturated: send load at 90% of the up link (its rate cap)', () => {
    assert.deepEqual(rank([holder('h1', { state: state({ upBps: 10 * M, sendLoadBps: 9 * M }) })]).rejected, [
      { terminalId: 'h1', reason: 'saturated', why: 'saturated: it was sending 9.0 Mbit/s (1.1 MB/s), 90% of its 10.0 Mbit/s (1.3 MB/s) upload' },
    ]);
    // just below the line still serves
    assert.equal(rank([holder('h1', { state: state({ upBps: 10 * M, sendLoadBps: 8.99 * M }) })]).ranked.length, 1);
    // heartbeats may read up to 110% of capacity
    assert.equal(isSaturated(holder('h1', { state: state({ upBps: 10 * M, sendLoadBps: 11 * M }) })), true);
  });

  test('saturated: on average 90% of the upload slots in use since the last heartbeat', () => {
    assert.deepEqual(rank([holder('h1', { state: state({ slots: 4, slotsBusy: 3.6 }) })]).rejected, [
      { terminalId: 'h1', reason: 'saturated', why: 'saturated: on average 3.6 of its 4 upload slots were in use since its last heartbeat' },
    ]);
    assert.equal(saturation(state({ slots: 1, slotsBusy: 1 })), 'saturated: its one upload slot was in use since its last heartbeat');
    // just below the line still serves
    assert.equal(rank([holder('h1', { state: state({ slots: 4, slotsBusy: 3.59 }) })]).ranked.length, 1);
    // a terminal that did not report its slots is not judged by them
    assert.equal(isSaturated(holder('h1', { state: state({ slots: undefined, slotsBusy: undefined }) })), false);
  });

  test('CPU alone never saturates: a machine at 100% with free slots and link still serves, ranked lower', () => {
    const busy = holder('h1', { state: state({ cpu: 1, slots: 4, slotsBusy: 0, sendLoadBps: 0 }) });
    assert.equal(isSaturated(busy), false);
    const res = rank([busy]);
    assert.deepEqual(res.rejected, []);
    assert.deepEqual(res.ranked.map((r) => r.terminalId), ['h1']);
    assert.ok(res.ranked[0]!.why.includes('load 100% (CPU): ranked lower'), res.ranked[0]!.why.join('|'));
    assert.equal(spareCapacityScore(busy).points, 0);
    // …and for every CPU figure, with nothing else loaded
    fc.assert(fc.property(fc.double({ min: 0, max: 1, noNaN: true }), (cpu) => !isSaturated(holder('h', { state: state({ cpu, sendLoadBps: 0, slots: 4, slotsBusy: 0 }) }))));
  });

  test('slots full or link full saturates whatever the CPU', () => {
    for (const cpu of [0, 0.5, 1]) {
      assert.equal(isSaturated(holder('h', { state: state({ cpu, slots: 2, slotsBusy: 2 }) })), true, `slots, cpu ${cpu}`);
      assert.equal(isSaturated(holder('h', { state: state({ cpu, upBps: 10 * M, sendLoadBps: 10 * M }) })), true, `link, cpu ${cpu}`);
    }
    assert.equal(SATURATED_LOAD, 0.9);
  });

  test('rank order: an idle machine before a busy one before none of the saturated ones', () => {
    const res = rank([
      holder('a-slots-full', { state: state({ cpu: 0.1, slots: 4, slotsBusy: 4 }) }),
      holder('b-link-full', { state: state({ cpu: 0.1, upBps: 20 * M, sendLoadBps: 19 * M }) }),
      holder('c-cpu-100', { state: state({ cpu: 1 }) }),
      holder('d-cpu-50', { state: state({ cpu: 0.5 }) }),
      holder('e-idle', { state: state({ cpu: 0 }) }),
    ]);
    assert.deepEqual(res.ranked.map((r) => r.terminalId), ['e-idle', 'd-cpu-50', 'c-cpu-100']);
    assert.deepEqual(reasons(res), [
      { terminalId: 'a-slots-full', reason: 'saturated' },
      { terminalId: 'b-link-full', reason: 'saturated' },
    ]);
    // CPU costs at most the spare-capacity points, no more
    const [idle, , full] = res.ranked;
    assert.ok(idle!.score - full!.score <= W_SPARE_CAPACITY + 1e-6);
  });

  test('saturated: an unmeasured up link (upBps 0) or no state at all is not judged saturated', () => {
    assert.equal(isSaturated(holder('h1', { state: state({ upBps: 0, sendLoadBps: 0 }) })), false);
    assert.equal(isSaturated(holder('h1', { state: null })), false);
    assert.equal(rank([holder('h1', { state: null })]).ranked.length, 1);
  });

  test('no_address: a holder without serveUrl cannot be reached', () => {
    assert.deepEqual(reasons(rank([holder('h1', { serveUrl: null })])), [{ terminalId: 'h1', reason: 'no_address' }]);
    assert.deepEqual(reasons(rank([holder('h1', { serveUrl: '' })])), [{ terminalId: 'h1', reason: 'no_address' }]);
  });

  test('excluded: holders reported for bad pieces of this content', () => {
    assert.deepEqual(reasons(rank([holder('h1', { excluded: true })])), [{ terminalId: 'h1', reason: 'excluded' }]);
  });

  test('nothing_needed: holders with none of the pieces still needed', () => {
    const needed = (i: number) => i >= 5;
    assert.deepEqual(reasons(rank([holder('h1', { pieces: '0-4' })], { needed })), [{ terminalId: 'h1', reason: 'nothing_needed' }]);
    assert.equal(rank([holder('h1', { pieces: '0-5' })], { needed }).ranked.length, 1);
    assert.deepEqual(reasons(rank([holder('h1', { pieces: '' })])), [{ terminalId: 'h1', reason: 'nothing_needed' }]);
    // nothing needed at all: nobody is useful, not even a full holder
    assert.deepEqual(reasons(rank([holder('h1')], { needed: () => false })), [{ terminalId: 'h1', reason: 'nothing_needed' }]);
  });

  test('nothing_needed: an unreadable or out-of-range piece claim counts as holding nothing', () => {
    for (const bad of ['x', '3-1', '0-10', '1,1', '5,2']) {
      assert.deepEqual(reasons(rank([holder('h1', { pieces: bad })])), [{ terminalId: 'h1', reason: 'nothing_needed' }], bad);
    }
  });

  test('a holder breaking several rules is rejected for the first one, in the documented order', () => {
    const all = { online: false, state: state({ slots: 2, slotsBusy: 2 }), serveUrl: null, excluded: true, pieces: '' };
    const { rejected } = rank([
      holder(me.terminalId, all),
      holder('b', all),
      holder('c', { ...all, online: true }),
      holder('d', { ...all, online: true, state: state() }),
      holder('e', { ...all, online: true, state: state(), serveUrl: 'http://x' }),
      holder('f', { ...all, online: true, state: state(), serveUrl: 'http://x', excluded: false }),
    ]);
    // (rejected comes sorted by terminalId)
    assert.deepEqual(
      rejected.map((r) => [r.terminalId, r.reason]),
      [['b', 'offline'], ['c', 'saturated'], ['d', 'no_address'], ['e', 'excluded'], ['f', 'nothing_needed'], [me.terminalId, 'self']],
    );
  });
});

describe('score components (S1.5): each changes the order when all else is equal', () => {
  test('same network label', () => {
    const res = assertPrefers({ network: 'isp-a' }, { network: 'isp-b' });
    assert.ok(res.ranked[0]!.why.includes('same network (isp-a)'));
    assertClose(res.ranked[0]!.score - res.ranked[1]!.score, W_SAME_NETWORK);
  });

  test('empty labels are unknown, not a match', () => {
    const requester = { ...me, network: '', region: '' };
    const res = rank([holder('h1', { network: '', region: '' })], { requester });
    assert.ok(!res.ranked[0]!.why.some((w) => w.startsWith('same network') || w.startsWith('same region')));
  });

  test('same region label', () => {
    const res = assertPrefers({ region: 'eu-west' }, { region: 'us-east' });
    assert.ok(res.ranked[0]!.why.includes('same region (eu-west)'));
  });

  test('same link class', () => {
    // Requester on fiber; both holders have the same up link and load (so the same
    // bandwidth fit and spare capacity) and differ only in their down link.
    const requester = { ...me, state: state({ downBps: 200 * M, upBps: 200 * M }) };
    const res = assertPrefers(
      { state: state({ upBps: 100 * M, downBps: 100 * M, sendLoadBps: 0 }) },
      { state: state({ upBps: 100 * M, downBps: 60 * M, sendLoadBps: 0 }) },
      { requester },
    );
    assert.ok(res.ranked[0]!.why.includes('same link class (fiber)'));
  });

  test('bandwidth fit: spare upload that fills more of the requester’s down link', () => {
    // Same load fraction (0) and CPU, same link class; only the spare upload differs.
    const res = assertPrefers({ state: state({ upBps: 30 * M, sendLoadBps: 0 }) }, { state: state({ upBps: 10 * M, sendLoadBps: 0 }) });
    assert.ok(res.ranked[0]!.why.includes('spare upload 30.0 Mbit/s (3.8 MB/s) fills 75% of your download'), res.ranked[0]!.why.join('|'));
  });

  test('bandwidth fit saturates at the requester’s down link', () => {
    const a = rank([holder('h1', { state: state({ upBps: 40 * M, sendLoadBps: 0 }) })]).ranked[0]!.score;
    const b = rank([holder('h1', { state: state({ upBps: 80 * M, sendLoadBps: 0 }) })]).ranked[0]!.score;
    assert.equal(a, b);
  });

  test('spare capacity: a less loaded up link (same spare bits/s, so the same fit)', () => {
    assertPrefers({ state: state({ upBps: 20 * M, sendLoadBps: 5 * M }) }, { state: state({ upBps: 40 * M, sendLoadBps: 25 * M }) });
  });

  test('spare capacity: a less busy CPU', () => {
    const res = assertPrefers({ state: state({ cpu: 0.1 }) }, { state: state({ cpu: 0.6 }) });
    assert.ok(res.ranked[1]!.why.includes('load 60% (CPU)'), res.ranked[1]!.why.join('|'));
  });

  test('reliability: uptime', () => {
    const res = assertPrefers({ state: state({ uptimeRatio: 0.97 }) }, { state: state({ uptimeRatio: 0.5 }) });
    assert.ok(res.ranked[0]!.why.includes('uptime 97%'));
  });

  test('reliability: completed uploads, with diminishing returns', () => {
    const res = assertPrefers({ reputation: rep({ completedUploads: 10 }) }, { reputation: rep({ completedUploads: 0 }) });
    assert.ok(res.ranked[0]!.why.includes('10 completed uploads'));
    const pts = (n: number) => completedUploadsScore(holder('h', { reputation: rep({ completedUploads: n }) })).points;
    assert.ok(pts(1) - pts(0) > pts(11) - pts(10));
    assert.equal(pts(100), pts(100_000)); // capped
    assertPrefers({ reputation: rep({ completedUploads: 50 }) }, { reputation: rep({ completedUploads: 10 }) });
  });

  test('reliability: bad pieces reported lower the score', () => {
    const res = assertPrefers({ reputation: rep({ badPieces: 0 }) }, { reputation: rep({ badPieces: 2 }) });
    assert.ok(res.ranked[1]!.why.includes('2 bad pieces reported'));
    assertClose(res.ranked[0]!.score - res.ranked[1]!.score, 2 * W_BAD_PIECE);
  });

  test('reliability: stalls reported lower the score', () => {
    const res = assertPrefers({ reputation: rep({ stalls: 0 }) }, { reputation: rep({ stalls: 3 }) });
    assert.ok(res.ranked[1]!.why.includes('3 stalls reported'));
    assertClose(res.ranked[0]!.score - res.ranked[1]!.score, 3 * W_STALL);
  });

  test('usefulness: more of the needed pieces', () => {
    const res = assertPrefers({ pieces: '0-9' }, { pieces: '0-4' });
    assert.ok(res.ranked[0]!.why.includes('holds all needed pieces'));
    assert.ok(res.ranked[1]!.why.includes('holds 50% of needed pieces (5 of 10)'));
    // counted against what is needed, not against the whole content
    assertPrefers({ pieces: '5-6' }, { pieces: '0-4' }, { needed: (i) => i >= 4 });
  });
});

describe('ranking', () => {
  test('why explains every contribution in words', () => {
    const requester = { ...me, network: 'home-lan', state: state({ downBps: 100 * M, upBps: 20 * M }) };
    const h = holder('h1', {
      network: 'home-lan',
      region: 'eu-west',
      state: state({ upBps: 60 * M, downBps: 100 * M, sendLoadBps: 11.2 * M, cpu: 0.1, uptimeRatio: 0.97 }),
      reputation: rep({ completedUploads: 12, badPieces: 2, stalls: 1 }),
      pieces: '0-3',
    });
    const [r] = rank([h], { requester }).ranked;
    assert.deepEqual(r!.why, [
      'same network (home-lan)',
      'same region (eu-west)',
      'same link class (cable)',
      'spare upload 48.8 Mbit/s (6.1 MB/s) fills 49% of your download',
      'load 19% (upload)',
      'uptime 97%',
      '12 completed uploads',
      '2 bad pieces reported',
      '1 stall reported',
      'holds 40% of needed pieces (4 of 10)',
    ]);
    assert.equal(r!.serveUrl, h.serveUrl);
    assert.equal(r!.score, scoreHolder(requester, h, coverageOf(h, needIndex(10))).score);
  });

  test('ties are broken by terminalId, whatever the input order', () => {
    const hs = ['c', 'a', 'b'].map((id) => holder(id));
    assert.deepEqual(order(hs), ['a', 'b', 'c']);
    assert.deepEqual(order([...hs].reverse()), ['a', 'b', 'c']);
  });

  test('max bounds the ranked list; rejected are all reported', () => {
    const hs = ['a', 'b', 'c', 'd', 'e'].map((id, i) => holder(id, { state: state({ uptimeRatio: 0.5 + i / 10 }) }));
    hs.push(holder('f', { online: false }));
    assert.deepEqual(order(hs, { max: 2 }), ['e', 'd']);
    assert.equal(rank(hs, { max: 0 }).ranked.length, 0);
    assert.equal(rank(hs, { max: 0 }).rejected.length, 1);
    assert.equal(rank(hs, { max: 100 }).ranked.length, 5);
  });

  test('an empty candidate list gives empty results (the caller falls back to the origin)', () => {
    assert.deepEqual(rank([]), { ranked: [], rejected: [] });
  });

  test('a million pieces and 500 holders rank quickly (ranges are counted, not expanded)', () => {
    const hs = Array.from({ length: 500 }, (_, i) => holder(`h${String(i).padStart(3, '0')}`, { pieces: i % 2 ? null : `0-${i * 1000},600000-999999` }));
    const t0 = performance.now();
    const res = rankHolders(me, hs, { max: 50, pieceCount: 1_000_000, needed: (i) => i % 3 === 0 });
    assert.equal(res.ranked.length, 50);
    assert.ok(performance.now() - t0 < 2000);
  });

  test('helpers: needIndex, parseHeldRanges, formatRate', () => {
    const n = needIndex(10, (i) => i % 2 === 0);
    assert.equal(n.total, 5);
    assert.equal(n.countIn(0, 9), 5);
    assert.equal(n.countIn(1, 1), 0);
    assert.equal(n.countIn(2, 4), 2);
    assert.throws(() => needIndex(-1), RangeError);
    assert.deepEqual(parseHeldRanges('0-2,5', 10), [[0, 2], [5, 5]]);
    assert.equal(parseHeldRanges('0-2,2', 10), null);
    assert.equal(formatRate(800), '800 bit/s (100 B/s)');
    assert.equal(formatRate(1e9), '1.0 Gbit/s (125.0 MB/s)');
  });
});

describe('property (S1.5 invariants)', () => {
  const label = fc.constantFrom('', 'a', 'b');
  const stateArb = fc.option(
    fc.record({
      uptimeRatio: fc.double({ min: 0, max: 1, noNaN: true }),
      upBps: fc.constantFrom(0, 1 * M, 10 * M, 100 * M, 1000 * M),
      downBps: fc.constantFrom(0, 1 * M, 10 * M, 60 * M, 1000 * M),
      loadFraction: fc.double({ min: 0, max: 1.1, noNaN: true }),
      recvLoadBps: fc.constant(0),
      cpu: fc.double({ min: 0, max: 1, noNaN: true }),
      slots: fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined }),
      slotShare: fc.double({ min: 0, max: 1, noNaN: true }),
      at: fc.constant(0),
    }).map(({ loadFraction, slotShare, ...s }) => ({ ...s, sendLoadBps: s.upBps * loadFraction, slotsBusy: s.slots === undefined ? undefined : s.slots * slotShare })),
    { nil: null },
  );
  const candArb = (id: string) =>
    fc.record({
      terminalId: fc.constant(id),
      serveUrl: fc.constantFrom(null, '', 'http://peer'),
      region: label,
      network: label,
      online: fc.boolean(),
      state: stateArb,
      reputation: fc.record({
        completedUploads: fc.nat(1000),
        bytesUploaded: fc.nat(),
        badPieces: fc.nat(5),
        stalls: fc.nat(5),
      }),
      excluded: fc.boolean(),
      pieces: fc.constantFrom(null, '', '0-3', '4-7', '0,2,4,6', '7', 'bad'),
    });
  const candidatesArb = fc.uniqueArray(fc.constantFrom('trm_me', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'), { maxLength: 9 }).chain((ids) => fc.tuple(...ids.map(candArb)));
  const requesterArb = fc.record({ terminalId: fc.constant('trm_me'), region: label, network: label, state: stateArb });

  test('ranked never holds a self/offline/saturated/unaddressed/excluded/useless holder, is sorted, and is independent of input order', () => {
    fc.assert(
      fc.property(requesterArb, candidatesArb, fc.nat(10), fc.integer({ min: 0, max: 255 }), (requester, cands, max, needMask) => {
        const needed = (i: number) => ((needMask >> i) & 1) === 1;
        const res = rankHolders(requester, cands, { max, needed, pieceCount: 8 });
        const rejectedIds = new Set(res.rejected.map((r) => r.terminalId));
        const byId = new Map(cands.map((c) => [c.terminalId, c]));
        for (const r of res.ranked) {
          const c = byId.get(r.terminalId)!;
          assert.ok(!rejectedIds.has(r.terminalId));
          assert.notEqual(c.terminalId, requester.terminalId);
          assert.equal(c.online, true);
          assert.equal(isSaturated(c), false);
          assert.ok(c.serveUrl);
          assert.equal(c.excluded, false);
          assert.ok(coverageOf(c, needIndex(8, needed)).held > 0);
          assert.ok(Number.isFinite(r.score));
        }
        for (let i = 1; i < res.ranked.length; i++) {
          const [p, q] = [res.ranked[i - 1]!, res.ranked[i]!];
          assert.ok(p.score > q.score || (p.score === q.score && p.terminalId < q.terminalId));
        }
        assert.equal(res.ranked.length, Math.min(max, cands.length - res.rejected.length));
        const shuffled = rankHolders(requester, [...cands].reverse(), { max, needed, pieceCount: 8 });
        assert.deepEqual(shuffled, res);
      }),
      { numRuns: 500 },
    );
  });
});
