import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import type { Db } from '../db/connection.ts';
import { accountRoutes } from './routes.ts';
import { AccountService } from './service.ts';

// Accounts: users, roles, passwords and API tokens. Owns `users` and `api_tokens`.
// Other domains ask AccountService, or read through queries.ts.

export { AccountService, type Contact, type PublicUser } from './service.ts';
export { findUser, rolesOf } from './queries.ts';
export { OWNED_TABLES, ROLES, type Role } from './tables.ts';

export function accountsDomain(deps: { db: Db; clock: Clock; dataDir: string; logger: Logger; scryptN: number }) {
  const accounts = new AccountService(deps.db, deps.clock, deps.scryptN);
  return {
    accounts,
    plugin: accountRoutes(accounts),
    /** Creates the operator account on first start; the path of its one-time credentials file then, else null. */
    async start(): Promise<string | null> {
      const file = await accounts.bootstrapOperator(deps.dataDir);
      if (file) deps.logger.info({ file }, 'created the operator account; its one-time credentials are in this file');
      return file;
    },
  };
}
