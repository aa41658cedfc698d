import { parseRangeSpans } from './piece-ranges.ts';
import type { TerminalState } from '../terminals/tables.ts';
import { formatBitRate, formatByteRate } from '../core/units.ts';

// S1.5 "automatic" holder selection: given the requester and the holders of a
// content, say which holders may serve it and in which order, and why — and, for
// each holder that may not, why not in words (receivers show it to their users).
//
// Pure functions, no I/O: the caller gathers the holders (TerminalService.holders),
// their reputation and exclusions (ReputationService) and the pieces still needed,
// and adds the origin (and later edges) after the ranked peers as the fallback.
//
// Units: every rate is bits/s, as heartbeats report them (S1.2).
//
// A holder is REJECTED, for the first rule it breaks, in this order:
//   self            it is the requester                                  isSelf
//   offline         no heartbeat within the offline window (S1.3)          isOffline
//   saturated       its upload slots are in use (≥ 90% on average) or     isSaturated
//                   its send load is ≥ 90% of its up link (its rate cap);
//                   never for CPU: a machine busy with other work can still serve
//   no_address      it registered no serveUrl, so nobody can reach it      hasNoAddress
//   excluded        reported bad pieces of this content (see reputation)  isExcluded
//   nothing_needed  it holds none of the pieces the requester still needs  coverageOf
//
// Every other holder gets a SCORE, the sum of these components (weights below):
//   similarity of communication state to the requester (S1.5):
//     same network label, same region label, same link class, bandwidth fit
//     (how much of the requester's down link the holder's spare up link can fill)
//   spare capacity: 1 − load, load = max(send load / up link, slots in use / slots, CPU)
//     (CPU lowers the rank here, and only here)
//   reliability: uptime ratio, completed uploads (log, capped), minus bad pieces and stalls
//   usefulness: the fraction of the needed pieces it holds
// Ranked by score descending, ties by terminalId (code-unit order), at most `max`.
// docs/selection.md explains the same for operators; keep the two in step.

export interface Reputation {
  completedUploads: number;
  bytesUploaded: number;
  badPieces: number;
  stalls: number;
}

export interface RequesterProfile {
  terminalId: string;
  region: string;
  network: string;
  state: TerminalState | null;
}

export interface HolderCandidate {
  terminalId: string;
  serveUrl: string | null;
  region: string;
  network: string;
  online: boolean;
  state: TerminalState | null;
  reputation: Reputation;
  /** Excluded for this requester and content (see ReputationService.excludedFor). */
  excluded: boolean;
  /** Piece ranges the holder has ("0-9,12"), or null for all of them. */
  pieces: string | null;
}

export interface RankedSource {
  terminalId: string;
  serveUrl: string;
  score: number;
  why: string[];
}

export type RejectionReason = 'self' | 'offline' | 'saturated' | 'no_address' | 'excluded' | 'nothing_needed';

export interface Rejected {
  terminalId: string;
  reason: RejectionReason;
  /** The reason in words, with the figures that decided it. */
  why: string;
}

export type LinkClass = 'unknown' | 'mobile' | 'dsl' | 'cable' | 'fiber';

// ---- link classes ----

/** Fiber: at least this much both ways (symmetric fast links are what fiber gives). */
export const FIBER_MIN_BPS = 100_000_000;
/** Cable: at least this much down (but not fiber). */
export const CABLE_MIN_DOWN_BPS = 50_000_000;
/** DSL: at least this much down (but not cable); below it, the link is as slow as a mobile one. */
export const DSL_MIN_DOWN_BPS = 8_000_000;

/**
 * The bandwidth class of a link, from its measured rates. The names are the
 * technologies that typically give such rates, not a detection of the technology:
 * what matters for S1.5 is that two links of one class move data at similar speeds.
 *   fiber   down ≥ 100 Mbit/s and up ≥ 100 Mbit/s
 *   cable   down ≥ 50 Mbit/s
 *   dsl     down ≥ 8 Mbit/s
 *   mobile  down < 8 Mbit/s
 *   unknown no heartbeat yet, or downBps 0 (not measured: agents send 0 for unknown)
 */
export function linkClass(state: TerminalState | null): LinkClass {
  if (!state || !(state.downBps > 0)) return 'unknown';
  if (state.downBps >= FIBER_MIN_BPS && state.upBps >= FIBER_MIN_BPS) return 'fiber';
  if (state.downBps >= CABLE_MIN_DOWN_BPS) return 'cable';
  if (state.downBps >= DSL_MIN_DOWN_BPS) return 'dsl';
  return 'mobile';
}

// ---- rejection rules ----

/**
 * A holder sending at least this fraction of its up link (its rate cap, if it set one),
 * or with at least this fraction of its upload slots in use on average, has no room for
 * another receiver. Not 100%: both are averages over a heartbeat, and a holder that was
 * full nearly all of it turns receivers away.
 */
export const SATURATED_LOAD = 0.9;

export function isSelf(requester: RequesterProfile, c: HolderCandidate): boolean {
  return c.terminalId === requester.terminalId;
}

/** S1.5 "online": the registry's flag (a heartbeat within the offline window, S1.3). */
export function isOffline(c: HolderCandidate): boolean {
  return !c.online;
}

/**
 * Fraction of the up link in use, 0..1, or null when the up link was not measured
 * (upBps 0; the heartbeat check then forces sendLoadBps to 0 too, so there is
 * nothing to judge). Heartbeats may read up to 110% (S1.2 tolerance), hence the clamp.
 */
export function linkLoad(state: TerminalState | null): number | null {
  if (!state || !(state.upBps > 0)) return null;
  return Math.min(1, Math.max(0, state.sendLoadBps / state.upBps));
}

/** Fraction of its upload slots in use on average since its previous beat, 0..1, or null when it did not say. */
export function slotLoad(state: TerminalState | null): number | null {
  if (!state || !(typeof state.slots === 'number' && state.slots > 0) || typeof state.slotsBusy !== 'number') return null;
  return Math.min(1, Math.max(0, state.slotsBusy / state.slots));
}

/**
 * S1.5 "not overloaded": saturated means the holder cannot serve more — its upload
 * slots or its up link are in use — and says nothing of its CPU: a machine busy with
 * other work still has free slots and link, and a slow source only loses its rank
 * (spareCapacityScore) and, if it stalls, the receiver's patience (S1.7). What a holder
 * did not report (an unmeasured up link, no slot figures, no heartbeat) is not judged.
 * Returns the reason in words, or null if it is not saturated.
 */
export function saturation(state: TerminalState | null): string | null {
  if (!state) return null;
  const slots = slotLoad(state);
  if (slots !== null && slots >= SATURATED_LOAD) {
    const n = state.slots!;
    const used = slots === 1 ? (n === 1 ? 'its one upload slot was' : `all ${n} of its upload slots were`) : `on average ${Number(state.slotsBusy!.toFixed(2))} of its ${n} upload slots were`;
    return `saturated: ${used} in use since its last heartbeat`;
  }
  const link = linkLoad(state);
  if (link !== null && link >= SATURATED_LOAD) {
    return `saturated: it was sending ${formatRate(state.sendLoadBps)}, ${pct(link)} of its ${formatRate(state.upBps)} upload`;
  }
  return null;
}

export function isSaturated(c: HolderCandidate): boolean {
  return saturation(c.state) !== null;
}

/** Peers serve pieces at their serveUrl (S1.6); without one nobody can connect to them. */
export function hasNoAddress(c: HolderCandidate): boolean {
  return !c.serveUrl;
}

/** Bad peers: the reputation service's verdict for this requester and content. */
export function isExcluded(c: HolderCandidate): boolean {
  return c.excluded;
}

// ---- needed pieces ----

/** The pieces the requester needs, indexed so that a range is counted in O(1). */
export interface NeedIndex {
  pieceCount: number;
  /** How many pieces are needed in all. */
  total: number;
  /** How many pieces in [a, b] (inclusive) are needed. */
  countIn(a: number, b: number): number;
}

/**
 * Builds the index once per ranking: one pass over `needed`, then each holder costs
 * O(its ranges), not O(pieces) — a content can have a million pieces and a popular
 * one hundreds of holders.
 */
export function needIndex(pieceCount: number, needed?: (index: number) => boolean): NeedIndex {
  if (!Number.isSafeInteger(pieceCount) || pieceCount < 0) throw new RangeError(`pieceCount must be a non-negative integer, got ${pieceCount}`);
  if (!needed) return { pieceCount, total: pieceCount, countIn: (a, b) => b - a + 1 };
  const prefix = new Uint32Array(pieceCount + 1); // prefix[i] = needed pieces among 0..i-1
  for (let i = 0; i < pieceCount; i++) prefix[i + 1] = prefix[i] + (needed(i) ? 1 : 0);
  return { pieceCount, total: prefix[pieceCount], countIn: (a, b) => prefix[b + 1] - prefix[a] };
}

/**
 * Parses a holding's piece ranges ("0-9,12"). Returns null when malformed,
 * descending, overlapping or beyond the content: a claim we cannot read is treated
 * as holding nothing rather than sending receivers to a holder that may lack the pieces.
 */
export function parseHeldRanges(text: string, pieceCount: number): Array<[number, number]> | null {
  return text === '' ? [] : parseRangeSpans(text, pieceCount);
}

/** How many needed pieces the holder has, out of how many are needed. */
export interface Coverage {
  held: number;
  needed: number;
}

export function coverageOf(c: HolderCandidate, need: NeedIndex): Coverage {
  if (c.pieces === null) return { held: need.total, needed: need.total };
  const spans = parseHeldRanges(c.pieces, need.pieceCount) ?? [];
  let held = 0;
  for (const [a, b] of spans) held += need.countIn(a, b);
  return { held, needed: need.total };
}

/** The first rule the holder breaks, and why in words; null if it may serve. */
export function rejectionOf(requester: RequesterProfile, c: HolderCandidate, coverage: () => Coverage): Omit<Rejected, 'terminalId'> | null {
  if (isSelf(requester, c)) return { reason: 'self', why: 'it is you' };
  if (isOffline(c)) return { reason: 'offline', why: 'offline: no recent heartbeat' };
  const saturated = saturation(c.state);
  if (saturated) return { reason: 'saturated', why: saturated };
  if (hasNoAddress(c)) return { reason: 'no_address', why: 'it gave no address to serve from' };
  if (isExcluded(c)) return { reason: 'excluded', why: 'excluded: it served bad pieces of this content, or this download gave up on it' };
  if (coverage().held === 0) return { reason: 'nothing_needed', why: 'it holds none of the pieces you still need' };
  return null;
}

// ---- score components ----

// Weights. Similarity dominates (S1.5 names it first): a holder on the same network
// is usually on the same LAN or ISP, where bytes are fastest and cheapest.
export const W_SAME_NETWORK = 3;
export const W_SAME_REGION = 2;
export const W_SAME_LINK_CLASS = 1;
/** Times the fraction (0..1) of the requester's down link the holder's spare up link fills. */
export const W_BANDWIDTH_FIT = 2;
/** Times 1 − load (0..1). */
export const W_SPARE_CAPACITY = 2;
/** Times the uptime ratio (0..1). */
export const W_UPTIME = 2;
/** Full weight at COMPLETED_FULL_AT completed uploads, growing with log(1 + n) below it. */
export const W_COMPLETED = 1.5;
export const COMPLETED_FULL_AT = 100;
/** Subtracted per bad piece ever reported about the holder (any content, any receiver). */
export const W_BAD_PIECE = 1;
/** Subtracted per stall ever reported; smaller, because links stall for innocent reasons. */
export const W_STALL = 0.25;
/** Times the fraction (0..1) of the needed pieces the holder has. */
export const W_USEFULNESS = 2;

/** One component's contribution: points (possibly 0 or negative) and, if it counted, why. */
export interface Component {
  points: number;
  why: string | null;
}

const none: Component = { points: 0, why: null };

/** Empty labels mean "not told", and two unknowns are not a match. */
function sameLabel(a: string, b: string): boolean {
  return a !== '' && a === b;
}

export function sameNetworkScore(requester: RequesterProfile, c: HolderCandidate): Component {
  return sameLabel(requester.network, c.network) ? { points: W_SAME_NETWORK, why: `same network (${c.network})` } : none;
}

export function sameRegionScore(requester: RequesterProfile, c: HolderCandidate): Component {
  return sameLabel(requester.region, c.region) ? { points: W_SAME_REGION, why: `same region (${c.region})` } : none;
}

export function sameLinkClassScore(requester: RequesterProfile, c: HolderCandidate): Component {
  const mine = linkClass(requester.state);
  return mine !== 'unknown' && mine === linkClass(c.state) ? { points: W_SAME_LINK_CLASS, why: `same link class (${mine})` } : none;
}

/** Up link capacity the holder is not using, bits/s (0 if unmeasured). */
export function spareUpBps(state: TerminalState | null): number {
  if (!state || !(state.upBps > 0)) return 0;
  return Math.max(0, state.upBps - state.sendLoadBps);
}

/**
 * How much of the requester's down link this holder alone could fill. A 5 Mbit/s
 * spare link fills a 5 Mbit/s receiver completely but a 1 Gbit/s one hardly at all;
 * beyond filling it, more spare upload does not help this requester.
 */
export function bandwidthFitScore(requester: RequesterProfile, c: HolderCandidate): Component {
  const spare = spareUpBps(c.state);
  const down = requester.state?.downBps ?? 0;
  if (spare <= 0 || !(down > 0)) return none;
  const fit = Math.min(1, spare / down);
  return { points: W_BANDWIDTH_FIT * fit, why: `spare upload ${formatRate(spare)} fills ${pct(fit)} of your download` };
}

/**
 * S1.5 "load": the busiest of its up link, its upload slots and its CPU. CPU counts
 * here only: a busy machine ranks lower, and is still a source (see saturation).
 */
export function spareCapacityScore(c: HolderCandidate): Component {
  if (!c.state) return none;
  const parts: [string, number][] = [
    ['upload', linkLoad(c.state) ?? 0],
    ['slots', slotLoad(c.state) ?? 0],
    ['CPU', Math.min(1, Math.max(0, c.state.cpu))],
  ];
  const [what, load] = parts.reduce((a, b) => (b[1] > a[1] ? b : a));
  const spare = 1 - load;
  return spare > 0 ? { points: W_SPARE_CAPACITY * spare, why: `load ${pct(load)}${load > 0 ? ` (${what})` : ''}` } : { points: 0, why: `load ${pct(load)} (${what}): ranked lower` };
}

export function uptimeScore(c: HolderCandidate): Component {
  const u = c.state ? Math.min(1, Math.max(0, c.state.uptimeRatio)) : 0;
  return u > 0 ? { points: W_UPTIME * u, why: `uptime ${pct(u)}` } : none;
}

/** Diminishing returns: the first uploads say most about a peer; the hundredth adds little. */
export function completedUploadsScore(c: HolderCandidate): Component {
  const n = Math.max(0, c.reputation.completedUploads);
  if (n === 0) return none;
  const f = Math.min(1, Math.log1p(n) / Math.log1p(COMPLETED_FULL_AT));
  return { points: W_COMPLETED * f, why: `${n} completed upload${n === 1 ? '' : 's'}` };
}

export function badPiecesScore(c: HolderCandidate): Component {
  const n = Math.max(0, c.reputation.badPieces);
  return n > 0 ? { points: -W_BAD_PIECE * n, why: `${n} bad piece${n === 1 ? '' : 's'} reported` } : none;
}

export function stallsScore(c: HolderCandidate): Component {
  const n = Math.max(0, c.reputation.stalls);
  return n > 0 ? { points: -W_STALL * n, why: `${n} stall${n === 1 ? '' : 's'} reported` } : none;
}

export function usefulnessScore(coverage: Coverage): Component {
  if (coverage.needed === 0 || coverage.held === 0) return none;
  const f = coverage.held / coverage.needed;
  return {
    points: W_USEFULNESS * f,
    why: f === 1 ? 'holds all needed pieces' : `holds ${pct(f)} of needed pieces (${coverage.held} of ${coverage.needed})`,
  };
}

/** The score and reasons of a holder that passed every rejection rule. */
export function scoreHolder(requester: RequesterProfile, c: HolderCandidate, coverage: Coverage): { score: number; why: string[] } {
  const parts = [
    sameNetworkScore(requester, c),
    sameRegionScore(requester, c),
    sameLinkClassScore(requester, c),
    bandwidthFitScore(requester, c),
    spareCapacityScore(c),
    uptimeScore(c),
    completedUploadsScore(c),
    badPiecesScore(c),
    stallsScore(c),
    usefulnessScore(coverage),
  ];
  let raw = 0;
  for (const p of parts) raw += p.points;
  // Rounded so that equal-looking scores are equal, and ties fall to terminalId.
  const score = Math.round(raw * 1e6) / 1e6;
  return { score, why: parts.flatMap((p) => (p.why ? [p.why] : [])) };
}

// ---- ranking ----

function byId(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * S1.5: the holders that may serve `requester`, best first (at most `opts.max`),
 * and the ones that may not, each with its reason (sorted by terminalId).
 * `opts.needed` says which of the `opts.pieceCount` pieces the requester still
 * needs (all of them if omitted). The result does not depend on candidate order.
 */
export function rankHolders(
  requester: RequesterProfile,
  candidates: HolderCandidate[],
  opts: { max: number; needed?: (index: number) => boolean; pieceCount: number },
): { ranked: RankedSource[]; rejected: Rejected[] } {
  const need = needIndex(opts.pieceCount, opts.needed);
  const ranked: RankedSource[] = [];
  const rejected: Rejected[] = [];
  for (const c of candidates) {
    let cov: Coverage | null = null;
    const coverage = () => (cov ??= coverageOf(c, need));
    const rejection = rejectionOf(requester, c, coverage);
    if (rejection) {
      rejected.push({ terminalId: c.terminalId, ...rejection });
      continue;
    }
    const { score, why } = scoreHolder(requester, c, coverage());
    ranked.push({ terminalId: c.terminalId, serveUrl: c.serveUrl!, score, why });
  }
  ranked.sort((a, b) => b.score - a.score || byId(a.terminalId, b.terminalId));
  rejected.sort((a, b) => byId(a.terminalId, b.terminalId));
  const max = Math.max(0, Math.floor(opts.max));
  return { ranked: ranked.slice(0, max), rejected };
}

// ---- formatting for `why` ----

function pct(f: number): string {
  return `${Math.round(f * 100)}%`;
}

/** "48.8 Mbit/s (6.1 MB/s)": heartbeats speak bits, people downloading files think in bytes. */
export function formatRate(bps: number): string {
  return `${formatBitRate(bps)} (${formatByteRate(bps / 8)})`;
}

