import path from 'node:path';
import { mkdirSync } from 'node:fs';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { accountsDomain, type AccountService } from './accounts/index.ts';
import { contentDomain, type ContentService } from './content/index.ts';
import { AddressPolicy } from './core/address-policy.ts';
import { systemClock, type WaitClock } from './core/clock.ts';
import type { Config } from './core/config.ts';
import { loadOrCreateKeyPair, type KeyPair } from './core/crypto.ts';
import { openEventBus, type EventBus } from './core/event-bus.ts';
import { createHttpApp } from './core/http.ts';
import { createLogger } from './core/logger.ts';
import type { OrderService } from './edge/orders.ts';
import { discoveryDomain, type DiscoveryService } from './discovery/index.ts';
import { liveDomain, type BookingService, type Channels, type DeadlineJob, type Guide, type LiveStreams, type RecordingService } from './live/index.ts';
import { openDatabase, sql, type DbHandle } from './db/connection.ts';
import { mailDomain, type MailService } from './mail/index.ts';
import { ledgerDomain, type Ledger, type Reservations, type Settlement, type Wallets } from './ledger/index.ts';
import { opsDashboard } from './ops/dashboard.ts';
import { scheduleDomain, type ScheduleRunner, type ScheduleService } from './schedule/index.ts';
import { terminalsDomain, type TerminalService } from './terminals/index.ts';
import {
  holdingsSpotCheck,
  ORIGIN_SOURCE_ID,
  transferDomain,
  type GrantService,
  type PeerCoordinator,
  type ReceiptService,
  type ReputationService,
  type TransferService,
} from './transfer/index.ts';
import { webRoutes } from './web/routes.ts';
import { edgeDomain, edgeRegistry, type DeliveryService, type EdgeService, type RentalService } from './edge/index.ts';
import { marksDomain } from './marks/index.ts';

// The origin process (`cascade serve`): composes the domains (each builds its services,
// routes and background jobs in its index.ts) and nothing else. ARCHITECTURE.md "Boundaries".

export interface OriginOptions {
  config: Config;
  /** Everything time-dependent runs on it, the upload rate cap included (tests move a ManualClock). */
  clock?: WaitClock;
  logger?: Logger;
  /** An open database to use instead of the one named by the config (tests). */
  db?: DbHandle;
  /** How host names of peer addresses resolve; default the system resolver (tests give names their own answers). */
  resolveHost?: (host: string) => Promise<string[]>;
}

export interface Origin {
  app: FastifyInstance;
  url: string;
  config: Config;
  db: DbHandle;
  keys: KeyPair;
  bus: EventBus;
  accounts: AccountService;
  content: ContentService;
  terminals: TerminalService;
  grants: GrantService;
  receipts: ReceiptService;
  reputation: ReputationService;
  transfers: TransferService;
  coordinator: PeerCoordinator;
  ledger: Ledger;
  wallets: Wallets;
  settlement: Settlement;
  reservations: Reservations;
  /** Scheduled distribution (#5): schedules, plans, delivery records. */
  schedules: ScheduleService;
  /** The scheduler (pull, push, admission); null with SCHEDULER=off. */
  scheduler: ScheduleRunner | null;
  /** S1.4: content lists, comments, ratings, notes, placements. */
  discovery: DiscoveryService;
  /** S3.8: the mail outbox (other domains queue in their transaction; `mail.wake()` after the commit sends promptly). */
  mail: MailService;
  /** S3.1–S3.8: channels, bookings and the guide. */
  live: { channels: Channels; bookings: BookingService; guide: Guide; deadlines: DeadlineJob; streams: LiveStreams; recordings: RecordingService };
  /** S2: the edge registry. */
  edges: EdgeService;
  /** S2.4: deliveries of home and store edges and their billing. */
  deliveries: DeliveryService;
  /** S2.5: home servers' rentals. */
  rentals: RentalService;
  /** Which addresses terminals register that the origin calls (issue 10 #8). */
  peers: AddressPolicy;
  /** S2.6: store orders. */
  orders: OrderService;
  /** Path of the one-time operator credentials file if this start created it. */
  operatorCredentialsFile: string | null;
  close(): Promise<void>;
}

export async function startOrigin(opts: OriginOptions): Promise<Origin> {
  const { config } = opts;
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? createLogger(config.logLevel, 'origin');
  mkdirSync(config.dataDir, { recursive: true });

  const keys = loadOrCreateKeyPair(path.join(config.dataDir, 'keys', 'origin.key'));
  const db = opts.db ?? (await openDatabase({ databaseUrl: config.databaseUrl, pgliteDir: path.join(config.dataDir, 'db'), pgliteSharedBuffersMb: config.pgliteSharedBuffersMb, pgliteWasm: config.pgliteWasm }));
  const bus = await openEventBus(config.natsUrl);
  const peers = new AddressPolicy({ mode: config.peerAddresses, resolve: opts.resolveHost });
  const base = { db: db.db, clock, config, keys, logger, bus, peers };

  const accounts = accountsDomain({ ...base, dataDir: config.dataDir, scryptN: config.passwordScryptN });
  const app = createHttpApp({ logger, resolveToken: accounts.accounts.resolveToken, title: 'Cascade origin' });
  const content = contentDomain({ ...base, accounts: accounts.accounts });
  const proveHolding = holdingsSpotCheck({ ...base, content: content.content });
  const terminals = terminalsDomain({ ...base, metrics: app.metrics, accounts: accounts.accounts, content: content.content, proveHolding });
  const services = { accounts: accounts.accounts, content: content.content, terminals: terminals.terminals };
  // S2: the edge registry, before the domains that route through it.
  const edgeRegistryParts = edgeRegistry({ db: db.db, clock, terminals: terminals.terminals });
  // The ledger hands receipts a terminal's journal brings to the transfer domain, built next (called only once serving).
  const ledger = ledgerDomain({ ...base, ...services, submitReceipts: (terminalId, items) => transfer.receipts.submit(terminalId, items) });
  const transfer = transferDomain({ ...base, ...services, metrics: app.metrics, settlement: ledger.settlement, billing: ledger.billing, charges: ledger.charges, edges: edgeRegistryParts.router });
  const schedule = scheduleDomain({ ...base, terminals: terminals.terminals });
  // #13: the operators' dashboard, composed from the domains' services (it owns no table).
  const dashboard = opsDashboard({ db: db.db, clock, terminals: terminals.terminals, transfers: transfer.transfers, ledger: ledger.ledger, schedules: schedule.schedules });
  const discovery = discoveryDomain({ ...base, ...services, ledger: ledger.ledger, wallets: ledger.wallets });
  const mail = mailDomain({ ...base, metrics: app.metrics });
  // Links in e-mails and settings use PUBLIC_URL, else the address the origin listens on (known once listening).
  let listeningUrl = config.publicUrl;
  const live = liveDomain({ ...base, accounts: accounts.accounts, ledger: ledger.ledger, wallets: ledger.wallets, mail: mail.mail, metrics: app.metrics, content: content.content, baseUrl: () => config.publicUrl || listeningUrl });

  const edge = edgeDomain({ edges: edgeRegistryParts.edges, db: db.db, clock, ledger: ledger.ledger, wallets: ledger.wallets, tariff: config.tariff, keys, contents: content.content });

  // S2.3, S2.7: marks and traces (a mark's serial is one of the edge domain's deliveries).
  const marks = marksDomain({
    keys,
    dataDir: config.dataDir,
    traceMaxBytes: config.traceMaxBytes,
    ffmpeg: config.ffmpeg,
    sources: { deliveries: edge.deliveries, edges: edge.edges, usernames: (ids) => accounts.accounts.usernames(ids), contents: content.content },
    edgeOf: (terminalId) => edge.edges.byTerminal(terminalId),
  });

  // Operations routes, in a plugin so that they are registered after (and documented by) OpenAPI.
  await app.register(opsRoutes({ app, db, keys }));
  // The web app may reach the home and store edges (rented videos, ordered packages) at their serve URLs.
  await app.register(webRoutes({ edgeOrigins: async () => (await edgeRegistryParts.edges.list()).filter((e) => e.kind !== 'delivery').map((e) => e.serveUrl) }));
  for (const domain of [accounts, content, terminals, ledger, transfer, schedule, discovery, dashboard, mail, live, edge, marks]) await app.register(domain.plugin);

  const operatorCredentialsFile = await accounts.start();
  terminals.start();
  ledger.start();
  mail.start();
  transfer.start();
  await schedule.start();
  await live.listen();
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host}:${port}`;
  listeningUrl = url;
  await peers.listeningAt(config.host, port);
  live.start();
  logger.info({ url, engine: db.engine, dataDir: config.dataDir }, 'origin listening');

  return {
    app,
    url,
    config,
    db,
    keys,
    bus,
    peers,
    orders: edge.orders,
    operatorCredentialsFile,
    ...services,
    grants: transfer.grants,
    receipts: transfer.receipts,
    reputation: transfer.reputation,
    transfers: transfer.transfers,
    coordinator: transfer.coordinator,
    ledger: ledger.ledger,
    wallets: ledger.wallets,
    settlement: ledger.settlement,
    reservations: ledger.reservations,
    schedules: schedule.schedules,
    scheduler: schedule.scheduler,
    discovery: discovery.discovery,
    mail: mail.mail,
    live: { channels: live.channels, bookings: live.bookings, guide: live.guide, deadlines: live.deadlines, streams: live.streams, recordings: live.recordings },
    edges: edge.edges,
    deliveries: edge.deliveries,
    rentals: edge.rentals,
    async close() {
      await live.stop();
      transfer.stop();
      await schedule.stop();
      await ledger.stop(); // never close the database under a running sweep
      await mail.stop(); // nor under a sending round
      await app.close();
      await transfer.close();
      await terminals.stop();
      await bus.close();
      content.close();
      if (!opts.db) await db.close();
    },
  };
}

function opsRoutes({ app, db, keys }: { app: FastifyInstance; db: DbHandle; keys: KeyPair }): FastifyPluginAsync {
  return async (ops) => {
    ops.get('/health', { config: { access: 'public' }, schema: { summary: 'Liveness and database reachability', tags: ['ops'] } }, async () => {
      await sql`select 1`.execute(db.db);
      return { status: 'ok', engine: db.engine, originKey: keys.publicKeyB64 };
    });
    ops.get('/metrics', { config: { access: 'public' }, schema: { summary: 'Prometheus metrics', tags: ['ops'] } }, async (_req, reply) => {
      reply.type(app.metrics.contentType).send(await app.metrics.metrics());
    });
    ops.get('/docs', { config: { access: 'public' }, schema: { summary: 'OpenAPI description of every route', tags: ['ops'] } }, async () => app.swagger());
    ops.get('/origin', { config: { access: 'public' }, schema: { summary: 'The origin’s identity: its source ID and Ed25519 public key', tags: ['ops'] } }, async () => ({
      sourceId: ORIGIN_SOURCE_ID,
      publicKey: keys.publicKeyB64,
    }));
  };
}
