// npm run bench -- schedule-live [--terminals 2000] [--contents 3] [--engine pglite|postgres]
//
// The origin's scheduler (src/schedule/runner.ts) against a real database: what it costs
// to start, and to step through the minute in which every terminal's window opens at
// once (the worst case: each open terminal's plan is read, then one admission over all).
//
//  - start_ms: `ScheduleRunner.start()` — one query for every schedule; items are loaded
//    as windows open, so this does not grow with what is due.
//  - opening_step_ms: the step at the opening: N plan queries (one per terminal), the
//    link states, the dispatcher's openings and one `admit` over N × contents candidates,
//    and writing the due/running records.
//  - baseline_plan_ms: N × one `ScheduleService.plan` call, timed alone in the same run;
//    `opening_vs_plans` = opening_step_ms / baseline_plan_ms (what the step costs beyond
//    reading the plans).
//  - steady_step_ms: the next step a minute later (nothing opens; progress and admission).
//  - check_in_ms: 500 terminals calling in at once, wall time per call (the pull call:
//    plan read; the calls of a burst share the scheduler's steps).
// Last line: {"bench":"schedule-live","terminals":…,"start_ms":…,"opening_step_ms":…,…}
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { ManualClock } from '../src/core/clock.ts';
import { generateKeyPair } from '../src/core/crypto.ts';
import { newId } from '../src/core/ids.ts';
import { openDatabase, sql, type DbHandle } from '../src/db/connection.ts';
import { AddressPolicy } from '../src/core/address-policy.ts';
import { ScheduleRunner } from '../src/schedule/runner.ts';
import { ScheduleService } from '../src/schedule/service.ts';

const { values } = parseArgs({
  options: {
    terminals: { type: 'string', default: '2000' },
    contents: { type: 'string', default: '3' },
    engine: { type: 'string', default: process.env.DATABASE_URL ? 'postgres' : 'pglite' },
  },
});
const N = Number(values.terminals);
const CONTENTS = Number(values.contents);
const engine = values.engine as 'pglite' | 'postgres';
const T0 = Date.parse('2026-06-01T09:59:00Z');
const OPEN = Date.parse('2026-06-01T10:00:00Z');

async function main() {
  const schema = `bench_schedule_live_${process.pid}`;
  const handle: DbHandle = engine === 'pglite' ? await openDatabase({}) : await openDatabase({ databaseUrl: process.env.DATABASE_URL, schema });
  const db = handle.db;
  const clock = new ManualClock(T0);
  try {
    // One member owning N terminals, each with one genre schedule, all windows 10:00–12:00 UTC.
    const now = new Date(T0);
    const userId = newId('usr');
    await db.insertInto('users').values({ id: userId, username: 'bench', password_hash: 'x', roles: ['member'], created_at: now } as any).execute();
    const publisherId = newId('usr');
    await db.insertInto('users').values({ id: publisherId, username: 'pub', password_hash: 'x', roles: ['publisher'], created_at: now } as any).execute();
    const key = generateKeyPair().publicKeyB64;
    const ids: string[] = [];
    for (let i = 0; i < N; i += 500) {
      const rows = Array.from({ length: Math.min(500, N - i) }, (_, k) => ({ id: newId('trm'), user_id: userId, name: `t${i + k}`, public_key: `${key}${i + k}`, region: '', network: '', serve_url: null, created_at: now, last_seen_at: null, last_state: null }));
      await db.insertInto('terminals').values(rows as any).execute();
      ids.push(...rows.map((r) => r.id));
      const window = { days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], start: '10:00', end: '12:00', timeZone: 'UTC' };
      await db
        .insertInto('schedules')
        .values(rows.map((r) => ({ id: newId('sch'), terminal_id: r.id, select_kind: 'genre', select_value: 'news', select_label: 'news', windows: sql`${JSON.stringify([window])}::jsonb`, priority: 0, created_at: now })) as any)
        .execute();
    }
    for (let c = 0; c < CONTENTS; c++) {
      await db
        .insertInto('contents')
        .values({ id: randomBytes(32).toString('hex'), title: `News ${c}`, summary: '', author: '', genre: 'news', price: 0, publisher_id: publisherId, piece_size: 1 << 20, piece_count: 100, total_size: 100 << 20, manifest: { body: { publisher: 'pub' } }, created_at: now } as any)
        .execute();
    }

    const schedules = new ScheduleService({ db, clock });
    const runner = new ScheduleRunner({
      db,
      clock,
      schedules,
      latestStates: async () => new Map(),
      originKey: generateKeyPair().privateKey,
      peers: new AddressPolicy({ mode: 'any' }),
      logger: pino({ level: 'silent' }),
      egressBudgetBps: 1e12,
      maxDeliveryBps: 1e8,
      tickMs: 3_600_000,
      presenceMs: 3_600_000,
    });
    let t = performance.now();
    await runner.start();
    const startMs = performance.now() - t;
    // Everyone calls in before the window (present), as pull terminals would.
    for (let i = 0; i < ids.length; i += 500) await Promise.all(ids.slice(i, i + 500).map((id) => runner.checkIn(id)));

    // Baseline: reading every terminal's plan, alone.
    t = performance.now();
    for (const id of ids) await schedules.planner.plan(id, { limit: 1000 });
    const baselinePlanMs = performance.now() - t;

    clock.set(OPEN);
    t = performance.now();
    await runner.tick();
    const openingStepMs = performance.now() - t;
    const running = ids.reduce((n, id) => n + runner.orders(id).length, 0);

    clock.advance(60_000);
    t = performance.now();
    await runner.tick();
    const steadyStepMs = performance.now() - t;

    // 500 terminals calling in at once (a burst shares steps): time per call.
    const sample = ids.slice(0, 500);
    t = performance.now();
    await Promise.all(sample.map((id) => runner.checkIn(id)));
    const checkInMs = (performance.now() - t) / sample.length;
    await runner.stop();

    const round = (x: number) => Math.round(x * 10) / 10;
    const result = {
      bench: 'schedule-live',
      terminals: N,
      engine,
      contents: CONTENTS,
      start_ms: round(startMs),
      opening_step_ms: round(openingStepMs),
      baseline_plan_ms: round(baselinePlanMs),
      opening_vs_plans: round(openingStepMs / baselinePlanMs),
      per_opening_terminal_ms: round(openingStepMs / N),
      deliveries_started: running,
      steady_step_ms: round(steadyStepMs),
      check_in_ms: round(checkInMs),
    };
    console.log(JSON.stringify(result));
  } finally {
    if (engine === 'postgres') await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(db).catch(() => {});
    await handle.close();
  }
}

await main();
