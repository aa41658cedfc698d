import { DELIVERY_TABLES } from './tables-deliveries.ts';

// Tables the edge domain owns (issue #17, docs/edge.md). Other domains ask its services
// (boundaries.test.ts). Placeholder until the spine's tables.ts (edges, holdings, pins) lands:
// keep its list and add DELIVERY_TABLES.
export const OWNED_TABLES = [...DELIVERY_TABLES] as const;
