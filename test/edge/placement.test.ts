import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planPlacement, rankWanted, type PlacementInput } from '../../src/edge/placement.ts';
import { nearness, routeToEdge, type EdgeCandidate } from '../../src/edge/routing.ts';

// S2.1 pre-distribution and S2.2 routing as pure rules.

const MB = 1_000_000;
const none = new Set<string>();
const base: PlacementInput = { policy: 'manual', cacheBytes: 10 * MB, pinned: [], candidates: [], held: [], inUse: none };

test('S2.1: manual holds the pins only, in pin order; other policies rank their own choices after the pins', () => {
  const pinned = [{ contentId: 'p1', bytes: MB }];
  const candidates = [
    { contentId: 'a', bytes: MB, requests: 3, createdAt: 100 },
    { contentId: 'b', bytes: MB, requests: 9, createdAt: 50 },
    { contentId: 'c', bytes: MB, requests: 0, createdAt: 300 },
  ];
  assert.deepEqual(rankWanted({ policy: 'manual', pinned, candidates }).map((w) => w.contentId), ['p1']);
  assert.deepEqual(rankWanted({ policy: 'most_requested', pinned, candidates }).map((w) => w.contentId), ['p1', 'b', 'a']);
  assert.deepEqual(rankWanted({ policy: 'recently_added', pinned, candidates }).map((w) => w.contentId), ['p1', 'c', 'a', 'b']);
  const why = rankWanted({ policy: 'most_requested', pinned, candidates }).map((w) => w.why);
  assert.deepEqual(why, ['pinned by an operator', 'most requested: #1 with 9 request(s)', 'most requested: #2 with 3 request(s)']);
});

test('S2.1: fills the cache greedily by rank; too big or no room is said, smaller ones still fit', () => {
  const plan = planPlacement({
    ...base,
    policy: 'recently_added',
    cacheBytes: 5 * MB,
    candidates: [
      { contentId: 'new', bytes: 3 * MB, createdAt: 3 },
      { contentId: 'mid', bytes: 3 * MB, createdAt: 2 },
      { contentId: 'old', bytes: 2 * MB, createdAt: 1 },
      { contentId: 'huge', bytes: 6 * MB, createdAt: 0 },
    ],
  });
  assert.deepEqual(plan.fetch.map((f) => f.contentId), ['new', 'old']);
  assert.deepEqual(plan.skipped.map((s) => s.contentId), ['mid', 'huge']);
  assert.match(plan.skipped[0].why, /no room left/);
  assert.match(plan.skipped[1].why, /larger than the whole cache/);
  assert.deepEqual(plan.evict, []);
  assert.deepEqual(plan.keep.sort(), ['new', 'old']);
});

test('S2.1: room is made by evicting the least recently used unwanted content first, only as much as needed', () => {
  const plan = planPlacement({
    ...base,
    cacheBytes: 5 * MB,
    pinned: [{ contentId: 'want', bytes: 2 * MB }],
    held: [
      { contentId: 'recent', bytes: MB, complete: true, lastUsedAt: 300 },
      { contentId: 'oldest', bytes: MB, complete: true, lastUsedAt: 100 },
      { contentId: 'older', bytes: 2 * MB, complete: true, lastUsedAt: 200 },
    ],
  });
  // 4 MB held + 2 MB wanted = 6 > 5: one MB must go, the least recently used.
  assert.deepEqual(plan.fetch.map((f) => f.contentId), ['want']);
  assert.deepEqual(plan.evict.map((e) => e.contentId), ['oldest']);
  assert.match(plan.evict[0].why, /least recently used/);
});

test('S2.1: contents in use are never evicted; when nothing else can go the lowest-ranked fetch is left out', () => {
  const plan = planPlacement({
    ...base,
    cacheBytes: 4 * MB,
    pinned: [
      { contentId: 'first', bytes: MB },
      { contentId: 'second', bytes: 2 * MB },
    ],
    held: [{ contentId: 'rented', bytes: 2 * MB, complete: true, lastUsedAt: 1 }],
    inUse: new Set(['rented']),
  });
  assert.deepEqual(plan.fetch.map((f) => f.contentId), ['first']);
  assert.deepEqual(plan.evict, []);
  assert.deepEqual(plan.skipped.map((s) => s.contentId), ['second']);
});

test('S2.1: a cache made smaller drops the lowest-ranked wanted content it holds', () => {
  const plan = planPlacement({
    ...base,
    cacheBytes: 3 * MB,
    pinned: [
      { contentId: 'a', bytes: 2 * MB },
      { contentId: 'b', bytes: 2 * MB },
    ],
    held: [
      { contentId: 'a', bytes: 2 * MB, complete: true, lastUsedAt: 1 },
      { contentId: 'b', bytes: 2 * MB, complete: true, lastUsedAt: 2 },
    ],
  });
  assert.deepEqual(plan.fetch, []);
  assert.deepEqual(plan.evict.map((e) => e.contentId), ['b']);
  assert.deepEqual(plan.keep, ['a']);
});

const edge = (id: string, label: string, extra: Partial<EdgeCandidate> = {}): EdgeCandidate => ({ edgeId: id, terminalId: `t-${id}`, label, serveUrl: `http://${id}`, online: true, load: 0, holds: true, ...extra });
const paris = { terminalId: 'me', region: 'eu/paris/b7', network: '', exclude: new Set<string>() };

test('S2.2: nearness counts shared leading label parts; the network naming the edge\'s last part counts one more', () => {
  assert.equal(nearness({ region: 'eu/paris/b7', network: '' }, 'eu/paris'), 2);
  assert.equal(nearness({ region: 'EU/Paris', network: '' }, 'eu/lyon'), 1);
  assert.equal(nearness({ region: 'us', network: '' }, 'eu/paris'), 0);
  assert.equal(nearness({ region: 'eu/paris', network: 'b7' }, 'eu/paris/b7'), 3);
});

test('S2.2: the nearest holder wins, then the least loaded; offline, excluded and self are never chosen', () => {
  const edges = [edge('lyon', 'eu/lyon'), edge('paris-busy', 'eu/paris', { load: 0.8 }), edge('paris', 'eu/paris', { load: 0.2 }), edge('nyc', 'us/nyc')];
  assert.equal(routeToEdge(paris, edges)!.edge.edgeId, 'paris');
  assert.match(routeToEdge(paris, edges)!.why, /nearest holder \(2 label part\(s\) shared/);
  assert.equal(routeToEdge({ ...paris, exclude: new Set(['t-paris']) }, edges)!.edge.edgeId, 'paris-busy');
  assert.equal(routeToEdge(paris, edges.map((e) => (e.edgeId.startsWith('paris') ? { ...e, online: false } : e)))!.edge.edgeId, 'lyon');
  assert.equal(routeToEdge({ ...paris, terminalId: 't-paris' }, edges)!.edge.edgeId, 'paris-busy');
});

test('S2.2: a holder anywhere beats a near edge that would have to fetch; with no holder the nearest edge fetches while serving', () => {
  const edges = [edge('paris', 'eu/paris', { holds: false }), edge('nyc', 'us/nyc')];
  assert.equal(routeToEdge(paris, edges)!.edge.edgeId, 'nyc');
  const noHolder = routeToEdge(paris, [edge('paris', 'eu/paris', { holds: false }), edge('lyon', 'eu/lyon', { holds: false })])!;
  assert.equal(noHolder.edge.edgeId, 'paris');
  assert.match(noHolder.why, /fetches it while serving/);
  // Nobody near and nobody holding: the origin serves.
  assert.equal(routeToEdge({ ...paris, region: 'asia' }, [edge('paris', 'eu/paris', { holds: false })]), null);
});
