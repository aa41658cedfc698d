import { ORDER_TABLES } from './tables-orders.ts';

// The edge domain's tables (#17). Interim (store server branch): the lead's spine replaces this
// file with the edges registry's tables; its OWNED_TABLES must keep `...ORDER_TABLES`.
export const OWNED_TABLES = [...ORDER_TABLES] as const;
