// S2.2 request routing: which edge serves a receiver. Pure; the caller gathers the edges.
//
//   1. Only delivery edges that are online (reported within EDGE_OFFLINE_MS) and not the
//      receiver itself, nor excluded by it (it gave up on them).
//   2. Holders of the whole content first. Among them the nearest by label, then the least
//      loaded, then the edge ID (stable).
//   3. No holder (and the receiver is not itself an edge): the nearest edge that shares at least the first part of its label with the
//      receiver fetches it from the origin (or a peer edge) while serving (a miss); ties by
//      load. Nobody near: no edge, the origin serves.
//
// Nearness: labels are `/`-separated parts from wide to narrow (`eu/paris/building-7`); two
// labels are as near as the number of leading parts they share. The receiver's label is its
// terminal's region; its network label, when it equals the edge's last part, counts as one
// more shared part (a building's LAN is as near as it gets).

export interface EdgeCandidate {
  edgeId: string;
  terminalId: string;
  label: string;
  serveUrl: string;
  online: boolean;
  /** 0..1, from its last report. */
  load: number;
  /** Holds the whole content. */
  holds: boolean;
}

export interface RouteRequest {
  terminalId: string;
  region: string;
  network: string;
  /** Terminal IDs the receiver gave up on. */
  exclude: ReadonlySet<string>;
  /** Only edges that hold the content (an edge filling its own cache: no chains of misses). */
  holdersOnly?: boolean;
}

export interface RoutedEdge {
  edge: EdgeCandidate;
  nearness: number;
  /** Why this edge, in words. */
  why: string;
}

export function labelParts(label: string): string[] {
  return label
    .split('/')
    .map((p) => p.trim().toLowerCase())
    .filter(Boolean);
}

/** How many leading label parts the two share (+1 when the receiver's network names the edge's last part). */
export function nearness(receiver: { region: string; network: string }, edgeLabel: string): number {
  const a = labelParts(receiver.region);
  const b = labelParts(edgeLabel);
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  const net = receiver.network.trim().toLowerCase();
  if (net && b.length && b[b.length - 1] === net) n++;
  return n;
}

export function routeToEdge(req: RouteRequest, edges: EdgeCandidate[]): RoutedEdge | null {
  const usable = edges.filter((e) => e.online && e.terminalId !== req.terminalId && !req.exclude.has(e.terminalId));
  const scored = usable.map((edge) => ({ edge, nearness: nearness(req, edge.label) }));
  const order = (a: (typeof scored)[number], b: (typeof scored)[number]) =>
    b.nearness - a.nearness || a.edge.load - b.edge.load || (a.edge.edgeId < b.edge.edgeId ? -1 : a.edge.edgeId > b.edge.edgeId ? 1 : 0);
  const holders = scored.filter((s) => s.edge.holds).sort(order);
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  if (holders.length) {
    const best = holders[0];
    const near = best.nearness > 0 ? `nearest holder (${best.nearness} label part(s) shared with your region "${req.region}")` : 'holds the content (none nearer)';
    return { ...best, why: `edge ${best.edge.label}: ${near}, load ${pct(best.edge.load)}` };
  }
  if (req.holdersOnly) return null;
  const near = scored.filter((s) => s.nearness > 0).sort(order);
  if (near.length) {
    const best = near[0];
    return { ...best, why: `edge ${best.edge.label}: nearest edge (${best.nearness} label part(s) shared); it does not hold the content yet and fetches it while serving you` };
  }
  return null;
}
