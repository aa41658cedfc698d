import type { Clock } from '../core/clock.ts';
import { badRequest, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { sql, type Db } from '../db/connection.ts';
import { contentsByIds } from '../content/queries.ts';
import type { DeliveryOutcome, DeliverySource, ScheduleDeliveriesTable } from './tables.ts';

// Delivery records (S0.7): every attempt to deliver a content to a terminal, written by
// the dispatcher in batches (`recordBatch`), shown to the terminal as its history.

const CONTENT_ID = /^[0-9a-f]{64}$/;

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
  /** null: not known. */
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

export class DeliveryRecords {
  private readonly db: Db;
  private readonly clock: Clock;

  constructor(deps: { db: Db; clock: Clock }) {
    this.db = deps.db;
    this.clock = deps.clock;
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
   * #13 operations dashboard: the scheduler's backlog — open delivery records (outcome
   * `due` or `running`: admitted or waiting, not ended) whose due time has come, and the
   * oldest due time among them. One aggregate over the open records (the partial index
   * `schedule_deliveries_open` covers exactly those).
   */
  async backlog(): Promise<{ backlog: number; oldestDueAt: string | null }> {
    const row = await this.db
      .selectFrom('schedule_deliveries')
      .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.min('due_at').as('oldest')])
      // Literal values, so the planner matches the partial index's predicate.
      .where(sql<boolean>`outcome in ('due', 'running')`)
      .where('due_at', '<=', new Date(this.clock.now()))
      .executeTakeFirst();
    const oldest = row?.oldest ? new Date(row.oldest as Date | string) : null;
    return { backlog: Number(row?.n ?? 0), oldestDueAt: oldest ? oldest.toISOString() : null };
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
}

/** The aging count the next attempt carries after this one. */
export function nextDeferrals(r: { outcome: DeliveryOutcome; deferrals: number }): number {
  if (r.outcome === 'due' || r.outcome === 'running') return r.deferrals;
  return r.outcome === 'deferred' || r.outcome === 'failed' ? r.deferrals + 1 : 0;
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
