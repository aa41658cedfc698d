import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { ContentService } from '../content/service.ts';
import type { AddressPolicy } from '../core/address-policy.ts';
import type { WaitClock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import type { KeyPair } from '../core/crypto.ts';
import type { EventBus } from '../core/event-bus.ts';
import type { Db } from '../db/connection.ts';
import type { Settlement } from '../ledger/settlement.ts';
import type { TerminalService } from '../terminals/service.ts';
import { PeerCoordinator, type EdgeRouter, type TransferBilling } from './coordinator.ts';
import { ORIGIN_SOURCE_ID } from './grant-token.ts';
import { GrantService } from './grants.ts';
import { HoldingProver } from './holding-prover.ts';
import { pieceServerRoutes } from './piece-server.ts';
import { ReceiptService } from './receipts.ts';
import { ReputationService } from './reputation.ts';
import { transferRoutes } from './routes.ts';

type TransferRouteDeps = Parameters<typeof transferRoutes>[0];
import { ServedLog } from './served-log.ts';
import { TokenBucket } from './token-bucket.ts';
import { TransferService } from './transfers.ts';
import { UploadSlots } from './upload-slots.ts';

// Transfer: grants (the origin's signed permission to fetch pieces from a source), the
// piece protocol (server and client), receipts, source selection, reputation, and the
// monitor that reassigns stalled transfers. Owns `grants`, `receipts`, `transfers`,
// `grant_served`, `peer_reputation` and `peer_reports`; others read through queries.ts.

export { ORIGIN_SOURCE_ID } from './grant-token.ts';
export { GrantService } from './grants.ts';
export { ReceiptService } from './receipts.ts';
export { ReputationService } from './reputation.ts';
export { TransferService, type RunningTransfer } from './transfers.ts';
export { PeerCoordinator, type EdgeRouter, type TransferBilling } from './coordinator.ts';
export { receiptBytesPerBucket, receiptsByIds, receiptsInvolving, receivedBy, trafficSince } from './queries.ts';
export { OWNED_TABLES } from './tables.ts';

/** #3: spot-checks a serving terminal's holdings claim by fetching a piece from it; undefined when HOLDINGS_SPOT_CHECK=0. */
export function holdingsSpotCheck(deps: { config: Config; keys: KeyPair; clock: WaitClock; content: ContentService; peers: AddressPolicy }) {
  if (!deps.config.holdingsSpotCheck) return undefined;
  const prover = new HoldingProver(deps);
  return (terminalId: string, serveUrl: string, contentId: string, among?: number[]) => prover.prove(terminalId, serveUrl, contentId, among);
}

export function transferDomain(deps: {
  db: Db;
  /** The origin's upload rate cap waits on it. */
  clock: WaitClock;
  config: Config;
  keys: KeyPair;
  logger: Logger;
  metrics: Registry;
  bus: EventBus;
  content: ContentService;
  terminals: TerminalService;
  /** The ledger settles receipts in the transaction that stores them. */
  settlement: Settlement;
  /** The ledger reserves before a download and releases after it. */
  billing: TransferBilling;
  /** The ledger's word on what receipts were charged. */
  charges: TransferRouteDeps['charges'];
  /** S2.2: the edge domain's routing (edges serve first, and are not ranked as peers). */
  edges?: EdgeRouter;
}) {
  const { db, clock, config, keys, logger, content, terminals } = deps;
  const grants = new GrantService({ db, keys, clock, config, content, terminals });
  const served = new ServedLog({ db, clock, logger });
  const receipts = new ReceiptService({
    db,
    clock,
    terminals,
    grants,
    content,
    origin: { sourceId: ORIGIN_SOURCE_ID, publicKey: keys.publicKey },
    served,
    settle: (trx, stored) => deps.settlement.settleIn(trx, stored),
  });
  const reputation = new ReputationService({ db, clock });
  const transfers = new TransferService({ db, clock, deadAfterMs: config.transferDeadMs });
  const coordinator = new PeerCoordinator({ clock, content, terminals, grants, reputation, transfers, bus: deps.bus, grantTtlMs: config.grantTtlMs, billing: deps.billing, edges: deps.edges, originKey: keys.publicKeyB64 });
  const originUpBucket = config.originUpRate ? new TokenBucket(config.originUpRate, Math.max(config.originUpRate / 4, 1), clock) : undefined;
  const plugin: FastifyPluginAsync = async (app) => {
    await app.register(transferRoutes({ coordinator, transfers, reputation, grants, receipts, served, content, terminals, originSourceId: ORIGIN_SOURCE_ID, charges: deps.charges }));
    await app.register(
      pieceServerRoutes({
        sourceId: ORIGIN_SOURCE_ID,
        originPublicKey: keys.publicKey,
        sourceKey: keys.privateKey,
        pieces: content.pieceReader(),
        clock,
        metrics: deps.metrics,
        slots: new UploadSlots(config.originSlots, config.originQueue),
        upRate: () => originUpBucket,
        // #10 point 6: the origin records what it sent, as every source reports it.
        onServed: (grant, index) => served.note(grant.id, index),
      }),
    );
  };

  let monitor: NodeJS.Timeout | undefined;
  let servedFlush: NodeJS.Timeout | undefined;
  const flushServed = () => served.flush().catch((err) => logger.error({ err }, 'writing served pieces failed'));
  return {
    grants,
    served,
    receipts,
    reputation,
    transfers,
    coordinator,
    plugin,
    start() {
      // S1.7: look for transfers nobody reported on, and reassign them.
      monitor = setInterval(() => {
        coordinator.reassignStalled().catch((err) => logger.error({ err }, 'transfer monitor failed'));
      }, Math.max(100, config.transferDeadMs / 3));
      monitor.unref();
      // What the origin sent is written often: another origin process may be asked for its receipts.
      servedFlush = setInterval(() => void flushServed(), 200);
      servedFlush.unref();
    },
    /** Stops the loops; requests waiting for upload tokens are let through, so closing the server does not wait on them. */
    stop() {
      clearInterval(monitor);
      clearInterval(servedFlush);
      originUpBucket?.close();
    },
    /** After the server closed: no piece is sent any more, so this last flush sees them all. */
    async close() {
      await flushServed();
    },
  };
}
