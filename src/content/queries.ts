import { arrayLiteral } from '../db/array-literal.ts';
import { sql, type Db } from '../db/connection.ts';

// What other domains may ask of the `contents` table (ARCHITECTURE.md "Boundaries"):
// set-based reads that take the caller's Db or transaction, so they see its writes.

/** The facts other domains price, plan and label with (not the manifest: it can be large). */
export interface ContentFacts {
  id: string;
  title: string;
  genre: string;
  price: number;
  totalSize: number;
  publisherId: string;
}

/** The contents among `ids` that exist, by ID; unknown IDs are absent. One query. */
export async function contentsByIds(db: Db, ids: readonly string[]): Promise<Map<string, ContentFacts>> {
  const wanted = [...new Set(ids)];
  if (!wanted.length) return new Map();
  const rows = await db
    .selectFrom('contents')
    .select(['id', 'title', 'genre', 'price', 'total_size', 'publisher_id'])
    .where('id', '=', sql<string>`any(${arrayLiteral(wanted)}::text[])`)
    .execute();
  return new Map(rows.map((r) => [r.id, { id: r.id, title: r.title, genre: r.genre, price: Number(r.price), totalSize: Number(r.total_size), publisherId: r.publisher_id }]));
}

/** Which of `ids` name published content. */
export async function existingContents(db: Db, ids: readonly string[]): Promise<Set<string>> {
  return new Set((await contentsByIds(db, ids)).keys());
}

/** One selection of a schedule (S0.1), named by `key` (the caller's grouping, e.g. a terminal ID). */
export interface ContentSelection {
  key: string;
  kind: 'content' | 'publisher' | 'genre' | 'series';
  /** A content ID, a publisher's user ID, a lower-case genre, or a lower-case title prefix. */
  value: string;
}

export interface MatchedContent extends ContentFacts {
  key: string;
  /** The publisher's username as signed into the manifest. */
  publisher: string;
  createdAt: number;
}

/**
 * Per key, the newest contents (by created_at, then ID) its selections take, leaving out
 * the `exclude` pairs; `perKey` at most. Genre matches ignoring case; a series is a
 * case-insensitive title prefix. One statement, whatever the number of keys.
 */
export async function newestMatching(
  db: Db,
  selections: readonly ContentSelection[],
  opts: { exclude: readonly { key: string; contentId: string }[]; perKey: number },
): Promise<Map<string, MatchedContent[]>> {
  const out = new Map<string, MatchedContent[]>();
  if (!selections.length) return out;
  const rows = await sql<{ key: string; id: string; title: string; genre: string; price: number; publisher_id: string; total_size: number; created_at: Date; publisher: string | null }>`
    with sel as (select * from jsonb_to_recordset(${JSON.stringify(selections)}::jsonb) as v(key text, kind text, value text)),
    excl as (select * from unnest(${arrayLiteral(opts.exclude.map((e) => e.key))}::text[], ${arrayLiteral(opts.exclude.map((e) => e.contentId))}::text[]) as e(key, content_id)),
    matched as (
      select distinct on (sel.key, c.id)
             sel.key, c.id, c.title, c.genre, c.price, c.publisher_id, c.total_size, c.created_at, c.manifest->'body'->>'publisher' as publisher
        from sel
        join contents c
          on (sel.kind = 'content' and c.id = sel.value)
          or (sel.kind = 'publisher' and c.publisher_id = sel.value)
          or (sel.kind = 'genre' and lower(c.genre) = sel.value)
          or (sel.kind = 'series' and starts_with(lower(c.title), sel.value))
       where not exists (select 1 from excl where excl.key = sel.key and excl.content_id = c.id)
       order by sel.key, c.id)
    select * from (
      select matched.*, row_number() over (partition by key order by created_at desc, id desc) as n from matched) ranked
     where n <= ${opts.perKey}
     order by key, created_at desc, id desc`.execute(db);
  for (const r of rows.rows) {
    const list = out.get(r.key) ?? [];
    list.push({
      key: r.key,
      id: r.id,
      title: r.title,
      genre: r.genre,
      price: Number(r.price),
      totalSize: Number(r.total_size),
      publisherId: r.publisher_id,
      publisher: r.publisher ?? '',
      createdAt: new Date(r.created_at).getTime(),
    });
    out.set(r.key, list);
  }
  return out;
}

/** Where a content's thumbnail is served; the ETag in it makes a new image a new URL (it is cached for a day). */
export function thumbnailUrl(contentId: string, etag: string): string {
  return `/contents/${contentId}/thumbnail?v=${etag.replace(/"/g, '').slice(0, 16)}`;
}

/** A catalog entry with what a content list shows of it (S1.4), and the tier it fell in. */
export interface RankedContent extends ContentFacts {
  summary: string;
  author: string;
  /** The publisher's username as signed into the manifest. */
  publisher: string;
  pieces: number;
  createdAt: Date;
  thumbnailUrl: string | null;
  /** Index of the first tier it matched; `tiers.length` for none. */
  tier: number;
}

export interface RankedQuery {
  /** Case-insensitive substring of the title, genre or publisher. */
  q?: string;
  /**
   * In order: a content belongs to the first tier whose `ids` hold it or whose `genres`
   * (lower-case) hold its genre, ignoring case; contents of no tier come after all tiers.
   */
  tiers: readonly { ids?: readonly string[]; genres?: readonly string[] }[];
  limit: number;
  /** Keyset: only what comes after this position (tier, then newest first). */
  after?: { tier: number; createdAt: Date; id: string };
  /** Only these contents. */
  only?: readonly string[];
}

/**
 * The catalog ordered by tier, then newest first (created_at, then ID), one page; for the
 * content lists of the discovery domain (S1.4). One statement.
 */
export async function rankedContents(db: Db, query: RankedQuery): Promise<RankedContent[]> {
  const tier = query.tiers.length
    ? sql`case ${sql.join(
        query.tiers.map(
          (t, i) =>
            sql`when c.id = any(${arrayLiteral([...(t.ids ?? [])])}::text[]) or lower(c.genre) = any(${arrayLiteral((t.genres ?? []).map((g) => g.toLowerCase()))}::text[]) then ${sql.lit(i)}`,
        ),
        sql` `,
      )} else ${sql.lit(query.tiers.length)} end`
    : sql`0`;
  const filters = [sql`true`];
  const q = query.q?.trim();
  if (q) {
    const pattern = `%${q.replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`;
    filters.push(sql`(c.title ilike ${pattern} or c.genre ilike ${pattern} or c.manifest->'body'->>'publisher' ilike ${pattern})`);
  }
  if (query.only) filters.push(sql`c.id = any(${arrayLiteral([...query.only])}::text[])`);
  const after = query.after
    ? sql`where r.tier > ${query.after.tier} or (r.tier = ${query.after.tier} and (r.created_at, r.id) < (${query.after.createdAt}::timestamptz, ${query.after.id}))`
    : sql``;
  const { rows } = await sql<{
    id: string; title: string; summary: string; author: string; genre: string; price: number; publisher_id: string; total_size: number;
    piece_count: number; created_at: Date; publisher: string | null; etag: string | null; tier: number;
  }>`
    select * from (
      select c.id, c.title, c.summary, c.author, c.genre, c.price, c.publisher_id, c.total_size, c.piece_count, c.created_at,
             c.manifest->'body'->>'publisher' as publisher, th.etag, ${tier} as tier
        from contents c left join content_thumbnails th on th.content_id = c.id
       where ${sql.join(filters, sql` and `)}) r
    ${after}
    order by r.tier, r.created_at desc, r.id desc
    limit ${query.limit}`.execute(db);
  return rows.map((r) => ({
    id: r.id,
    title: r.title,
    summary: r.summary,
    author: r.author,
    genre: r.genre,
    price: Number(r.price),
    publisherId: r.publisher_id,
    publisher: r.publisher ?? '',
    totalSize: Number(r.total_size),
    pieces: r.piece_count,
    createdAt: new Date(r.created_at),
    thumbnailUrl: r.etag ? thumbnailUrl(r.id, r.etag) : null,
    tier: Number(r.tier),
  }));
}

/** S2.1 "recently added": the newest contents, newest first, with their sizes. */
export async function newestContents(db: Db, limit: number): Promise<{ id: string; totalSize: number; createdAt: number }[]> {
  const rows = await db.selectFrom('contents').select(['id', 'total_size', 'created_at']).orderBy('created_at', 'desc').orderBy('id').limit(limit).execute();
  return rows.map((r) => ({ id: r.id, totalSize: Number(r.total_size), createdAt: r.created_at.getTime() }));
}
