import { sql, type Kysely, type Migration } from 'kysely';
import type { Window } from './windows.ts';

// Tables the schedule domain owns: other domains ask ScheduleService (boundaries.test.ts).
export const OWNED_TABLES = ['schedules', 'schedule_deliveries', 'schedule_push_addresses'] as const;

// Scheduled distribution (#5, S0.1, S0.2, S0.7): the terminals' distribution requests
// and the record of every scheduled delivery. Rules and shapes: docs/schedules.md.

/** What a schedule selects (S0.1). Exactly one per schedule. */
export type SelectKind = 'content' | 'publisher' | 'genre' | 'series';

/** One distribution request of one terminal (S0.2). */
export interface SchedulesTable {
  /** `sch_…` */
  id: string;
  terminal_id: string;
  select_kind: SelectKind;
  /**
   * What is matched: the content ID, the publisher's user ID, the genre lower-cased,
   * or the series (a title prefix) lower-cased.
   */
  select_value: string;
  /** As the terminal wrote it (genre, series), or the publisher's username; shown back. */
  select_label: string;
  /** parseWindows output: 1–10 validated windows, each in the terminal's own zone. */
  windows: Window[];
  /** 0–100, default 0: orders this terminal's own plan (higher first among items due at once). */
  priority: number;
  created_at: Date;
}

export type DeliveryOutcome = 'due' | 'running' | 'done' | 'deferred' | 'failed';
export type DeliverySource = 'origin' | 'edge' | 'peer';

/**
 * S0.7: one attempt to deliver one content to one terminal in one window. `due` and
 * `running` are open; `done`, `deferred` (carried to the next window) and `failed`
 * are final. A carried or failed attempt is followed by a new row in the next window,
 * with `deferrals` one higher (the aging count of S0.6).
 */
export interface ScheduleDeliveriesTable {
  /** `sdl_…` */
  id: string;
  terminal_id: string;
  content_id: string;
  /** The schedule it was due under; kept (no foreign key) when the schedule is removed. */
  schedule_id: string | null;
  due_at: Date;
  /** End of the window it was due in, when known. */
  window_end: Date | null;
  started_at: Date | null;
  ended_at: Date | null;
  /** Bytes delivered in this attempt. */
  bytes: number;
  source: DeliverySource | null;
  /** The edge's or peer's source ID (the origin's own for 'origin'), when known. */
  source_id: string | null;
  outcome: DeliveryOutcome;
  /** Why it was deferred or failed (e.g. window_closed, budget_exhausted, piece_corrupt). */
  reason: string | null;
  /** Windows this content was already carried over (deferred or failed) before this attempt. */
  deferrals: number;
  created_at: Date;
  updated_at: Date;
}

/** S0.4: a terminal that wants its deliveries pushed to an address it registered (rather than pulled, or over a held connection). */
export interface SchedulePushAddressesTable {
  terminal_id: string;
  /** http(s) URL the origin POSTs signed delivery orders to. */
  url: string;
  updated_at: Date;
}

export interface ScheduleTables {
  schedules: SchedulesTable;
  schedule_deliveries: ScheduleDeliveriesTable;
  schedule_push_addresses: SchedulePushAddressesTable;
}

export const schedulesMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('schedules')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('terminal_id', 'text', (c) => c.notNull().references('terminals.id').onDelete('cascade'))
      .addColumn('select_kind', 'text', (c) => c.notNull())
      .addColumn('select_value', 'text', (c) => c.notNull())
      .addColumn('select_label', 'text', (c) => c.notNull())
      .addColumn('windows', 'jsonb', (c) => c.notNull())
      .addColumn('priority', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('schedules_terminal').on('schedules').columns(['terminal_id', 'created_at']).execute();
    // "Which terminals want this new content?" (push, S0.4) looks schedules up by what they select.
    await db.schema.createIndex('schedules_select').on('schedules').columns(['select_kind', 'select_value']).execute();

    await db.schema
      .createTable('schedule_deliveries')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('terminal_id', 'text', (c) => c.notNull().references('terminals.id').onDelete('cascade'))
      .addColumn('content_id', 'text', (c) => c.notNull().references('contents.id'))
      .addColumn('schedule_id', 'text')
      .addColumn('due_at', 'timestamptz', (c) => c.notNull())
      .addColumn('window_end', 'timestamptz')
      .addColumn('started_at', 'timestamptz')
      .addColumn('ended_at', 'timestamptz')
      .addColumn('bytes', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('source', 'text')
      .addColumn('source_id', 'text')
      .addColumn('outcome', 'text', (c) => c.notNull())
      .addColumn('reason', 'text')
      .addColumn('deferrals', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('schedule_deliveries_terminal').on('schedule_deliveries').columns(['terminal_id', 'created_at', 'id']).execute();
    await db.schema.createIndex('schedule_deliveries_item').on('schedule_deliveries').columns(['terminal_id', 'content_id', 'created_at']).execute();
    // At most one open attempt per (terminal, content): a dispatcher opening it again gets the same row.
    await sql`create unique index schedule_deliveries_open on schedule_deliveries (terminal_id, content_id) where outcome in ('due', 'running')`.execute(db);
  },
};

export const schedulePushMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('schedule_push_addresses')
      .addColumn('terminal_id', 'text', (c) => c.primaryKey().references('terminals.id').onDelete('cascade'))
      .addColumn('url', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .execute();
  },
};
