import type { EventBus } from '../core/event-bus.ts';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Clock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import type { KeyPair } from '../core/crypto.ts';
import { decodeTimeCursor, encodeTimeCursor } from '../core/cursor.ts';
import { AppError, badRequest, forbidden, notFound } from '../core/errors.ts';
import { sql, type Db } from '../db/connection.ts';
import type { PieceSource } from '../transfer/piece-source.ts';
import { pieceLength, signManifest, type ManifestBody, type SignedManifest } from './manifest.ts';
import type { PieceStore, PieceStaging } from './piece-store.ts';
import { contentsByIds, thumbnailUrl } from './queries.ts';
import { checkThumbnail } from './thumbnail-image.ts';

// S1.1: publishing (stream → pieces → signed manifest → catalog row) and the catalog.
// Manifests are immutable, so they are cached in memory once read: serving a piece
// (the origin's hot path) costs one map lookup and one file read, no query.

export const CONTENT_ID = /^[0-9a-f]{64}$/;
/** The shortest part of a content ID that may stand for it (issue 12 #2, like git's short IDs). */
export const ID_PREFIX = /^[0-9a-f]{8,64}$/;

export interface PublishMeta {
  title: string;
  genre: string;
  /** Whole-content price in minor units (S1.1 "using fee"). */
  price: number;
  summary?: string;
  author?: string;
}

export interface Publisher {
  id: string;
  username: string;
}

export interface PublishResult {
  id: string;
  manifest: SignedManifest;
  pieces: number;
  totalSize: number;
}

/** A catalog entry: what lists and detail pages show (no piece hashes). */
export interface CatalogItem {
  id: string;
  title: string;
  summary: string;
  author: string;
  genre: string;
  price: number;
  publisher: string;
  totalSize: number;
  pieces: number;
  createdAt: string;
  /** Where its thumbnail is (S1.1), changing with the image; null without one. */
  thumbnailUrl: string | null;
}

/** A stored thumbnail, as GET /contents/:id/thumbnail serves it. */
export interface StoredThumbnail {
  mime: string;
  bytes: Buffer;
  etag: string;
  updatedAt: Date;
}

export interface ListQuery {
  q?: string;
  genre?: string;
  publisher?: string;
  limit?: number;
  cursor?: string;
  /** Issue 12 #2: the contents whose ID starts with these hex characters (≥ 8), as git takes a short commit ID. */
  idPrefix?: string;
}

export const MAX_PRICE = 1e12;
const LIMITS = { title: 200, genre: 60, summary: 2000, author: 200 } as const;
const MANIFEST_CACHE_ENTRIES = 1024;

export interface ContentDeps {
  db: Db;
  pieces: PieceStore;
  keys: KeyPair;
  clock: Clock;
  config: Config;
  /** When given, `content.published` { contentId } goes out on it (the scheduler adds the content to matching plans, S0.5). */
  bus?: EventBus;
}

export class ContentService {
  private readonly cache = new Map<string, SignedManifest>();
  private readonly loading = new Map<string, Promise<SignedManifest | null>>();

  constructor(private readonly deps: ContentDeps) {}

  /**
   * S1.1: cuts `body` into `config.pieceSize` pieces, stages them, signs the manifest,
   * then makes the content available. The caller owns `body`: a refusal stops reading
   * it but does not destroy it (the HTTP route decides what becomes of the connection).
   *
   * Ordering: pieces are committed to the store *before* the row is inserted, so a
   * crash in between leaves at worst unreferenced piece files, never a catalog entry
   * whose pieces are missing.
   */
  async publish(publisher: Publisher, meta: PublishMeta, body: AsyncIterable<Uint8Array> | Readable): Promise<PublishResult> {
    const clean = validateMeta(meta);
    const { pieceSize } = this.deps.config;
    const staging = this.deps.pieces.createStaging();
    let committed = false;
    try {
      const { hashes, totalSize } = await this.stagePieces(body, staging);
      const bodyFields = { ...clean, publisher: publisher.username, pieceSize, totalSize, pieces: hashes };

      // Same bytes and metadata from the same publisher: the upload is a retry.
      const previous = await this.findSame(publisher.id, bodyFields);
      if (previous) return previous;

      const manifestBody: ManifestBody = { v: 1, ...bodyFields, createdAt: new Date(this.deps.clock.now()).toISOString() };
      const { id, manifest } = signManifest(manifestBody, this.deps.keys.privateKey);

      await staging.commit();
      committed = true;
      const inserted = await this.deps.db
        .insertInto('contents')
        .values({
          id,
          title: clean.title,
          summary: clean.summary,
          author: clean.author,
          genre: clean.genre,
          price: clean.price,
          publisher_id: publisher.id,
          piece_size: pieceSize,
          piece_count: hashes.length,
          total_size: totalSize,
          manifest,
          created_at: new Date(manifestBody.createdAt),
        })
        .onConflict((oc) => oc.column('id').doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!inserted) {
        // The same content ID exists already (identical body, including its time): idempotent.
        const existing = await this.getManifest(id);
        return { id, manifest: existing, pieces: existing.body.pieces.length, totalSize: existing.body.totalSize };
      }
      this.remember(id, manifest);
      this.deps.bus?.publish('content.published', { contentId: id });
      return { id, manifest, pieces: hashes.length, totalSize };
    } finally {
      if (!committed) await staging.abort();
    }
  }

  /** Reads the stream into pieces of `pieceSize`, hashing and staging each; refuses oversize and empty uploads. */
  private async stagePieces(body: AsyncIterable<Uint8Array> | Readable, staging: PieceStaging) {
    const { pieceSize, maxUploadBytes } = this.deps.config;
    const hashes: string[] = [];
    const flush = async (bytes: Uint8Array) => {
      const hash = createHash('sha256').update(bytes).digest('hex');
      await staging.write(hash, bytes);
      hashes.push(hash);
    };
    const buf = Buffer.allocUnsafe(pieceSize);
    let fill = 0;
    let totalSize = 0;
    const chunks = body instanceof Readable ? body.iterator({ destroyOnReturn: false }) : body;
    for await (const raw of chunks) {
      const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
      totalSize += chunk.length;
      if (totalSize > maxUploadBytes) throw uploadTooLarge(maxUploadBytes);
      let off = 0;
      while (off < chunk.length) {
        if (fill === 0 && chunk.length - off >= pieceSize) {
          // A whole piece inside this chunk: hash and write it in place, no copy.
          await flush(chunk.subarray(off, off + pieceSize));
          off += pieceSize;
          continue;
        }
        const n = Math.min(pieceSize - fill, chunk.length - off);
        buf.set(chunk.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === pieceSize) {
          await flush(buf);
          fill = 0;
        }
      }
    }
    if (fill > 0) await flush(buf.subarray(0, fill));
    if (totalSize === 0) throw badRequest('empty_upload', 'The upload is empty: send the content’s bytes as the request body.');
    return { hashes, totalSize };
  }

  /** A content this publisher already published with exactly these fields and pieces, if any. */
  private async findSame(
    publisherId: string,
    f: Omit<ManifestBody, 'v' | 'createdAt'>,
  ): Promise<PublishResult | null> {
    const rows = await this.deps.db
      .selectFrom('contents')
      .select(['id', 'manifest'])
      .where('publisher_id', '=', publisherId)
      .where('title', '=', f.title)
      .where('genre', '=', f.genre)
      .where('price', '=', f.price)
      .where('summary', '=', f.summary)
      .where('author', '=', f.author)
      .where('piece_size', '=', f.pieceSize)
      .where('total_size', '=', f.totalSize)
      .execute();
    for (const row of rows) {
      const b = row.manifest.body;
      if (b.publisher === f.publisher && b.pieces.length === f.pieces.length && b.pieces.every((h, i) => h === f.pieces[i])) {
        this.remember(row.id, row.manifest);
        return { id: row.id, manifest: row.manifest, pieces: b.pieces.length, totalSize: b.totalSize };
      }
    }
    return null;
  }

  /** The signed manifest of a content; 404 `unknown_content` if there is none. */
  async getManifest(id: string): Promise<SignedManifest> {
    checkId(id);
    const m = await this.manifestOrNull(id);
    if (!m) throw unknownContent(id);
    return m;
  }

  /** One catalog entry; 404 `unknown_content` if there is none. */
  async get(id: string): Promise<CatalogItem> {
    checkId(id);
    const row = await this.catalogQuery().where('id', '=', id).executeTakeFirst();
    if (!row) throw unknownContent(id);
    return toItem(row);
  }

  /**
   * The catalog, newest first. `q` is a case-insensitive substring of the title, genre
   * or publisher name; `genre` and `publisher` filter exactly (ignoring case). Paging is
   * by keyset on (created_at, id), so pages never skip or repeat items while others publish.
   */
  async list(query: ListQuery = {}): Promise<{ items: CatalogItem[]; nextCursor: string | null }> {
    const limit = query.limit ?? 20;
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw badRequest('invalid_limit', 'limit is a whole number from 1 to 100.');
    let qb = this.catalogQuery();
    const q = query.q?.trim();
    if (q) {
      const pattern = `%${escapeLike(q)}%`;
      qb = qb.where((eb) => eb.or([eb('title', 'ilike', pattern), eb('genre', 'ilike', pattern), eb(publisherName, 'ilike', pattern)]));
    }
    if (query.genre) qb = qb.where('genre', 'ilike', escapeLike(query.genre.trim()));
    if (query.publisher) qb = qb.where(publisherName, '=', query.publisher.trim().toLowerCase());
    if (query.idPrefix !== undefined) {
      if (!ID_PREFIX.test(query.idPrefix)) throw badRequest('invalid_content_id', 'A content ID prefix is 8 to 64 lower-case hexadecimal characters.');
      // Hex only, so no LIKE wildcard can be in it.
      qb = qb.where('id', 'like', `${query.idPrefix}%`);
    }
    if (query.cursor) {
      const [at, id] = decodeTimeCursor(query.cursor, (id) => CONTENT_ID.test(id));
      qb = qb.where((eb) => eb(eb.refTuple('created_at', 'id'), '<', eb.tuple(at, id)));
    }
    const rows = await qb.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit + 1).execute();
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return { items: page.map(toItem), nextCursor: rows.length > limit && last ? encodeTimeCursor(last.created_at, last.id) : null };
  }

  /**
   * S1.1: sets (or replaces) a content's thumbnail. Only its publisher may; the bytes must be
   * an accepted image of the declared type (thumbnail-image.ts). Refusals change nothing.
   */
  async putThumbnail(contentId: string, by: { userId: string }, bytes: Uint8Array, declaredType: string): Promise<{ thumbnailUrl: string }> {
    checkId(contentId);
    const [facts] = [...(await contentsByIds(this.deps.db, [contentId])).values()];
    if (!facts) throw unknownContent(contentId);
    if (facts.publisherId !== by.userId) throw forbidden('not_your_content', 'Only the publisher of this content may change its thumbnail.');
    const image = checkThumbnail(bytes, declaredType);
    const etag = `"${createHash('sha256').update(bytes).digest('base64url').slice(0, 27)}"`;
    const row = { mime: image.mime, bytes: Buffer.from(bytes), etag, width: image.width, height: image.height, updated_at: new Date(this.deps.clock.now()) };
    await this.deps.db
      .insertInto('content_thumbnails')
      .values({ content_id: contentId, ...row })
      .onConflict((oc) => oc.column('content_id').doUpdateSet(row))
      .execute();
    return { thumbnailUrl: thumbnailUrl(contentId, etag) };
  }

  /** A content's thumbnail; 404 `thumbnail_not_found` if it has none (or does not exist). */
  async thumbnail(contentId: string): Promise<StoredThumbnail> {
    checkId(contentId);
    const row = await this.deps.db.selectFrom('content_thumbnails').select(['mime', 'bytes', 'etag', 'updated_at']).where('content_id', '=', contentId).executeTakeFirst();
    if (!row) throw notFound('thumbnail_not_found', `Content ${contentId} has no thumbnail.`);
    return { mime: row.mime, bytes: Buffer.from(row.bytes), etag: row.etag, updatedAt: row.updated_at };
  }

  /** Titles of the given contents (for other domains' records, e.g. the wallet's); unknown IDs are left out. */
  async titles(ids: string[]): Promise<Map<string, string>> {
    return new Map([...(await contentsByIds(this.deps.db, ids)).values()].map((c) => [c.id, c.title]));
  }

  /** The origin's piece source (S1.6): serves pieces through the cached manifest's hashes. */
  pieceReader(): PieceSource {
    return {
      manifest: (id) => (CONTENT_ID.test(id) ? this.manifestOrNull(id) : Promise.resolve(null)),
      openPiece: async (id, index) => {
        const m = this.cache.get(id) ?? (CONTENT_ID.test(id) ? await this.manifestOrNull(id) : null);
        if (!m || !Number.isInteger(index) || index < 0 || index >= m.body.pieces.length) return null;
        return this.deps.pieces.reader(m.body.pieces[index], pieceLength(m.body, index));
      },
    };
  }

  private manifestOrNull(id: string): Promise<SignedManifest | null> {
    const hit = this.cache.get(id);
    if (hit) return Promise.resolve(hit);
    // Many piece requests for a content arrive together when a transfer starts: one query serves them all.
    let pending = this.loading.get(id);
    if (!pending) {
      pending = this.deps.db
        .selectFrom('contents')
        .select('manifest')
        .where('id', '=', id)
        .executeTakeFirst()
        .then((row) => {
          if (row) this.remember(id, row.manifest);
          return row?.manifest ?? null;
        })
        .finally(() => this.loading.delete(id));
      this.loading.set(id, pending);
    }
    return pending;
  }

  /** Keeps a manifest in the bounded cache; the oldest-inserted entry goes first when full. */
  private remember(id: string, manifest: SignedManifest) {
    if (this.cache.has(id)) return;
    if (this.cache.size >= MANIFEST_CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(id, manifest);
  }

  private catalogQuery() {
    return this.deps.db
      .selectFrom('contents')
      .leftJoin('content_thumbnails as th', 'th.content_id', 'contents.id')
      .select(['id', 'title', 'summary', 'author', 'genre', 'price', 'total_size', 'piece_count', 'created_at', 'th.etag', publisherName.as('publisher')]);
  }
}

/** The publisher's username as signed into the manifest: the catalog needs no join into accounts' tables. */
const publisherName = sql<string>`manifest->'body'->>'publisher'`;

function toItem(r: {
  id: string;
  title: string;
  summary: string;
  author: string;
  genre: string;
  price: number;
  publisher: string;
  total_size: number;
  piece_count: number;
  created_at: Date;
  etag: string | null;
}): CatalogItem {
  return {
    id: r.id,
    title: r.title,
    summary: r.summary,
    author: r.author,
    genre: r.genre,
    price: Number(r.price),
    publisher: r.publisher,
    totalSize: Number(r.total_size),
    pieces: r.piece_count,
    createdAt: r.created_at.toISOString(),
    thumbnailUrl: r.etag ? thumbnailUrl(r.id, r.etag) : null,
  };
}

/** S1.1 metadata rules, applied before a byte of the body is read. */
export function validateMeta(meta: PublishMeta): Required<PublishMeta> {
  const text = (field: keyof typeof LIMITS, value: unknown, required: boolean): string => {
    if (value === undefined || value === null) value = '';
    if (typeof value !== 'string') throw badRequest(`invalid_${field}`, `${field} must be text.`);
    const v = value.trim();
    const len = [...v].length;
    if (required && len === 0) throw badRequest(`invalid_${field}`, `A ${field} is required (1–${LIMITS[field]} characters).`);
    if (len > LIMITS[field]) throw badRequest(`invalid_${field}`, `The ${field} is at most ${LIMITS[field]} characters (got ${len}).`);
    return v;
  };
  const price = meta.price;
  if (typeof price !== 'number' || !Number.isSafeInteger(price) || price < 0 || price > MAX_PRICE) {
    throw badRequest('invalid_price', `price is a whole number of minor units from 0 to ${MAX_PRICE}.`);
  }
  return {
    title: text('title', meta.title, true),
    genre: text('genre', meta.genre, true),
    price,
    summary: text('summary', meta.summary, false),
    author: text('author', meta.author, false),
  };
}

function checkId(id: string) {
  if (!CONTENT_ID.test(id)) throw badRequest('invalid_content_id', 'A content ID is 64 lower-case hex characters.');
}

const unknownContent = (id: string) => notFound('unknown_content', `No content ${id}.`);

export const uploadTooLarge = (max: number) =>
  new AppError('upload_too_large', `The upload is larger than this origin accepts (${max} bytes).`, 413, { maxUploadBytes: max });

function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

