import type { FastifyPluginAsync } from 'fastify';
import type { Clock } from '../core/clock.ts';
import type { KeyPair } from '../core/crypto.ts';
import { AppError, badRequest } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import { newId } from '../core/ids.ts';
import type { Transaction } from 'kysely';
import type { Db } from '../db/connection.ts';
import type { Database } from '../db/schema.ts';
import { DAY_PRICE_PERCENT, MAX_RENTAL_DAYS, MINUTE_PRICE_PERCENT, rentalOver, rentalTerms, unitPrice, type RentalPlan } from './home/rental-rules.ts';
import { signRentalTicket, SYNC_GRACE_MS } from './rental-ticket.ts';
import type { EdgeRentalsTable } from './tables-rentals.ts';
import { markSecrets } from '../marks/keys.ts';
import { ticketMark } from '../marks/payload.ts';

// S2.5 (docs/edge.md "Home server"), origin side: a member rents a content on a home edge. The
// rental opens a delivery (the "bill" part's DeliveryService, kind 'rental': the one billing path
// of home and store edges, S2.4) and answers with a ticket the origin signed, which the member's
// player shows the home edge (src/edge/home/extension.ts).
// Billing, exactly once per rental:
// - days plan: charged when the rental opens, by the delivery's final report with the full fee
//   (deliveries.report, made here right after opening). The user knows at once whether the wallet
//   pays; the home edge reports nothing for it (rental-rules.ts rentalReport).
// - viewing plan: charged by the home edge's final report at the end, on the total seconds viewed.

/** The deliveries part's service, as far as rentals use it (src/edge/deliveries.ts). */
export interface RentalDeliveries {
  /** Holds the payer's wallet for maxFee (insufficient_balance otherwise); in `trx`, so the rental commits with it or not at all. */
  open(
    input: { edgeId: string; kind: 'rental'; contentId: string; userId: string; payer: 'wallet'; maxFee: number; terms: Record<string, unknown>; holdMs?: number },
    trx?: Transaction<Database>,
  ): Promise<{ id: string; serial: number }>;
  report(edgeId: string, r: { deliveryId: string; fee: number; viewedSeconds?: number; bytes?: number; final: boolean }): Promise<unknown>;
}

/** The spine's EdgeService, as far as rentals use it (src/edge/service.ts). */
export interface RentalEdges {
  /** Throws unknown_edge. */
  get(edgeId: string): Promise<{ id: string; kind: 'delivery' | 'home' | 'store'; label: string; serveUrl: string }>;
  holdings(edgeId: string): Promise<{ contentId: string; title: string | null; bytes: number; complete: boolean }[]>;
}

/** The content domain's catalog, as far as rentals use it. */
export interface RentalContents {
  get(id: string): Promise<{ id: string; title: string; price: number; totalSize: number }>;
}

export interface Rental {
  id: string;
  edgeId: string;
  userId: string;
  contentId: string;
  deliveryId: string;
  serial: number;
  plan: RentalPlan;
  days: number | null;
  unitPrice: number;
  maxFee: number;
  startsAt: string;
  endsAt: string;
  /** Whether it still plays now. */
  active: boolean;
}

export interface RentalOpened {
  rental: Rental;
  ticket: string;
  /** The video as HLS on the home edge. */
  playUrl: string;
  /** The content's file on the home edge (HTTP Range). */
  fileUrl: string;
}

const MINE_LIMIT = 200;
const SYNC_LIMIT = 1000;

export class RentalService {
  constructor(
    private readonly deps: {
      db: Db;
      clock: Clock;
      keys: KeyPair;
      /** The origin's ID in delivery marks. */
      originId: string;
      edges: RentalEdges;
      contents: RentalContents;
      deliveries: RentalDeliveries;
      /** Opens a member's wallet (with its sign-up credit) before the first hold on it. */
      wallets?: { open(userId: string): Promise<unknown> };
      /** The edge a terminal session is (the spine's EdgeService.byTerminal). */
      resolveEdge?: (terminalId: string) => Promise<{ id: string } | null>;
    },
  ) {}

  private toRental(r: EdgeRentalsTable): Rental {
    const now = this.deps.clock.now();
    return {
      id: r.id,
      edgeId: r.edge_id,
      userId: r.user_id,
      contentId: r.content_id,
      deliveryId: r.delivery_id,
      serial: Number(r.serial),
      plan: r.plan,
      days: r.days,
      unitPrice: Number(r.unit_price),
      maxFee: Number(r.max_fee),
      startsAt: r.starts_at.toISOString(),
      endsAt: r.ends_at.toISOString(),
      active: !rentalOver({ endsAt: r.ends_at.getTime() }, now),
    };
  }

  private async homeEdge(edgeId: string) {
    const edge = await this.deps.edges.get(edgeId); // unknown_edge
    if (edge.kind !== 'home') throw new AppError('not_a_home_edge', `The edge ${edgeId} (${edge.label}) is a ${edge.kind} edge: rentals are played from home edges.`, 409);
    return edge;
  }

  /** The ticket and URLs of a rental (signed again on demand: the same payload, the same meaning). */
  private opened(r: Rental, serveUrl: string): RentalOpened {
    const ticket = signRentalTicket(
      {
        rentalId: r.id,
        deliveryId: r.deliveryId,
        serial: r.serial,
        userId: r.userId,
        contentId: r.contentId,
        edgeId: r.edgeId,
        originId: this.deps.originId,
        plan: r.plan,
        days: r.days,
        unitPrice: r.unitPrice,
        maxFee: r.maxFee,
        startsAt: Date.parse(r.startsAt),
        endsAt: Date.parse(r.endsAt),
        wm: ticketMark(markSecrets(this.deps.keys), r.serial),
      },
      this.deps.keys.privateKey,
    );
    const base = `${serveUrl.replace(/\/+$/, '')}/play/${ticket}`;
    return { rental: r, ticket, playUrl: `${base}/index.m3u8`, fileUrl: `${base}/file` };
  }

  /** S2.5: `userId` rents `contentId` on the home edge `edgeId`. */
  async open(userId: string, edgeId: string, input: { contentId: string; plan: unknown; days?: unknown }): Promise<RentalOpened> {
    const edge = await this.homeEdge(edgeId);
    const content = await this.deps.contents.get(input.contentId); // unknown_content
    const now = this.deps.clock.now();
    const t = rentalTerms({ plan: input.plan, days: input.days, contentPrice: content.price, now });
    if (!t.ok) throw badRequest(t.code, t.message, { field: t.code === 'invalid_plan' ? 'plan' : 'days' });
    const { terms } = t;
    // A member who never opened a wallet gets it (and its sign-up credit) now, as with orders.
    if (terms.maxFee > 0) await this.deps.wallets?.open(userId);
    // Opening the delivery holds the most it can cost (insufficient_balance refuses it), in one
    // transaction with the rental: both or neither. The hold outlasts the rental and the week an
    // edge away at its end has to report it.
    const row = await this.deps.db.transaction().execute(async (trx) => {
      const delivery = await this.deps.deliveries.open(
        {
          edgeId,
          kind: 'rental',
          contentId: content.id,
          userId,
          payer: 'wallet',
          maxFee: terms.maxFee,
          terms: { plan: terms.plan, days: terms.days, unitPrice: terms.unitPrice, maxFee: terms.maxFee, endsAt: terms.endsAt },
          holdMs: terms.endsAt - now + SYNC_GRACE_MS,
        },
        trx,
      );
      const values: EdgeRentalsTable = {
        id: newId('rnt', 12),
        edge_id: edgeId,
        user_id: userId,
        content_id: content.id,
        delivery_id: delivery.id,
        serial: delivery.serial,
        plan: terms.plan,
        days: terms.days,
        unit_price: terms.unitPrice,
        max_fee: terms.maxFee,
        starts_at: new Date(terms.startsAt),
        ends_at: new Date(terms.endsAt),
        created_at: new Date(now),
      };
      await trx.insertInto('edge_rentals').values(values).execute();
      return values;
    });
    // Days plan: charged now, once (the delivery's one final report, by delivery ID).
    if (terms.plan === 'days') await this.deps.deliveries.report(edgeId, { deliveryId: row.delivery_id, fee: terms.maxFee, final: true });
    return this.opened(this.toRental(row), edge.serveUrl);
  }

  /** The member's rentals, newest first; active ones with their ticket and URLs again. */
  async mine(userId: string): Promise<(Rental & { ticket: string | null; playUrl: string | null; fileUrl: string | null })[]> {
    const rows = await this.deps.db.selectFrom('edge_rentals').selectAll().where('user_id', '=', userId).orderBy('created_at', 'desc').orderBy('id').limit(MINE_LIMIT).execute();
    const out = [];
    for (const row of rows) {
      const r = this.toRental(row);
      if (!r.active) {
        out.push({ ...r, ticket: null, playUrl: null, fileUrl: null });
        continue;
      }
      const edge = await this.deps.edges.get(r.edgeId).catch(() => null);
      const o = edge ? this.opened(r, edge.serveUrl) : null;
      out.push({ ...r, ticket: o?.ticket ?? null, playUrl: o?.playUrl ?? null, fileUrl: o?.fileUrl ?? null });
    }
    return out;
  }

  /** What the home edge has on hand to rent, with the prices of both plans. */
  async catalog(edgeId: string) {
    const edge = await this.homeEdge(edgeId);
    const held = (await this.deps.edges.holdings(edgeId)).filter((h) => h.complete);
    const items = [];
    for (const h of held) {
      const c = await this.deps.contents.get(h.contentId).catch(() => null);
      if (!c) continue;
      items.push({
        contentId: c.id,
        title: c.title,
        price: c.price,
        bytes: h.bytes,
        pricePerDay: unitPrice(c.price, DAY_PRICE_PERCENT),
        pricePerMinute: unitPrice(c.price, MINUTE_PRICE_PERCENT),
        viewingCap: c.price,
      });
    }
    return { edge: { id: edge.id, label: edge.label }, maxDays: MAX_RENTAL_DAYS, items };
  }

  /** Contents the edge must keep now (its rentals still playing): the spine's in-use source. */
  async inUse(edgeId: string): Promise<Set<string>> {
    const rows = await this.deps.db
      .selectFrom('edge_rentals')
      .select('content_id')
      .distinct()
      .where('edge_id', '=', edgeId)
      .where('ends_at', '>', new Date(this.deps.clock.now()))
      .execute();
    return new Set(rows.map((r) => r.content_id));
  }

  /**
   * The tickets of the edge's rentals still playing or ended within SYNC_GRACE_MS (at most 1000,
   * soonest end first): the home edge learns from them the rentals no player showed it yet, so it
   * keeps their content and sends every viewing rental's final report.
   */
  async forEdge(edgeId: string): Promise<string[]> {
    const edge = await this.homeEdge(edgeId);
    const rows = await this.deps.db
      .selectFrom('edge_rentals')
      .selectAll()
      .where('edge_id', '=', edgeId)
      .where('ends_at', '>', new Date(this.deps.clock.now() - SYNC_GRACE_MS))
      .orderBy('ends_at')
      .orderBy('id')
      .limit(SYNC_LIMIT)
      .execute();
    return rows.map((r) => this.opened(this.toRental(r), edge.serveUrl).ticket);
  }

  /** The edge a terminal session is; 403 not_an_edge otherwise. */
  async edgeOf(terminalId: string | null): Promise<string> {
    const edge = terminalId && this.deps.resolveEdge ? await this.deps.resolveEdge(terminalId) : null;
    if (!edge) throw new AppError('not_an_edge', 'This terminal is not registered as an edge.', 403);
    return edge.id;
  }

  /** The rental of a delivery (the deliveries part checks a report's viewing fee against its terms with this). */
  async byDelivery(deliveryId: string): Promise<Rental | null> {
    const row = await this.deps.db.selectFrom('edge_rentals').selectAll().where('delivery_id', '=', deliveryId).executeTakeFirst();
    return row ? this.toRental(row) : null;
  }
}

const edgeParams = { type: 'object', required: ['edgeId'], properties: { edgeId: { type: 'string', minLength: 1, maxLength: 64 } } } as const;

export function rentalRoutes(rentals: RentalService): FastifyPluginAsync {
  return async (app) => {
    app.post<{ Params: { edgeId: string }; Body: { contentId: string; plan: string; days?: number } }>('/edges/:edgeId/rentals', {
      config: { access: 'user' },
      schema: {
        summary: 'S2.5: rent a content on a home edge, by days or by viewing time; answers the ticket and the URLs to play it there',
        tags: ['edges'],
        params: edgeParams,
        body: {
          type: 'object',
          required: ['contentId', 'plan'],
          additionalProperties: false,
          properties: { contentId: { type: 'string', pattern: '^[0-9a-f]{64}$' }, plan: { type: 'string', maxLength: 16 }, days: { type: 'integer', minimum: -1000, maximum: 1000 } },
        },
        response: { 400: errorSchema, 402: errorSchema, 404: errorSchema, 409: errorSchema },
      },
      handler: async (req, reply) => {
        const opened = await rentals.open(req.principal!.userId, req.params.edgeId, req.body);
        reply.code(201);
        return opened;
      },
    });

    app.get('/edges/me/rentals', {
      config: { access: 'terminal' },
      schema: { summary: 'S2.5: the calling home edge’s rental tickets, playing or ended within 7 days (at most 1000)', tags: ['edges'], response: { 403: errorSchema, 409: errorSchema } },
      handler: async (req) => ({ tickets: await rentals.forEdge(await rentals.edgeOf(req.principal!.terminalId)) }),
    });

    app.get('/rentals/mine', {
      config: { access: 'user' },
      schema: { summary: 'S2.5: my rentals on home edges, newest first (at most 200); active ones with their ticket and URLs', tags: ['edges'] },
      handler: async (req) => ({ rentals: await rentals.mine(req.principal!.userId) }),
    });

    app.get<{ Params: { edgeId: string } }>('/edges/:edgeId/catalog', {
      config: { access: 'user' },
      schema: { summary: 'S2.5: what a home edge has on hand to rent, with the prices of both plans', tags: ['edges'], params: edgeParams, response: { 404: errorSchema, 409: errorSchema } },
      handler: async (req) => rentals.catalog(req.params.edgeId),
    });
  };
}

/**
 * The rentals part of the edge domain, for `edgeDomain` (src/edge/index.ts) to compose: the
 * service, its routes, and the spine told which contents each home edge must keep.
 */
export function rentalsPart(deps: {
  db: Db;
  clock: Clock;
  keys: KeyPair;
  originId: string;
  edges: RentalEdges & { byTerminal(terminalId: string): Promise<{ id: string } | null>; addInUseSource(source: (edgeId: string) => Promise<Set<string>>): void };
  contents: RentalContents;
  deliveries: RentalDeliveries;
  wallets?: { open(userId: string): Promise<unknown> };
}) {
  const rentals = new RentalService({ ...deps, resolveEdge: (terminalId) => deps.edges.byTerminal(terminalId) });
  deps.edges.addInUseSource((edgeId) => rentals.inUse(edgeId));
  return { rentals, plugin: rentalRoutes(rentals) };
}
