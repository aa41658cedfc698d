import type { Clock } from '../core/clock.ts';
import { badRequest } from '../core/errors.ts';
import type { EventBus } from '../core/event-bus.ts';
import type { ContentService } from '../content/service.ts';
import type { TerminalService } from '../terminals/service.ts';
import type { GrantService, IssuedGrant } from './grants.ts';
import type { ReputationService } from './reputation.ts';
import { rankHolders, type HolderCandidate } from './selection.ts';
import type { SourceOffer } from './source-set.ts';
import type { TransferService, Transfer } from './transfers.ts';

// S1.5/S1.7: the origin's side of a peer-assisted transfer. "Automatic" selection:
// rank the holders for this receiver (selection.ts explains the score), grant each
// chosen holder, and always add the origin as the last resort. Called again every few
// seconds by the receiver, it doubles as the progress report that keeps the transfer
// monitored, and it hands out replacements for sources the receiver dropped.

export const ORIGIN = 'origin';

export interface OfferRequest {
  contentId: string;
  transferId?: string;
  /** Sources the receiver gave up on (stalled, refused, bad bytes, slow). */
  exclude?: string[];
  maxPeers?: number;
  piecesDone?: number;
}

export class PeerCoordinator {
  /** Unexpired grants per transfer and source, reused while more than half their life is left. */
  private readonly grantCache = new Map<string, IssuedGrant>();

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
    },
  ) {}

  async offer(receiverId: string, req: OfferRequest): Promise<{ transferId: string; sources: SourceOffer[] }> {
    const { content, transfers } = this.deps;
    const manifest = await content.getManifest(req.contentId);
    const pieceCount = manifest.body.pieces.length;
    const done = Math.max(0, req.piecesDone ?? 0);
    const transfer = req.transferId
      ? await transfers.progress(req.transferId, receiverId, done, false)
      : await transfers.open(receiverId, req.contentId, pieceCount, done);
    if (transfer.content_id !== req.contentId) throw badRequest('transfer_mismatch', 'That transfer is for another content.');
    const peers = await this.selectPeers(transfer, req.exclude ?? [], req.maxPeers ?? 6, pieceCount);
    return { transferId: transfer.id, sources: [...peers, await this.originOffer(transfer)] };
  }

  private async selectPeers(transfer: Transfer, exclude: string[], max: number, pieceCount: number): Promise<SourceOffer[]> {
    const { terminals, reputation } = this.deps;
    if (max <= 0) return [];
    const holders = await terminals.holders(transfer.content_id);
    if (holders.length === 0) return [];
    const me = await terminals.profile(transfer.receiver_id, 0);
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
    const { ranked } = rankHolders(
      { terminalId: transfer.receiver_id, region: me.terminal.region, network: me.terminal.network, state: me.state },
      candidates,
      { max, pieceCount },
    );
    const byId = new Map(holders.map((h) => [h.terminalId, h]));
    const offers: SourceOffer[] = [];
    for (const r of ranked) {
      const grant = await this.grantFor(transfer, r.terminalId);
      offers.push({ sourceId: r.terminalId, sourceUrl: r.serveUrl, pieces: byId.get(r.terminalId)!.pieces, score: r.score, why: r.why, grant: pick(grant) });
    }
    return offers;
  }

  private async originOffer(transfer: Transfer): Promise<SourceOffer> {
    const grant = await this.grantFor(transfer, ORIGIN);
    return { sourceId: ORIGIN, sourceUrl: null, pieces: null, score: null, why: ['the origin: last resort, for pieces no chosen peer has'], grant: pick(grant) };
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
      const peers = await this.selectPeers(t, previous.filter((s) => s !== ORIGIN), 6, manifest.body.pieces.length);
      const sources = [...peers.map((p) => p.sourceId), ORIGIN];
      if (!peers.length) await this.originOffer(t);
      this.deps.bus.publish('transfer.reassigned', { transferId: t.id, receiverId: t.receiver_id, sources });
      out.push({ transferId: t.id, sources });
    }
    return out;
  }
}

function pick(g: IssuedGrant): SourceOffer['grant'] {
  return { id: g.id, token: g.token, expiresAt: g.expiresAt };
}
