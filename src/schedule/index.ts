import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { AddressPolicy } from '../core/address-policy.ts';
import type { Clock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import type { KeyPair } from '../core/crypto.ts';
import type { EventBus } from '../core/event-bus.ts';
import type { Db } from '../db/connection.ts';
import type { TerminalService } from '../terminals/service.ts';
import { memberScheduleRoutes } from './member-routes.ts';
import { scheduleRoutes } from './routes.ts';
import { ScheduleRunner } from './runner.ts';
import { ScheduleService } from './service.ts';

// Scheduled distribution (#5, docs/schedules.md): distribution requests, each terminal's
// plan, delivery records, and the scheduler that admits deliveries (pull, push) within
// the origin's egress budget. Owns `schedules`, `schedule_deliveries` and
// `schedule_push_addresses`.

export { ScheduleService } from './service.ts';
export { ScheduleRunner, type DeliveryOrder } from './runner.ts';
export { ORDER_TOKEN_TYPE } from './push.ts';
export { OWNED_TABLES } from './tables.ts';

export function scheduleDomain(deps: {
  db: Db;
  clock: Clock;
  config: Config;
  keys: KeyPair;
  logger: Logger;
  bus: EventBus;
  peers: AddressPolicy;
  terminals: TerminalService;
}) {
  const { db, clock, config, bus } = deps;
  const schedules = new ScheduleService({ db, clock, bus });
  // One scheduler per deployment: SCHEDULER=off on the other origin processes.
  const scheduler = config.scheduler
    ? new ScheduleRunner({
        db,
        clock,
        schedules,
        latestStates: (ids) => deps.terminals.latestStates(ids),
        originKey: deps.keys.privateKey,
        peers: deps.peers,
        logger: deps.logger.child({ domain: 'scheduler' }),
        bus,
        egressBudgetBps: config.scheduleEgressBps,
        maxDeliveryBps: config.scheduleMaxRate,
        tickMs: config.scheduleTickMs,
      })
    : null;
  const plugin: FastifyPluginAsync = async (app) => {
    await app.register(scheduleRoutes({ schedules, runner: scheduler ?? undefined }));
    // #13: the same routes for an account session, on a terminal the member owns.
    await app.register(memberScheduleRoutes({ db, schedules }));
  };
  return {
    schedules,
    scheduler,
    plugin,
    start: async () => scheduler?.start(),
    stop: async () => scheduler?.stop(),
  };
}
