import type { Clock } from '../core/clock.ts';
import { badRequest, conflict, forbidden, notFound } from '../core/errors.ts';
import type { EventBus } from '../core/event-bus.ts';
import { newId } from '../core/ids.ts';
import { sql, type Db } from '../db/connection.ts';
import { findUser } from '../accounts/queries.ts';
import { contentsByIds } from '../content/queries.ts';
import { terminalOwners } from '../terminals/queries.ts';
import type { SchedulesTable, SelectKind } from './tables.ts';
import { nextOpening, parseWindow, parseWindows, type Opening, type Window } from './windows.ts';

// Distribution requests (S0.1, S0.2): what a terminal asks to receive, and in which
// windows. Stored in `schedules`; the plan (planning.ts) reads them.

export const MAX_SCHEDULES_PER_TERMINAL = 50;
export const MAX_WINDOWS_PER_SCHEDULE = 10;
export const MAX_PRIORITY = 100;
const GENRE_MAX = 60;
const SERIES_MAX = 200;
const CONTENT_ID = /^[0-9a-f]{64}$/;

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

export class ScheduleRequests {
  private readonly db: Db;
  private readonly clock: Clock;

  constructor(private readonly deps: { db: Db; clock: Clock; bus?: EventBus }) {
    this.db = deps.db;
    this.clock = deps.clock;
  }

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

  private async rowsOf(terminalId: string): Promise<SchedulesTable[]> {
    return this.db.selectFrom('schedules').selectAll().where('terminal_id', '=', terminalId).orderBy('created_at').orderBy('id').execute();
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

const iso = (ms: number) => new Date(ms).toISOString();

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
