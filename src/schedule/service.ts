import type { Clock } from '../core/clock.ts';
import { AppError, badRequest, conflict, forbidden, notFound } from '../core/errors.ts';
import type { EventBus } from '../core/event-bus.ts';
import { newId } from '../core/ids.ts';
import { sql, type Db } from '../db/connection.ts';
import { planItems, scheduleOpenings, openings, WEEK_MS, type ItemRecord, type PlanContent, type PlanItem, type PlanSchedule, type ScheduleOpening } from './plan.ts';
import type { DeliveryOutcome, DeliverySource, ScheduleDeliveriesTable, SchedulesTable, SelectKind } from './tables.ts';
import { nextOpening, parseWindow, parseWindows, type Opening, type Window } from './windows.ts';
import { findUser } from '../accounts/queries.ts';
import { contentsByIds, existingContents, newestMatching } from '../content/queries.ts';
import { holdingsOf, terminalOwners, wholeHolders } from '../terminals/queries.ts';

// Scheduled distribution, the origin's side (#5): distribution requests (S0.1, S0.2),
// each terminal's plan (S0.5) and the delivery records (S0.7). Delivery itself (pull
// S0.3, push S0.4) and admission (ordering.ts, S0.6) are the dispatcher's; it calls
// `plan`, `matchingTerminals` and the `record…` methods here.
//
// Tables: `schedules` and `schedule_deliveries` (tables.ts) are this domain's. To plan,
// it also READS — never writes — `contents` (what is published), `holdings` (what the
// terminal holds), `users` (publisher look-up) and `terminals` (existence). Planning is
// a query at read time, not a table filled at publish time: see docs/schedules.md "Plan".

export const MAX_SCHEDULES_PER_TERMINAL = 50;
export const MAX_WINDOWS_PER_SCHEDULE = 10;
export const MAX_PRIORITY = 100;
/** Matching contents one plan looks at (newest first); beyond it the plan says `truncated`. */
export const PLAN_SCAN = 5000;
export const PLAN_DEFAULT_LIMIT = 100;
export const PLAN_MAX_LIMIT = 1000;
const GENRE_MAX = 60;
const SERIES_MAX = 200;
const REASON_MAX = 200;
const CONTENT_ID = /^[0-9a-f]{64}$/;
const SOURCES: readonly DeliverySource[] = ['origin', 'edge', 'peer'];

/** The request body of POST /schedules. */
export interface ScheduleInput {
  select?: unknown;
  windows?: unknown;
  priority?: unknown;
}

/** What a schedule selects, as shown back: exactly one of the fields. */
export interface SelectionView {
  contentId?: string;
  publisherId?: string;
  /** The publisher's username, alongside publisherId. */
  publisher?: string;
  genre?: string;
  series?: string;
}

export interface NextWindow {
  start: string;
  end: string;
  open: boolean;
  windowIndex: number;
  capBytesPerSecond: number | null;
}

export interface PublicSchedule {
  id: string;
  terminalId: string;
  select: SelectionView;
  windows: Window[];
  priority: number;
  createdAt: string;
  /** The current (open) or next interval of its windows; null when they never open again. */
  next: NextWindow | null;
}

export interface PlanView {
  terminalId: string;
  at: string;
  items: PlanItemView[];
  /** More contents are due than listed (limit or PLAN_SCAN reached). */
  truncated: boolean;
  /** The intervals of every schedule in the coming 7 days, by start. */
  openings: OpeningView[];
}

export type PlanItemView = Omit<PlanItem, 'dueAt' | 'windowEnd'> & { dueAt: string; windowEnd: string };
export type OpeningView = Omit<ScheduleOpening, 'start' | 'end'> & { start: string; end: string };

export interface DeliveryRecord {
  id: string;
  terminalId: string;
  contentId: string;
  /** The content's title (history only; null elsewhere). */
  title: string | null;
  scheduleId: string | null;
  dueAt: string;
  windowEnd: string | null;
  startedAt: string | null;
  endedAt: string | null;
  bytes: number;
  source: DeliverySource | null;
  sourceId: string | null;
  outcome: DeliveryOutcome;
  reason: string | null;
  deferrals: number;
  createdAt: string;
}

export interface DueInput {
  terminalId: string;
  contentId: string;
  scheduleId?: string | null;
  /** ms */
  dueAt: number;
  /** ms; the end of the window it is due in. */
  windowEnd?: number | null;
}

/** One record event of the dispatcher (`recordBatch`). Times in ms. */
export type RecordEvent = DueEvent | { kind: 'start'; attempt: string; at: number; source: DeliverySource } | EndEvent;
export interface DueEvent {
  kind: 'due';
  /** The dispatcher's attempt id (`terminal/content#n`). */
  attempt: string;
  terminalId: string;
  contentId: string;
  scheduleId: string | null;
  dueAt: number;
  /** null: not known (a caller of `recordDue` may not say). */
  windowEnd: number | null;
}
export interface EndEvent {
  kind: 'end';
  attempt: string;
  outcome: 'done' | 'deferred' | 'failed';
  reason: string | null;
  at: number;
  bytes: number;
  source?: DeliverySource;
  sourceId?: string | null;
}

export interface StartInput {
  source: DeliverySource;
  sourceId?: string | null;
  /** ms; default now. */
  at?: number;
}

export interface EndInput {
  /** Bytes delivered in this attempt (default 0). */
  bytes?: number;
  /** ms; default now. */
  at?: number;
  source?: DeliverySource;
  sourceId?: string | null;
}

export interface ScheduleServiceDeps {
  db: Db;
  clock: Clock;
  /** When given, `schedules.changed` { terminalId, scheduleId, change: 'added' | 'removed' } is published on it. */
  bus?: EventBus;
}

export class ScheduleService {
  private readonly db: Db;
  private readonly clock: Clock;

  constructor(private readonly deps: ScheduleServiceDeps) {
    this.db = deps.db;
    this.clock = deps.clock;
  }

  // ---- distribution requests (S0.1, S0.2) ----

  /**
   * Stores a distribution request. Everything is checked before anything is written:
   * selection (`empty_selection`, `invalid_selection`, `invalid_content_id`), windows
   * (`too_many_windows`, `invalid_window`, `unknown_time_zone`, `invalid_cap`),
   * `invalid_priority`; then `unknown_content` / `unknown_publisher`; then the
   * per-terminal limit (`too_many_schedules`), under a per-terminal lock.
   */
  async create(terminalId: string, input: ScheduleInput): Promise<PublicSchedule> {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) throw badRequest('invalid_request', 'The body is an object with select, windows and an optional priority.');
    const parsed = parseSelection(input.select);
    if (Array.isArray(input.windows) && input.windows.length > MAX_WINDOWS_PER_SCHEDULE) {
      throw badRequest('too_many_windows', `A schedule has at most ${MAX_WINDOWS_PER_SCHEDULE} windows (got ${input.windows.length}).`, {
        field: 'windows',
        max: MAX_WINDOWS_PER_SCHEDULE,
      });
    }
    const windows = parseWindows(input.windows);
    const priority = parsePriority(input.priority);
    await this.checkTerminal(terminalId);
    const { value, label } = await this.resolve(parsed);

    const row: SchedulesTable = {
      id: newId('sch'),
      terminal_id: terminalId,
      select_kind: parsed.kind,
      select_value: value,
      select_label: label,
      windows,
      priority,
      created_at: new Date(this.clock.now()),
    };
    await this.db.transaction().execute(async (trx) => {
      // One terminal's requests are counted and inserted one at a time, across processes.
      await sql`select pg_advisory_xact_lock(hashtext(${`schedules:${terminalId}`}))`.execute(trx);
      const { n } = await trx
        .selectFrom('schedules')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('terminal_id', '=', terminalId)
        .executeTakeFirstOrThrow();
      if (Number(n) >= MAX_SCHEDULES_PER_TERMINAL) {
        throw conflict('too_many_schedules', `A terminal has at most ${MAX_SCHEDULES_PER_TERMINAL} schedules; remove one first (cascade schedule rm ID).`);
      }
      await trx
        .insertInto('schedules')
        .values({ ...row, windows: sql`${JSON.stringify(windows)}::jsonb` as any })
        .execute();
    });
    this.deps.bus?.publish('schedules.changed', { terminalId, scheduleId: row.id, change: 'added' });
    return toPublic(row, this.clock.now());
  }

  /** The terminal's schedules, oldest first, each with its current or next window. */
  async list(terminalId: string): Promise<PublicSchedule[]> {
    const rows = await this.rowsOf(terminalId);
    const now = this.clock.now();
    return rows.map((r) => toPublic(r, now));
  }

  /** Removes one of the terminal's schedules: `unknown_schedule` (404), `schedule_not_yours` (403). Its records stay. */
  async remove(terminalId: string, scheduleId: string): Promise<{ id: string; removed: true }> {
    const row = await this.db.selectFrom('schedules').select(['id', 'terminal_id']).where('id', '=', scheduleId).executeTakeFirst();
    if (!row) throw notFound('unknown_schedule', `No schedule ${scheduleId}.`);
    if (row.terminal_id !== terminalId) throw forbidden('schedule_not_yours', 'That schedule belongs to another terminal.');
    await this.db.deleteFrom('schedules').where('id', '=', scheduleId).where('terminal_id', '=', terminalId).execute();
    this.deps.bus?.publish('schedules.changed', { terminalId, scheduleId, change: 'removed' });
    return { id: scheduleId, removed: true };
  }

  // ---- the plan (S0.5) ----

  /**
   * What is due for the terminal and when: every content one of its schedules selects
   * that it does not hold whole and that was not delivered to it (a `done` record), due
   * at the schedule's next opening (plan.ts `planItems`). A query at read time, so a
   * content published a moment ago is in it, and one the terminal now holds is not.
   */
  async plan(terminalId: string, opts: { limit?: number } = {}): Promise<PlanView> {
    const limit = opts.limit ?? PLAN_DEFAULT_LIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > PLAN_MAX_LIMIT) throw badRequest('invalid_limit', `limit is a whole number from 1 to ${PLAN_MAX_LIMIT}.`);
    const now = this.clock.now();
    const { schedules, items, truncated } = (await this.planned([terminalId], limit, now)).get(terminalId)!;
    return {
      terminalId,
      at: iso(now),
      items: items.map((i) => ({ ...i, dueAt: iso(i.dueAt), windowEnd: iso(i.windowEnd) })),
      truncated,
      openings: scheduleOpenings(schedules, now, now + WEEK_MS).map((o) => ({ ...o, start: iso(o.start), end: iso(o.end) })),
    };
  }

  /**
   * The terminals whose schedules select a content (and which of their schedules), for a
   * dispatcher that learns of a new content (push, S0.4). Terminals that hold it whole
   * are left out. Whether their windows still open is the caller's to check.
   */
  async matchingTerminals(contentId: string): Promise<{ terminalId: string; scheduleIds: string[] }[]> {
    if (!CONTENT_ID.test(contentId)) throw badRequest('invalid_content_id', 'A content ID is 64 lower-case hex characters.');
    const c = (await contentsByIds(this.db, [contentId])).get(contentId);
    if (!c) return [];
    // The same matching as the content domain's `newestMatching`, from the content's side.
    const rows = await sql<{ terminal_id: string; id: string }>`
      select s.terminal_id, s.id
        from schedules s
       where (s.select_kind = 'content' and s.select_value = ${c.id})
          or (s.select_kind = 'publisher' and s.select_value = ${c.publisherId})
          or (s.select_kind = 'genre' and s.select_value = lower(${c.genre}))
          or (s.select_kind = 'series' and starts_with(lower(${c.title}), s.select_value))
       order by s.terminal_id, s.created_at, s.id`.execute(this.db);
    const whole = await wholeHolders(this.db, contentId, [...new Set(rows.rows.map((r) => r.terminal_id))]);
    const out = new Map<string, string[]>();
    for (const r of rows.rows.filter((r) => !whole.has(r.terminal_id))) {
      const list = out.get(r.terminal_id) ?? [];
      list.push(r.id);
      out.set(r.terminal_id, list);
    }
    return [...out].map(([terminalId, scheduleIds]) => ({ terminalId, scheduleIds }));
  }

  /** `plan` for many terminals at once (the scheduler, when their windows open): the items only, in a few queries per 500 terminals. */
  async plans(terminalIds: readonly string[], opts: { limit?: number } = {}): Promise<Map<string, PlanItem[]>> {
    const now = this.clock.now();
    const out = new Map<string, PlanItem[]>();
    for (let i = 0; i < terminalIds.length; i += 500) {
      for (const [id, p] of await this.planned(terminalIds.slice(i, i + 500), opts.limit ?? PLAN_MAX_LIMIT, now)) out.set(id, p.items);
    }
    return out;
  }

  /**
   * The plans of the terminals (at most a few hundred): their schedules in one query, the
   * contents their live schedules select that they neither hold whole nor had delivered
   * (newest first, PLAN_SCAN + 1 per terminal) in one, the latest record per item in one;
   * then `planItems` per terminal.
   */
  private async planned(terminalIds: readonly string[], limit: number, now: number): Promise<Map<string, { schedules: PlanSchedule[]; items: PlanItem[]; truncated: boolean }>> {
    const rows = terminalIds.length
      ? await this.db.selectFrom('schedules').selectAll().where('terminal_id', 'in', [...terminalIds]).orderBy('created_at').orderBy('id').execute()
      : [];
    const schedulesOf = new Map<string, PlanSchedule[]>(terminalIds.map((id) => [id, []]));
    for (const r of rows) schedulesOf.get(r.terminal_id)!.push(toPlanSchedule(r));
    const selections: { terminal_id: string; kind: SelectKind; value: string }[] = [];
    for (const [id, schedules] of schedulesOf) {
      const next = openings(schedules, now);
      for (const s of schedules) if (next.get(s.id)) selections.push({ terminal_id: id, kind: s.select.kind, value: s.select.value });
    }
    const contents = await this.dueContents(selections);
    const out = new Map<string, { schedules: PlanSchedule[]; items: PlanItem[]; truncated: boolean }>();
    for (const [id, schedules] of schedulesOf) {
      const due = contents.get(id) ?? [];
      const all = planItems(schedules, due.slice(0, PLAN_SCAN), now);
      out.set(id, { schedules, items: all.slice(0, limit), truncated: due.length > PLAN_SCAN || all.length > limit });
    }
    const records = await this.itemRecords([...out].flatMap(([id, p]) => p.items.map((i) => ({ terminalId: id, contentId: i.contentId }))));
    for (const [id, p] of out) {
      for (const item of p.items) {
        const r = records.get(`${id}/${item.contentId}`);
        if (r) Object.assign(item, { deferrals: r.deferrals, deliveryId: r.openDeliveryId, lastOutcome: r.lastOutcome });
      }
    }
    return out;
  }

  /** Per terminal, the contents its selections take that it neither holds whole nor had delivered; newest first, PLAN_SCAN + 1 at most. */
  private async dueContents(selections: { terminal_id: string; kind: SelectKind; value: string }[]): Promise<Map<string, PlanContent[]>> {
    const out = new Map<string, PlanContent[]>();
    if (!selections.length) return out;
    const terminalIds = [...new Set(selections.map((s) => s.terminal_id))];
    // Left out: what the terminal holds whole, and what was delivered to it; a part held is planned with its pieces.
    const partial = new Map<string, string>();
    const exclude: { key: string; contentId: string }[] = [];
    for (const h of await holdingsOf(this.db, terminalIds)) {
      if (h.pieces === null) exclude.push({ key: h.terminalId, contentId: h.contentId });
      else partial.set(`${h.terminalId}/${h.contentId}`, h.pieces);
    }
    const done = await this.db
      .selectFrom('schedule_deliveries')
      .select(['terminal_id', 'content_id'])
      .distinct()
      .where('terminal_id', 'in', terminalIds)
      .where('outcome', '=', 'done')
      .execute();
    for (const d of done) exclude.push({ key: d.terminal_id, contentId: d.content_id });
    const matched = await newestMatching(this.db, selections.map((s) => ({ key: s.terminal_id, kind: s.kind, value: s.value })), { exclude, perKey: PLAN_SCAN + 1 });
    for (const [terminalId, contents] of matched) {
      out.set(
        terminalId,
        contents.map((c) => ({
          id: c.id,
          title: c.title,
          genre: c.genre,
          publisherId: c.publisherId,
          publisher: c.publisher,
          totalSize: c.totalSize,
          createdAt: c.createdAt,
          heldPieces: partial.get(`${terminalId}/${c.id}`) ?? null,
        })),
      );
    }
    return out;
  }

  /** Per terminal and content (`terminal/content`), what its latest delivery record says (open attempt, aging count). */
  private async itemRecords(items: { terminalId: string; contentId: string }[]): Promise<Map<string, ItemRecord>> {
    const out = new Map<string, ItemRecord>();
    for (let i = 0; i < items.length; i += 1000) {
      const chunk = items.slice(i, i + 1000).map((x) => ({ terminal_id: x.terminalId, content_id: x.contentId }));
      const rows = await sql<{ id: string; terminal_id: string; content_id: string; outcome: DeliveryOutcome; deferrals: number }>`
        select distinct on (d.terminal_id, d.content_id) d.id, d.terminal_id, d.content_id, d.outcome, d.deferrals
          from jsonb_to_recordset(${JSON.stringify(chunk)}::jsonb) as v(terminal_id text, content_id text)
          join schedule_deliveries d on d.terminal_id = v.terminal_id and d.content_id = v.content_id
         order by d.terminal_id, d.content_id, d.created_at desc, d.id desc`.execute(this.db);
      for (const r of rows.rows) {
        const open = r.outcome === 'due' || r.outcome === 'running';
        out.set(`${r.terminal_id}/${r.content_id}`, { openDeliveryId: open ? r.id : null, deferrals: nextDeferrals(r), lastOutcome: r.outcome });
      }
    }
    return out;
  }

  // ---- records (S0.7), for the dispatcher ----

  /**
   * Opens an attempt to deliver `contentId` to the terminal in the window that starts at
   * `dueAt`. Idempotent: while an attempt for this terminal and content is open (due or
   * running), that one is returned. `deferrals` continues the chain: one more than the
   * previous attempt's when that one was deferred or failed, else 0.
   */
  async recordDue(input: DueInput): Promise<DeliveryRecord> {
    if (!CONTENT_ID.test(input.contentId)) throw badRequest('invalid_content_id', 'A content ID is 64 lower-case hex characters.');
    const dueAt = instant(input.dueAt, 'dueAt');
    const windowEnd = input.windowEnd == null ? null : instant(input.windowEnd, 'windowEnd');
    if (windowEnd !== null && windowEnd <= dueAt) throw badRequest('invalid_time', 'windowEnd must be after dueAt.', { field: 'windowEnd' });
    await this.checkTerminal(input.terminalId);
    if (!(await existingContents(this.db, [input.contentId])).has(input.contentId)) throw notFound('unknown_content', `No content ${input.contentId}.`);

    // The same insert as the scheduler's batches: one rule for idempotence and aging.
    const event: DueEvent = { kind: 'due', attempt: 'one', terminalId: input.terminalId, contentId: input.contentId, scheduleId: input.scheduleId ?? null, dueAt, windowEnd };
    const id = (await this.recordBatch([event], new Map())).get('one')!;
    return toRecord(await this.db.selectFrom('schedule_deliveries').selectAll().where('id', '=', id).executeTakeFirstOrThrow());
  }

  /** The attempt starts (or resumes, or changes source): outcome `running`; the first start time is kept. */
  async recordStart(deliveryId: string, input: StartInput): Promise<DeliveryRecord> {
    const source = checkSource(input.source);
    const at = new Date(input.at === undefined ? this.clock.now() : instant(input.at, 'at'));
    const row = await this.db
      .updateTable('schedule_deliveries')
      .set({ outcome: 'running', started_at: sql`coalesce(started_at, ${at})` as any, source, source_id: input.sourceId ?? null, updated_at: at })
      .where('id', '=', deliveryId)
      .where('outcome', 'in', ['due', 'running'])
      .returningAll()
      .executeTakeFirst();
    if (!row) throw await this.whyNotOpen(deliveryId);
    return toRecord(row);
  }

  /** Delivered: every byte is at the terminal and verified. */
  recordDone(deliveryId: string, input: EndInput = {}): Promise<DeliveryRecord> {
    return this.end(deliveryId, 'done', null, input);
  }

  /** Carried to the terminal's next window (S0.6: window_closed, cannot_finish, budget_exhausted, …). The next attempt's `deferrals` is one higher. */
  recordDeferred(deliveryId: string, reason: string, input: EndInput = {}): Promise<DeliveryRecord> {
    return this.end(deliveryId, 'deferred', reason, input);
  }

  /** Failed (e.g. piece_corrupt, terminal_unreachable); it stays in the plan and is tried again in the next window. */
  recordFailed(deliveryId: string, reason: string, input: EndInput = {}): Promise<DeliveryRecord> {
    return this.end(deliveryId, 'failed', reason, input);
  }

  private async end(deliveryId: string, outcome: 'done' | 'deferred' | 'failed', reason: string | null, input: EndInput): Promise<DeliveryRecord> {
    if (outcome !== 'done' && (typeof reason !== 'string' || reason.trim() === '' || reason.length > REASON_MAX)) {
      throw badRequest('invalid_reason', `A ${outcome} delivery needs a reason (1–${REASON_MAX} characters), e.g. window_closed.`);
    }
    const bytes = input.bytes ?? 0;
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw badRequest('invalid_bytes', 'bytes is a whole number ≥ 0.');
    const at = new Date(input.at === undefined ? this.clock.now() : instant(input.at, 'at'));
    const set: Record<string, unknown> = { outcome, reason: reason?.trim() ?? null, bytes, ended_at: at, updated_at: at };
    if (input.source !== undefined) set.source = checkSource(input.source);
    if (input.sourceId !== undefined) set.source_id = input.sourceId;
    // A delivery done without a start (nothing left to send) started when it ended.
    if (outcome === 'done') set.started_at = sql`coalesce(started_at, ${at})`;
    const row = await this.db
      .updateTable('schedule_deliveries')
      .set(set as any)
      .where('id', '=', deliveryId)
      .where('outcome', 'in', ['due', 'running'])
      .returningAll()
      .executeTakeFirst();
    if (!row) throw await this.whyNotOpen(deliveryId);
    return toRecord(row);
  }

  /**
   * A terminal's last word on an attempt that ended when its window closed (its final
   * count arrives after the origin closed the window): raises that record's bytes, never
   * lowers them. Returns whether a record matched.
   */
  async amendClosedBytes(terminalId: string, contentId: string, windowEnd: number, bytes: number): Promise<boolean> {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw badRequest('invalid_bytes', 'bytes is a whole number ≥ 0.');
    const res = await this.db
      .updateTable('schedule_deliveries')
      .set({ bytes: sql`greatest(bytes, ${bytes})` as any, updated_at: new Date(this.clock.now()) })
      .where('terminal_id', '=', terminalId)
      .where('content_id', '=', contentId)
      .where('window_end', '=', new Date(windowEnd))
      .where('outcome', '=', 'deferred')
      .where('reason', '=', 'window_closed')
      .executeTakeFirst();
    return Number(res.numUpdatedRows) > 0;
  }

  /**
   * The dispatcher's records for one step (S0.7), in a few statements whatever their
   * number: per generation one insert for the attempts opened, one update for the starts,
   * one for the ends. `events` come in the dispatcher's order (an attempt: due, start…,
   * end); an item opened again after ending in the same batch starts a new generation.
   * `known` maps attempts opened in earlier batches to their record ids. Returns the ids of
   * the attempts opened here — the open record already in the table when there is one (a
   * restarted dispatcher picks it up), else a new one whose `deferrals` continues the chain
   * (the previous attempt's + 1 when that one was deferred or failed, else 0; the same
   * rule as `nextDeferrals`). Events for attempts with no record are skipped and reported at the
   * end (`unknown_delivery`), after everything else is written.
   */
  async recordBatch(events: readonly RecordEvent[], known: ReadonlyMap<string, string>): Promise<Map<string, string>> {
    const opened = new Map<string, string>();
    const idOf = (attempt: string) => opened.get(attempt) ?? known.get(attempt);
    let unknown = 0;
    const base = this.clock.now();
    let generation: RecordEvent[] = [];
    const ended = new Set<string>();
    const itemOf = (e: RecordEvent) => (e.kind === 'due' ? `${e.terminalId}/${e.contentId}` : e.attempt.slice(0, e.attempt.lastIndexOf('#')));
    const write = async (g: RecordEvent[], createdAt: Date) => {
      const dues = g.filter((e): e is DueEvent => e.kind === 'due');
      if (dues.length) {
        const rows = dues.map((e) => ({ attempt: e.attempt, id: newId('sdl'), terminal_id: e.terminalId, content_id: e.contentId, schedule_id: e.scheduleId, due_at: new Date(e.dueAt), window_end: e.windowEnd === null ? null : new Date(e.windowEnd) }));
        const inserted = await sql<{ id: string }>`
          insert into schedule_deliveries (id, terminal_id, content_id, schedule_id, due_at, window_end, bytes, outcome, deferrals, created_at, updated_at)
          select v.id, v.terminal_id, v.content_id, v.schedule_id, v.due_at, v.window_end, 0, 'due',
                 coalesce((select case when p.outcome in ('deferred', 'failed') then p.deferrals + 1
                                       when p.outcome in ('due', 'running') then p.deferrals else 0 end
                             from schedule_deliveries p
                            where p.terminal_id = v.terminal_id and p.content_id = v.content_id
                            order by p.created_at desc, p.id desc limit 1), 0),
                 ${createdAt}, ${createdAt}
            from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as v(id text, terminal_id text, content_id text, schedule_id text, due_at timestamptz, window_end timestamptz)
          on conflict (terminal_id, content_id) where outcome in ('due', 'running') do nothing
          returning id`.execute(this.db);
        const fresh = new Set(inserted.rows.map((r) => r.id));
        const taken = rows.filter((r) => !fresh.has(r.id));
        for (const r of rows) if (fresh.has(r.id)) opened.set(r.attempt, r.id);
        if (taken.length) {
          // An attempt for that item was open already (a restarted dispatcher): continue it.
          const open = await this.db
            .selectFrom('schedule_deliveries')
            .select(['id', 'terminal_id', 'content_id'])
            .where('outcome', 'in', ['due', 'running'])
            .where('terminal_id', 'in', [...new Set(taken.map((r) => r.terminal_id))])
            .where('content_id', 'in', [...new Set(taken.map((r) => r.content_id))])
            .execute();
          const byItem = new Map(open.map((o) => [`${o.terminal_id}/${o.content_id}`, o.id]));
          for (const r of taken) {
            const id = byItem.get(`${r.terminal_id}/${r.content_id}`);
            if (id) opened.set(r.attempt, id);
          }
        }
      }
      const starts = new Map<string, { id: string; at: Date; source: DeliverySource }>();
      const ends: { id: string; outcome: string; reason: string | null; at: Date; bytes: number; source: DeliverySource | null; source_id: string | null }[] = [];
      for (const e of g) {
        if (e.kind === 'due') continue;
        const id = idOf(e.attempt);
        if (id === undefined) {
          unknown++;
          continue;
        }
        if (e.kind === 'start') starts.set(id, { id, at: new Date(e.at), source: e.source });
        else ends.push({ id, outcome: e.outcome, reason: e.reason, at: new Date(e.at), bytes: Math.round(e.bytes), source: e.source ?? null, source_id: e.sourceId ?? null });
      }
      if (starts.size) {
        await sql`
          update schedule_deliveries d
             set outcome = 'running', started_at = coalesce(d.started_at, v.at), source = v.source, source_id = null, updated_at = v.at
            from jsonb_to_recordset(${JSON.stringify([...starts.values()])}::jsonb) as v(id text, at timestamptz, source text)
           where d.id = v.id and d.outcome in ('due', 'running')`.execute(this.db);
      }
      if (ends.length) {
        await sql`
          update schedule_deliveries d
             set outcome = v.outcome, reason = v.reason, bytes = v.bytes, ended_at = v.at, updated_at = v.at,
                 started_at = case when v.outcome = 'done' then coalesce(d.started_at, v.at) else d.started_at end,
                 source = coalesce(v.source, d.source),
                 source_id = case when v.source is null then d.source_id else v.source_id end
            from jsonb_to_recordset(${JSON.stringify(ends)}::jsonb) as v(id text, outcome text, reason text, at timestamptz, bytes bigint, source text, source_id text)
           where d.id = v.id and d.outcome in ('due', 'running')`.execute(this.db);
      }
    };
    let g = 0;
    for (const e of events) {
      if (e.kind === 'due' && ended.has(itemOf(e))) {
        await write(generation, new Date(base + g++));
        generation = [];
        ended.clear();
      }
      generation.push(e);
      if (e.kind === 'end') ended.add(itemOf(e));
    }
    if (generation.length) await write(generation, new Date(base + g));
    if (unknown) throw notFound('unknown_delivery', `${unknown} record event(s) named attempts with no record (their opening was not written).`);
    return opened;
  }

  /** Open attempts (due or running), oldest first: what a restarted dispatcher picks up. */
  async openDeliveries(opts: { terminalId?: string; limit?: number } = {}): Promise<DeliveryRecord[]> {
    let q = this.db.selectFrom('schedule_deliveries').selectAll().where('outcome', 'in', ['due', 'running']);
    if (opts.terminalId) q = q.where('terminal_id', '=', opts.terminalId);
    const rows = await q.orderBy('created_at').orderBy('id').limit(Math.min(Math.max(opts.limit ?? 1000, 1), 100_000)).execute();
    return rows.map((r) => toRecord(r));
  }

  /**
   * S0.7: the terminal's delivery records, newest first. `before` is the last id of the
   * previous page (`invalid_cursor` if it is not one of this terminal's records).
   */
  async history(terminalId: string, opts: { limit?: number; before?: string; contentId?: string } = {}): Promise<{ entries: DeliveryRecord[]; nextCursor: string | null }> {
    const limit = opts.limit ?? 20;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw badRequest('invalid_limit', 'limit is a whole number from 1 to 1000.');
    if (opts.contentId !== undefined && !CONTENT_ID.test(opts.contentId)) throw badRequest('invalid_content_id', 'A content ID is 64 lower-case hex characters.');
    let q = this.db.selectFrom('schedule_deliveries as d').selectAll('d').where('d.terminal_id', '=', terminalId);
    if (opts.contentId) q = q.where('d.content_id', '=', opts.contentId);
    if (opts.before) {
      const cursor = await this.db
        .selectFrom('schedule_deliveries')
        .select(['created_at', 'id'])
        .where('id', '=', opts.before)
        .where('terminal_id', '=', terminalId)
        .executeTakeFirst();
      if (!cursor) throw badRequest('invalid_cursor', 'before is not one of this terminal’s delivery records; start again without it.');
      q = q.where((eb) => eb(eb.refTuple('d.created_at', 'd.id'), '<', eb.tuple(cursor.created_at, cursor.id)));
    }
    const rows = await q.orderBy('d.created_at', 'desc').orderBy('d.id', 'desc').limit(limit + 1).execute();
    const page = rows.slice(0, limit);
    const contents = await contentsByIds(this.db, page.map((r) => r.content_id));
    return { entries: page.map((r) => toRecord(r, contents.get(r.content_id)?.title ?? null)), nextCursor: rows.length > limit ? page[page.length - 1]!.id : null };
  }

  // ---- helpers ----

  private async rowsOf(terminalId: string): Promise<SchedulesTable[]> {
    return this.db.selectFrom('schedules').selectAll().where('terminal_id', '=', terminalId).orderBy('created_at').orderBy('id').execute();
  }

  private async whyNotOpen(deliveryId: string): Promise<AppError> {
    const row = await this.db.selectFrom('schedule_deliveries').select('outcome').where('id', '=', deliveryId).executeTakeFirst();
    if (!row) return notFound('unknown_delivery', `No scheduled delivery ${deliveryId}.`);
    return conflict('delivery_closed', `Delivery ${deliveryId} has ended (${row.outcome}); open a new one with recordDue.`);
  }

  private async checkTerminal(terminalId: string) {
    if (!(await terminalOwners(this.db, [terminalId])).has(terminalId)) throw notFound('unknown_terminal', `No terminal ${terminalId}.`);
  }

  /** The stored value and label of a selection; refuses unknown contents and publishers. */
  private async resolve(p: ParsedSelection): Promise<{ value: string; label: string }> {
    switch (p.kind) {
      case 'content': {
        const c = (await contentsByIds(this.db, [p.text])).get(p.text);
        if (!c) throw notFound('unknown_content', `No content ${p.text}.`);
        return { value: c.id, label: c.title };
      }
      case 'publisher': {
        const u = await findUser(this.db, p.byUsername ? { username: p.text } : { id: p.text });
        if (!u || !u.roles.includes('publisher')) {
          throw notFound('unknown_publisher', `No publisher ${p.byUsername ? `named "${p.text}"` : p.text}.`);
        }
        return { value: u.id, label: u.username };
      }
      case 'genre':
      case 'series':
        return { value: p.text.toLowerCase(), label: p.text };
    }
  }
}

// ---- selection ----

/** A selection checked for shape, before any look-up. */
export interface ParsedSelection {
  kind: SelectKind;
  /** Trimmed. */
  text: string;
  /** A publisher named by username (`publisher`) rather than ID (`publisherId`). */
  byUsername?: boolean;
}

const SELECT_FIELDS: Record<string, { kind: SelectKind; byUsername?: boolean }> = {
  contentId: { kind: 'content' },
  publisherId: { kind: 'publisher' },
  publisher: { kind: 'publisher', byUsername: true },
  genre: { kind: 'genre' },
  series: { kind: 'series' },
};
const FIELD_LIST = 'contentId, publisherId, publisher, genre or series';

/**
 * S0.1: what a distribution request asks for, exactly one of `contentId`, `publisherId`
 * (or `publisher`, a username), `genre` (case-insensitive, exact) or `series` (a title
 * prefix, case-insensitive). Nothing (missing, `{}`, only null or blank values):
 * `empty_selection`. Two fields, an unknown one (`tag`: contents carry no tags) or a
 * value that is not text: `invalid_selection`.
 */
export function parseSelection(input: unknown): ParsedSelection {
  if (input === undefined || input === null) throw badRequest('empty_selection', `Say what to distribute: select one of ${FIELD_LIST}.`, { field: 'select' });
  if (typeof input !== 'object' || Array.isArray(input)) throw badRequest('invalid_selection', `select is an object with one of ${FIELD_LIST}.`, { field: 'select' });
  const entries = Object.entries(input as Record<string, unknown>).filter(([, v]) => v !== undefined && v !== null);
  for (const [k] of entries) {
    if (!Object.hasOwn(SELECT_FIELDS, k)) {
      const hint = k === 'tag' || k === 'tags' ? ' Contents carry no tags: select a genre, or a series (a title prefix).' : '';
      throw badRequest('invalid_selection', `Unknown selection "${k}": select one of ${FIELD_LIST}.${hint}`, { field: `select.${k}` });
    }
  }
  const nonBlank = entries.filter(([, v]) => !(typeof v === 'string' && v.trim() === ''));
  if (nonBlank.length === 0) throw badRequest('empty_selection', `The selection is empty: give one of ${FIELD_LIST}.`, { field: 'select' });
  if (nonBlank.length > 1) {
    throw badRequest('invalid_selection', `Select exactly one of ${FIELD_LIST}, not ${nonBlank.map(([k]) => k).join(' and ')}; send one request per selection.`, { field: 'select' });
  }
  const [key, raw] = nonBlank[0]!;
  if (typeof raw !== 'string') throw badRequest('invalid_selection', `select.${key} must be text.`, { field: `select.${key}` });
  const text = raw.trim();
  const f = SELECT_FIELDS[key]!;
  if (f.kind === 'content' && !CONTENT_ID.test(text)) throw badRequest('invalid_content_id', 'A content ID is 64 lower-case hex characters.', { field: 'select.contentId' });
  const max = f.kind === 'genre' ? GENRE_MAX : f.kind === 'series' ? SERIES_MAX : 200;
  if ([...text].length > max) throw badRequest('invalid_selection', `select.${key} is at most ${max} characters.`, { field: `select.${key}` });
  return { kind: f.kind, text, ...(f.byUsername ? { byUsername: true } : {}) };
}

function parsePriority(v: unknown): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_PRIORITY) return v;
  throw badRequest('invalid_priority', `priority is a whole number from 0 to ${MAX_PRIORITY} (higher first among this terminal's items).`, { field: 'priority' });
}

function checkSource(v: unknown): DeliverySource {
  if (typeof v === 'string' && (SOURCES as readonly string[]).includes(v)) return v as DeliverySource;
  throw badRequest('invalid_source', `source is one of ${SOURCES.join(', ')}.`);
}

function instant(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw badRequest('invalid_time', `${field} must be a time in epoch milliseconds.`, { field });
  return v;
}

/** The aging count the next attempt carries after this one. */
function nextDeferrals(r: { outcome: DeliveryOutcome; deferrals: number }): number {
  if (r.outcome === 'due' || r.outcome === 'running') return r.deferrals;
  return r.outcome === 'deferred' || r.outcome === 'failed' ? r.deferrals + 1 : 0;
}

// ---- shapes ----

const iso = (ms: number) => new Date(ms).toISOString();

function toPlanSchedule(r: SchedulesTable): PlanSchedule {
  return {
    id: r.id,
    select: { kind: r.select_kind, value: r.select_value },
    windows: r.windows.map((w) => parseWindow(w)),
    priority: r.priority,
    createdAt: r.created_at.getTime(),
  };
}

function selectionView(r: Pick<SchedulesTable, 'select_kind' | 'select_value' | 'select_label'>): SelectionView {
  switch (r.select_kind) {
    case 'content':
      return { contentId: r.select_value };
    case 'publisher':
      return { publisherId: r.select_value, publisher: r.select_label };
    case 'genre':
      return { genre: r.select_label };
    case 'series':
      return { series: r.select_label };
  }
}

function nextView(o: Opening | null, windows: readonly Window[]): NextWindow | null {
  if (!o) return null;
  return { start: iso(o.start), end: iso(o.end), open: o.open, windowIndex: o.windowIndex, capBytesPerSecond: windows[o.windowIndex]?.capBytesPerSecond ?? null };
}

function toPublic(r: SchedulesTable, now: number): PublicSchedule {
  const windows = r.windows.map((w) => parseWindow(w));
  return {
    id: r.id,
    terminalId: r.terminal_id,
    select: selectionView(r),
    windows: windows.map((w) => ({ ...w })),
    priority: r.priority,
    createdAt: r.created_at.toISOString(),
    next: nextView(nextOpening(windows, now), windows),
  };
}

function toRecord(r: ScheduleDeliveriesTable, title: string | null = null): DeliveryRecord {
  return {
    id: r.id,
    terminalId: r.terminal_id,
    contentId: r.content_id,
    title,
    scheduleId: r.schedule_id,
    dueAt: r.due_at.toISOString(),
    windowEnd: r.window_end?.toISOString() ?? null,
    startedAt: r.started_at?.toISOString() ?? null,
    endedAt: r.ended_at?.toISOString() ?? null,
    bytes: Number(r.bytes),
    source: r.source,
    sourceId: r.source_id,
    outcome: r.outcome,
    reason: r.reason,
    deferrals: r.deferrals,
    createdAt: r.created_at.toISOString(),
  };
}
