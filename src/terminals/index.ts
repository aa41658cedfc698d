import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AccountService } from '../accounts/service.ts';
import type { ContentService } from '../content/service.ts';
import type { AddressPolicy } from '../core/address-policy.ts';
import type { Clock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import type { KeyPair } from '../core/crypto.ts';
import type { Db } from '../db/connection.ts';
import { introductionRoutes } from './introduction-routes.ts';
import { IntroductionService } from './introductions.ts';
import { terminalRoutes } from './routes.ts';
import { TerminalService, type TerminalServiceDeps } from './service.ts';

// Terminals: registration, device credentials, heartbeats (buffered, flushed in
// batches), holdings (who holds what) and introductions between peers. Owns
// `terminals`, `holdings` and `terminal_challenges`; others read through queries.ts.

export { TerminalService, type HeldCount, type Holder, type MemberTerminal, type PublicTerminal } from './service.ts';
export { IntroductionService } from './introductions.ts';
export { holdingsOf, terminalOwners, terminalsByIds, terminalsOfUsers, wholeHolders } from './queries.ts';
export { OWNED_TABLES, type TerminalState } from './tables.ts';

export function terminalsDomain(deps: {
  db: Db;
  clock: Clock;
  config: Config;
  keys: KeyPair;
  logger: Logger;
  metrics: Registry;
  peers: AddressPolicy;
  accounts: AccountService;
  content: ContentService;
  /** Spot-checks a serving terminal's holdings claim (transfer's HoldingProver); absent: claims are recorded unchecked. */
  proveHolding?: TerminalServiceDeps['proveHolding'];
}) {
  const { db, clock, keys, content } = deps;
  const terminals = new TerminalService({
    db,
    keys,
    clock,
    config: deps.config,
    logger: deps.logger,
    accounts: deps.accounts,
    metrics: deps.metrics,
    peers: deps.peers,
    pieceCount: async (id) => (await content.getManifest(id)).body.pieces.length,
    proveHolding: deps.proveHolding,
  });
  const introductions = new IntroductionService({ db, keys, clock, terminals });
  const plugin: FastifyPluginAsync = async (app) => {
    await app.register(terminalRoutes({ terminals, content }));
    await app.register(introductionRoutes({ introductions }));
  };
  return {
    terminals,
    introductions,
    plugin,
    /** Heartbeats are flushed to the database in batches from here on. */
    start: () => terminals.start(),
    stop: () => terminals.stop(),
  };
}
