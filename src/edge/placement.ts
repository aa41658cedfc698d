import type { PlacementPolicy } from './tables.ts';

// S2.1 pre-distribution: which contents an edge should hold, given its cache size and its
// policy, and what it must drop to make room. Pure: the caller gathers the facts (pins,
// request counts, newest contents, the edge's holdings) and applies the plan.
//
// The wanted list, in rank order:
//   manual           the operator's pins, oldest pin first
//   most_requested   the pins, then contents by requests in the window (most first)
//   recently_added   the pins, then contents by publishing time (newest first)
// It is filled greedily into the cache: a content that does not fit in what is left is
// skipped (with the reason) and smaller ones after it still get their turn.
// Room is made by evicting, least recently used first, what the edge holds but is not
// wanted — never a content in use (a rental playing, an order being written). If that is
// not enough, the lowest-ranked wanted contents not yet held are left out.
// An edge whose holdings exceed its cache (it was shrunk, or misses filled it) drops
// unwanted ones LRU first, then the lowest-ranked wanted ones.

export interface PlacementCandidate {
  contentId: string;
  bytes: number;
  /** most_requested: requests in the window; recently_added: publishing time (ms). */
  requests?: number;
  createdAt?: number;
}

export interface HeldContent {
  contentId: string;
  /** Bytes it takes on the edge's disk (the whole content once complete). */
  bytes: number;
  complete: boolean;
  lastUsedAt: number;
}

export interface PlacementInput {
  policy: PlacementPolicy;
  cacheBytes: number;
  /** Pinned by an operator, oldest first, with their sizes. */
  pinned: PlacementCandidate[];
  /** Candidates for the policy (most requested or newest); ignored for `manual`. */
  candidates: PlacementCandidate[];
  held: HeldContent[];
  /** Contents the edge must keep now whatever the policy (rentals, orders in progress). */
  inUse: ReadonlySet<string>;
}

export interface PlannedFetch {
  contentId: string;
  bytes: number;
  why: string;
}

export interface PlannedEviction {
  contentId: string;
  why: string;
}

export interface Placement {
  /** Wanted and not (completely) held, in rank order. */
  fetch: PlannedFetch[];
  evict: PlannedEviction[];
  /** Wanted contents left out, and why (too big, no room). */
  skipped: { contentId: string; why: string }[];
  /** What the edge should keep when asked to drop a copy it no longer needs (wanted and placed, or in use). */
  keep: string[];
}

/** The wanted list for a policy, in rank order, each with the reason it is wanted. */
export function rankWanted(input: Pick<PlacementInput, 'policy' | 'pinned' | 'candidates'>): (PlacementCandidate & { why: string })[] {
  const seen = new Set<string>();
  const out: (PlacementCandidate & { why: string })[] = [];
  const add = (c: PlacementCandidate, why: string) => {
    if (seen.has(c.contentId)) return;
    seen.add(c.contentId);
    out.push({ ...c, why });
  };
  for (const p of input.pinned) add(p, 'pinned by an operator');
  if (input.policy === 'most_requested') {
    const byRequests = [...input.candidates].filter((c) => (c.requests ?? 0) > 0).sort((a, b) => (b.requests ?? 0) - (a.requests ?? 0) || cmp(a.contentId, b.contentId));
    byRequests.forEach((c, i) => add(c, `most requested: #${i + 1} with ${c.requests} request(s)`));
  } else if (input.policy === 'recently_added') {
    const byAge = [...input.candidates].sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0) || cmp(a.contentId, b.contentId));
    byAge.forEach((c, i) => add(c, `recently added: #${i + 1} newest`));
  }
  return out;
}

export function planPlacement(input: PlacementInput): Placement {
  if (!(input.cacheBytes > 0)) throw new RangeError(`cacheBytes must be positive, got ${input.cacheBytes}`);
  const wanted = rankWanted(input);
  const heldById = new Map(input.held.map((h) => [h.contentId, h]));
  const skipped: Placement['skipped'] = [];

  // 1. The wanted set that fits the cache, greedily by rank. In-use contents come first: they stay whatever happens.
  let room = input.cacheBytes;
  const keep = new Set<string>();
  for (const id of input.inUse) {
    const h = heldById.get(id);
    if (h) {
      keep.add(id);
      room -= h.bytes;
    }
  }
  const chosen: (PlacementCandidate & { why: string })[] = [];
  for (const w of wanted) {
    if (keep.has(w.contentId)) continue;
    if (w.bytes > input.cacheBytes) {
      skipped.push({ contentId: w.contentId, why: `larger than the whole cache (${w.bytes} > ${input.cacheBytes} bytes)` });
      continue;
    }
    if (w.bytes > room) {
      skipped.push({ contentId: w.contentId, why: `no room left in the cache for its ${w.bytes} bytes after higher-ranked contents` });
      continue;
    }
    chosen.push(w);
    keep.add(w.contentId);
    room -= w.bytes;
  }

  // 2. What is held and not kept goes, least recently used first, as far as room is needed;
  // held contents nobody wants that still fit are kept (an edge's misses stay cached until LRU
  // pushes them out).
  const used = input.held.reduce((s, h) => s + h.bytes, 0);
  const toFetch = chosen.filter((c) => !heldById.get(c.contentId)?.complete);
  // Bytes the fetches add (a partial copy already takes its full size on disk: the store pre-sizes it).
  const adding = toFetch.reduce((s, c) => s + (heldById.has(c.contentId) ? 0 : c.bytes), 0);
  let excess = used + adding - input.cacheBytes;
  const evict: PlannedEviction[] = [];
  const unwanted = input.held.filter((h) => !keep.has(h.contentId)).sort((a, b) => a.lastUsedAt - b.lastUsedAt || cmp(a.contentId, b.contentId));
  for (const h of unwanted) {
    if (excess <= 0) break;
    evict.push({ contentId: h.contentId, why: `least recently used (last used ${new Date(h.lastUsedAt).toISOString()}) and not wanted by the ${input.policy.replace('_', ' ')} policy: room for wanted contents` });
    excess -= h.bytes;
  }
  // 3. Still over: the lowest-ranked wanted fetches are left out (they were counted as added).
  const fetch: PlannedFetch[] = toFetch.map((c) => ({ contentId: c.contentId, bytes: c.bytes, why: c.why }));
  while (excess > 0 && fetch.length) {
    const last = fetch.pop()!;
    if (!heldById.has(last.contentId)) excess -= last.bytes;
    skipped.push({ contentId: last.contentId, why: 'no room: the cache is full of contents in use or ranked higher' });
  }
  // 4. Held wanted ones beyond the cache (it shrank): lowest-ranked first, never in-use ones.
  for (let i = chosen.length - 1; excess > 0 && i >= 0; i--) {
    const h = heldById.get(chosen[i].contentId);
    if (!h || input.inUse.has(h.contentId)) continue;
    evict.push({ contentId: h.contentId, why: 'the cache is smaller than the contents wanted: lowest-ranked goes' });
    excess -= h.bytes;
  }
  const evicted = new Set(evict.map((e) => e.contentId));
  const left = new Set(skipped.map((x) => x.contentId));
  return { fetch, evict, skipped, keep: [...keep].filter((id) => !evicted.has(id) && !left.has(id)) };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
