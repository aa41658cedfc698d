import { randomInt } from 'node:crypto';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { contentsByIds } from '../content/queries.ts';
import { CONTENT_ID } from '../content/service.ts';
import type { Clock } from '../core/clock.ts';
import type { KeyPair } from '../core/crypto.ts';
import { AppError, conflict, forbidden, notFound } from '../core/errors.ts';
import { errorSchema, type Principal } from '../core/http.ts';
import { decodeToken, encodeToken } from '../core/signed-token.ts';
import type { Db } from '../db/connection.ts';
import { walletAccount } from '../ledger/accounts.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { Wallets } from '../ledger/wallets.ts';
import { markSecrets } from '../marks/keys.ts';
import { ticketMark } from '../marks/payload.ts';
import type { EdgeService } from './service.ts';
import type { DeliveryService } from './deliveries.ts';
import type { Edge } from './service.ts';

/** An edge as orders need it (EdgeService's Edge). */
type EdgeRef = Pick<Edge, 'id' | 'ownerId' | 'kind' | 'label'>;
import type { EdgeOrdersTable, OrderFormat, OrderPayment, OrderState } from './tables-orders.ts';

// S2.6 (#17 point 3; docs/edge.md "Store server"), the origin's half: a member orders a content
// (a live recording is a content like any other, S3.15) from a store edge as an ISO image or a
// zip package, paid from the wallet or at the counter. The order opens a delivery (S2.4) whose
// serial the package's mark carries (#18); the member gets a pickup code and an origin-signed
// ticket (typ `edge-order`) that the edge checks before it hands out the package. The store edge
// (its terminal session, /edges/me/…) claims placed orders, reports them ready, and tells the
// origin when a package was downloaded and when its copy is gone. Store staff see the store's
// orders and hand them over at the counter with the member's code; the delivery is reported then
// (for `counter` orders this is where the store takes the cash: the store's cash account pays).
//
// States: placed → preparing → ready → picked_up; placed/preparing → failed (the edge says why);
// placed/preparing/ready → cancelled (the member). Only `picked_up` is billed, once.

export const TICKET_TYP = 'edge-order';

export interface EdgeDirectory {
  /** An edge by ID (EdgeService, lead), null when unknown. */
  byId(edgeId: string): Promise<EdgeRef | null>;
  /** The edge a terminal is (EdgeService.byTerminal), null when it is not an edge. */
  byTerminal(terminalId: string): Promise<EdgeRef | null>;
}

/** The edge registry as orders ask it: an unknown edge is null. */
export function orderEdges(edges: EdgeService): EdgeDirectory {
  return {
    byId: (id) =>
      edges.get(id).catch((err: unknown) => {
        if ((err as AppError).code === 'unknown_edge') return null;
        throw err;
      }),
    byTerminal: (terminalId) => edges.byTerminal(terminalId),
  };
}

/** The delivery service as orders use it: open at placing, report (bill once) at pickup. */
export type DeliveryBilling = Pick<DeliveryService, 'open' | 'report'>;

/** What the ticket says: the edge hands the package only to its bearer. */
export interface OrderTicket {
  typ: typeof TICKET_TYP;
  orderId: string;
  edgeId: string;
  userId: string;
  contentId: string;
  deliveryId: string;
  serial: number;
  format: OrderFormat;
}

export interface Order {
  id: string;
  edgeId: string;
  userId: string;
  contentId: string;
  title: string;
  /** The content's size: the edge checks its free space against it. */
  contentBytes: number;
  format: OrderFormat;
  payment: OrderPayment;
  price: number;
  state: OrderState;
  reason: string | null;
  deliveryId: string;
  serial: number;
  /** S2.3: the mark's data bytes for this delivery (src/marks/payload.ts), in the store edge's listing only. */
  wm?: string;
  packageBytes: number | null;
  packageSha256: string | null;
  pickedUpBy: string | null;
  pickedUpAt: string | null;
  released: boolean;
  createdAt: string;
  updatedAt: string;
}

/** The orderer's own view: with the pickup code, the ticket and where the edge serves the package. */
export interface MyOrder extends Order {
  pickupCode: string;
  ticket: string;
  /** On the store edge's serve address. */
  downloadPath: string;
}

const OPEN_STATES: OrderState[] = ['placed', 'preparing', 'ready'];
const CODE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
const LIST_LIMIT = 200;

export class OrderService {
  constructor(
    private readonly deps: {
      db: Db;
      clock: Clock;
      keys: KeyPair;
      ledger: Ledger;
      wallets: Wallets;
      /** The catalogue (ContentService): an unknown content is `unknown_content`. */
      content: { get(id: string): Promise<{ id: string; title: string; price: number; totalSize: number }> };
      edges: EdgeDirectory;
      deliveries: DeliveryBilling;
    },
  ) {}

  /** `POST /edges/{edgeId}/orders`. */
  async place(p: Principal, edgeId: string, req: { contentId: string; format: OrderFormat; payment: OrderPayment }): Promise<MyOrder> {
    const { db, clock, content, deliveries } = this.deps;
    const edge = await this.storeEdge(edgeId);
    const item = await content.get(req.contentId);
    await this.refuseOpen(p.userId, edgeId, req.contentId);
    if (req.payment === 'wallet' && item.price > 0) {
      await this.deps.wallets.open(p.userId);
      const { available } = await this.deps.ledger.balance(walletAccount(p.userId).id);
      if (available < item.price) {
        throw new AppError('insufficient_balance', `This content costs ${item.price}; your wallet has ${available} available. Top up first, or choose to pay at the counter.`, 402, { needed: item.price, available });
      }
    }
    const now = new Date(clock.now());
    const id = `ord_${randomCode(16).toLowerCase()}`;
    try {
      const row = await db.transaction().execute(async (trx) => {
        const delivery = await deliveries.open(
          { edgeId: edge.id, kind: 'order', contentId: item.id, userId: p.userId, payer: req.payment, maxFee: item.price, terms: { orderId: id, format: req.format, price: item.price } },
          trx,
        );
        const values: EdgeOrdersTable = {
          id,
          edge_id: edge.id,
          user_id: p.userId,
          content_id: item.id,
          format: req.format,
          payment: req.payment,
          price: item.price,
          state: 'placed',
          reason: null,
          delivery_id: delivery.id,
          serial: delivery.serial,
          pickup_code: randomCode(8),
          package_bytes: null,
          package_sha256: null,
          picked_up_by: null,
          picked_up_at: null,
          released_at: null,
          created_at: now,
          updated_at: now,
        };
        return trx.insertInto('edge_orders').values(values).returningAll().executeTakeFirstOrThrow();
      });
      return this.mine1(row, { title: item.title, totalSize: item.totalSize });
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw orderExists();
      throw err;
    }
  }

  /** `GET /orders/mine`: newest first. */
  async mine(userId: string): Promise<MyOrder[]> {
    const rows = await this.deps.db.selectFrom('edge_orders').selectAll().where('user_id', '=', userId).orderBy('created_at', 'desc').orderBy('id').limit(LIST_LIMIT).execute();
    const facts = await contentsByIds(this.deps.db, rows.map((r) => r.content_id));
    return rows.map((r) => this.mine1(r, facts.get(r.content_id)));
  }

  /** `POST /orders/{id}/cancel`: the member withdraws an order not yet handed over. */
  async cancel(p: Principal, orderId: string): Promise<Order> {
    const row = await this.row(orderId);
    if (row.user_id !== p.userId) throw unknownOrder(orderId);
    const order = await this.transition(row, OPEN_STATES, { state: 'cancelled', reason: 'cancelled by the member' });
    // Its delivery is never billed; the wallet hold it placed lapses at its timeout (DeliveryService has no cancel yet).
    return order;
  }

  /** `GET /edges/{edgeId}/orders`: the store's orders, for its operator and store staff. */
  async forStaff(p: Principal, edgeId: string, state?: OrderState): Promise<Order[]> {
    const edge = await this.storeEdge(edgeId);
    this.checkStaff(p, edge);
    let q = this.deps.db.selectFrom('edge_orders').selectAll().where('edge_id', '=', edge.id);
    if (state) q = q.where('state', '=', state);
    return this.views(await q.orderBy('created_at', 'desc').orderBy('id').limit(LIST_LIMIT).execute());
  }

  /**
   * `POST /edges/{edgeId}/orders/{id}/pickup`: handed over at the counter against the member's
   * code. The delivery is reported (final, the price) first: a refusal (the wallet no longer
   * holds the price) leaves the order ready; a counter order is paid by the store's cash account.
   */
  async pickup(p: Principal, edgeId: string, orderId: string, code: string): Promise<Order> {
    const edge = await this.storeEdge(edgeId);
    this.checkStaff(p, edge);
    const row = await this.row(orderId);
    if (row.edge_id !== edge.id) throw unknownOrder(orderId);
    if (row.state !== 'ready') throw notReady(row);
    if (normaliseCode(code) !== row.pickup_code) throw forbidden('wrong_pickup_code', 'That is not this order’s pickup code: ask the member for the code shown with the order.');
    await this.deps.deliveries.report(edge.id, { deliveryId: row.delivery_id, fee: row.price, bytes: row.package_bytes ?? undefined, final: true });
    return this.transition(row, ['ready'], { state: 'picked_up', picked_up_by: p.userId, picked_up_at: new Date(this.deps.clock.now()) });
  }

  // ——— the store edge's side (its terminal session) ———

  /** The store edge a terminal session is; 403 `not_an_edge` / `not_a_store`. */
  async edgeOf(terminalId: string): Promise<EdgeRef> {
    const edge = await this.deps.edges.byTerminal(terminalId);
    if (!edge) throw forbidden('not_an_edge', 'This terminal is not registered as an edge.');
    if (edge.kind !== 'store') throw forbidden('not_a_store', `Edge ${edge.id} is a ${edge.kind} edge; orders are for store edges.`);
    return edge;
  }

  /** `GET /edges/me/orders`: this edge's orders in these states (and, with `released: false`, whose copy it still has). */
  async forEdge(terminalId: string, states: OrderState[], released?: boolean): Promise<Order[]> {
    const edge = await this.edgeOf(terminalId);
    let q = this.deps.db.selectFrom('edge_orders').selectAll().where('edge_id', '=', edge.id).where('state', 'in', states);
    if (released !== undefined) q = q.where('released_at', released ? 'is not' : 'is', null);
    const items = await this.views(await q.orderBy('created_at').orderBy('id').limit(LIST_LIMIT).execute());
    // S2.3: the edge marks the package with what the origin mints (it cannot mint another serial's).
    const secrets = markSecrets(this.deps.keys);
    return items.map((o) => ({ ...o, wm: ticketMark(secrets, o.serial) }));
  }

  /** The edge takes a placed order (placed → preparing); a second claim is `order_not_placed`. */
  async claim(terminalId: string, orderId: string): Promise<Order> {
    const row = await this.edgeRow(terminalId, orderId);
    return this.transition(row, ['placed'], { state: 'preparing' });
  }

  /** The package is made (preparing → ready). */
  async ready(terminalId: string, orderId: string, pkg: { bytes: number; sha256: string }): Promise<Order> {
    const row = await this.edgeRow(terminalId, orderId);
    return this.transition(row, ['preparing'], { state: 'ready', package_bytes: pkg.bytes, package_sha256: pkg.sha256 });
  }

  /** The edge could not make it (placed/preparing → failed), with its reason. */
  async fail(terminalId: string, orderId: string, reason: string): Promise<Order> {
    const row = await this.edgeRow(terminalId, orderId);
    const order = await this.transition(row, ['placed', 'preparing'], { state: 'failed', reason });
    // Its delivery is never billed; the wallet hold it placed lapses at its timeout (DeliveryService has no cancel yet).
    return order;
  }

  /** The member downloaded the package (ready → picked_up); again: the same answer. */
  async downloaded(terminalId: string, orderId: string): Promise<Order> {
    const row = await this.edgeRow(terminalId, orderId);
    if (row.state === 'picked_up') return this.view(row);
    if (row.payment === 'counter') throw conflict('pay_at_counter', 'This order is paid at the counter: it is handed over there, not downloaded.');
    return this.transition(row, ['ready'], { state: 'picked_up', picked_up_by: 'download', picked_up_at: new Date(this.deps.clock.now()) });
  }

  /** The edge deleted the package and its working copy (and recorded the report); idempotent. */
  async released(terminalId: string, orderId: string): Promise<Order> {
    const row = await this.edgeRow(terminalId, orderId);
    if (row.released_at) return this.view(row);
    if (OPEN_STATES.includes(row.state)) throw conflict('order_open', `Order ${row.id} is ${row.state}: its package is still wanted.`);
    const updated = await this.deps.db
      .updateTable('edge_orders')
      .set({ released_at: new Date(this.deps.clock.now()) })
      .where('id', '=', row.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return this.view(updated);
  }

  /** Checks a ticket as the edge does (for tests and tools). */
  verifyTicket(ticket: string): OrderTicket | null {
    const r = decodeToken<OrderTicket>(ticket, this.deps.keys.publicKey, TICKET_TYP);
    return r.ok ? r.payload : null;
  }

  // ——— helpers ———

  private async storeEdge(edgeId: string): Promise<EdgeRef> {
    const edge = await this.deps.edges.byId(edgeId);
    if (!edge) throw notFound('unknown_edge', `No edge ${edgeId}.`);
    if (edge.kind !== 'store') throw conflict('not_a_store', `Edge ${edge.id} is a ${edge.kind} edge: only store edges take orders.`);
    return edge;
  }

  /** The edge's operator, operators, and users with the `store` role (store staff). */
  private checkStaff(p: Principal, edge: EdgeRef) {
    if (edge.ownerId === p.userId || p.roles.includes('operator') || p.roles.includes('store')) return;
    throw forbidden('not_store_staff', `Only the store's staff (role store) and its operator see and hand over the orders of edge ${edge.id}.`);
  }

  private async refuseOpen(userId: string, edgeId: string, contentId: string) {
    const open = await this.deps.db
      .selectFrom('edge_orders')
      .select('id')
      .where('user_id', '=', userId)
      .where('edge_id', '=', edgeId)
      .where('content_id', '=', contentId)
      .where('state', 'in', OPEN_STATES)
      .executeTakeFirst();
    if (open) throw orderExists(open.id);
  }

  private async row(orderId: string) {
    const row = await this.deps.db.selectFrom('edge_orders').selectAll().where('id', '=', orderId).executeTakeFirst();
    if (!row) throw unknownOrder(orderId);
    return row;
  }

  private async edgeRow(terminalId: string, orderId: string) {
    const edge = await this.edgeOf(terminalId);
    const row = await this.row(orderId);
    if (row.edge_id !== edge.id) throw unknownOrder(orderId);
    return row;
  }

  /** One conditional update: the state moves only from one of `from` (a racing second move is refused). */
  private async transition(row: EdgeOrdersTable, from: OrderState[], set: Partial<EdgeOrdersTable> & { state: OrderState }): Promise<Order> {
    if (!from.includes(row.state)) throw notReady(row, from);
    const updated = await this.deps.db
      .updateTable('edge_orders')
      .set({ ...set, updated_at: new Date(this.deps.clock.now()) })
      .where('id', '=', row.id)
      .where('state', 'in', from)
      .returningAll()
      .executeTakeFirst();
    if (!updated) throw notReady(await this.row(row.id), from);
    return this.view(updated);
  }

  private async views(rows: EdgeOrdersTable[]): Promise<Order[]> {
    const facts = await contentsByIds(this.deps.db, rows.map((r) => r.content_id));
    return rows.map((r) => toOrder(r, facts.get(r.content_id)));
  }

  private async view(row: EdgeOrdersTable): Promise<Order> {
    return (await this.views([row]))[0];
  }

  private mine1(row: EdgeOrdersTable, facts: ContentFacts | undefined): MyOrder {
    const payload: OrderTicket = { typ: TICKET_TYP, orderId: row.id, edgeId: row.edge_id, userId: row.user_id, contentId: row.content_id, deliveryId: row.delivery_id, serial: row.serial, format: row.format };
    // Ed25519 signatures are deterministic: the same order always shows the same ticket.
    const ticket = encodeToken(payload, this.deps.keys.privateKey);
    return { ...toOrder(row, facts), pickupCode: row.pickup_code, ticket, downloadPath: `/orders/${row.id}/package?ticket=${ticket}` };
  }
}

type ContentFacts = { title: string; totalSize: number };

function toOrder(r: EdgeOrdersTable, facts: ContentFacts | undefined): Order {
  return {
    id: r.id,
    edgeId: r.edge_id,
    userId: r.user_id,
    contentId: r.content_id,
    title: facts?.title ?? '',
    contentBytes: facts?.totalSize ?? 0,
    format: r.format,
    payment: r.payment,
    price: Number(r.price),
    state: r.state,
    reason: r.reason,
    deliveryId: r.delivery_id,
    serial: Number(r.serial),
    packageBytes: r.package_bytes === null ? null : Number(r.package_bytes),
    packageSha256: r.package_sha256,
    pickedUpBy: r.picked_up_by,
    pickedUpAt: r.picked_up_at?.toISOString() ?? null,
    released: r.released_at !== null,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

function randomCode(length: number): string {
  let s = '';
  for (let i = 0; i < length; i++) s += CODE_ALPHABET[randomInt(CODE_ALPHABET.length)];
  return s;
}

/** Codes are read out at a counter: case, spaces and dashes do not matter. */
const normaliseCode = (code: string) => code.toUpperCase().replace(/[\s-]/g, '');

const unknownOrder = (id: string) => notFound('unknown_order', `No order ${id} here.`);
const orderExists = (id?: string) => conflict('order_exists', `You already have an open order of this content at this store${id ? ` (${id})` : ''}: pick it up or cancel it first.`);
function notReady(row: EdgeOrdersTable, from: OrderState[] = ['ready']) {
  const why = row.reason ? ` (${row.reason})` : '';
  return new AppError(from.includes('placed') && from.length === 1 ? 'order_not_placed' : 'order_wrong_state', `Order ${row.id} is ${row.state}${why}; this needs it ${from.join(' or ')}.`, 409, { state: row.state });
}

// ——— routes ———

const refusals = { 400: errorSchema, 402: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema } as const;
const orderParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;
const edgeParams = { type: 'object', required: ['edgeId'], properties: { edgeId: { type: 'string', maxLength: 64 } } } as const;
const edgeOrderParams = { type: 'object', required: ['edgeId', 'id'], properties: { edgeId: { type: 'string', maxLength: 64 }, id: { type: 'string', maxLength: 64 } } } as const;
const STATES = ['placed', 'preparing', 'ready', 'picked_up', 'failed', 'cancelled'] as const;

export function orderRoutes(orders: OrderService): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    app.post<{ Params: { edgeId: string }; Body: { contentId: string; format: OrderFormat; payment: OrderPayment } }>('/edges/:edgeId/orders', {
      config: { access: 'user' },
      schema: {
        summary: 'Order a content (or a live recording) from a store edge as an ISO image or a zip package (S2.6)',
        description:
          'Answers the order with its pickup code and the origin-signed ticket the edge asks for at download (GET {edge}/orders/{id}/package?ticket=…). payment wallet: billed from the wallet when picked up or downloaded; counter: paid in cash at the store. Refusals: unknown_edge, unknown_content (404), not_a_store, order_exists (409), insufficient_balance (402), invalid_content_id, invalid_request (400).',
        tags: ['edge'],
        params: edgeParams,
        body: {
          type: 'object',
          required: ['contentId', 'format', 'payment'],
          additionalProperties: false,
          properties: { contentId: { type: 'string', pattern: CONTENT_ID.source, maxLength: 64 }, format: { enum: ['iso', 'zip'] }, payment: { enum: ['wallet', 'counter'] } },
        },
        response: refusals,
      },
      handler: async (req, reply) => reply.code(201).send(await orders.place(req.principal!, req.params.edgeId, req.body)),
    });

    app.get('/orders/mine', {
      config: { access: 'user' },
      schema: { summary: 'My store orders, newest first, with pickup codes and tickets', tags: ['edge'] },
      handler: async (req) => ({ items: await orders.mine(req.principal!.userId) }),
    });

    app.post<{ Params: { id: string } }>('/orders/:id/cancel', {
      config: { access: 'user' },
      schema: { summary: 'Cancel my order before it is handed over (the store deletes its package)', description: 'Refusals: unknown_order (404), order_wrong_state (409).', tags: ['edge'], params: orderParams, response: refusals },
      handler: async (req) => orders.cancel(req.principal!, req.params.id),
    });

    app.get<{ Params: { edgeId: string }; Querystring: { state?: OrderState } }>('/edges/:edgeId/orders', {
      config: { access: 'user' },
      schema: {
        summary: 'A store edge’s orders, newest first (its operator, operators and store staff)',
        description: 'Refusals: unknown_edge (404), not_a_store (409), not_store_staff (403).',
        tags: ['edge'],
        params: edgeParams,
        querystring: { type: 'object', additionalProperties: false, properties: { state: { enum: STATES } } },
        response: refusals,
      },
      handler: async (req) => ({ items: await orders.forStaff(req.principal!, req.params.edgeId, req.query.state) }),
    });

    app.post<{ Params: { edgeId: string; id: string }; Body: { code: string } }>('/edges/:edgeId/orders/:id/pickup', {
      config: { access: 'user' },
      schema: {
        summary: 'Hand a ready order over at the counter against the member’s pickup code; the delivery is billed then (counter orders: the store’s cash account)',
        description: 'Refusals: unknown_edge, unknown_order (404), not_a_store, order_wrong_state (409), not_store_staff, wrong_pickup_code (403), insufficient_balance (402).',
        tags: ['edge'],
        params: edgeOrderParams,
        body: { type: 'object', required: ['code'], additionalProperties: false, properties: { code: { type: 'string', minLength: 1, maxLength: 32 } } },
        response: refusals,
      },
      handler: async (req) => orders.pickup(req.principal!, req.params.edgeId, req.params.id, req.body.code),
    });

    // The store edge itself (its terminal session).
    app.get<{ Querystring: { state?: string; released?: boolean } }>('/edges/me/orders', {
      config: { access: 'terminal' },
      schema: {
        summary: 'This store edge’s orders in the given states (comma-separated; default placed), oldest first; released=false: those whose copy it still holds',
        description: 'Refusals: not_an_edge, not_a_store (403), invalid_request (400).',
        tags: ['edge'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { state: { type: 'string', pattern: `^(${STATES.join('|')})(,(${STATES.join('|')}))*$`, maxLength: 100 }, released: { type: 'boolean' } },
        },
        response: refusals,
      },
      handler: async (req) => ({ items: await orders.forEdge(req.principal!.terminalId!, (req.query.state ?? 'placed').split(',') as OrderState[], req.query.released) }),
    });

    const edgeStep = (step: string, summary: string, run: (terminalId: string, id: string, body: any) => Promise<Order>, body?: object) =>
      app.post<{ Params: { id: string }; Body: any }>(`/edges/me/orders/:id/${step}`, {
        config: { access: 'terminal' },
        schema: { summary, description: 'Refusals: not_an_edge, not_a_store (403), unknown_order (404), order_not_placed, order_wrong_state, order_open, pay_at_counter (409).', tags: ['edge'], params: orderParams, ...(body ? { body } : {}), response: refusals },
        handler: async (req) => run(req.principal!.terminalId!, req.params.id, req.body),
      });
    edgeStep('claim', 'Take a placed order (placed → preparing)', (t, id) => orders.claim(t, id));
    edgeStep('ready', 'The package is made (preparing → ready)', (t, id, b) => orders.ready(t, id, b), {
      type: 'object',
      required: ['bytes', 'sha256'],
      additionalProperties: false,
      properties: { bytes: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }, sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
    });
    edgeStep('fail', 'The order cannot be made (placed/preparing → failed), with the reason the member sees', (t, id, b) => orders.fail(t, id, b.reason), {
      type: 'object',
      required: ['reason'],
      additionalProperties: false,
      properties: { reason: { type: 'string', minLength: 1, maxLength: 500 } },
    });
    edgeStep('downloaded', 'The member downloaded the package (ready → picked_up)', (t, id) => orders.downloaded(t, id));
    edgeStep('released', 'The package and working copy are deleted (after picked_up, failed or cancelled)', (t, id) => orders.released(t, id));
  };
}
