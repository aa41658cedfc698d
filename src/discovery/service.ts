import type { AccountService } from '../accounts/service.ts';
import { contentsByIds, rankedContents, type ContentFacts, type RankedContent } from '../content/queries.ts';
import type { Clock } from '../core/clock.ts';
import type { Config } from '../core/config.ts';
import { decodeTimeCursor, encodeTimeCursor } from '../core/cursor.ts';
import { AppError, badRequest, conflict, forbidden, notFound } from '../core/errors.ts';
import type { Principal } from '../core/http.ts';
import { newId } from '../core/ids.ts';
import { arrayLiteral } from '../db/array-literal.ts';
import { sql, type Db } from '../db/connection.ts';
import { PLATFORM_REVENUE, walletAccount } from '../ledger/accounts.ts';
import { transferError, type Ledger } from '../ledger/ledger.ts';
import { purchaseStandings, receivedContents, transfersByIds, type PurchaseStanding } from '../ledger/queries.ts';
import type { Wallets } from '../ledger/wallets.ts';
import type { TerminalService } from '../terminals/service.ts';
import type { DiscoveryPlacementsTable } from './tables.ts';

// S1.4, the personal content list (docs/content-list.md): each member's list of the
// catalog, placed items first, then its preferred genres, then the genres of what it
// received, then the newest; every item marked affordable or not against the member's
// wallet, with ratings, comments, the publisher's notes and how many peers holding it
// are online. Publishers pay for preferred placement through the ledger.

const DAY_MS = 86_400_000;
export const MAX_PREFERRED_GENRES = 20;
export const COMMENTS_PER_ITEM = 3;
/** How many received contents the history genres are counted over (the most recent). */
const HISTORY_CONTENTS = 1000;
const CONTENT_ID = /^[0-9a-f]{64}$/;

export interface Profile {
  preferredGenres: string[];
  /** Genres of what the member received, most first (then by name). */
  historyGenres: string[];
}

export interface Comment {
  id: string;
  author: string;
  text: string;
  createdAt: string;
}

export interface RatingSummary {
  /** Mean of the stars, one decimal; null with no rating yet. */
  average: number | null;
  count: number;
  mine: number | null;
}

export interface Item {
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
  thumbnailUrl: string | null;
  affordable: boolean;
  received: boolean;
  preferredGenre: boolean;
  placement: { until: string } | null;
  why: string[];
  rating: RatingSummary;
  comments: Comment[];
  commentCount: number;
  notes: string | null;
  holdersOnline: number;
}

export interface ContentList {
  balance: { available: number };
  preferredGenres: string[];
  items: Item[];
  nextCursor: string | null;
}

export interface Placement {
  id: string;
  contentId: string;
  from: string;
  until: string;
  days: number;
  charged: number;
  /** The publisher's posted wallet balance right after the charge (as its wallet history shows it). */
  balanceAfter: number;
}

export interface DiscoveryDeps {
  db: Db;
  clock: Clock;
  config: Pick<Config, 'placementPricePerDay' | 'refetchPolicy'>;
  accounts: Pick<AccountService, 'usernames'>;
  ledger: Ledger;
  wallets: Wallets;
  terminals: Pick<TerminalService, 'onlineHolderCounts'>;
}

/** The tiers of a member's list, in order (rankedContents' tier index). */
const TIER = { placed: 0, preferred: 1, history: 2, rest: 3 } as const;

export class DiscoveryService {
  constructor(private readonly deps: DiscoveryDeps) {}

  // ---- profile ----

  async profile(userId: string): Promise<Profile> {
    const [preferredGenres, historyGenres] = await Promise.all([this.preferred(userId), this.historyGenres(userId)]);
    return { preferredGenres, historyGenres };
  }

  /** Sets the member's preferred genres (trimmed; repeats, ignoring case, dropped; order kept). */
  async setProfile(userId: string, genres: string[]): Promise<Profile> {
    const seen = new Set<string>();
    const clean: string[] = [];
    for (const g of genres) {
      const t = g.trim();
      if (!t) throw badRequest('invalid_genre', 'A preferred genre is 1 to 40 characters, not only spaces.');
      if (!seen.has(t.toLowerCase())) clean.push(t);
      seen.add(t.toLowerCase());
    }
    const now = new Date(this.deps.clock.now());
    await this.deps.db
      .insertInto('discovery_profiles')
      .values({ user_id: userId, preferred_genres: clean, updated_at: now })
      .onConflict((oc) => oc.column('user_id').doUpdateSet({ preferred_genres: clean, updated_at: now }))
      .execute();
    return this.profile(userId);
  }

  private async preferred(userId: string): Promise<string[]> {
    const row = await this.deps.db.selectFrom('discovery_profiles').select('preferred_genres').where('user_id', '=', userId).executeTakeFirst();
    return row?.preferred_genres ?? [];
  }

  /** Genres of the contents the member received (complete purchases, the ledger says), most first. */
  private async historyGenres(userId: string): Promise<string[]> {
    const received = await receivedContents(this.deps.db, userId, HISTORY_CONTENTS);
    const facts = await contentsByIds(this.deps.db, received);
    const counts = new Map<string, { genre: string; n: number }>();
    for (const c of facts.values()) {
      const key = c.genre.toLowerCase();
      const e = counts.get(key) ?? { genre: c.genre, n: 0 };
      e.n++;
      counts.set(key, e);
    }
    return [...counts.values()].sort((a, b) => b.n - a.n || (a.genre < b.genre ? -1 : a.genre > b.genre ? 1 : 0)).map((e) => e.genre);
  }

  // ---- the list ----

  /** S1.4: the member's content list, one page. */
  async contentList(userId: string, query: { q?: string; limit?: number; cursor?: string }): Promise<ContentList> {
    const limit = query.limit ?? 20;
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const ctx = await this.context(userId);
    const rows = await rankedContents(this.deps.db, { q: query.q, tiers: ctx.tiers, limit: limit + 1, after });
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      balance: { available: ctx.available },
      preferredGenres: ctx.preferredGenres,
      items: await this.items(userId, page, ctx),
      nextCursor: rows.length > limit && last ? encodeCursor(last) : null,
    };
  }

  /** One item of the member's list; 404 `unknown_content`. */
  async contentItem(userId: string, contentId: string): Promise<Item> {
    if (!CONTENT_ID.test(contentId)) throw contentNotFound(contentId);
    const ctx = await this.context(userId);
    const [row] = await rankedContents(this.deps.db, { tiers: ctx.tiers, limit: 1, only: [contentId] });
    if (!row) throw contentNotFound(contentId);
    const [item] = await this.items(userId, [row], ctx);
    return item;
  }

  /** What ranks and marks every item of a member's list. */
  private async context(userId: string) {
    const now = this.deps.clock.now();
    const [profile, placed, available] = await Promise.all([this.profile(userId), this.activePlacements(null, now), this.available(userId)]);
    const preferredLower = new Set(profile.preferredGenres.map((g) => g.toLowerCase()));
    const historyOnly = profile.historyGenres.filter((g) => !preferredLower.has(g.toLowerCase()));
    const tiers = [{ ids: [...placed.keys()] }, { genres: profile.preferredGenres }, { genres: historyOnly }];
    return { now, placed, available, preferredGenres: profile.preferredGenres, preferredLower, tiers };
  }

  /** The member's available wallet balance (the wallet is opened, as GET /wallet does). */
  private async available(userId: string): Promise<number> {
    const wallet = await this.deps.wallets.open(userId);
    return (await this.deps.ledger.balance(wallet)).available;
  }

  /**
   * Contents with a placement running now (from ≤ now < until), each with the end of its
   * run of placements (a later one bought while one runs starts where it ends). `contentIds`
   * null: every content.
   */
  private async activePlacements(contentIds: string[] | null, now: number): Promise<Map<string, Date>> {
    const at = new Date(now);
    let q = this.deps.db
      .selectFrom('discovery_placements as p')
      .select((eb) => ['p.content_id', eb.fn.max('p.until_at').as('until')])
      .where('p.until_at', '>', at)
      .where(({ exists, selectFrom }) =>
        exists(selectFrom('discovery_placements as a').select('a.id').whereRef('a.content_id', '=', 'p.content_id').where('a.from_at', '<=', at).where('a.until_at', '>', at)),
      )
      .groupBy('p.content_id');
    if (contentIds) q = q.where('p.content_id', '=', sql<string>`any(${arrayLiteral(contentIds)}::text[])`);
    const rows = await q.execute();
    return new Map(rows.map((r) => [r.content_id, new Date(r.until as unknown as Date)]));
  }

  private async items(userId: string, rows: RankedContent[], ctx: Awaited<ReturnType<DiscoveryService['context']>>): Promise<Item[]> {
    if (!rows.length) return [];
    const ids = rows.map((r) => r.id);
    const [standings, ratings, comments, notes, holders] = await Promise.all([
      purchaseStandings(this.deps.db, userId, ids),
      this.ratings(ids, userId),
      this.latestComments(ids),
      this.notesOf(ids),
      this.deps.terminals.onlineHolderCounts(ids),
    ]);
    return rows.map((r) => {
      const standing = standings.get(r.id);
      const cost = this.cost(r, standing);
      const affordable = cost.toPay <= ctx.available;
      const placedUntil = r.tier === TIER.placed ? (ctx.placed.get(r.id) ?? null) : null;
      const holdersOnline = holders.get(r.id) ?? 0;
      const preferredGenre = ctx.preferredLower.has(r.genre.toLowerCase());
      const why: string[] = [];
      if (placedUntil) why.push(`Placed first: its publisher paid for preferred placement until ${placedUntil.toISOString()}.`);
      else if (r.tier === TIER.preferred) why.push(`In ${r.genre}, a genre you prefer.`);
      else if (r.tier === TIER.history) why.push(`In ${r.genre}, a genre of what you received before.`);
      else why.push('Not in a genre you prefer or received before: listed newest first.');
      if (placedUntil && preferredGenre) why.push(`Also in ${r.genre}, a genre you prefer.`);
      why.push(cost.why(ctx.available, affordable));
      why.push(
        holdersOnline === 0
          ? 'No peer holding it is online: the origin serves it.'
          : `${holdersOnline} peer${holdersOnline === 1 ? '' : 's'} holding it ${holdersOnline === 1 ? 'is' : 'are'} online.`,
      );
      const c = comments.get(r.id);
      return {
        id: r.id,
        title: r.title,
        summary: r.summary,
        author: r.author,
        genre: r.genre,
        price: r.price,
        publisher: r.publisher,
        totalSize: r.totalSize,
        pieces: r.pieces,
        createdAt: r.createdAt.toISOString(),
        thumbnailUrl: r.thumbnailUrl,
        affordable,
        received: standing?.received ?? false,
        preferredGenre,
        placement: placedUntil ? { until: placedUntil.toISOString() } : null,
        why,
        rating: ratings.get(r.id) ?? { average: null, count: 0, mine: null },
        comments: c?.latest ?? [],
        commentCount: c?.count ?? 0,
        notes: notes.get(r.id) ?? null,
        holdersOnline,
      };
    });
  }

  /**
   * What getting the content would still take from the available balance: nothing once
   * received (unless REFETCH_POLICY=charge), what is left of its purchase beyond what is
   * already reserved for it, else its price.
   */
  private cost(r: Pick<ContentFacts, 'price'>, standing: PurchaseStanding | undefined) {
    const { refetchPolicy } = this.deps.config;
    if (standing?.received && refetchPolicy === 'free') {
      return { toPay: 0, why: () => 'You received it already: getting it again costs nothing.' };
    }
    const open = standing && !standing.received ? standing : undefined;
    const toPay = open ? Math.max(0, open.stillToPay - open.held) : r.price;
    return {
      toPay,
      why: (available: number, affordable: boolean) => {
        const what = open ? `what is left to pay for it (${toPay}${open.held ? `, beyond the ${open.held} already reserved` : ''})` : `its price (${toPay})`;
        return affordable
          ? `Marked affordable: ${what} is within your available balance (${available}).`
          : `Not affordable: ${what} is more than your available balance (${available}); top up first.`;
      },
    };
  }

  // ---- ratings ----

  private async ratings(ids: string[], userId: string | null): Promise<Map<string, RatingSummary>> {
    const rows = await this.deps.db
      .selectFrom('discovery_ratings')
      .select((eb) => [
        'content_id',
        eb.fn.countAll<string>().as('n'),
        eb.fn.sum<string>('stars').as('total'),
        sql<number | null>`max(case when user_id = ${userId} then stars end)`.as('mine'),
      ])
      .where('content_id', '=', sql<string>`any(${arrayLiteral(ids)}::text[])`)
      .groupBy('content_id')
      .execute();
    return new Map(
      rows.map((r) => {
        const count = Number(r.n);
        return [r.content_id, { count, average: count ? Math.round((Number(r.total) * 10) / count) / 10 : null, mine: r.mine === null ? null : Number(r.mine) }];
      }),
    );
  }

  /** S1.4: a member who received the content rates it 1–5 stars, once (a new rating replaces its own). */
  async rate(userId: string, contentId: string, stars: number): Promise<RatingSummary> {
    const content = await this.content(contentId);
    if (content.publisherId === userId) throw forbidden('own_content', 'You published this content: its rating is for those who received it.');
    await this.mustHaveReceived(userId, contentId, 'rate');
    const now = new Date(this.deps.clock.now());
    await this.deps.db
      .insertInto('discovery_ratings')
      .values({ content_id: contentId, user_id: userId, stars, created_at: now, updated_at: now })
      .onConflict((oc) => oc.columns(['content_id', 'user_id']).doUpdateSet({ stars, updated_at: now }))
      .execute();
    return (await this.ratings([contentId], userId)).get(contentId)!;
  }

  // ---- comments ----

  /** Per content: its newest comments (COMMENTS_PER_ITEM) and how many it has. Two statements. */
  private async latestComments(ids: string[]): Promise<Map<string, { latest: Comment[]; count: number }>> {
    const list = sql<string>`any(${arrayLiteral(ids)}::text[])`;
    const [counts, latest] = await Promise.all([
      this.deps.db
        .selectFrom('discovery_comments')
        .select((eb) => ['content_id', eb.fn.countAll<string>().as('n')])
        .where('content_id', '=', list)
        .groupBy('content_id')
        .execute(),
      sql<{ id: string; content_id: string; user_id: string; text: string; created_at: Date }>`
        select id, content_id, user_id, text, created_at from (
          select c.*, row_number() over (partition by content_id order by created_at desc, id desc) as n
            from discovery_comments c where content_id = ${list}) ranked
         where n <= ${COMMENTS_PER_ITEM}
         order by content_id, created_at desc, id desc`.execute(this.deps.db),
    ]);
    const names = await this.deps.accounts.usernames([...new Set(latest.rows.map((r) => r.user_id))]);
    const out = new Map<string, { latest: Comment[]; count: number }>();
    for (const r of counts) out.set(r.content_id, { latest: [], count: Number(r.n) });
    for (const r of latest.rows) out.get(r.content_id)?.latest.push(toComment(r, names));
    return out;
  }

  /** A content's comments, newest first; keyset paging. 404 `unknown_content`. */
  async comments(contentId: string, query: { limit?: number; cursor?: string }): Promise<{ items: Comment[]; nextCursor: string | null }> {
    await this.content(contentId);
    const limit = query.limit ?? 20;
    let q = this.deps.db.selectFrom('discovery_comments').select(['id', 'content_id', 'user_id', 'text', 'created_at']).where('content_id', '=', contentId);
    if (query.cursor !== undefined) {
      const [at, id] = decodeTimeCursor(query.cursor);
      q = q.where((eb) => eb(eb.refTuple('created_at', 'id'), '<', eb.tuple(at, id)));
    }
    const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit + 1).execute();
    const page = rows.slice(0, limit);
    const names = await this.deps.accounts.usernames([...new Set(page.map((r) => r.user_id))]);
    const last = page[page.length - 1];
    return {
      items: page.map((r) => toComment(r, names)),
      nextCursor: rows.length > limit && last ? encodeTimeCursor(last.created_at, last.id) : null,
    };
  }

  /**
   * S1.4: a member who received the content comments on it. The same requestId again
   * answers the comment it posted (`created: false`) and posts nothing.
   */
  async postComment(userId: string, contentId: string, body: { text: string; requestId: string }): Promise<{ comment: Comment; created: boolean }> {
    const again = await this.commentByRequest(userId, body.requestId);
    if (again) {
      if (again.row.content_id !== contentId || again.row.text !== body.text.trim()) {
        throw conflict('request_id_conflict', 'This requestId was already used for another comment: use a new one for a new comment.');
      }
      return { comment: again.comment, created: false };
    }
    await this.content(contentId);
    const text = body.text.trim();
    if (!text) throw badRequest('invalid_comment', 'A comment is 1 to 2000 characters, not only spaces.');
    await this.mustHaveReceived(userId, contentId, 'comment on');
    const inserted = await this.deps.db
      .insertInto('discovery_comments')
      .values({ id: newId('cmt'), content_id: contentId, user_id: userId, text, request_id: body.requestId, created_at: new Date(this.deps.clock.now()) })
      .onConflict((oc) => oc.columns(['user_id', 'request_id']).doNothing())
      .returning('id')
      .executeTakeFirst();
    // A concurrent post with the same requestId won: answer its comment.
    const stored = (await this.commentByRequest(userId, body.requestId))!;
    return { comment: stored.comment, created: !!inserted };
  }

  private async commentByRequest(userId: string, requestId: string) {
    const row = await this.deps.db
      .selectFrom('discovery_comments')
      .select(['id', 'content_id', 'user_id', 'text', 'created_at'])
      .where('user_id', '=', userId)
      .where('request_id', '=', requestId)
      .executeTakeFirst();
    if (!row) return null;
    return { row, comment: toComment(row, await this.deps.accounts.usernames([userId])) };
  }

  // ---- notes ----

  private async notesOf(ids: string[]): Promise<Map<string, string>> {
    const rows = await this.deps.db.selectFrom('discovery_notes').select(['content_id', 'notes']).where('content_id', '=', sql<string>`any(${arrayLiteral(ids)}::text[])`).execute();
    return new Map(rows.map((r) => [r.content_id, r.notes]));
  }

  /** S1.4: the publisher's notes shown with its content (its publisher or an operator; empty clears them). */
  async setNotes(p: Principal, contentId: string, notes: string): Promise<{ notes: string | null }> {
    const content = await this.content(contentId);
    if (content.publisherId !== p.userId && !p.roles.includes('operator')) {
      throw forbidden('not_your_content', 'Only the publisher of this content (or an operator) may change its notes.');
    }
    const text = notes.trim();
    if (!text) {
      await this.deps.db.deleteFrom('discovery_notes').where('content_id', '=', contentId).execute();
      return { notes: null };
    }
    const now = new Date(this.deps.clock.now());
    await this.deps.db
      .insertInto('discovery_notes')
      .values({ content_id: contentId, notes: text, updated_by: p.userId, updated_at: now })
      .onConflict((oc) => oc.column('content_id').doUpdateSet({ notes: text, updated_by: p.userId, updated_at: now }))
      .execute();
    return { notes: text };
  }

  // ---- placements ----

  /**
   * S1.4: the publisher buys `days` of preferred placement for its content: PLACEMENT_PRICE_PER_DAY
   * × days moves from its wallet to the platform in one ledger transfer (reason `placement`), in
   * the same transaction as the placement. It starts now, or where the content's running
   * placement ends. The same requestId again answers that placement (`created: false`), charged once.
   */
  async place(publisherId: string, contentId: string, body: { days: number; requestId: string }): Promise<{ placement: Placement; created: boolean }> {
    const { db, ledger, wallets, clock, config } = this.deps;
    const prior = await this.placementByRequest(publisherId, body.requestId);
    if (prior) return { placement: this.samePlacement(prior, contentId, body.days), created: false };
    const content = await this.content(contentId);
    if (content.publisherId !== publisherId) throw forbidden('not_your_content', 'Only the publisher of this content may buy placement for it.');

    const wallet = await wallets.open(publisherId);
    await ledger.ensureAccount(PLATFORM_REVENUE);
    const amount = config.placementPricePerDay * body.days;
    const id = newId('plc');
    const transferId = amount > 0 ? `placement:${id}` : null;
    // Read outside the transaction: the ledger reads with its own connection (one only on PGlite).
    const freeBalance = transferId ? null : (await ledger.balance(wallet)).posted;
    try {
      const row = await db.transaction().execute(async (trx) => {
        // One buyer at a time per content: each placement starts where the one before ends.
        await sql`select pg_advisory_xact_lock(hashtext(${`placement:${contentId}`}))`.execute(trx);
        const now = clock.now();
        const latest = await trx
          .selectFrom('discovery_placements')
          .select((eb) => eb.fn.max('until_at').as('until'))
          .where('content_id', '=', contentId)
          .where('until_at', '>', new Date(now))
          .executeTakeFirst();
        const from = Math.max(now, latest?.until ? new Date(latest.until as unknown as Date).getTime() : now);
        let balanceAfter: number;
        if (transferId) {
          const [r] = await ledger.apply([{ id: transferId, debit: wallet, credit: PLATFORM_REVENUE.id, amount, reason: 'placement', contentId, ref: id }], { trx });
          if (r.status === 'failed') throw r.code === 'insufficient_balance' ? UNAFFORDABLE : transferError(r);
          balanceAfter = (await transfersByIds(trx, [transferId])).get(transferId)!.debitBalanceAfter;
        } else {
          balanceAfter = freeBalance!;
        }
        const values = {
          id,
          content_id: contentId,
          publisher_id: publisherId,
          request_id: body.requestId,
          days: body.days,
          from_at: new Date(from),
          until_at: new Date(from + body.days * DAY_MS),
          charged: amount,
          transfer_id: transferId,
          balance_after: balanceAfter,
          created_at: new Date(now),
        };
        await trx.insertInto('discovery_placements').values(values).execute();
        return values;
      });
      return { placement: toPlacement(row), created: true };
    } catch (err) {
      if (err === UNAFFORDABLE) {
        const available = (await ledger.balance(wallet)).available;
        throw new AppError(
          'insufficient_balance',
          `${body.days} day${body.days === 1 ? '' : 's'} of placement cost ${amount}; your wallet has ${available} available. Top up first (cascade wallet topup CODE).`,
          409,
          { needed: amount, available },
        );
      }
      // A concurrent request with the same requestId committed first: its placement is the answer.
      if ((err as { code?: string }).code === '23505') {
        const winner = await this.placementByRequest(publisherId, body.requestId);
        if (winner) return { placement: this.samePlacement(winner, contentId, body.days), created: false };
      }
      throw err;
    }
  }

  private samePlacement(row: PlacementRow, contentId: string, days: number): Placement {
    if (row.content_id !== contentId || row.days !== days) {
      throw conflict('request_id_conflict', 'This requestId was already used for another placement: use a new one to buy another.');
    }
    return toPlacement(row);
  }

  private placementByRequest(publisherId: string, requestId: string): Promise<PlacementRow | undefined> {
    return this.deps.db.selectFrom('discovery_placements').selectAll().where('publisher_id', '=', publisherId).where('request_id', '=', requestId).executeTakeFirst();
  }

  /** A content's placements, newest first (its publisher or an operator). */
  /** A content's placements, newest first, and what a day costs now (told before a publisher pays). */
  async placements(p: Principal, contentId: string): Promise<{ pricePerDay: number; items: (Placement & { active: boolean })[] }> {
    const content = await this.content(contentId);
    if (content.publisherId !== p.userId && !p.roles.includes('operator')) {
      throw forbidden('not_your_content', 'Only the publisher of this content (or an operator) may see its placements.');
    }
    const rows = await this.deps.db.selectFrom('discovery_placements').selectAll().where('content_id', '=', contentId).orderBy('from_at', 'desc').orderBy('id', 'desc').limit(500).execute();
    const now = this.deps.clock.now();
    return { pricePerDay: this.deps.config.placementPricePerDay, items: rows.map((r) => ({ ...toPlacement(r), active: r.from_at.getTime() <= now && now < r.until_at.getTime() })) };
  }

  // ---- shared ----

  private async content(contentId: string): Promise<ContentFacts> {
    const c = CONTENT_ID.test(contentId) ? (await contentsByIds(this.deps.db, [contentId])).get(contentId) : undefined;
    if (!c) throw contentNotFound(contentId);
    return c;
  }

  /** Refuses with `not_received` unless the member's purchase of the content is complete (the ledger's word). */
  private async mustHaveReceived(userId: string, contentId: string, what: string) {
    const standing = (await purchaseStandings(this.deps.db, userId, [contentId])).get(contentId);
    if (!standing?.received) throw forbidden('not_received', `Only a member who received this content may ${what} it: get it first.`);
  }
}

type PlacementRow = DiscoveryPlacementsTable;

/** Thrown inside the placement's transaction when the wallet cannot pay: rolls it back, then answered outside. */
const UNAFFORDABLE = new Error('placement unaffordable');

function toPlacement(r: Pick<PlacementRow, 'id' | 'content_id' | 'from_at' | 'until_at' | 'days' | 'charged' | 'balance_after'>): Placement {
  return {
    id: r.id,
    contentId: r.content_id,
    from: new Date(r.from_at).toISOString(),
    until: new Date(r.until_at).toISOString(),
    days: r.days,
    charged: Number(r.charged),
    balanceAfter: Number(r.balance_after),
  };
}

function toComment(r: { id: string; user_id: string; text: string; created_at: Date }, names: Map<string, string>): Comment {
  return { id: r.id, author: names.get(r.user_id) ?? r.user_id, text: r.text, createdAt: new Date(r.created_at).toISOString() };
}

const contentNotFound = (id: string) => notFound('unknown_content', `No content ${id.slice(0, 80)}.`);

function encodeCursor(r: RankedContent): string {
  return Buffer.from(JSON.stringify([r.tier, r.createdAt.toISOString(), r.id])).toString('base64url');
}

function decodeCursor(cursor: string): { tier: number; createdAt: Date; id: string } {
  try {
    const [tier, at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    const d = new Date(at);
    if (Number.isInteger(tier) && tier >= 0 && tier <= TIER.rest && typeof at === 'string' && !Number.isNaN(d.getTime()) && typeof id === 'string' && CONTENT_ID.test(id)) {
      return { tier, createdAt: d, id };
    }
  } catch {
    // fall through
  }
  throw badRequest('invalid_cursor', 'The cursor is not one this server handed out; start again without it.');
}
