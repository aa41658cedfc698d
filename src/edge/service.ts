import type { Clock } from '../core/clock.ts';
import { badRequest, forbidden, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Principal } from '../core/http.ts';
import { arrayLiteral } from '../db/array-literal.ts';
import { sql, type Db } from '../db/connection.ts';
import { edgeTerminalsIn } from './queries.ts';
import { contentsByIds, newestContents } from '../content/queries.ts';
import type { TerminalService } from '../terminals/service.ts';
import { requestCounts } from '../transfer/queries.ts';
import { planPlacement, type HeldContent, type Placement } from './placement.ts';
import { routeToEdge, type EdgeCandidate, type RoutedEdge } from './routing.ts';
import { EDGE_KINDS, PLACEMENT_POLICIES, type EdgeKind, type EdgeStats, type EdgesTable, type PlacementPolicy } from './tables.ts';

// S2.1, S2.2: the origin's registry of edge servers — who they are, what they hold, what
// they should hold (placement.ts) and which one serves a receiver (routing.ts).

/** An edge that sent no report for this long is offline: not routed to. */
export const EDGE_OFFLINE_MS = 30_000;
/** "Most requested" counts transfers opened over this window. */
export const REQUEST_WINDOW_MS = 7 * 86_400_000;
/** Candidates a policy looks at (the most requested, or the newest, contents). */
const CANDIDATES = 200;
export const MAX_LABEL = 200;

export interface Edge {
  id: string;
  terminalId: string;
  ownerId: string;
  kind: EdgeKind;
  label: string;
  cacheBytes: number;
  serveUrl: string;
  policy: PlacementPolicy;
  online: boolean;
  lastReportAt: string | null;
  stats: EdgeStats | null;
  /** hits ÷ (hits + misses), null before any request. */
  hitRate: number | null;
  createdAt: string;
}

export interface EdgeHolding {
  contentId: string;
  title: string | null;
  bytes: number;
  complete: boolean;
  lastUsedAt: string;
  pinned: boolean;
}

export interface HoldingReport {
  contentId: string;
  bytes: number;
  complete: boolean;
  /** The edge's time (ms) it last used it. */
  lastUsedAt: number;
}

export interface RegisterEdge {
  kind: EdgeKind;
  label: string;
  cacheBytes: number;
  policy?: PlacementPolicy;
}

/** Contents an edge must keep now (rentals playing, orders being written): other parts say. */
export type InUseSource = (edgeId: string) => Promise<Set<string>>;

export class EdgeService {
  private inUseSources: InUseSource[] = [];

  constructor(private readonly deps: { db: Db; clock: Clock; terminals: TerminalService }) {}

  /** Home rentals and store orders register what their edges must keep. */
  addInUseSource(source: InUseSource) {
    this.inUseSources.push(source);
  }

  /**
   * S2.1: the calling terminal becomes (or, started again, stays) an edge. Only a terminal
   * of an operator may: an edge earns for what it serves and is trusted with its reports.
   */
  async register(principal: Principal, input: RegisterEdge): Promise<Edge> {
    if (!principal.terminalId) throw forbidden('terminal_session_required', 'An edge registers with its own terminal session (cascade edge does it).');
    if (!principal.roles.includes('operator')) throw forbidden('operator_required', 'Only an operator’s terminal can be an edge: start `cascade edge` signed in as an operator.');
    if (!EDGE_KINDS.includes(input.kind)) throw badRequest('invalid_kind', `kind must be one of ${EDGE_KINDS.join(', ')}.`);
    const policy = input.policy ?? 'most_requested';
    if (!PLACEMENT_POLICIES.includes(policy)) throw badRequest('invalid_policy', `policy must be one of ${PLACEMENT_POLICIES.join(', ')}.`);
    const label = normaliseLabel(input.label);
    const terminal = await this.deps.terminals.get(principal.terminalId);
    if (!terminal.serveUrl) throw badRequest('no_serve_url', 'The edge must tell the origin where it serves (PUT /terminals/address) before registering.');
    const now = new Date(this.deps.clock.now());
    const existing = await this.deps.db.selectFrom('edges').select('id').where('terminal_id', '=', terminal.id).executeTakeFirst();
    if (existing) {
      await this.deps.db
        .updateTable('edges')
        .set({ kind: input.kind, label, cache_bytes: input.cacheBytes, serve_url: terminal.serveUrl, policy, updated_at: now })
        .where('id', '=', existing.id)
        .execute();
      return this.get(existing.id);
    }
    const id = newId('edg');
    await this.deps.db
      .insertInto('edges')
      .values({ id, terminal_id: terminal.id, owner_id: terminal.userId, kind: input.kind, label, cache_bytes: input.cacheBytes, serve_url: terminal.serveUrl, policy, stats: null, created_at: now, updated_at: now, last_report_at: null })
      .execute();
    return this.get(id);
  }

  async get(edgeId: string): Promise<Edge> {
    const row = await this.deps.db.selectFrom('edges').selectAll().where('id', '=', edgeId).executeTakeFirst();
    if (!row) throw notFound('unknown_edge', `No edge ${edgeId}.`);
    return this.toEdge(row);
  }

  async byTerminal(terminalId: string): Promise<Edge | null> {
    const row = await this.deps.db.selectFrom('edges').selectAll().where('terminal_id', '=', terminalId).executeTakeFirst();
    return row ? this.toEdge(row) : null;
  }

  /** The edge the calling terminal is, or `not_an_edge`. */
  async mine(principal: Principal): Promise<Edge> {
    const edge = principal.terminalId ? await this.byTerminal(principal.terminalId) : null;
    if (!edge) throw forbidden('not_an_edge', 'This terminal is not registered as an edge (start it with `cascade edge`).');
    return edge;
  }

  async list(filter: { kind?: EdgeKind } = {}): Promise<Edge[]> {
    let q = this.deps.db.selectFrom('edges').selectAll().orderBy('label').orderBy('id').limit(1000);
    if (filter.kind) q = q.where('kind', '=', filter.kind);
    return (await q.execute()).map((r) => this.toEdge(r));
  }

  /** Which of these terminals are edges (any kind). */
  async edgeTerminals(terminalIds: readonly string[]): Promise<Set<string>> {
    return edgeTerminalsIn(this.deps.db, terminalIds);
  }

  async holdings(edgeId: string): Promise<EdgeHolding[]> {
    const rows = await this.deps.db.selectFrom('edge_holdings').selectAll().where('edge_id', '=', edgeId).orderBy('last_used_at', 'desc').orderBy('content_id').execute();
    const pins = await this.pinned(edgeId);
    const facts = await contentsByIds(this.deps.db, rows.map((r) => r.content_id));
    return rows.map((r) => ({
      contentId: r.content_id,
      title: facts.get(r.content_id)?.title ?? null,
      bytes: Number(r.bytes),
      complete: r.complete,
      lastUsedAt: r.last_used_at.toISOString(),
      pinned: pins.includes(r.content_id),
    }));
  }

  /** Operators: change an edge's policy or cache size (the next report's plan follows it). */
  async configure(edgeId: string, input: { policy?: PlacementPolicy; cacheBytes?: number }): Promise<Edge> {
    await this.get(edgeId);
    if (input.policy && !PLACEMENT_POLICIES.includes(input.policy)) throw badRequest('invalid_policy', `policy must be one of ${PLACEMENT_POLICIES.join(', ')}.`);
    await this.deps.db
      .updateTable('edges')
      .set({ ...(input.policy ? { policy: input.policy } : {}), ...(input.cacheBytes ? { cache_bytes: input.cacheBytes } : {}), updated_at: new Date(this.deps.clock.now()) })
      .where('id', '=', edgeId)
      .execute();
    return this.get(edgeId);
  }

  async pin(edgeId: string, contentId: string): Promise<void> {
    await this.get(edgeId);
    if (!(await contentsByIds(this.deps.db, [contentId])).has(contentId)) throw notFound('unknown_content', `No content ${contentId}.`);
    await this.deps.db
      .insertInto('edge_pins')
      .values({ edge_id: edgeId, content_id: contentId, created_at: new Date(this.deps.clock.now()) })
      .onConflict((oc) => oc.doNothing())
      .execute();
  }

  async unpin(edgeId: string, contentId: string): Promise<boolean> {
    await this.get(edgeId);
    const res = await this.deps.db.deleteFrom('edge_pins').where('edge_id', '=', edgeId).where('content_id', '=', contentId).executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }

  /**
   * An edge's report (every few seconds): what it holds, its counters. Answers the plan —
   * what to fetch, what to drop — so the origin's placement reaches the edge as the answer
   * to its own call (no inbound connection to the edge is needed).
   */
  async report(edge: Edge, input: { holdings: HoldingReport[]; stats: EdgeStats }): Promise<Placement> {
    const now = new Date(this.deps.clock.now());
    const known = await contentsByIds(this.deps.db, input.holdings.map((h) => h.contentId));
    // Holdings of contents the origin does not know (deleted, or made up) are not recorded.
    const holdings = input.holdings.filter((h) => known.has(h.contentId));
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('edge_holdings').where('edge_id', '=', edge.id).execute();
      if (holdings.length) {
        await trx
          .insertInto('edge_holdings')
          .values(holdings.map((h) => ({ edge_id: edge.id, content_id: h.contentId, bytes: h.bytes, complete: h.complete, last_used_at: new Date(Math.min(h.lastUsedAt, now.getTime())) })))
          .onConflict((oc) => oc.columns(['edge_id', 'content_id']).doNothing())
          .execute();
      }
      await trx.updateTable('edges').set({ stats: JSON.stringify(input.stats) as unknown as EdgeStats, last_report_at: now }).where('id', '=', edge.id).execute();
    });
    const plan = await this.plan(edge, holdings);
    // Unknown contents the edge holds go too: nobody can be served them.
    for (const h of input.holdings) if (!known.has(h.contentId)) plan.evict.push({ contentId: h.contentId, why: 'the origin does not know this content (any more)' });
    // The edge drops what the plan evicts as it gets the answer: nobody is routed to those copies
    // from now on (should it keep one, in use, its next report says so).
    const evicted = plan.evict.map((e) => e.contentId).filter((id) => known.has(id));
    if (evicted.length) await this.deps.db.deleteFrom('edge_holdings').where('edge_id', '=', edge.id).where('content_id', '=', sql<string>`any(${arrayLiteral(evicted)}::text[])`).execute();
    return plan;
  }

  /** S2.1: the placement for an edge now (placement.ts). */
  async plan(edge: Edge, held?: HoldingReport[]): Promise<Placement> {
    const { db, clock } = this.deps;
    const holdings: HeldContent[] = held
      ? held.map((h) => ({ contentId: h.contentId, bytes: h.bytes, complete: h.complete, lastUsedAt: h.lastUsedAt }))
      : (await this.holdings(edge.id)).map((h) => ({ contentId: h.contentId, bytes: h.bytes, complete: h.complete, lastUsedAt: Date.parse(h.lastUsedAt) }));
    const pins = await this.pinned(edge.id);
    let candidates: { contentId: string; bytes: number; requests?: number; createdAt?: number }[] = [];
    if (edge.policy === 'most_requested') {
      // Edges filling their caches are not demand.
      const edgeTerminals = (await this.list()).map((e) => e.terminalId);
      const counts = await requestCounts(db, new Date(clock.now() - REQUEST_WINDOW_MS), CANDIDATES, edgeTerminals);
      const facts = await contentsByIds(db, counts.map((c) => c.contentId));
      candidates = counts.filter((c) => facts.has(c.contentId)).map((c) => ({ contentId: c.contentId, bytes: facts.get(c.contentId)!.totalSize, requests: c.requests }));
    } else if (edge.policy === 'recently_added') {
      candidates = (await newestContents(db, CANDIDATES)).map((c) => ({ contentId: c.id, bytes: c.totalSize, createdAt: c.createdAt }));
    }
    const pinFacts = await contentsByIds(db, pins);
    const inUse = new Set<string>();
    for (const source of this.inUseSources) for (const id of await source(edge.id)) inUse.add(id);
    return planPlacement({
      policy: edge.policy,
      cacheBytes: edge.cacheBytes,
      pinned: pins.filter((p) => pinFacts.has(p)).map((p) => ({ contentId: p, bytes: pinFacts.get(p)!.totalSize })),
      candidates,
      held: holdings,
      inUse,
    });
  }

  /**
   * S2.2: the delivery edge that should serve this receiver this content, or null (the origin
   * does). `exclude`: terminal IDs the receiver gave up on.
   */
  async route(receiverTerminalId: string, contentId: string, exclude: readonly string[] = []): Promise<(RoutedEdge & { publicKey: string }) | null> {
    const edges = await this.list({ kind: 'delivery' });
    if (!edges.length) return null;
    const holders = await this.deps.db
      .selectFrom('edge_holdings')
      .select('edge_id')
      .where('content_id', '=', contentId)
      .where('complete', '=', true)
      .execute();
    const holding = new Set(holders.map((h) => h.edge_id));
    const me = await this.deps.terminals.get(receiverTerminalId);
    const candidates: EdgeCandidate[] = edges.map((e) => ({
      edgeId: e.id,
      terminalId: e.terminalId,
      label: e.label,
      serveUrl: e.serveUrl,
      online: e.online,
      load: e.stats?.load ?? 0,
      holds: holding.has(e.id),
    }));
    // An edge filling its cache is sent only to an edge that holds the content: two edges missing
    // the same content must not wait on each other.
    const receiverIsEdge = edges.some((e) => e.terminalId === receiverTerminalId) || (await this.byTerminal(receiverTerminalId)) !== null;
    const routed = routeToEdge({ terminalId: receiverTerminalId, region: me.region, network: me.network, exclude: new Set(exclude), holdersOnly: receiverIsEdge }, candidates);
    if (!routed) return null;
    const terminal = await this.deps.terminals.get(routed.edge.terminalId);
    return { ...routed, publicKey: terminal.publicKey };
  }

  /** The titles of these contents (those still published), for people reading a plan. */
  async titles(contentIds: readonly string[]): Promise<Record<string, string>> {
    return Object.fromEntries([...(await contentsByIds(this.deps.db, contentIds)).values()].map((c) => [c.id, c.title]));
  }

  /** The contents an operator pinned on this edge, oldest pin first (held or not: a pin too big for the cache is only in the plan's `skipped`). */
  async pinned(edgeId: string): Promise<string[]> {
    const rows = await this.deps.db.selectFrom('edge_pins').select('content_id').where('edge_id', '=', edgeId).orderBy('created_at').orderBy('content_id').execute();
    return rows.map((r) => r.content_id);
  }

  private toEdge(r: EdgesTable): Edge {
    const stats = r.stats ? (typeof r.stats === 'string' ? (JSON.parse(r.stats) as EdgeStats) : r.stats) : null;
    const lookups = stats ? stats.hits + stats.misses : 0;
    return {
      id: r.id,
      terminalId: r.terminal_id,
      ownerId: r.owner_id,
      kind: r.kind,
      label: r.label,
      cacheBytes: Number(r.cache_bytes),
      serveUrl: r.serve_url,
      policy: r.policy,
      online: !!r.last_report_at && this.deps.clock.now() - r.last_report_at.getTime() <= EDGE_OFFLINE_MS,
      lastReportAt: r.last_report_at?.toISOString() ?? null,
      stats,
      hitRate: lookups > 0 ? stats!.hits / lookups : null,
      createdAt: r.created_at.toISOString(),
    };
  }
}

/** Labels are `/`-separated parts (`eu/paris/building-7`): trimmed, no empty parts, bounded. */
export function normaliseLabel(label: string): string {
  const parts = label.split('/').map((p) => p.trim()).filter(Boolean);
  if (!parts.length) throw badRequest('invalid_label', 'label must name where the edge is, e.g. eu/paris/building-7.');
  const out = parts.join('/');
  if (out.length > MAX_LABEL) throw badRequest('invalid_label', `label is at most ${MAX_LABEL} characters.`);
  return out;
}

