import type { FastifyPluginAsync } from 'fastify';
import type { Clock } from '../core/clock.ts';
import type { Db } from '../db/connection.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { Tariff } from '../ledger/tariff.ts';
import type { TerminalService } from '../terminals/service.ts';
import type { EdgeRouter } from '../transfer/coordinator.ts';
import { edgeRoutes } from './routes.ts';
import { EdgeService } from './service.ts';
import { DeliveryService } from './deliveries.ts';
import { deliveryRoutes } from './delivery-routes.ts';
import { edgeOwner } from './queries.ts';
import { rentalsPart, type RentalContents } from './rentals.ts';
import { originIdOf } from './delivery-hook.ts';
import type { KeyPair } from '../core/crypto.ts';
import type { Wallets } from '../ledger/wallets.ts';
import { orderEdges, orderRoutes, OrderService } from './orders.ts';

// The edge domain (S2, docs/edge.md): the origin's registry of edge servers, their
// placement and routing. The edge process itself is node.ts (`cascade edge`).

export { OWNED_TABLES, type EdgeKind, type PlacementPolicy } from './tables.ts';
export { EdgeService, type Edge } from './service.ts';
export { DeliveryService, type Delivery, type DeliveryReport, type OpenDelivery } from './deliveries.ts';
export { rentalsPart, RentalService, type Rental, type RentalDeliveries } from './rentals.ts';
export { OrderService, type Order, type MyOrder } from './orders.ts';

/** The registry comes first: the transfer domain routes through it and the ledger asks it who is an edge. */
export function edgeRegistry(deps: { db: Db; clock: Clock; terminals: TerminalService }) {
  const edges = new EdgeService(deps);
  const router: EdgeRouter = {
    route: (receiverId, contentId, exclude) => edges.route(receiverId, contentId, exclude),
    edgeTerminals: (ids) => edges.edgeTerminals(ids),
  };
  return { edges, router };
}

export function edgeDomain(deps: { edges: EdgeService; db: Db; clock: Clock; ledger: Ledger; wallets: Wallets; tariff: Tariff; keys: KeyPair; contents: RentalContents }) {
  const { edges } = deps;
  // S2.4: the one billing path of home rentals and store orders (deliveries.ts).
  const deliveries = new DeliveryService({
    db: deps.db,
    clock: deps.clock,
    ledger: deps.ledger,
    tariff: deps.tariff,
    edges: { ownerOf: edgeOwner },
  });
  // S2.5: home servers' rentals, billed as deliveries.
  const rentals = rentalsPart({ db: deps.db, clock: deps.clock, keys: deps.keys, originId: originIdOf(deps.keys.publicKeyB64), edges, contents: deps.contents, deliveries, wallets: deps.wallets });
  // S2.6: store orders (ISO/zip packages for pickup or download), billed as deliveries.
  const orders = new OrderService({ db: deps.db, clock: deps.clock, keys: deps.keys, ledger: deps.ledger, wallets: deps.wallets, content: deps.contents, edges: orderEdges(edges), deliveries });
  const plugin: FastifyPluginAsync = async (app) => {
    edgeRoutes(app, { edges });
    await app.register(orderRoutes(orders));
    await app.register(deliveryRoutes({ deliveries, resolveEdge: (terminalId) => edges.byTerminal(terminalId) }));
    await app.register(rentals.plugin);
  };
  return { edges, deliveries, rentals: rentals.rentals, orders, plugin };
}
