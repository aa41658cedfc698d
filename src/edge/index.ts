import type { FastifyPluginAsync } from 'fastify';
import type { Clock } from '../core/clock.ts';
import type { Db } from '../db/connection.ts';
import type { TerminalService } from '../terminals/service.ts';
import type { EdgeRouter } from '../transfer/coordinator.ts';
import { edgeRoutes } from './routes.ts';
import { EdgeService } from './service.ts';

// The edge domain (S2, docs/edge.md): the origin's registry of edge servers, their
// placement and routing. The edge process itself is node.ts (`cascade edge`).

export { OWNED_TABLES, type EdgeKind, type PlacementPolicy } from './tables.ts';
export { EdgeService, type Edge } from './service.ts';

/** The registry comes first: the transfer domain routes through it and the ledger asks it who is an edge. */
export function edgeRegistry(deps: { db: Db; clock: Clock; terminals: TerminalService }) {
  const edges = new EdgeService(deps);
  const router: EdgeRouter = {
    route: (receiverId, contentId, exclude) => edges.route(receiverId, contentId, exclude),
    edgeTerminals: (ids) => edges.edgeTerminals(ids),
  };
  return { edges, router };
}

export function edgeDomain(deps: { edges: EdgeService }) {
  const plugin: FastifyPluginAsync = async (app) => {
    edgeRoutes(app, { edges: deps.edges });
  };
  return { edges: deps.edges, plugin };
}
