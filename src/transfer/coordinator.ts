import type { Transaction } from 'kysely';
import type { Clock } from '../core/clock.ts';
import type { Database } from '../db/schema.ts';
import type { Reservation } from '../ledger/reservations.ts';
import { AppError, badRequest } from '../core/errors.ts';
import { pieceLength } from '../content/manifest.ts';
import type { EventBus } from '../core/event-bus.ts';
import type { ContentService } from '../content/service.ts';
import type { Holder, TerminalService } from '../terminals/service.ts';
import { decodeRanges, encodeRanges, rangeSet } from './piece-ranges.ts';
import { ORIGIN_SOURCE_ID } from './grant-token.ts';
import type { GrantService, IssuedGrant } from './grants.ts';
import type { ReputationService } from './reputation.ts';
import { formatRate, rankHolders, type HolderCandidate, type RejectionReason } from './selection.ts';
import { SLICE_MIN_UPLOAD_SHARE, type SourceOffer } from './source-set.ts';

export { SLICE_MIN_UPLOAD_SHARE };
import { checkPiecesDone, type TransferService, type Transfer } from './transfers.ts';

// S1.5/S1.7: the origin's side of a peer-assisted transfer. "Automatic" selection:
// rank the holders for this receiver (selection.ts explains the score), grant each
// chosen holder, and always add the origin as the last resort. Called again every few
// seconds by the receiver, it doubles as the progress report that keeps the transfer
// monitored, and it hands out replacements for sources the receiver dropped.


/** The ledger's side of a transfer (#4, #10): reserve before it starts, release what is left when it ends. */
export interface TransferBilling {
  /**
   * Prepares the reservation (outside any transaction); the function it returns reserves
   * in `trx`, the transaction that opens the transfer, and refuses (`insufficient_balance`)
   * when the receiver cannot pay for the bytes it still lacks. Null: nothing to reserve (the
   * receiver is not charged: an edge filling its cache, S2.1).
   */
  prepare(req: { receiverId: string; contentId: string; missingBytes: number }): Promise<((trx: Transaction<Database>) => Promise<Reservation>) | null>;
  release(req: { receiverId: string; contentId: string }): Promise<void>;
}

export interface OfferRequest {
  contentId: string;
  transferId?: string;
  /** Sources the receiver gave up on (stalled, refused, bad bytes, slow). */
  exclude?: string[];
  maxPeers?: number;
  piecesDone?: number;
  /** Ranges of pieces the receiver has verified; lets the origin hand out only what it still needs. */
  have?: string;
  /** The receiver serves `have` (an agent): record it as its holdings (#19: the refresh doubles as the report). */
  announce?: boolean;
}

/**
 * S2.2: the edge domain's routing, as the coordinator needs it (the edge domain implements it;
 * the transfer domain does not read its tables). Edges are terminals, but they are not ranked
 * as peers: a receiver is directed to one edge chosen by location and load, first.
 */
export interface EdgeRouter {
  route(receiverId: string, contentId: string, exclude: readonly string[]): Promise<{ edge: { terminalId: string; serveUrl: string; holds: boolean }; publicKey: string; why: string } | null>;
  /** Which of these terminals are edges (not ranked as peers). */
  edgeTerminals(terminalIds: readonly string[]): Promise<Set<string>>;
}

/** A holder of the content that was not offered to this receiver, and why (S1.5; "tell people why"). */
export interface SkippedHolder {
  sourceId: string;
  reason: Exclude<RejectionReason, 'self'>;
  why: string;
}

/** What /grants/auto answers. */
export interface Offer {
  transferId: string;
  sources: SourceOffer[];
  /** Holders not offered, by terminal ID (the receiver itself left out). */
  skipped: SkippedHolder[];
  reservation?: Reservation;
  /** With `announce`: why the holdings were not recorded. */
  announceRefused?: { code: string; message: string };
}

/** How long a piece handed to one receiver's origin slice is not handed to another (it is on its way into the swarm). */
export const SLICE_HOLD_MS = 4000;

/**
 * Pieces in one receiver's origin slice at most: two rounds of its slice requests
 * (downloader.ts ORIGIN_SLICE_REQUESTS). A share of the content per receiver seen so far gave the
 * first callers of a swarm most of it, which a slow one held for seconds while the others had
 * nothing from the origin (#19: the mixed 32-agent swarm took 19.8–25.0 s, mean 23.3, against
 * 25.8–33.2, mean 29.0, in 6 interleaved pairs, and the origin sent 1.2–1.5 copies of the file in
 * five of them against 2.0–2.4; docs/benchmarks.md).
 */
export const SLICE_MAX_PIECES = 4;


export class PeerCoordinator {
  /** Unexpired grants per transfer and source, reused while more than half their life is left. */
  private readonly grantCache = new Map<string, IssuedGrant>();
  /** Per content: when each piece was last put in some receiver's origin slice. */
  private readonly sliced = new Map<string, Float64Array>();
  /** Per transfer: the peers offered to its receiver so far (it keeps them until it excludes them). */
  private readonly offeredPeers = new Map<string, Set<string>>();
  /** Per transfer: the pieces its receiver should get from the origin (see originSlice). */
  private readonly slices = new Map<string, number[]>();
  /** Per content: receivers that asked for sources recently (transfer ID → last call, and the upload it declared, bits/s). */
  private readonly receiving = new Map<string, Map<string, { at: number; upload: number }>>();

  constructor(
    private readonly deps: {
      clock: Clock;
      content: ContentService;
      terminals: TerminalService;
      grants: GrantService;
      reputation: ReputationService;
      transfers: TransferService;
      bus: EventBus;
      grantTtlMs: number;
      billing?: TransferBilling;
      edges?: EdgeRouter;
      /** The origin's public key (base64url), offered with the origin as a source. */
      originKey: string;
    },
  ) {}

  async offer(receiverId: string, req: OfferRequest): Promise<Offer> {
    const { content, transfers } = this.deps;
    const manifest = await content.getManifest(req.contentId);
    const pieceCount = manifest.body.pieces.length;
    // Everything the request says is checked before anything is reserved or written (#10 point 3).
    checkPiecesDone(req.piecesDone, pieceCount);
    const have = req.have ? decodeRanges(req.have, pieceCount) : null;
    if (req.have && !have) throw badRequest('invalid_pieces', `have must be ascending ranges within 0-${pieceCount - 1}.`);
    let transfer: Transfer;
    let reservation: Reservation | undefined;
    if (req.transferId) {
      // Checked before the progress is recorded: a refused offer changes nothing.
      const mine = await transfers.mine(req.transferId, receiverId);
      if (mine.content_id !== req.contentId) throw badRequest('transfer_mismatch', 'That transfer is for another content.');
      transfer = await transfers.progress(mine, req.piecesDone ?? 0, false);
    } else {
      // S1 flow: the balance check (and reservation) comes first, in the transaction that opens
      // the transfer; a receiver's unfinished transfer of this content is resumed, not doubled.
      const haveBytes = (have ?? []).reduce((sum, i) => sum + pieceLength(manifest.body, i), 0);
      const missingBytes = manifest.body.totalSize - haveBytes;
      const reserve = this.deps.billing && missingBytes > 0 ? await this.deps.billing.prepare({ receiverId, contentId: req.contentId, missingBytes }) : null;
      const opened = await transfers.openOrResume({ receiverId, contentId: req.contentId, piecesTotal: pieceCount, verified: have?.length ?? 0 }, (trx) =>
        reserve ? reserve(trx) : Promise.resolve(undefined),
      );
      transfer = opened.transfer;
      reservation = opened.held;
      if (transfer.state === 'done') await this.finished(transfer);
    }
    // #19: an agent's refresh doubles as its holdings report (the first claim is spot-checked, as
    // PUT /terminals/holdings/…/pieces does). A refused report does not stop the transfer: it is said.
    // The offer is worked out meanwhile: a spot check fetches a piece from the receiver at its capped
    // upload (seconds at 1 MB/s), and a slice worked out after it went by pieces the receiver had
    // long since (#19: re-stamped, they were kept from everyone else for another SLICE_HOLD_MS).
    const announcing: Promise<Offer['announceRefused']> =
      req.announce && have && have.length
        ? this.deps.terminals.reportPieces(receiverId, req.contentId, req.have!).then(
            () => undefined,
            (err) => {
              if (!(err instanceof AppError)) throw err;
              return { code: err.code, message: err.message };
            },
          )
        : Promise.resolve(undefined);
    // Awaited below; a failure meanwhile is not left unhandled.
    announcing.catch(() => {});
    const maxPeers = req.maxPeers ?? 6;
    let holders = maxPeers > 0 ? await this.deps.terminals.holders(transfer.content_id) : [];
    // S2.2: an edge chosen by location and load serves first; edges are never ranked as peers.
    const edge = maxPeers > 0 ? await this.edgeOffer(transfer, req.exclude ?? []) : null;
    if (this.deps.edges && holders.length) {
      const edgeIds = await this.deps.edges.edgeTerminals(holders.map((h) => h.terminalId));
      holders = holders.filter((h) => !edgeIds.has(h.terminalId));
    }
    const me = await this.deps.terminals.current(transfer.receiver_id);
    const selected = await this.selectPeers(transfer, me, holders, req.exclude ?? [], maxPeers - (edge ? 1 : 0), pieceCount);
    const peers = edge ? [edge, ...selected.offers] : selected.offers;
    const skipped = selected.skipped;
    const upload = me.state?.upBps ?? 0;
    const receivers = this.activeReceivers(transfer, upload);
    const spreadsFast = upload >= SLICE_MIN_UPLOAD_SHARE * receivers.fastest;
    // Only the peers offered to this receiver count as holding a piece for it: one it excluded does not.
    // And a piece only slow peers hold is still rare: their copies do not count (SLICE_MIN_UPLOAD_SHARE).
    const spreaders = peers.filter((p) => p.upRate === null || p.upRate * 8 >= SLICE_MIN_UPLOAD_SHARE * receivers.fastest);
    let slice = peers.length > 0 || receivers.count > 1 ? this.originSlice(transfer, spreaders, new Set(have ?? []), pieceCount, spreadsFast) : null;
    // Holders exist but none can serve this receiver (excluded, saturated…): waiting for peers
    // would starve it, so the origin serves it all. (With no holders yet — a swarm starting —
    // the pieces handed to others will reach it through them.)
    // But a receiver that still has peers from earlier offers fetches from them: all holders being
    // busy (saturated) is a swarm at full speed, not a reason to send it everything (#19: the origin
    // sent a 32-agent swarm two to three copies of the file).
    const earlier = this.offeredPeers.get(transfer.id);
    for (const p of peers) {
      if (earlier) earlier.add(p.sourceId);
      else this.offeredPeers.set(transfer.id, new Set([p.sourceId]));
    }
    const hasPeers = peers.length > 0 || [...(earlier ?? [])].some((id) => !req.exclude?.includes(id));
    if (slice && slice.length === 0 && !hasPeers && holders.length > 0) slice = null;
    if (this.offeredPeers.size > 100_000) this.offeredPeers.clear();
    const announceRefused = await announcing;
    const slowNote = slice && !slice.length && !spreadsFast ? `your upload, ${formatRate(upload)}, is under ${SLICE_MIN_UPLOAD_SHARE * 100}% of the fastest receiver's, ${formatRate(receivers.fastest)}: pieces nobody holds yet go first to receivers that pass them on faster` : null;
    return { transferId: transfer.id, sources: [...peers, await this.originOffer(transfer, slice, slowNote)], skipped, ...(reservation ? { reservation } : {}), ...(announceRefused ? { announceRefused } : {}) };
  }

  /** A finished transfer no longer counts as a receiver of its content, and what it had reserved is released. */
  async finished(transfer: { id: string; content_id: string; receiver_id: string }) {
    this.receiving.get(transfer.content_id)?.delete(transfer.id);
    this.slices.delete(transfer.id);
    this.offeredPeers.delete(transfer.id);
    await this.deps.billing?.release({ receiverId: transfer.receiver_id, contentId: transfer.content_id });
  }

  /** Receivers of this content that called in during the last few seconds, this one included, and the fastest upload among them (bits/s). */
  private activeReceivers(transfer: Transfer, upload: number): { count: number; fastest: number } {
    const now = this.deps.clock.now();
    let map = this.receiving.get(transfer.content_id);
    if (!map) this.receiving.set(transfer.content_id, (map = new Map()));
    map.set(transfer.id, { at: now, upload });
    let fastest = 0;
    for (const [id, r] of map) {
      if (now - r.at > SLICE_HOLD_MS) map.delete(id);
      else fastest = Math.max(fastest, r.upload);
    }
    return { count: map.size, fastest };
  }

  /**
   * In a swarm the origin should send each piece into it about once, and let the peers
   * spread it ("super-seeding"). Each receiver gets from the origin only a slice: pieces
   * it lacks that no holder has and that were not handed to anyone in the last
   * SLICE_HOLD_MS (they are on their way into the swarm). A piece whose slice went
   * nowhere (its receiver died) is handed out again after that. A receiver that would pass
   * pieces on slowly (`spreadsFast` false, SLICE_MIN_UPLOAD_SHARE) gets no slice, and one
   * it was handed goes to the next caller. An empty slice means: wait for the peers (the caller serves a
   * receiver with no peers everything instead).
   */
  private originSlice(transfer: Transfer, peers: SourceOffer[], have: Set<number>, pieceCount: number, spreadsFast: boolean): number[] {
    const now = this.deps.clock.now();
    let last = this.sliced.get(transfer.content_id);
    if (!last) this.sliced.set(transfer.content_id, (last = new Float64Array(pieceCount)));
    const held = peers.map((p) => (p.pieces === null ? () => true : rangeSet(p.pieces)));
    const wanted = (i: number) => !have.has(i) && !held.some((h) => h(i));
    if (!spreadsFast) {
      // A slice handed out before a faster receiver called in goes back at once (#19: the first
      // eight callers of a mixed swarm were its 1 MB/s agents; renewed at every call, their slices
      // kept half the file's first copies on slow links, and the origin sent those pieces again).
      for (const i of this.slices.get(transfer.id) ?? []) last[i] = 0;
      this.slices.delete(transfer.id);
      return [];
    }
    // A receiver keeps its slice until it has those pieces or a peer does.
    const current = (this.slices.get(transfer.id) ?? []).filter(wanted);
    if (current.length) {
      // Still on their way to a receiver that is calling in: not handed to anyone else meanwhile
      // (#19: under a rate cap a slice can take longer than SLICE_HOLD_MS to arrive; handing it out
      // again made the origin send a 32-agent swarm three copies of the file).
      for (const i of current) last[i] = now;
      this.slices.set(transfer.id, current);
      return current;
    }
    const fresh: number[] = [];
    for (let i = 0; i < pieceCount; i++) if (wanted(i) && now - last[i] >= SLICE_HOLD_MS) fresh.push(i);
    // Oldest hand-out first; among equals, a random order so receivers calling together differ.
    fresh.sort((a, b) => last![a] - last![b] || Math.random() - 0.5);
    const receivers = this.receiving.get(transfer.content_id)?.size ?? 1;
    const chosen = fresh.slice(0, Math.min(SLICE_MAX_PIECES, Math.max(2, Math.ceil(pieceCount / receivers))));
    for (const i of chosen) last[i] = now;
    this.slices.set(transfer.id, chosen);
    if (this.slices.size > 100_000) this.slices.clear();
    return chosen.sort((a, b) => a - b);
  }

  private async selectPeers(
    transfer: Transfer,
    me: Awaited<ReturnType<TerminalService['current']>>,
    holders: Holder[],
    exclude: string[],
    max: number,
    pieceCount: number,
  ): Promise<{ offers: SourceOffer[]; skipped: SkippedHolder[] }> {
    const { terminals, reputation } = this.deps;
    if (max <= 0 || holders.length === 0) return { offers: [], skipped: [] };
    const reps = await reputation.get(holders.map((h) => h.terminalId));
    const excluded = await reputation.excludedFor(transfer.content_id, transfer.receiver_id);
    for (const id of exclude) excluded.add(id);
    const candidates: HolderCandidate[] = holders.map((h) => ({
      terminalId: h.terminalId,
      serveUrl: h.serveUrl,
      region: h.region,
      network: h.network,
      online: h.online,
      state: h.state,
      reputation: reps.get(h.terminalId)!,
      excluded: excluded.has(h.terminalId),
      pieces: h.pieces,
    }));
    const { ranked, rejected } = rankHolders(
      { terminalId: transfer.receiver_id, region: me.terminal.region, network: me.terminal.network, state: me.state },
      candidates,
      { max, pieceCount },
    );
    const byId = new Map(holders.map((h) => [h.terminalId, h]));
    const offers: SourceOffer[] = [];
    for (const r of ranked) {
      const grant = await this.grantFor(transfer, r.terminalId);
      const holder = byId.get(r.terminalId)!;
      offers.push({
        sourceId: r.terminalId,
        sourceUrl: r.serveUrl,
        pieces: holder.pieces,
        score: r.score,
        why: r.why,
        grant: pick(grant),
        publicKey: holder.publicKey,
        // #10.4: the rate it declared (heartbeats say bits/s); receivers judge its stalls by it.
        upRate: holder.state ? Math.floor(holder.state.upBps / 8) : null,
      });
    }
    // The receiver itself (a partial holder of what it is fetching) is no news to it.
    const skipped = rejected.flatMap((r) => (r.reason === 'self' ? [] : [{ sourceId: r.terminalId, reason: r.reason, why: r.why }]));
    return { offers, skipped };
  }

  /** The routed edge (S2.2) as a source for this receiver, or null. */
  private async edgeOffer(transfer: Transfer, exclude: readonly string[]): Promise<SourceOffer | null> {
    const routed = await this.deps.edges?.route(transfer.receiver_id, transfer.content_id, exclude);
    if (!routed) return null;
    const grant = await this.grantFor(transfer, routed.edge.terminalId);
    // An edge serves the whole content: what it lacks it fetches while serving (a miss).
    return { sourceId: routed.edge.terminalId, sourceUrl: routed.edge.serveUrl, pieces: null, score: null, why: [routed.why], grant: pick(grant), publicKey: routed.publicKey, upRate: null };
  }

  private async originOffer(transfer: Transfer, slice: number[] | null, note: string | null = null): Promise<SourceOffer> {
    const grant = await this.grantFor(transfer, ORIGIN_SOURCE_ID);
    const why = slice
      ? [`the origin: last resort; in this swarm it sends you ${slice.length} piece(s) nobody holds yet, peers spread the rest`, ...(note ? [note] : [])]
      : ['the origin: last resort, for pieces no chosen peer has'];
    // The origin's link is shared by every receiver: it declares no per-receiver rate and is judged by silence alone.
    return { sourceId: ORIGIN_SOURCE_ID, sourceUrl: null, pieces: slice ? encodeRanges(slice) : null, score: null, why, grant: pick(grant), publicKey: this.deps.originKey, upRate: null };
  }

  /** Grants cover the whole content: availability is the source's business, permission is ours. */
  private async grantFor(transfer: Transfer, sourceId: string): Promise<IssuedGrant> {
    const key = `${transfer.id}|${sourceId}`;
    const cached = this.grantCache.get(key);
    if (cached && Date.parse(cached.expiresAt) - this.deps.clock.now() > this.deps.grantTtlMs / 2) return cached;
    const grant = await this.deps.grants.issue(transfer.receiver_id, { contentId: transfer.content_id, sourceId, transferId: transfer.id });
    if (this.grantCache.size > 50_000) this.grantCache.clear();
    this.grantCache.set(key, grant);
    return grant;
  }

  /**
   * S1.7: transfers nobody reported on for too long are reassigned by the origin
   * itself: fresh grants for other holders (not the ones it had), announced on the
   * bus so the receiver's next call — or a push channel — picks them up.
   */
  async reassignStalled(): Promise<{ transferId: string; sources: string[] }[]> {
    const stalled = await this.deps.transfers.markStalled();
    const out: { transferId: string; sources: string[] }[] = [];
    for (const t of stalled) {
      const previous = [...this.grantCache.keys()].filter((k) => k.startsWith(`${t.id}|`)).map((k) => k.slice(t.id.length + 1));
      for (const source of previous) this.grantCache.delete(`${t.id}|${source}`);
      const manifest = await this.deps.content.getManifest(t.content_id);
      const holders = await this.deps.terminals.holders(t.content_id);
      const { offers: peers } = await this.selectPeers(t, await this.deps.terminals.current(t.receiver_id), holders, previous.filter((s) => s !== ORIGIN_SOURCE_ID), 6, manifest.body.pieces.length);
      const sources = [...peers.map((p) => p.sourceId), ORIGIN_SOURCE_ID];
      if (!peers.length) await this.originOffer(t, null);
      this.deps.bus.publish('transfer.reassigned', { transferId: t.id, receiverId: t.receiver_id, sources });
      out.push({ transferId: t.id, sources });
    }
    return out;
  }
}

function pick(g: IssuedGrant): SourceOffer['grant'] {
  return { id: g.id, token: g.token, expiresAt: g.expiresAt };
}
