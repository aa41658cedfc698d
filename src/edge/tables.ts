import { RENTAL_TABLES } from './tables-rentals.ts';

// Tables the edge domain owns (S2, docs/edge.md). The spine's edges tables join this list when
// it lands (keep every part's entries: rentals here, deliveries and orders in their own files).
export const OWNED_TABLES = [...RENTAL_TABLES] as const;
