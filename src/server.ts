import path from 'node:path';
import { mkdirSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AccountService } from './accounts/service.ts';
import { accountRoutes } from './accounts/routes.ts';
import { AddressPolicy } from './core/address-policy.ts';
import { systemClock, type WaitClock } from './core/clock.ts';
import type { Config } from './core/config.ts';
import { loadOrCreateKeyPair, type KeyPair } from './core/crypto.ts';
import { openEventBus, type EventBus } from './core/event-bus.ts';
import { createHttpApp } from './core/http.ts';
import { createLogger } from './core/logger.ts';
import { openDatabase, type DbHandle } from './db/connection.ts';
import { ContentService } from './content/service.ts';
import { PieceStore } from './content/piece-store.ts';
import { contentRoutes } from './content/routes.ts';
import { TerminalService } from './terminals/service.ts';
import { terminalRoutes } from './terminals/routes.ts';
import { GrantService } from './transfer/grants.ts';
import { ReceiptService } from './transfer/receipts.ts';
import { ServedLog } from './transfer/served-log.ts';
import { transferRoutes } from './transfer/routes.ts';
import { pieceServerRoutes } from './transfer/piece-server.ts';
import { ORIGIN_SOURCE_ID } from './transfer/grant-token.ts';
import { webRoutes } from './web/routes.ts';
import { HoldingProver } from './transfer/holding-prover.ts';
import { TokenBucket } from './transfer/token-bucket.ts';
import { UploadSlots } from './transfer/upload-slots.ts';
import { IntroductionService } from './terminals/introductions.ts';
import { introductionRoutes } from './terminals/introduction-routes.ts';
import { ReputationService } from './transfer/reputation.ts';
import { TransferService } from './transfer/transfers.ts';
import { PeerCoordinator, type TransferBilling } from './transfer/coordinator.ts';
import { receiptCharges, Settlement } from './ledger/settlement.ts';
import { Reservations } from './ledger/reservations.ts';
import { Wallets } from './ledger/wallets.ts';
import { Reconciler, reconcileRoutes } from './ledger/reconcile.ts';
import { Ledger } from './ledger/ledger.ts';
import { voucherRoutes } from './ledger/voucher-routes.ts';
import { walletRoutes } from './ledger/wallet-routes.ts';
import { ScheduleService } from './schedule/service.ts';
import { scheduleRoutes } from './schedule/routes.ts';
import { ScheduleRunner } from './schedule/runner.ts';

// The origin process (`cascade serve`): composes the domain plugins and nothing else.


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
  /** Which addresses terminals register that the origin calls (issue 10 #8). */
  peers: AddressPolicy;
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
  const db = opts.db ?? (await openDatabase({ databaseUrl: config.databaseUrl, pgliteDir: path.join(config.dataDir, 'db') }));
  const bus = await openEventBus(config.natsUrl);

  const accounts = new AccountService(db.db, clock);
  const peers = new AddressPolicy({ mode: config.peerAddresses, resolve: opts.resolveHost });
  const app = createHttpApp({ logger, resolveToken: accounts.resolveToken, title: 'Cascade origin' });
  const pieces = new PieceStore(path.join(config.dataDir, 'pieces'));
  const content = new ContentService({ db: db.db, pieces, keys, clock, config, bus });
  const prover = new HoldingProver({ keys, clock, content, peers });
  const terminals = new TerminalService({
    db: db.db,
    keys,
    clock,
    config,
    logger,
    accounts,
    metrics: app.metrics,
    peers,
    contentExists: (ids) => content.exists(ids),
    pieceCount: async (id) => (await content.getManifest(id)).body.pieces.length,
    proveHolding: config.holdingsSpotCheck ? (...args) => prover.prove(...args) : undefined,
  });
  const grants = new GrantService({ db: db.db, keys, clock, config, content, terminals });
  const ledger = new Ledger({ db: db.db, clock });
  const wallets = new Wallets({ ledger, signupCredit: config.signupCredit });
  const settlement = new Settlement({ db: db.db, ledger, clock, tariff: config.tariff, originSourceId: ORIGIN_SOURCE_ID });
  const reservations = new Reservations({ db: db.db, ledger, wallets, clock, holdTimeoutMs: config.holdTimeoutMs, refetch: config.refetchPolicy });
  const served = new ServedLog({ db: db.db, clock, logger });
  const receipts = new ReceiptService({
    db: db.db,
    clock,
    terminals,
    grants,
    content,
    origin: { sourceId: ORIGIN_SOURCE_ID, publicKey: keys.publicKey },
    served,
    settle: (trx, stored) => settlement.settleIn(trx, stored),
  });
  const introductions = new IntroductionService({ db: db.db, keys, clock, terminals });
  const reputation = new ReputationService({ db: db.db, clock });
  const transfers = new TransferService({ db: db.db, clock, deadAfterMs: config.transferDeadMs });
  const billing: TransferBilling = {
    async prepare(req) {
      const [receiver, manifest] = await Promise.all([terminals.get(req.receiverId), content.getManifest(req.contentId)]);
      return reservations.prepare({ userId: receiver.userId, contentId: req.contentId, missingBytes: req.missingBytes, price: manifest.body.price, totalBytes: manifest.body.totalSize });
    },
    async release(req) {
      const receiver = await terminals.get(req.receiverId);
      await reservations.release({ userId: receiver.userId, contentId: req.contentId });
    },
  };
  const coordinator = new PeerCoordinator({ clock, content, terminals, grants, reputation, transfers, bus, grantTtlMs: config.grantTtlMs, billing, originKey: keys.publicKeyB64 });
  const schedules = new ScheduleService({ db: db.db, clock, bus });
  const scheduler = config.scheduler
    ? new ScheduleRunner({
        db: db.db,
        clock,
        schedules,
        latestStates: (ids) => terminals.latestStates(ids),
        originKey: keys.privateKey,
        peers,
        logger: logger.child({ domain: 'scheduler' }),
        bus,
        egressBudgetBps: config.scheduleEgressBps,
        maxDeliveryBps: config.scheduleMaxRate,
        tickMs: config.scheduleTickMs,
      })
    : null;

  // Operations routes, in a plugin so that they are registered after (and documented by) OpenAPI.
  await app.register(async (ops) => {
    ops.get('/health', { config: { access: 'public' }, schema: { summary: 'Liveness and database reachability', tags: ['ops'] } }, async () => {
      await db.db.selectFrom('users').select('id').limit(1).execute();
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
  });
  await app.register(webRoutes);
  await app.register(accountRoutes(accounts));
  await app.register(contentRoutes({ content, accounts, config }));
  await app.register(terminalRoutes({ terminals, content }));
  await app.register(introductionRoutes({ introductions }));
  const reconciler = new Reconciler({ db: db.db, ledger, wallets, submitReceipts: (terminalId, items) => receipts.submit(terminalId, items) });
  await app.register(reconcileRoutes({ reconciler, terminalOwner: async (id) => (await terminals.get(id)).userId }));
  await app.register(voucherRoutes({ db: db.db, ledger, clock, accounts, content }));
  await app.register(walletRoutes({ db: db.db, ledger, wallets, accounts, content, clock, tariff: config.tariff }));
  await app.register(transferRoutes({ coordinator, transfers, reputation, grants, receipts, served, content, terminals, originSourceId: ORIGIN_SOURCE_ID, charges: (ids) => receiptCharges(db.db, ids) }));
  await app.register(scheduleRoutes({ schedules, runner: scheduler ?? undefined }));
  const originUpBucket = config.originUpRate ? new TokenBucket(config.originUpRate, Math.max(config.originUpRate / 4, 1), clock) : undefined;
  await app.register(
    pieceServerRoutes({
      sourceId: ORIGIN_SOURCE_ID,
      originPublicKey: keys.publicKey,
      sourceKey: keys.privateKey,
      pieces: content.pieceReader(),
      clock,
      metrics: app.metrics,
      slots: new UploadSlots(config.originSlots, config.originQueue),
      upRate: () => originUpBucket,
      // #10 point 6: the origin records what it sent, as every source reports it.
      onServed: (grant, index) => served.note(grant.id, index),
    }),
  );

  const operatorCredentialsFile = await accounts.bootstrapOperator(config.dataDir);
  if (operatorCredentialsFile) logger.info({ file: operatorCredentialsFile }, 'created the operator account; its one-time credentials are in this file');

  terminals.start();
  // S1.7: look for transfers nobody reported on, and reassign them.
  const monitor = setInterval(() => {
    coordinator.reassignStalled().catch((err) => logger.error({ err }, 'transfer monitor failed'));
  }, Math.max(100, config.transferDeadMs / 3));
  monitor.unref();
  // #4: receipts are settled as they are stored; unpaid ones are tried again, and reservations nobody released expire.
  let sweep: Promise<unknown> = Promise.resolve();
  const settler = setInterval(() => {
    sweep = Promise.all([settlement.retryUnpaid(), ledger.expireHolds()]).catch((err) => logger.error({ err }, 'settlement sweep failed'));
  }, config.settleIntervalMs);
  settler.unref();
  // What the origin sent is written often: another origin process may be asked for its receipts.
  const servedFlush = setInterval(() => void served.flush().catch((err) => logger.error({ err }, 'writing served pieces failed')), 200);
  servedFlush.unref();
  await scheduler?.start();
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host}:${port}`;
  await peers.listeningAt(config.host, port);
  logger.info({ url, engine: db.engine, dataDir: config.dataDir }, 'origin listening');

  return {
    app, url, config, db, keys, bus, accounts, content, terminals, grants, receipts, reputation, transfers, coordinator, operatorCredentialsFile,
    ledger, wallets, settlement, reservations, schedules, scheduler, peers,
    async close() {
      clearInterval(monitor);
      await scheduler?.stop();
      clearInterval(settler);
      clearInterval(servedFlush);
      await sweep; // never close the database under a running sweep
      originUpBucket?.close(); // lets requests waiting for tokens finish, so closing does not wait on them
      await app.close(); // no piece is sent after this, so the last flush sees them all
      await served.flush().catch((err) => logger.error({ err }, 'writing served pieces failed'));
      await terminals.stop();
      await bus.close();
      pieces.close();
      if (!opts.db) await db.close();
    },
  };
}
