import { sql, type Kysely, type Migration } from 'kysely';

// Tables the discovery domain owns (S1.4, the personal content list): other domains ask
// DiscoveryService (boundaries.test.ts).
export const OWNED_TABLES = ['discovery_profiles', 'discovery_ratings', 'discovery_comments', 'discovery_notes', 'discovery_placements'] as const;

/** A member's stated preferences. */
export interface DiscoveryProfilesTable {
  user_id: string;
  /** As the member wrote them (trimmed, duplicates ignoring case removed), in its order. */
  preferred_genres: string[];
  updated_at: Date;
}

/** One rating per member and content, changeable. */
export interface DiscoveryRatingsTable {
  content_id: string;
  user_id: string;
  stars: number;
  created_at: Date;
  updated_at: Date;
}

export interface DiscoveryCommentsTable {
  id: string;
  content_id: string;
  user_id: string;
  text: string;
  /** The poster's idempotency key: the same one again answers the same comment. */
  request_id: string;
  created_at: Date;
}

/** A publisher's notes on its content, shown with it. */
export interface DiscoveryNotesTable {
  content_id: string;
  notes: string;
  updated_by: string;
  updated_at: Date;
}

/** A paid period of preferred placement: active while from_at <= now < until_at. */
export interface DiscoveryPlacementsTable {
  id: string;
  content_id: string;
  publisher_id: string;
  request_id: string;
  days: number;
  from_at: Date;
  until_at: Date;
  /** What was charged (PLACEMENT_PRICE_PER_DAY × days when bought). */
  charged: number;
  /** The ledger transfer that charged it; null when the price was 0. */
  transfer_id: string | null;
  /** The publisher's posted wallet balance right after the charge. */
  balance_after: number;
  created_at: Date;
}

export interface DiscoveryTables {
  discovery_profiles: DiscoveryProfilesTable;
  discovery_ratings: DiscoveryRatingsTable;
  discovery_comments: DiscoveryCommentsTable;
  discovery_notes: DiscoveryNotesTable;
  discovery_placements: DiscoveryPlacementsTable;
}

export const discoveryMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('discovery_profiles')
      .addColumn('user_id', 'text', (c) => c.primaryKey().references('users.id'))
      .addColumn('preferred_genres', sql`text[]`, (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('discovery_ratings')
      .addColumn('content_id', 'text', (c) => c.notNull().references('contents.id'))
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('stars', 'integer', (c) => c.notNull().check(sql`stars between 1 and 5`))
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addPrimaryKeyConstraint('discovery_ratings_pk', ['content_id', 'user_id'])
      .execute();
    await db.schema
      .createTable('discovery_comments')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('content_id', 'text', (c) => c.notNull().references('contents.id'))
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('text', 'text', (c) => c.notNull())
      .addColumn('request_id', 'text', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addUniqueConstraint('discovery_comments_request', ['user_id', 'request_id'])
      .execute();
    await db.schema.createIndex('discovery_comments_content').on('discovery_comments').columns(['content_id', 'created_at', 'id']).execute();
    await db.schema
      .createTable('discovery_notes')
      .addColumn('content_id', 'text', (c) => c.primaryKey().references('contents.id'))
      .addColumn('notes', 'text', (c) => c.notNull())
      .addColumn('updated_by', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('discovery_placements')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('content_id', 'text', (c) => c.notNull().references('contents.id'))
      .addColumn('publisher_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('request_id', 'text', (c) => c.notNull())
      .addColumn('days', 'integer', (c) => c.notNull())
      .addColumn('from_at', 'timestamptz', (c) => c.notNull())
      .addColumn('until_at', 'timestamptz', (c) => c.notNull())
      .addColumn('charged', 'bigint', (c) => c.notNull())
      .addColumn('transfer_id', 'text')
      .addColumn('balance_after', 'bigint', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addUniqueConstraint('discovery_placements_request', ['publisher_id', 'request_id'])
      .execute();
    await db.schema.createIndex('discovery_placements_until').on('discovery_placements').columns(['until_at', 'content_id']).execute();
    await db.schema.createIndex('discovery_placements_content').on('discovery_placements').columns(['content_id', 'until_at']).execute();
  },
};
