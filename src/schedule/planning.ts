import type { Clock } from '../core/clock.ts';
import { badRequest } from '../core/errors.ts';
import { sql, type Db } from '../db/connection.ts';
import { contentsByIds, newestMatching } from '../content/queries.ts';
import { holdingsOf, wholeHolders } from '../terminals/queries.ts';
import { nextDeferrals } from './deliveries.ts';
import { planItems, scheduleOpenings, openings, WEEK_MS, type ItemRecord, type PlanContent, type PlanItem, type PlanSchedule, type ScheduleOpening } from './plan.ts';
import type { DeliveryOutcome, SchedulesTable, SelectKind } from './tables.ts';
import { parseWindow } from './windows.ts';

// Each terminal's plan (S0.5): what its schedules select that it neither holds whole nor
// had delivered, due at the schedule's next opening (plan.ts has the rules). A query at
// read time, not a table filled at publish time: docs/schedules.md "Plan". What is
// published comes from the content domain, what a terminal holds from the terminals
// domain, through their query functions.

/** Matching contents one plan looks at (newest first); beyond it the plan says `truncated`. */
export const PLAN_SCAN = 5000;
export const PLAN_DEFAULT_LIMIT = 100;
export const PLAN_MAX_LIMIT = 1000;
const CONTENT_ID = /^[0-9a-f]{64}$/;

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

export class Planner {
  private readonly db: Db;
  private readonly clock: Clock;

  constructor(deps: { db: Db; clock: Clock }) {
    this.db = deps.db;
    this.clock = deps.clock;
  }

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
}

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
