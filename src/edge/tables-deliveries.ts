import { sql, type Generated, type Kysely, type Migration } from 'kysely';

// Deliveries (S2.4, docs/edge.md "Deliveries, reports and billing"): one row per rental (home
// server) or order (store server) an edge makes for a user. The edge reports what it delivered;
// the final report bills the delivery once through the ledger (deliveries.ts).

/** The edge domain's delivery tables; src/edge/tables.ts lists them in OWNED_TABLES. */
export const DELIVERY_TABLES = ['edge_deliveries'] as const;

export type DeliveryKind = 'rental' | 'order';
export type DeliveryPayer = 'wallet' | 'counter';
export type DeliveryState = 'open' | 'billed';

/** The split of a billed fee (it adds up to the fee). */
export interface DeliverySplit {
  /** The edge owner's share (the tariff's uploader share); for a counter payment it stays in the shop's till. */
  edge: number;
  royalty: number;
  fee: number;
  rounding: number;
}

export interface EdgeDeliveriesTable {
  id: string;
  /** Compact, positive, unique on this origin (< 2^31): the #18 watermark payload. Allocated by the database. */
  serial: Generated<number>;
  edge_id: string;
  /** The edge's operator when the delivery was opened: its share, and for `counter` the store account that pays. */
  edge_owner_id: string;
  kind: DeliveryKind;
  content_id: string;
  /** The content's publisher when the delivery was opened: the royalty goes there. */
  publisher_id: string;
  user_id: string;
  payer: DeliveryPayer;
  /** The most the final fee may be (`fee_exceeds_terms` above it); a wallet payer's hold is this much. */
  max_fee: number;
  /** What the edge offered (rate, days, medium…), as the edge stated it; shown, not interpreted. */
  terms: unknown;
  state: DeliveryState;
  /** The pending ledger transfer holding `max_fee` in a wallet payer's wallet; null without one. */
  hold_id: string | null;
  opened_at: Date;
  /** The latest reported figures (final once billed). */
  fee: number | null;
  bytes: number | null;
  viewed_seconds: number | null;
  reports: Generated<number>;
  last_report_at: Date | null;
  billed_at: Date | null;
  /** What the payer's account paid (the fee, less the shop's share for a counter payment). */
  charged: number | null;
  split: DeliverySplit | null;
}

export interface DeliveryTables {
  edge_deliveries: EdgeDeliveriesTable;
}

/** S2.4: edge deliveries and what their reports billed. */
export const edgeDeliveriesMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('edge_deliveries')
      .addColumn('id', 'text', (c) => c.primaryKey())
      // An identity column: allocated by the database, unique, never reused; integer keeps it under 2^31.
      .addColumn('serial', 'integer', (c) => c.notNull().generatedAlwaysAsIdentity().unique().check(sql`serial > 0`))
      .addColumn('edge_id', 'text', (c) => c.notNull())
      .addColumn('edge_owner_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('rental', 'order')`))
      .addColumn('content_id', 'text', (c) => c.notNull())
      .addColumn('publisher_id', 'text', (c) => c.notNull())
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('payer', 'text', (c) => c.notNull().check(sql`payer in ('wallet', 'counter')`))
      .addColumn('max_fee', 'bigint', (c) => c.notNull().check(sql`max_fee >= 0`))
      .addColumn('terms', 'jsonb', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('open', 'billed')`))
      .addColumn('hold_id', 'text')
      .addColumn('opened_at', 'timestamptz', (c) => c.notNull())
      .addColumn('fee', 'bigint', (c) => c.check(sql`fee >= 0 and fee <= max_fee`))
      .addColumn('bytes', 'bigint', (c) => c.check(sql`bytes >= 0`))
      .addColumn('viewed_seconds', 'bigint', (c) => c.check(sql`viewed_seconds >= 0`))
      .addColumn('reports', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('last_report_at', 'timestamptz')
      .addColumn('billed_at', 'timestamptz')
      .addColumn('charged', 'bigint')
      .addColumn('split', 'jsonb')
      .addCheckConstraint('edge_deliveries_billed', sql`(state = 'billed') = (billed_at is not null and fee is not null and charged is not null and split is not null)`)
      .execute();
    await db.schema.createIndex('edge_deliveries_edge').on('edge_deliveries').columns(['edge_id', 'serial']).execute();
    await db.schema.createIndex('edge_deliveries_user').on('edge_deliveries').columns(['user_id', 'serial']).execute();
  },
};
