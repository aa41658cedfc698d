import type { KeyObject } from 'node:crypto';
import { PieceClient } from './piece-client.ts';
import { rangeSet } from './piece-ranges.ts';

// The receiver's view of the sources it may fetch from (S1.5–S1.7): which pieces each
// has, how fast it has been, and which ones were dropped and why. It also decides
// which piece to ask each source for: rarest first among the peers (random among
// equals, so receivers starting together spread out), or in order for streaming; the
// origin only serves pieces no usable peer has — it is the last resort.

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
}

export type DropReason = 'stalled' | 'bad_piece' | 'refused' | 'slow';

export class Source {
  client: PieceClient;
  grantId: string;
  inFlight = 0;
  failures = 0;
  busyUntil = 0;
  bytes = 0;
  pieces = 0;
  /** Milliseconds spent with at least one request in flight, for the rate. */
  activeMs = 0;
  private activeSince = 0;
  dropped: DropReason | null = null;
  needsGrant = false;
  private known: ((i: number) => boolean) | null;
  private readonly lacks = new Set<number>();

  constructor(
    readonly id: string,
    readonly url: string,
    readonly isOrigin: boolean,
    offer: SourceOffer,
    contentId: string,
    receiverKey: KeyObject,
    connections: number,
    stallMs: number,
  ) {
    this.grantId = offer.grant.id;
    this.known = offer.pieces === null ? null : rangeSet(offer.pieces);
    this.client = new PieceClient(url, { id: offer.grant.id, token: offer.grant.token, contentId }, receiverKey, connections, stallMs);
  }

  /** A fresher offer for the same source: new grant, newer piece list. */
  update(offer: SourceOffer) {
    this.known = offer.pieces === null ? null : rangeSet(offer.pieces);
    this.lacks.clear();
    if (offer.grant.id !== this.grantId) {
      this.grantId = offer.grant.id;
      this.client.setGrant({ id: offer.grant.id, token: offer.grant.token });
      this.needsGrant = false;
    }
  }

  has(i: number): boolean {
    return !this.lacks.has(i) && (this.known === null || this.known(i));
  }

  /** The source said it does not have piece i (yet). */
  lack(i: number) {
    this.lacks.add(i);
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
    private readonly contentId: string,
    private readonly receiverKey: KeyObject,
    private readonly originUrl: string,
    /** `connections`: per peer; `originConnections`: to the origin, which may take every request in flight. */
    private readonly opts: { connections: number; originConnections: number; stallMs: number; sourceUrlOverride?: string },
  ) {}

  apply(offers: SourceOffer[]) {
    for (const offer of offers) {
      const existing = this.all.get(offer.sourceId);
      if (existing) {
        if (!existing.dropped) existing.update(offer);
        continue;
      }
      const url = this.opts.sourceUrlOverride ?? offer.sourceUrl ?? this.originUrl;
      this.all.set(
        offer.sourceId,
        new Source(
          offer.sourceId,
          url,
          offer.sourceUrl === null,
          offer,
          this.contentId,
          this.receiverKey,
          offer.sourceUrl === null ? this.opts.originConnections : this.opts.connections,
          this.opts.stallMs,
        ),
      );
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
   * The next piece for `source`, or -1. `needed` lists pieces neither held nor in flight.
   * Peers: rarest first among live peers. The origin: only pieces no live peer has.
   */
  pick(source: Source, needed: Iterable<number>, mode: 'rarest' | 'sequential'): number {
    const peers = this.live().filter((s) => !s.isOrigin);
    let best = -1;
    let bestCount = Infinity;
    let ties = 0;
    for (const i of needed) {
      if (!source.has(i)) continue;
      const count = peers.reduce((n, p) => n + (p.has(i) ? 1 : 0), 0);
      if (source.isOrigin && count > 0) continue;
      if (mode === 'sequential') return i;
      if (count < bestCount) {
        best = i;
        bestCount = count;
        ties = 1;
      } else if (count === bestCount && Math.random() * ++ties < 1) {
        best = i; // reservoir sampling: a uniform choice among the rarest
      }
    }
    return best;
  }

  async close() {
    await Promise.all([...this.all.values()].map((s) => s.client.close()));
  }
}
