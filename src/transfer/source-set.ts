import type { KeyObject } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import { importPublicKey } from '../core/crypto.ts';
import { PieceClient } from './piece-client.ts';
import { parseRangeSpans, rangeSet } from './piece-ranges.ts';

// The receiver's view of the sources it may fetch from (S1.5–S1.7): which pieces each
// has, how fast it has been, and which ones were dropped and why. It also decides
// which piece to ask each source for: rarest first among the peers (random among
// equals, so receivers starting together spread out), or in order for streaming; the
// origin only serves pieces no usable peer has — it is the last resort.
//
// #10.4: a source is judged against the upload rate it declared (its heartbeat): a piece
// is late only when it takes far longer than that rate allows (pieceDeadlineMs).

/**
 * A receiver declaring less than this share of the fastest active receiver's upload gets no fresh
 * origin slice (coordinator.ts), and a peer's copy counts for slicing only from a peer above it:
 * the first copy of a piece should go where it spreads fast. Handed to a 1 MB/s receiver, a piece
 * stayed rare for seconds (its only holder passed it on at 1 MB/s, shared by four upload slots),
 * and the 8 MB/s receivers waited for those pieces at the end (#19: in the mixed 32-agent swarm
 * the pieces that reached 16 receivers last, at 15–20 s of 21, had each gone first to a slow agent).
 */
export const SLICE_MIN_UPLOAD_SHARE = 0.25;

/** One source as the origin offered it (`POST /grants/auto`). */
export interface SourceOffer {
  sourceId: string;
  /** Null means the origin itself. */
  sourceUrl: string | null;
  /** Ranges the source is known to have; null means all. */
  pieces: string | null;
  score: number | null;
  why: string[];
  grant: { id: string; token: string; expiresAt: string };
  /** The source's Ed25519 key (base64url raw): it signs `cascade-served` statements (#10.5). */
  publicKey: string;
  /** The upload rate the source declared in its last heartbeat, bytes/s; null: unknown (the origin, a silent peer). */
  upRate: number | null;
}

/**
 * A declared rate is shared by the source's upload slots (4 by default) among its
 * receivers; a piece may take this many times its time at the declared rate.
 */
export const DECLARED_RATE_SHARE = 8;

/**
 * How long a source may take over a piece of `bytes` before it counts as stalled:
 * `stallMs` plus DECLARED_RATE_SHARE times the piece's time at its declared rate. With no
 * declared rate only silence counts (no bytes for `stallMs`; the client's own timeouts).
 */
export function pieceDeadlineMs(bytes: number, declaredRate: number | null, stallMs: number): number {
  return declaredRate && declaredRate > 0 ? stallMs + (DECLARED_RATE_SHARE * bytes * 1000) / declaredRate : Infinity;
}

/** A source's own word on its pieces overrules the origin's registry for this long (see Source.update). */
export const TOLD_FRESH_MS = 2000;

export type DropReason = 'stalled' | 'bad_piece' | 'refused' | 'slow';

export class Source {
  readonly client: PieceClient;
  grantId: string;
  /** The key its served statements must verify with (the pinned origin key for the origin). */
  readonly servedKey: KeyObject | null;
  upRate: number | null;
  inFlight = 0;
  failures = 0;
  busyUntil = 0;
  /** 503s in a row (the back-off doubles with each). */
  busyStreak = 0;
  bytes = 0;
  pieces = 0;
  /** Milliseconds spent with at least one request in flight, for the rate. */
  activeMs = 0;
  private activeSince = 0;
  dropped: DropReason | null = null;
  /** The origin has the report of the drop (it is sent once: when it happened, or at the end). */
  dropReported = false;
  needsGrant = false;
  /** When the source itself last said which pieces it has (a piece's `cascade-have`, a 404's, `/have`). */
  toldAt = -Infinity;
  /** When we last asked it (`/have`), and whether we are asking now. */
  askedAt = -Infinity;
  asking = false;
  /** Why the origin offered it, as it last said (an edge's routing reason, a peer's score parts). */
  why: string[];
  /** What the origin's registry says it has (null: all). */
  private known: ((i: number) => boolean) | null;
  /** What the source itself said it has, most recently (#19); pieces are only ever added while it fetches. */
  private told: ((i: number) => boolean) | null = null;
  private readonly lacks = new Set<number>();

  constructor(
    readonly id: string,
    readonly url: string,
    readonly isOrigin: boolean,
    offer: SourceOffer,
    client: PieceClient,
    servedKey: KeyObject | string,
  ) {
    this.grantId = offer.grant.id;
    this.known = offer.pieces === null ? null : rangeSet(offer.pieces);
    this.upRate = offer.upRate ?? null;
    this.why = offer.why ?? [];
    this.client = client;
    this.servedKey = keyOrNull(servedKey);
  }

  /** A fresher offer for the same source: new grant, newer piece list. */
  update(offer: SourceOffer, now: number) {
    this.known = offer.pieces === null ? null : rangeSet(offer.pieces);
    this.why = offer.why ?? this.why;
    this.upRate = offer.upRate ?? null;
    // The registry is seconds old; what the source told us lately is fresher (its 404s included).
    if (now - this.toldAt > TOLD_FRESH_MS) this.lacks.clear();
    if (offer.grant.id !== this.grantId) {
      this.grantId = offer.grant.id;
      this.client.setGrant({ id: offer.grant.id, token: offer.grant.token });
      this.needsGrant = false;
    }
  }

  has(i: number): boolean {
    return !this.lacks.has(i) && (this.known === null || this.known(i) || (this.told !== null && this.told(i)));
  }

  /** Whether it holds every piece, as far as we know. */
  get whole(): boolean {
    return this.known === null;
  }

  /** The origin serving us only a slice of a swarm: pieces nobody holds yet (coordinator.ts originSlice). */
  get originSlice(): boolean {
    return this.isOrigin && !this.whole;
  }

  /** The source said it does not have piece i (yet). */
  lack(i: number) {
    this.lacks.add(i);
  }

  /**
   * The source said which pieces it holds now (ranges; checked here: a malformed list is
   * ignored). Its word replaces our notes of what it lacked.
   */
  tell(ranges: string | null, pieceCount: number, now: number) {
    if (ranges === null) {
      this.known = null; // all of them
    } else {
      if (!parseRangeSpans(ranges, pieceCount) && ranges !== '') return;
      this.told = rangeSet(ranges);
    }
    this.lacks.clear();
    this.toldAt = now;
  }

  usable(now: number): boolean {
    return !this.dropped && !this.needsGrant && now >= this.busyUntil;
  }

  started(now: number) {
    if (this.inFlight++ === 0) this.activeSince = now;
  }

  finished(now: number) {
    if (--this.inFlight === 0) this.activeMs += now - this.activeSince;
  }

  /** Bytes per second while busy. */
  rate(now: number): number {
    const ms = this.activeMs + (this.inFlight > 0 ? now - this.activeSince : 0);
    return ms > 0 ? (this.bytes * 1000) / ms : 0;
  }
}

export class SourceSet {
  readonly all = new Map<string, Source>();

  constructor(
    private readonly opts: {
      contentId: string;
      receiverKey: KeyObject;
      clock: Clock;
      originUrl: string;
      /** The origin's key pinned at login: the origin's statements verify with it, whatever an offer says. */
      originKey: KeyObject | string;
      /** Connections per peer. */
      connections: number;
      /** Connections to the origin, which may take every request in flight. */
      originConnections: number;
      stallMs: number;
      sourceUrlOverride?: string;
    },
  ) {}

  apply(offers: SourceOffer[]) {
    const o = this.opts;
    for (const offer of offers) {
      const existing = this.all.get(offer.sourceId);
      if (existing) {
        if (!existing.dropped) existing.update(offer, o.clock.now());
        continue;
      }
      const isOrigin = offer.sourceUrl === null;
      const url = o.sourceUrlOverride ?? offer.sourceUrl ?? o.originUrl;
      const client = new PieceClient({
        sourceUrl: url,
        grant: { id: offer.grant.id, token: offer.grant.token, contentId: o.contentId },
        receiverKey: o.receiverKey,
        clock: o.clock,
        connections: isOrigin ? o.originConnections : o.connections,
        stallMs: o.stallMs,
      });
      this.all.set(offer.sourceId, new Source(offer.sourceId, url, isOrigin, offer, client, isOrigin ? o.originKey : offer.publicKey));
    }
  }

  dropped(): string[] {
    return [...this.all.values()].filter((s) => s.dropped).map((s) => s.id);
  }

  usable(now: number): Source[] {
    return [...this.all.values()].filter((s) => s.usable(now));
  }

  live(): Source[] {
    return [...this.all.values()].filter((s) => !s.dropped);
  }

  /**
   * The next piece for `source`, or -1. `needed` lists pieces neither held nor in flight, in
   * ascending order. Peers: rarest first among live peers. The origin serving everything: only
   * pieces no live peer has. The origin's slice of a swarm: its pieces but those a peer that
   * spreads fast has by now — a slow peer's copy does not count (#19: asked of a 1 MB/s peer
   * instead, a slice piece stayed rare for 13 s; and with every peer's copy ignored, the origin
   * sent a 16-agent swarm 1.42–1.56 copies of the file instead of ~1.0). With `runs`, among the rarest a piece that starts a stretch of needed ones comes first,
   * so that a request can ask for the pieces after it too (#19).
   */
  pick(source: Source, needed: Iterable<number>, mode: 'rarest' | 'sequential', runs = false): number {
    const peers = this.live().filter((s) => !s.isOrigin);
    const spreaders = source.originSlice ? this.spreaders(peers) : peers;
    let best = -1;
    let bestRank = Infinity;
    let ties = 0;
    let previous = -2;
    for (const i of needed) {
      if (!source.has(i)) continue;
      const count = peers.reduce((n, p) => n + (p.has(i) ? 1 : 0), 0);
      if (source.isOrigin && (source.originSlice ? spreaders.some((p) => p.has(i)) : count > 0)) continue;
      if (mode === 'sequential') return i;
      const rank = runs ? 2 * count + (previous === i - 1 ? 1 : 0) : count;
      previous = i;
      if (rank < bestRank) {
        best = i;
        bestRank = rank;
        ties = 1;
      } else if (rank === bestRank && Math.random() * ++ties < 1) {
        best = i; // reservoir sampling: a uniform choice among the rarest
      }
    }
    return best;
  }

  /** Whether `source` may be asked for piece `i` along with others (a run, #19): it has it, and the origin only what no live peer has (for its slice: no peer that spreads fast; see pick). */
  mayServe(source: Source, i: number): boolean {
    if (!source.has(i)) return false;
    if (!source.isOrigin) return true;
    const peers = this.live().filter((p) => !p.isOrigin);
    return !(source.originSlice ? this.spreaders(peers) : peers).some((p) => p.has(i));
  }

  /**
   * The peers that pass pieces on fast: all but those declaring under SLICE_MIN_UPLOAD_SHARE of the
   * fastest peer's upload (the origin's own rule for its slices, coordinator.ts).
   */
  private spreaders(peers: Source[]): Source[] {
    const fastest = Math.max(0, ...peers.map((p) => p.upRate ?? 0));
    return peers.filter((p) => p.upRate === null || p.upRate >= SLICE_MIN_UPLOAD_SHARE * fastest);
  }

  async close() {
    await Promise.all([...this.all.values()].map((s) => s.client.close()));
  }
}

/** A key to verify with, or null when the offer's is unusable (nothing it serves can then be kept). */
function keyOrNull(key: KeyObject | string): KeyObject | null {
  if (typeof key !== 'string') return key;
  try {
    return importPublicKey(key);
  } catch {
    return null;
  }
}
