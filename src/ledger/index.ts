import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { AccountService } from '../accounts/service.ts';
import type { ContentService } from '../content/service.ts';
import type { Clock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import type { Db } from '../db/connection.ts';
import type { TerminalService } from '../terminals/service.ts';
import type { TransferBilling } from '../transfer/coordinator.ts';
import { edgeTerminalsIn } from '../edge/queries.ts';
import { ORIGIN_SOURCE_ID } from '../transfer/grant-token.ts';
import type { ReceiptsAnswer, SignedReceipt } from '../transfer/receipt.ts';
import { Ledger } from './ledger.ts';
import { Reconciler, reconcileRoutes } from './reconcile.ts';
import { Reservations } from './reservations.ts';
import { receiptCharges, Settlement } from './settlement.ts';
import { voucherRoutes } from './voucher-routes.ts';
import { walletRoutes } from './wallet-routes.ts';
import { Wallets } from './wallets.ts';

// Ledger (#4, docs/ledger.md): accounts and immutable transfers, wallets, vouchers,
// reservations (holds), settlement of receipts into purchases, plays, statements and
// reconciliation of terminals' journals. Owns every `ledger_*` table and `vouchers`.

export { Ledger, type Balance, type HistoryEntry } from './ledger.ts';
export { Wallets } from './wallets.ts';
export { Settlement, type StoredReceipt } from './settlement.ts';
export { Reservations, type Reservation } from './reservations.ts';
export { Reconciler } from './reconcile.ts';
export { OWNED_TABLES } from './tables.ts';
export { purchaseStandings, receivedContents, transfersByIds, type PurchaseStanding } from './queries.ts';

export function ledgerDomain(deps: {
  db: Db;
  clock: Clock;
  config: Config;
  logger: Logger;
  accounts: AccountService;
  content: ContentService;
  terminals: TerminalService;
  /** The transfer domain's receipt intake: a terminal's journal hands in receipts while reconciling. */
  submitReceipts: (terminalId: string, items: SignedReceipt[]) => Promise<ReceiptsAnswer>;
}) {
  const { db, clock, config, accounts, content, terminals } = deps;
  const ledger = new Ledger({ db, clock });
  const wallets = new Wallets({ ledger, signupCredit: config.signupCredit });
  const settlement = new Settlement({ db, ledger, clock, tariff: config.tariff, originSourceId: ORIGIN_SOURCE_ID });
  const reservations = new Reservations({ db, ledger, wallets, clock, holdTimeoutMs: config.holdTimeoutMs, refetch: config.refetchPolicy });
  const reconciler = new Reconciler({ db, ledger, wallets, submitReceipts: deps.submitReceipts });
  /** What the coordinator reserves before a download and releases after it (#10). */
  const billing: TransferBilling = {
    async prepare(req) {
      // S2.1: an edge filling its cache is not charged (users pay when it delivers to them).
      if ((await edgeTerminalsIn(db, [req.receiverId])).size) return null;
      const [receiver, manifest] = await Promise.all([terminals.get(req.receiverId), content.getManifest(req.contentId)]);
      return reservations.prepare({ userId: receiver.userId, contentId: req.contentId, missingBytes: req.missingBytes, price: manifest.body.price, totalBytes: manifest.body.totalSize });
    },
    async release(req) {
      const receiver = await terminals.get(req.receiverId);
      await reservations.release({ userId: receiver.userId, contentId: req.contentId });
    },
  };
  const plugin: FastifyPluginAsync = async (app) => {
    await app.register(reconcileRoutes({ reconciler, terminalOwner: async (id) => (await terminals.get(id)).userId }));
    await app.register(voucherRoutes({ db, ledger, clock, accounts, content }));
    await app.register(walletRoutes({ db, ledger, wallets, accounts, content, clock, tariff: config.tariff }));
  };

  // #4: receipts are settled as they are stored; unpaid ones are tried again, and reservations nobody released expire.
  let sweep: Promise<unknown> = Promise.resolve();
  let settler: NodeJS.Timeout | undefined;
  return {
    ledger,
    wallets,
    settlement,
    reservations,
    billing,
    /** What each receipt was charged (settled) or why it is unpaid, for the transfer domain's receipt views. */
    charges: (receiptIds: string[]) => receiptCharges(db, receiptIds),
    plugin,
    start() {
      settler = setInterval(() => {
        sweep = Promise.all([settlement.retryUnpaid(), ledger.expireHolds()]).catch((err) => deps.logger.error({ err }, 'settlement sweep failed'));
      }, config.settleIntervalMs);
      settler.unref();
    },
    /** Stops the sweep and waits for a running one: the database is never closed under it. */
    async stop() {
      clearInterval(settler);
      await sweep;
    },
  };
}
