import { sql, type Kysely, type Migration } from 'kysely';

// S2.5 (docs/edge.md "Home server"): rentals of contents on home edges, owned by src/edge/rentals.ts.
// Billing is the delivery's (src/edge/deliveries.ts, table edge_deliveries): a rental names its delivery.

export const RENTAL_TABLES = ['edge_rentals'] as const;

export interface EdgeRentalsTable {
  id: string;
  edge_id: string;
  user_id: string;
  content_id: string;
  delivery_id: string;
  /** The delivery's serial (the #18 mark's payload). */
  serial: number;
  plan: 'days' | 'viewing';
  days: number | null;
  /** Minor units per day (days) or per started minute (viewing). */
  unit_price: number;
  max_fee: number;
  starts_at: Date;
  ends_at: Date;
  created_at: Date;
}

export interface RentalTables {
  edge_rentals: EdgeRentalsTable;
}

export const edgeRentalsMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('edge_rentals')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('edge_id', 'text', (c) => c.notNull().references('edges.id'))
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('content_id', 'text', (c) => c.notNull())
      .addColumn('delivery_id', 'text', (c) => c.notNull().unique())
      .addColumn('serial', 'bigint', (c) => c.notNull())
      .addColumn('plan', 'text', (c) => c.notNull().check(sql`plan in ('days', 'viewing')`))
      .addColumn('days', 'integer', (c) => c.check(sql`days between 1 and 30`))
      .addColumn('unit_price', 'bigint', (c) => c.notNull().check(sql`unit_price >= 0`))
      .addColumn('max_fee', 'bigint', (c) => c.notNull().check(sql`max_fee >= 0`))
      .addColumn('starts_at', 'timestamptz', (c) => c.notNull())
      .addColumn('ends_at', 'timestamptz', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addCheckConstraint('edge_rentals_days_plan', sql`(plan = 'days') = (days is not null)`)
      .addCheckConstraint('edge_rentals_ends_after_start', sql`ends_at > starts_at`)
      .execute();
    await db.schema.createIndex('edge_rentals_user').on('edge_rentals').columns(['user_id', 'created_at']).execute();
    await db.schema.createIndex('edge_rentals_edge_end').on('edge_rentals').columns(['edge_id', 'ends_at']).execute();
  },
};
