import type { Kysely, Migration } from 'kysely';
import type { SignedManifest } from './manifest.ts';

// Tables the content domain owns: other domains ask ContentService or its query functions (boundaries.test.ts).
export const OWNED_TABLES = ['contents', 'content_thumbnails'] as const;

export interface ContentsTable {
  /** Hex SHA-256 of the canonical manifest body. */
  id: string;
  title: string;
  summary: string;
  author: string;
  genre: string;
  /** Price for the whole content in minor units (S1.1 "using fee"). */
  price: number;
  publisher_id: string;
  piece_size: number;
  piece_count: number;
  total_size: number;
  manifest: SignedManifest;
  created_at: Date;
}

/** S1.1: a content's thumbnail, at most one; the bytes as uploaded (already checked: type, size, dimensions). */
export interface ContentThumbnailsTable {
  content_id: string;
  /** image/png, image/jpeg, image/webp or image/gif: sniffed from the bytes, equal to what was declared. */
  mime: string;
  bytes: Uint8Array;
  /** Strong ETag (quoted), from the SHA-256 of the bytes. */
  etag: string;
  width: number;
  height: number;
  updated_at: Date;
}

export interface ContentTables {
  contents: ContentsTable;
  content_thumbnails: ContentThumbnailsTable;
}

export const contentMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('contents')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('title', 'text', (c) => c.notNull())
      .addColumn('summary', 'text', (c) => c.notNull())
      .addColumn('author', 'text', (c) => c.notNull())
      .addColumn('genre', 'text', (c) => c.notNull())
      .addColumn('price', 'bigint', (c) => c.notNull())
      .addColumn('publisher_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('piece_size', 'integer', (c) => c.notNull())
      .addColumn('piece_count', 'integer', (c) => c.notNull())
      .addColumn('total_size', 'bigint', (c) => c.notNull())
      .addColumn('manifest', 'jsonb', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('contents_genre').on('contents').column('genre').execute();
    await db.schema.createIndex('contents_publisher').on('contents').column('publisher_id').execute();
    await db.schema.createIndex('contents_created').on('contents').columns(['created_at', 'id']).execute();
  },
};

/** S1.1 thumbnails (#13): one row per content that has one; replaced by a new upload. */
export const thumbnailsMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('content_thumbnails')
      .addColumn('content_id', 'text', (c) => c.primaryKey().references('contents.id'))
      .addColumn('mime', 'text', (c) => c.notNull())
      .addColumn('bytes', 'bytea', (c) => c.notNull())
      .addColumn('etag', 'text', (c) => c.notNull())
      .addColumn('width', 'integer', (c) => c.notNull())
      .addColumn('height', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .execute();
  },
};
