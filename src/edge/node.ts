import { EventEmitter } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { startAgent, type Agent } from '../agent/agent.ts';
import type { AgentStore } from '../agent/store.ts';
import { every, systemClock, type WaitClock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import type { Api } from '../core/http-client.ts';
import { createLogger } from '../core/logger.ts';
import { pieceOffset, type SignedManifest } from '../content/manifest.ts';
import type { PieceSource } from '../transfer/piece-source.ts';
import { ORIGIN_SOURCE_ID } from '../transfer/grant-token.ts';
import { Marker } from '../marks/marker.ts';
import { originTagOf } from '../marks/keys.ts';
import { markingHook, originIdOf, type DeliveryHook } from './delivery-hook.ts';
import { DeliveryJournal, DeliveryReporter } from './delivery-journal.ts';
import type { Placement } from './placement.ts';
import type { Edge } from './service.ts';
import type { EdgeKind, EdgeStats, PlacementPolicy } from './tables.ts';

// `cascade edge` (S2.1, S2.2; docs/edge.md): an edge server. It is a terminal of an operator
// (the agent: device key, piece server under origin grants, heartbeats, downloads over the
// piece protocol) that also registers as an edge and, every `reportMs`, tells the origin what
// it holds and how it is doing; the answer is its placement plan, which it follows: fetch
// what the policy wants, drop what it must (least recently used first). A piece it is asked
// for and lacks is a miss: it fetches the content (sequentially, from the origin or a peer
// edge) and serves the piece as soon as it is verified. Home and store edges add their own
// routes and jobs (EdgeExtension).

export interface EdgeOptions {
  origin: string;
  /** An operator's account token (registers the device; then the device signs in by itself). */
  token: string;
  originKey: string;
  /** The edge's directory: device key, store, journals. */
  home: string;
  kind: EdgeKind;
  label: string;
  cacheBytes: number;
  policy?: PlacementPolicy;
  host?: string;
  port?: number;
  advertiseUrl?: string;
  name?: string;
  slots?: number;
  upRate?: number;
  /** How often it reports and gets its plan (default 10 s). */
  reportMs?: number;
  heartbeatMs?: number;
  /** How long a request for a piece it lacks waits for the piece to arrive (default 30 s). */
  missWaitMs?: number;
  clock?: WaitClock;
  transferClock?: WaitClock;
  logger?: Logger;
  hook?: DeliveryHook;
  /** S2.3: false hands out unmarked copies (the watermark benchmark's baseline); default true. */
  marks?: boolean;
  /** Debian's ffmpeg (FFMPEG), for marking videos (default `ffmpeg` on PATH). */
  ffmpeg?: string;
  extensions?: (ctx: EdgeContext) => EdgeExtension[];
}

export interface EdgeContext {
  edgeId: string;
  terminalId: string;
  kind: EdgeKind;
  label: string;
  home: string;
  originUrl: string;
  originKey: string;
  originId: string;
  clock: WaitClock;
  logger: Logger;
  api(): Api;
  store: AgentStore;
  /** The content, complete on disk (fetched over the piece protocol if missing); marks it used. */
  ensureContent(contentId: string): Promise<{ dataPath: string; manifest: SignedManifest }>;
  /** Deletes the local copy unless the origin's plan keeps it or an extension still uses it. */
  dropContent(contentId: string): Promise<boolean>;
  /** Marks a content used now (least recently used goes first). */
  touch(contentId: string): void;
  hook: DeliveryHook;
  /** S2.3: the origin's pattern key (GET /marks/key), fetched by home and store edges once registered; null before or without it. */
  markKey: Buffer | null;
  /**
   * S2.4: reports of this edge's deliveries (rentals, orders) to the origin: `report()` journals one
   * (fsynced) and resolves once it is durable; the reporter sends it, and anything a previous run left.
   */
  deliveries: DeliveryReporter;
}

/** What a home or store edge adds. Routes may use the context in handlers; `start` runs once it is complete. */
export interface EdgeExtension {
  routes?: FastifyPluginAsync;
  /** Contents it needs kept now (never evicted, never dropped). */
  inUse?(): Iterable<string>;
  start?(): void;
  stop?(): Promise<void>;
}

export interface EdgeNode extends EdgeContext {
  url: string;
  agent: Agent;
  /** Reports now and applies the plan's evictions; fetches start in the background. */
  report(): Promise<Placement>;
  /** Reports, applies the plan and waits for its fetches; reports again (tests, `--sync`). */
  sync(): Promise<Placement>;
  stats(): EdgeStats;
  lastPlan(): Placement | null;
  close(): Promise<void>;
}

export async function startEdge(opts: EdgeOptions): Promise<EdgeNode> {
  const logger = opts.logger ?? createLogger('info', 'edge');
  const clock = opts.clock ?? systemClock;
  // S2.3: whole copies are marked with the origin's pattern key once the edge has it (ctx.markKey).
  const marker = new Marker({ key: () => ctx.markKey, dir: path.join(opts.home, 'marked'), ffmpeg: opts.ffmpeg, logger });
  const hook = opts.hook ?? markingHook(marker);
  const originId = originIdOf(opts.originKey);
  const missWaitMs = opts.missWaitMs ?? 30_000;
  const counters = { hits: 0, misses: 0, bytesServed: 0 };
  const pieces = new EventEmitter();
  pieces.setMaxListeners(0);
  const fetching = new Map<string, Promise<void>>();
  let filling: string | null = null;
  let plan: Placement | null = null;
  let agent: Agent | undefined;

  // Least recently used, kept across restarts (the origin evicts by it).
  const lruFile = path.join(opts.home, 'edge-lru.json');
  const lastUsed = new Map<string, number>(existsSync(lruFile) ? Object.entries(JSON.parse(readFileSync(lruFile, 'utf8')) as Record<string, number>) : []);
  const touch = (id: string) => lastUsed.set(id, clock.now());

  const fetchContent = (id: string): Promise<void> => {
    let running = fetching.get(id);
    if (!running) {
      running = (async () => {
        try {
          await agent!.fetch(id, { onPiece: (i) => pieces.emit(`${id}:${i}`) });
          touch(id);
        } finally {
          fetching.delete(id);
          pieces.emit(`${id}:done`);
        }
      })();
      fetching.set(id, running);
    }
    return running;
  };

  /** S2.2 read-through: a piece it lacks is fetched (with its content) and served once verified. */
  const readThrough = (base: PieceSource): PieceSource => ({
    manifest: base.manifest,
    // An edge offers the whole content (what it lacks it fetches): receivers need not ask what it has.
    have: async () => null,
    openPiece: async (id, index, receiver) => {
      const held = await base.openPiece(id, index);
      // The origin's holding spot checks are not requests.
      const request = receiver !== ORIGIN_SOURCE_ID;
      if (held) {
        if (request) counters.hits++;
        return held;
      }
      if (request) counters.misses++;
      const arrived = new Promise<void>((resolve) => {
        const done = () => {
          pieces.off(`${id}:${index}`, done);
          pieces.off(`${id}:done`, done);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(done, missWaitMs);
        pieces.once(`${id}:${index}`, done);
        pieces.once(`${id}:done`, done);
      });
      fetchContent(id).catch((err) => logger.warn({ contentId: id, code: err.code, err: err.message }, 'fetching a missed content failed'));
      await arrived;
      return base.openPiece(id, index);
    },
  });

  // S2.4: the delivery journal is open before extensions exist (they may report from the start);
  // its reporter starts sending once the edge is registered (it needs the terminal's session).
  const journal = await DeliveryJournal.open(opts.home, { clock });
  const deliveries = new DeliveryReporter({ journal, api: () => agent!.api(), clock, logger });

  const ctx = {
    deliveries,
    edgeId: '',
    terminalId: '',
    kind: opts.kind,
    label: opts.label,
    home: opts.home,
    originUrl: opts.origin.replace(/\/$/, ''),
    originKey: opts.originKey,
    originId,
    clock,
    logger,
    api: () => agent!.api(),
    get store() {
      return agent!.store;
    },
    touch,
    hook,
    markKey: null,
    async ensureContent(id: string) {
      const store = agent!.store;
      if (!store.isComplete(id)) await fetchContent(id);
      if (!store.isComplete(id)) throw new AppError('content_unavailable', `The edge could not get content ${id} complete.`, 503);
      touch(id);
      return { dataPath: store.paths(id).data, manifest: store.get(id)!.manifest };
    },
    async dropContent(id: string) {
      if (plan?.keep.includes(id) || inUse().has(id) || fetching.has(id)) return false;
      agent!.store.remove(id);
      lastUsed.delete(id);
      await tellHoldings();
      return true;
    },
  } as EdgeContext;

  const extensions = opts.extensions?.(ctx) ?? [];
  const inUse = () => new Set(extensions.flatMap((e) => [...(e.inUse?.() ?? [])]));

  agent = await startAgent({
    origin: opts.origin,
    token: opts.token,
    originKey: opts.originKey,
    home: opts.home,
    host: opts.host,
    port: opts.port,
    advertiseUrl: opts.advertiseUrl,
    name: opts.name ?? `edge ${opts.label}`,
    region: opts.label,
    slots: opts.slots ?? 8,
    upRate: opts.upRate,
    heartbeatMs: opts.heartbeatMs,
    clock,
    transferClock: opts.transferClock,
    logger,
    // Sequential: a receiver reading from the start is served as the content arrives.
    downloads: { order: 'sequential' },
    pieceSource: readThrough,
    deliver: (grant, index, bytes) => {
      // The origin's holding spot checks compare the piece with the manifest: never marked. They
      // also come while startAgent is still running (a restarted edge holding contents), before
      // `agent` is set: the store is then read through the context.
      if (grant.receiver === ORIGIN_SOURCE_ID) return bytes;
      const manifest = agent?.store.get(grant.content)?.manifest;
      const offset = manifest ? pieceOffset(manifest.body, index) : 0;
      return hook.transform({ serial: 0, deliveryId: grant.id, userId: grant.receiver, edgeId: ctx.edgeId, originId, contentId: grant.content }, { name: `piece-${index}`, offset }, bytes);
    },
    onServed: (grant, index, bytes) => {
      if (grant.receiver === ORIGIN_SOURCE_ID) return;
      counters.bytesServed += bytes;
      touch(grant.content);
    },
    routes: [
      async (app) => {
        app.get('/edge', { config: { access: 'public' }, schema: { summary: 'This edge: ID, kind, label, cache figures', tags: ['edge'] } }, async () => ({
          edgeId: ctx.edgeId,
          kind: ctx.kind,
          label: ctx.label,
          stats: stats(),
          deliveries: deliveries.status(),
        }));
      },
      ...extensions.flatMap((e) => (e.routes ? [e.routes] : [])),
    ],
  });
  const store = agent.store;
  let edge: Edge;
  try {
    edge = await agent.api().post<Edge>('/edges', { kind: opts.kind, label: opts.label, cacheBytes: opts.cacheBytes, ...(opts.policy ? { policy: opts.policy } : {}) });
  } catch (err) {
    // Refused (not an operator, a bad label…): nothing keeps serving.
    await agent.close();
    await journal.close();
    throw err;
  }
  ctx.edgeId = edge.id;
  ctx.terminalId = agent.terminalId;
  deliveries.start();
  // S2.3: home and store edges mark the copies they hand out (delivery edges serve verified pieces).
  if (opts.kind !== 'delivery' && opts.marks !== false) ctx.markKey = await fetchMarkKey(agent.api(), opts.originKey, logger);

  const usedBytes = () => store.list().reduce((s, c) => s + c.manifest.body.totalSize, 0);
  const stats = (): EdgeStats => ({ ...counters, load: agent!.slotLoad(), usedBytes: usedBytes(), filling, deliveries: journal.counts() });
  const tellHoldings = () =>
    agent!
      .api()
      .request('PUT', '/terminals/holdings', { json: { contentIds: store.list().filter((c) => c.complete).map((c) => c.id), mode: 'replace' } })
      .catch((err) => logger.warn({ err: err.message }, 'holdings report failed'));

  let fills: Promise<void> = Promise.resolve();
  const report = async (): Promise<Placement> => {
    const holdings = store.list().map((c) => ({ contentId: c.id, bytes: c.manifest.body.totalSize, complete: c.complete, lastUsedAt: Math.floor(lastUsed.get(c.id) ?? 0) }));
    plan = await agent!.api().request<Placement>('PUT', '/edges/me/report', { json: { holdings, stats: stats() } });
    writeFileSync(lruFile, JSON.stringify(Object.fromEntries(lastUsed)));
    // Drop first (room for the fills), never what an extension uses or what is arriving.
    const busy = inUse();
    let dropped = 0;
    for (const e of plan.evict) {
      if (busy.has(e.contentId) || fetching.has(e.contentId) || !store.get(e.contentId)) continue;
      store.remove(e.contentId);
      lastUsed.delete(e.contentId);
      dropped++;
      logger.info({ contentId: e.contentId, why: e.why }, 'evicted');
    }
    if (dropped) await tellHoldings();
    // Fills one at a time, in the plan's order, behind any still running.
    const wanted = plan.fetch.map((f) => f.contentId);
    fills = fills.then(async () => {
      for (const id of wanted) {
        if (closing.signal.aborted || store.isComplete(id)) continue;
        filling = id;
        try {
          await fetchContent(id);
          logger.info({ contentId: id }, 'pre-distributed');
        } catch (err) {
          logger.warn({ contentId: id, code: (err as AppError).code, err: (err as Error).message }, 'pre-distribution fetch failed; the next plan asks again');
        } finally {
          filling = null;
        }
      }
    });
    return plan;
  };

  const closing = new AbortController();
  for (const e of extensions) e.start?.();
  await report().catch((err) => logger.warn({ err: err.message }, 'first edge report failed'));
  const reports = every(clock, opts.reportMs ?? 10_000, closing.signal, () => report().then(() => undefined, (err) => logger.warn({ err: err.message }, 'edge report failed')));
  logger.info({ edgeId: ctx.edgeId, kind: opts.kind, label: opts.label, url: agent.url }, 'edge listening');

  const node: EdgeNode = Object.assign(ctx, {
    url: agent.url,
    agent,
    report,
    async sync() {
      await report();
      await fills;
      return report();
    },
    stats,
    lastPlan: () => plan,
    async close() {
      closing.abort();
      await reports;
      for (const e of extensions) await e.stop?.();
      await deliveries.stop(); // after the extensions: what they reported while stopping is journaled
      await journal.close();
      await agent!.close();
      await fills.catch(() => {});
      writeFileSync(lruFile, JSON.stringify(Object.fromEntries(lastUsed)));
    },
  });
  return node;
}

/** The origin's pattern key, checked against the origin's own key (its tag); null (and said) when it cannot be had. */
async function fetchMarkKey(api: Api, originKey: string, logger: Logger): Promise<Buffer | null> {
  try {
    const k = await api.request<{ originTag: number; patternKey: string }>('GET', '/marks/key');
    const key = Buffer.from(String(k.patternKey), 'base64');
    if (key.length !== 32 || k.originTag !== originTagOf(originKey)) throw new Error('the origin sent a key that is not its own');
    return key;
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'no mark key: copies are delivered unmarked until the edge restarts');
    return null;
  }
}
