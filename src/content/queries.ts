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
