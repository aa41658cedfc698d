import type { Clock } from '../core/clock.ts';
import type { EventBus } from '../core/event-bus.ts';
import type { Db } from '../db/connection.ts';
import { DeliveryRecords } from './deliveries.ts';
import { Planner } from './planning.ts';
import { ScheduleRequests } from './requests.ts';

// Scheduled distribution, the origin's side (#5), in three concepts: distribution
// requests (requests.ts, S0.1, S0.2), each terminal's plan (planning.ts, S0.5) and the
// delivery records (deliveries.ts, S0.7). Delivery itself (pull S0.3, push S0.4) and
// admission (ordering.ts, S0.6) are the scheduler's (runner.ts, dispatcher.ts).

export interface ScheduleServiceDeps {
  db: Db;
  clock: Clock;
  /** When given, `schedules.changed` { terminalId, scheduleId, change: 'added' | 'removed' } is published on it. */
  bus?: EventBus;
}

export class ScheduleService {
  readonly requests: ScheduleRequests;
  readonly planner: Planner;
  readonly deliveries: DeliveryRecords;

  constructor(deps: ScheduleServiceDeps) {
    this.requests = new ScheduleRequests(deps);
    this.planner = new Planner(deps);
    this.deliveries = new DeliveryRecords(deps);
  }
}
