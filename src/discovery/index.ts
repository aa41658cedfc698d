import type { FastifyPluginAsync } from 'fastify';
import type { AccountService } from '../accounts/service.ts';
import type { Clock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import type { Db } from '../db/connection.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { Wallets } from '../ledger/wallets.ts';
import type { TerminalService } from '../terminals/service.ts';
import { discoveryRoutes } from './routes.ts';
import { DiscoveryService } from './service.ts';

// Discovery (S1.4, docs/content-list.md): each member's content list, its preferred genres,
// comments, ratings, publishers' notes and paid placement. Owns the `discovery_*` tables;
// reads the catalog (content), purchases and balances (ledger) and holders (terminals)
// through their query functions and services.

export { DiscoveryService, type ContentList, type Item, type Comment, type Placement, type Profile } from './service.ts';
export { OWNED_TABLES } from './tables.ts';

export function discoveryDomain(deps: { db: Db; clock: Clock; config: Config; accounts: AccountService; ledger: Ledger; wallets: Wallets; terminals: TerminalService }) {
  const discovery = new DiscoveryService(deps);
  const plugin: FastifyPluginAsync = discoveryRoutes({ discovery });
  return { discovery, plugin };
}
