import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { Api } from '../core/http-client.ts';
import { every, systemClock, type WaitClock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import { createHttpApp } from '../core/http.ts';
import { createLogger } from '../core/logger.ts';
import { deviceSession } from '../terminals/device.ts';
import { download, fetchCheckedManifest, type DownloadOptions, type DownloadResult } from '../transfer/downloader.ts';
import { encodeRanges } from '../transfer/piece-ranges.ts';
import { RETRYABLE_REFUSALS } from '../transfer/receipt.ts';
import { ORIGIN_SOURCE_ID } from '../transfer/grant-token.ts';
import { pieceServerRoutes, type PieceServerOptions } from '../transfer/piece-server.ts';
import type { PieceSource } from '../transfer/piece-source.ts';
import type { GrantPayload } from '../transfer/grant-token.ts';
import { TokenBucket } from '../transfer/token-bucket.ts';
import { UploadSlots } from '../transfer/upload-slots.ts';
import { contentListRoutes, loadAgentNotes } from './content-list.ts';
import { AgentStore } from './store.ts';
import { LedgerJournal } from './ledger-journal.ts';
import type { ReconcileResult } from '../ledger/reconcile.ts';
import { ScheduledDeliveries, type ScheduledEvent, type ScheduleMode } from './scheduled.ts';

// `cascade agent` (S1.2–S1.7): a terminal that keeps a local store, tells the origin
// what it holds and how it is doing (heartbeats), fetches content from peers and the
// origin, and serves the pieces it has to other terminals against origin grants —
// with a fixed number of upload slots and optional rate caps, so tests and
// benchmarks can model real links.

export interface AgentOptions {
  origin: string;
  /** The owner's account token (registers the device; then the device signs in by itself). */
  token: string;
  /** The origin's public key, pinned at login. */
  originKey: string;
  /** Device key, device credential, and the store (`<home>/store`). */
  home: string;
  host?: string;
  port?: number;
  /** Address other terminals reach this one at (default: http://host:port). */
  advertiseUrl?: string;
  name?: string;
  region?: string;
  network?: string;
  /** Upload slots: piece requests served at once. */
  slots?: number;
  /** Upload and download caps, bytes/s. */
  upRate?: number;
  downRate?: number;
  heartbeatMs?: number;
  /** CPU use 0..1 for heartbeats; default: the machine's busy share since the last beat. */
  cpuLoad?: () => number;
  /** Options passed to every download (stall and refresh times, peers, order…). */
  downloads?: Partial<DownloadOptions>;
  /** Scheduled distribution (#5): how this terminal gets its scheduled deliveries; none: it does not. */
  schedule?: ScheduleMode;
  /** The agent's clock (default: the system's): heartbeats, scheduled wake-ups and window ends, grant and session expiry, the journal's times. Tests move a ManualClock. */
  clock?: WaitClock;
  /**
   * The clock piece transfers run on: upload and download rate caps, stall and refresh
   * timing, proof timestamps signed and checked, grants checked when serving (default: the system clock). Apart from `clock`, which
   * schedule tests hold still at window edges while pieces keep flowing.
   */
  transferClock?: WaitClock;
  /** How often a scheduled delivery reports progress, ms. */
  scheduleReportMs?: number;
  onScheduleEvent?: (e: ScheduledEvent) => void;
  logger?: Logger;
  /** Edges (S2.2): what the piece server serves from, given the store's own source (a read-through cache wraps it). */
  pieceSource?: (store: PieceSource) => PieceSource;
  /** Edges (S2.3 seam): each piece on its way to a receiver, per grant. */
  deliver?: PieceServerOptions['deliver'];
  /** More routes on the agent's server (edges' playback and pickup), registered before it listens. */
  routes?: FastifyPluginAsync[];
  /** Told of every piece served (after it was sent). */
  onServed?: (grant: GrantPayload, index: number, bytes: number) => void;
}

export interface Agent {
  terminalId: string;
  url: string;
  store: AgentStore;
  app: FastifyInstance;
  /** Changes the upload cap (bytes/s; undefined: none) from now on, as a user throttling the link would. */
  setUpRate(rate: number | undefined): void;
  /** An API client with the terminal's own session (it signs in again when the session ends). */
  api(): Api;
  /** Upload slots in use on average over the last heartbeat's window, 0..1. */
  slotLoad(): number;
  /** Sends a heartbeat now (they also go out every `heartbeatMs`). */
  heartbeat(): Promise<void>;
  /** Fetches a content into the store, from peers and the origin. */
  fetch(contentId: string, extra?: Partial<DownloadOptions>): Promise<DownloadResult>;
  /** This terminal's accounting journal (S1.10). */
  journal: LedgerJournal;
  /** Scheduled deliveries (#5), when `schedule` was given. */
  scheduled: ScheduledDeliveries | null;
  /** Sends the journal's unconfirmed receipts to the origin and adopts its record (S1.10). */
  reconcile(): Promise<ReconcileResult>;
  close(): Promise<void>;
}

export async function startAgent(opts: AgentOptions): Promise<Agent> {
  const logger = opts.logger ?? createLogger('info', 'agent');
  const clock = opts.clock ?? systemClock;
  const userApi = new Api(opts.origin.replace(/\/$/, ''), opts.token);
  const store = new AgentStore(path.join(opts.home, 'store'));
  const journal = new LedgerJournal(path.join(opts.home, 'ledger.journal'), clock);
  const transferClock = opts.transferClock ?? systemClock;
  // A quarter second of burst: enough to keep the link busy, small enough that the cap holds over short spans.
  const bucketFor = (rate?: number) => (rate ? new TokenBucket(rate, Math.max(rate / 4, 1), transferClock) : undefined);
  let upBucket = bucketFor(opts.upRate);
  const device = await deviceSession(userApi, opts.home, { name: opts.name, region: opts.region, network: opts.network, clock });
  const api = () => new Api(userApi.origin, device.token);

  const reconcileOnce = async (): Promise<ReconcileResult> => {
    // The terminal's view of what it was charged goes along, so the origin can report disagreements.
    const charges = [...journal.entries].filter(([, e]) => e.status === 'settled').map(([receiptId, e]) => ({ receiptId, amount: e.charge! }));
    const unsettled = journal.unsettled();
    let last: ReconcileResult = { settled: [], duplicates: [], conflicts: [], record: [], balance: journal.lastSync?.balance ?? 0 };
    for (let i = 0; i === 0 || i < unsettled.length; i += 500) {
      const res = await api().post<ReconcileResult>('/ledger/reconcile', { receipts: unsettled.slice(i, i + 500).map((u) => u.receipt), charges: i === 0 ? charges : [] });
      journal.adopt(res.record, res.balance, res.conflicts);
      last = i === 0 ? res : { ...res, settled: [...last.settled, ...res.settled], duplicates: [...last.duplicates, ...res.duplicates], conflicts: [...last.conflicts, ...res.conflicts], record: [...last.record, ...res.record] };
    }
    return last;
  };
  // S1.10, #10: receipts whose source's served report has not reached the origin yet
  // (`receipt_not_served`) are handed in again a few times over a few seconds.
  const reconcile = async (): Promise<ReconcileResult> => {
    let total = await reconcileOnce();
    for (let attempt = 0; attempt < 6 && total.conflicts.some((c) => RETRYABLE_REFUSALS.has(c.code)); attempt++) {
      await new Promise((r) => setTimeout(r, 250 * 2 ** Math.min(attempt, 2)));
      const more = await reconcileOnce();
      total = { ...more, settled: [...total.settled, ...more.settled], duplicates: [...total.duplicates, ...more.duplicates] };
    }
    if (total.conflicts.length) logger.warn({ conflicts: total.conflicts }, 'reconciliation found conflicts between this terminal and the origin');
    return total;
  };

  // #10 point 3: ends of transfers the origin could not be told about (it was away); sent again at
  // every heartbeat until it answers, so transfers close and reservations go before their timeout.
  const endReports = new Map<string, { piecesDone: number; done: boolean; reports: unknown[] }>();
  const sendEndReports = async () => {
    for (const [transferId, body] of [...endReports]) {
      try {
        await api().post(`/transfers/${transferId}/progress`, body);
        endReports.delete(transferId);
      } catch (err) {
        if (err instanceof AppError && err.status < 500 && err.code !== 'origin_unreachable') endReports.delete(transferId);
        else return; // still away: next heartbeat
      }
    }
  };

  const active = new Map<string, AbortController>();
  let closed: Promise<void> | null = null;
  // Traffic counters for heartbeats and for "what did I serve" reports.
  let sentBytes = 0;
  let receivedBytes = 0;
  // #10 point 6: pieces sent in full, per grant, reported to the origin within a moment (receipts wait for it).
  const served = new Map<string, number[]>();
  let servedCount = 0;
  let reporting: Promise<void> = Promise.resolve();
  const reportServed = () => {
    reporting = reporting.then(async () => {
      if (served.size === 0) return;
      const batch = [...served].slice(0, 1000);
      for (const [id] of batch) served.delete(id);
      try {
        const res = await api().post<{ refused?: { id: string; code: string }[] }>('/transfers/served', { grants: batch.map(([id, pieces]) => ({ id, pieces: encodeRanges(pieces) })) });
        if (res.refused?.length) logger.warn({ refused: res.refused }, 'the origin refused part of a served report');
      } catch (err) {
        const refused = err instanceof AppError && err.status < 500 && err.code !== 'origin_unreachable';
        // Kept for the next report (the origin may be away for a while): receipts wait for it. A refusal is final.
        if (!refused) for (const [id, pieces] of batch) served.set(id, [...(served.get(id) ?? []), ...pieces]);
        logger.warn({ err: (err as Error).message, grants: batch.length }, refused ? 'the origin refused a served report' : 'reporting served pieces failed; will retry');
      }
      servedCount = [...served.values()].reduce((n, p) => n + p.length, 0);
    });
    return reporting;
  };

  // No wait queue: a receiver turned away asks another source or comes back after 250 ms.
  // Their use is averaged over the agent's clock, as the loads heartbeats carry are.
  const uploadSlots = new UploadSlots(opts.slots ?? 4, 0, () => clock.now());
  const app = createHttpApp({ logger, resolveToken: async () => null, title: 'Cascade agent' });
  app.get('/health', { config: { access: 'public' }, schema: { summary: 'Agent liveness', tags: ['ops'] } }, async () => ({ status: 'ok', terminalId: device.terminalId }));
  await app.register(
    pieceServerRoutes({
      sourceId: device.terminalId,
      originPublicKey: opts.originKey,
      sourceKey: device.keys.privateKey,
      pieces: opts.pieceSource ? opts.pieceSource(store.pieceSource()) : store.pieceSource(),
      deliver: opts.deliver,
      // Proofs are signed on the receivers' transfer clock, and grants carry the origin's time.
      clock: transferClock,
      metrics: app.metrics,
      slots: uploadSlots,
      upRate: () => upBucket,
      onServed: (grant, index, bytes) => {
        sentBytes += bytes;
        opts.onServed?.(grant, index, bytes);
        // The origin's holding spot check is not a transfer: nothing to report, nothing paid.
        if (grant.receiver === ORIGIN_SOURCE_ID) return;
        // Bounded: past this many unreported pieces, new ones are not reported (and go unpaid), the origin being away.
        if (servedCount >= 1_000_000) return;
        const list = served.get(grant.id);
        if (list) list.push(index);
        else served.set(grant.id, [index]);
        servedCount++;
      },
    }),
  );
  const notesFile = path.join(opts.home, 'notes.json');
  await app.register(
    contentListRoutes({
      selfId: device.terminalId,
      originPublicKey: opts.originKey,
      clock,
      list: async () => store.list().filter((c) => c.complete).map((c) => c.manifest),
      notes: () => loadAgentNotes(notesFile),
    }),
  );
  let scheduled: ScheduledDeliveries | null = null;
  // S0.4, push to a registered address: the origin POSTs signed orders here.
  app.post<{ Body: { token?: unknown } }>('/schedule/orders', {
    config: { access: 'public' },
    schema: {
      summary: 'A delivery order pushed by the origin (S0.4): { token }, signed with the origin key',
      tags: ['schedules'],
      body: { type: 'object', properties: { token: { type: 'string', maxLength: 4096 } } },
    },
    handler: async (req, reply) => {
      if (!scheduled || opts.schedule !== 'address') throw new AppError('not_push_mode', 'This agent does not take pushed orders (start it with --schedule address).', 409);
      const order = scheduled.acceptPushed(req.body?.token);
      reply.code(202);
      return { accepted: order.contentId };
    },
  });
  for (const routes of opts.routes ?? []) await app.register(routes);
  await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 0 });
  const port = (app.server.address() as { port: number }).port;
  const url = opts.advertiseUrl ?? `http://${opts.host ?? '127.0.0.1'}:${port}`;

  // Tell the origin where we serve, what we hold (whole and in part), and that we are alive.
  await api().request('PUT', '/terminals/address', { json: { serveUrl: url, region: opts.region, network: opts.network } });
  const complete = store.list().filter((c) => c.complete).map((c) => c.id);
  await api().request('PUT', '/terminals/holdings', { json: { contentIds: complete, mode: 'replace' } });
  for (const c of store.list().filter((c) => !c.complete && c.pieces.length > 0)) {
    await api().request('PUT', `/terminals/holdings/${c.id}/pieces`, { json: { pieces: encodeRanges(c.pieces) } });
  }

  /**
   * Tells the origin this terminal holds a content whole (S1.2). The copy is complete and verified
   * whatever it answers: a failure is logged (false), and the next start reports it again.
   */
  const claimWhole = (contentId: string): Promise<boolean> =>
    api()
      .request('PUT', '/terminals/holdings', { json: { contentIds: [contentId], mode: 'add' } })
      .then(
        () => true,
        (err) => {
          logger.warn({ contentId, code: err.code, err: err.message }, 'holdings report failed');
          return false;
        },
      );

  const started = clock.now();
  let lastBeat = started;
  let lastSlotLoad = 0;
  const cpuLoad = opts.cpuLoad ?? machineCpu();
  const beat = async () => {
    // Sessions last a day: renewed (a new login by challenge and signature) shortly before they lapse.
    device.token = (await deviceSession(userApi, opts.home, { name: opts.name, region: opts.region, network: opts.network, clock, keys: device.keys })).token;
    const now = clock.now();
    const seconds = Math.max((now - lastBeat) / 1000, 0.001);
    lastBeat = now;
    const upBps = opts.upRate ? opts.upRate * 8 : 1e10;
    const downBps = opts.downRate ? opts.downRate * 8 : 1e10;
    const state = {
      uptimeRatio: 1,
      upBps,
      downBps,
      sendLoadBps: Math.min(Math.round((sentBytes * 8) / seconds), upBps),
      recvLoadBps: Math.min(Math.round((receivedBytes * 8) / seconds), downBps),
      cpu: cpuLoad(),
      // S1.5 "not overloaded": the origin judges a holder saturated by its slots and link, not its CPU.
      slots: uploadSlots.slots,
      slotsBusy: Math.round(uploadSlots.averageBusy() * 100) / 100,
    };
    lastSlotLoad = state.slotsBusy / state.slots;
    sentBytes = 0;
    receivedBytes = 0;
    await api().post('/terminals/heartbeat', state);
    // Back in contact with receipts the origin has not confirmed: reconcile (S1.10). A fetch
    // in progress hands its receipts in itself and reconciles when it ends.
    if (active.size === 0 && journal.unsettled().length) await reconcile();
    await sendEndReports();
  };
  await beat().catch((err) => logger.warn({ err: err.message }, 'first heartbeat failed'));
  const closing = new AbortController();
  const heartbeats = every(clock, opts.heartbeatMs ?? 5000, closing.signal, () => beat().catch((err) => logger.warn({ err: err.message }, 'heartbeat failed')));
  // Served reports are batching for the network, not a rule in time: real time, whatever the clock.
  const servedTimer = setInterval(() => void reportServed(), 250);
  servedTimer.unref();

  const agent: Agent = {
    terminalId: device.terminalId,
    url,
    store,
    app,
    heartbeat: beat,
    api,
    slotLoad: () => Math.min(1, Math.max(lastSlotLoad, uploadSlots.load.serving / uploadSlots.slots)),
    setUpRate(rate) {
      opts.upRate = rate;
      upBucket?.close();
      upBucket = bucketFor(rate);
    },
    async fetch(contentId, extra = {}) {
      if (active.has(contentId)) throw new AppError('already_fetching', `Already fetching ${contentId}.`, 409);
      const manifest = await fetchCheckedManifest(api(), contentId, opts.originKey);
      store.begin(contentId, manifest);
      const files = store.paths(contentId);
      const stop = new AbortController();
      active.set(contentId, stop);
      /** The holdings report, sent once the copy is whole (download's onComplete, which every completed download calls). */
      let claimed: Promise<boolean> | undefined;
      try {
        const result = await download({
          api: api(),
          originKey: opts.originKey,
          device,
          contentId,
          manifest,
          files: { data: files.data, journal: files.journal },
          onReceipt: (id, receipt) => journal.receipt(id, receipt),
          offlineReceipts: true,
          onEndUnreported: (transferId, body) => {
            if (endReports.size >= 1000) endReports.delete(endReports.keys().next().value!);
            endReports.set(transferId, body);
          },
          clock: transferClock,
          // Partial holdings go to the origin with each refresh, so receivers are offered what we can serve (#19).
          announce: true,
          onAnnounceRefused: (r) => logger.warn({ contentId, code: r.code, err: r.message }, 'the origin did not record the pieces we hold'),
          ...opts.downloads,
          ...extra,
          // A scheduled delivery's admitted rate, and this terminal's own cap: the lower holds.
          downRate: lowest(opts.downRate, extra.downRate),
          signal: extra.signal ? AbortSignal.any([stop.signal, extra.signal]) : stop.signal,
          onPiece: (i) => {
            store.markPiece(contentId, i);
            receivedBytes += manifest.body.pieceSize;
            extra.onPiece?.(i);
          },
          // Reported while the last receipts and the end report are on their way (#19: one round
          // trip less at the end of every download). The copy is complete and verified whatever the
          // origin says: a refused or failed report only means it is not offered to others until
          // the next start reports it again.
          onComplete: () => {
            claimed = claimWhole(contentId);
            extra.onComplete?.();
          },
        });
        await claimed;
        await reconcile().catch((err) => logger.warn({ code: err.code, err: err.message }, 'reconciliation postponed: the origin is out of reach'));
        return result;
      } finally {
        active.delete(contentId);
      }
    },
    journal,
    reconcile,
    get scheduled() {
      return scheduled;
    },
    async close() {
      // Once only: closing a descriptor twice can close whatever reused its number since (a socket, say).
      if (closed) return closed;
      closed = (async () => {
        closing.abort();
        await heartbeats;
        clearInterval(servedTimer);
        await scheduled?.close();
        for (const c of active.values()) c.abort();
        upBucket?.close();
        await app.close();
        await reportServed();
        store.close();
        journal.close();
      })();
      return closed;
    },
  };
  if (opts.schedule) {
    scheduled = new ScheduledDeliveries({
      mode: opts.schedule,
      terminalId: device.terminalId,
      api,
      originKey: opts.originKey,
      fetch: (id, extra) => agent.fetch(id, extra),
      claimWhole,
      pieceLength: (id, i) => {
        const b = store.get(id)!.manifest.body;
        return i === b.pieces.length - 1 ? b.totalSize - i * b.pieceSize : b.pieceSize;
      },
      heldPieces: (id) => store.get(id)?.have ?? new Set(),
      clock,
      logger,
      pushUrl: `${url}/schedule/orders`,
      reportMs: opts.scheduleReportMs,
      onEvent: opts.onScheduleEvent,
    });
    scheduled.start();
  }
  logger.info({ terminalId: device.terminalId, url, uptimeSince: new Date(started).toISOString() }, 'agent listening');
  return agent;
}

function lowest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}

/** The machine's CPU busy share (0..1) between successive calls, from os.cpus() times. */
function machineCpu(): () => number {
  const sample = () => os.cpus().reduce((acc, c) => {
    const t = c.times;
    acc.idle += t.idle;
    acc.total += t.user + t.nice + t.sys + t.irq + t.idle;
    return acc;
  }, { idle: 0, total: 0 });
  let last = sample();
  return () => {
    const now = sample();
    const total = now.total - last.total;
    const busy = total > 0 ? 1 - (now.idle - last.idle) / total : 0;
    last = now;
    return Math.min(Math.max(busy, 0), 1);
  };
}
