import { sql, type Kysely, type Migration } from 'kysely';
import { DELIVERY_TABLES } from './tables-deliveries.ts';
import { RENTAL_TABLES } from './tables-rentals.ts';
import { ORDER_TABLES } from './tables-orders.ts';

// Tables the edge domain owns (S2, docs/edge.md). Other domains ask EdgeService or the
// query functions in queries.ts (boundaries.test.ts). Deliveries (S2.4), rentals (S2.5)
// and orders (S2.6) have their own tables files.
export const OWNED_TABLES = ['edges', 'edge_holdings', 'edge_pins', ...DELIVERY_TABLES, ...RENTAL_TABLES, ...ORDER_TABLES] as const;

export type EdgeKind = 'delivery' | 'home' | 'store';
export const EDGE_KINDS: readonly EdgeKind[] = ['delivery', 'home', 'store'];
/** S2.1: how the origin chooses what to push to an edge ahead of demand. */
export type PlacementPolicy = 'manual' | 'most_requested' | 'recently_added';
export const PLACEMENT_POLICIES: readonly PlacementPolicy[] = ['manual', 'most_requested', 'recently_added'];

/** What an edge says about itself in each report (its own counters since it started). */
export interface EdgeStats {
  /** Piece requests answered from the cache, and those it had to fetch first (S2.2 misses). */
  hits: number;
  misses: number;
  bytesServed: number;
  /** 0..1: upload slots busy on average since the previous report. */
  load: number;
  usedBytes: number;
  /** Content currently being fetched, if any. */
  filling: string | null;
  /** S2.4: its delivery journal (delivery-journal.ts): reports recorded, acknowledged or refused by the origin, still to send. */
  deliveries?: { recorded: number; acknowledged: number; refused: number; pending: number };
}

/** S2.1: an edge server: a terminal of an operator, with a kind, a location label and a cache. */
export interface EdgesTable {
  id: string;
  terminal_id: string;
  owner_id: string;
  kind: EdgeKind;
  /** Where it is, as `/`-separated parts from wide to narrow (`eu/paris/building-7`). */
  label: string;
  cache_bytes: number;
  serve_url: string;
  policy: PlacementPolicy;
  stats: EdgeStats | null;
  created_at: Date;
  updated_at: Date;
  last_report_at: Date | null;
}

/** What an edge holds, as of its last report. */
export interface EdgeHoldingsTable {
  edge_id: string;
  content_id: string;
  bytes: number;
  complete: boolean;
  /** When the edge last served or used it (the edge's report): least recently used goes first. */
  last_used_at: Date;
}

/** S2.1 manual placement: contents an operator put on an edge. */
export interface EdgePinsTable {
  edge_id: string;
  content_id: string;
  created_at: Date;
}

export const edgesMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('edges')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('terminal_id', 'text', (c) => c.notNull().unique())
      .addColumn('owner_id', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('delivery', 'home', 'store')`))
      .addColumn('label', 'text', (c) => c.notNull())
      .addColumn('cache_bytes', 'int8', (c) => c.notNull().check(sql`cache_bytes > 0`))
      .addColumn('serve_url', 'text', (c) => c.notNull())
      .addColumn('policy', 'text', (c) => c.notNull().check(sql`policy in ('manual', 'most_requested', 'recently_added')`))
      .addColumn('stats', 'jsonb')
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addColumn('last_report_at', 'timestamptz')
      .execute();
    await db.schema
      .createTable('edge_holdings')
      .addColumn('edge_id', 'text', (c) => c.notNull().references('edges.id').onDelete('cascade'))
      .addColumn('content_id', 'text', (c) => c.notNull())
      .addColumn('bytes', 'int8', (c) => c.notNull())
      .addColumn('complete', 'boolean', (c) => c.notNull())
      .addColumn('last_used_at', 'timestamptz', (c) => c.notNull())
      .addPrimaryKeyConstraint('edge_holdings_pk', ['edge_id', 'content_id'])
      .execute();
    await db.schema.createIndex('edge_holdings_content').on('edge_holdings').column('content_id').execute();
    await db.schema
      .createTable('edge_pins')
      .addColumn('edge_id', 'text', (c) => c.notNull().references('edges.id').onDelete('cascade'))
      .addColumn('content_id', 'text', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addPrimaryKeyConstraint('edge_pins_pk', ['edge_id', 'content_id'])
      .execute();
  },
};

export interface EdgeTables {
  edges: EdgesTable;
  edge_holdings: EdgeHoldingsTable;
  edge_pins: EdgePinsTable;
}
