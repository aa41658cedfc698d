import { sql, type Kysely, type Migration } from 'kysely';

// Tables of the store server's orders (S2.6, docs/edge.md "Store server"). The edge domain owns
// them (src/edge/tables.ts lists them in OWNED_TABLES); other domains ask OrderService.
export const ORDER_TABLES = ['edge_orders'] as const;

export type OrderState = 'placed' | 'preparing' | 'ready' | 'picked_up' | 'failed' | 'cancelled';
export type OrderFormat = 'iso' | 'zip';
export type OrderPayment = 'wallet' | 'counter';

/** One order of one content, packaged by one store edge for one member. */
export interface EdgeOrdersTable {
  id: string;
  edge_id: string;
  user_id: string;
  content_id: string;
  format: OrderFormat;
  payment: OrderPayment;
  /** The content's price when ordered: the delivery's fee. */
  price: number;
  state: OrderState;
  /** Why it failed or was cancelled, in a sentence; null otherwise. */
  reason: string | null;
  /** The delivery opened for it (S2.4) and its serial (the mark's payload, #18). */
  delivery_id: string;
  serial: number;
  /** Shown to the member; the counter asks for it at pickup. */
  pickup_code: string;
  package_bytes: number | null;
  package_sha256: string | null;
  /** 'download', or the staff member who handed it over at the counter. */
  picked_up_by: string | null;
  picked_up_at: Date | null;
  /** The edge deleted its package and working copy (and recorded the delivery's report). */
  released_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface OrderTables {
  edge_orders: EdgeOrdersTable;
}

export const edgeOrdersMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('edge_orders')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('edge_id', 'text', (c) => c.notNull())
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('content_id', 'text', (c) => c.notNull())
      .addColumn('format', 'text', (c) => c.notNull().check(sql`format in ('iso', 'zip')`))
      .addColumn('payment', 'text', (c) => c.notNull().check(sql`payment in ('wallet', 'counter')`))
      .addColumn('price', 'bigint', (c) => c.notNull().check(sql`price >= 0`))
      .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('placed', 'preparing', 'ready', 'picked_up', 'failed', 'cancelled')`))
      .addColumn('reason', 'text')
      .addColumn('delivery_id', 'text', (c) => c.notNull().unique())
      .addColumn('serial', 'bigint', (c) => c.notNull())
      .addColumn('pickup_code', 'text', (c) => c.notNull())
      .addColumn('package_bytes', 'bigint')
      .addColumn('package_sha256', 'text')
      .addColumn('picked_up_by', 'text')
      .addColumn('picked_up_at', 'timestamptz')
      .addColumn('released_at', 'timestamptz')
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addCheckConstraint('edge_orders_picked_up', sql`(state = 'picked_up') = (picked_up_at is not null)`)
      .execute();
    // One open order per member, store and content: ordering twice is refused by the database.
    await sql`create unique index edge_orders_open on edge_orders (user_id, edge_id, content_id) where state in ('placed', 'preparing', 'ready')`.execute(db);
    await db.schema.createIndex('edge_orders_user').on('edge_orders').columns(['user_id', 'created_at']).execute();
    await db.schema.createIndex('edge_orders_edge').on('edge_orders').columns(['edge_id', 'state', 'created_at']).execute();
  },
};
