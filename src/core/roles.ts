// The roles a user may hold. In core because the HTTP access table
// (http.ts) names them; the accounts domain stores and grants them.
export const ROLES = ['member', 'premium', 'publisher', 'store', 'operator'] as const;
export type Role = (typeof ROLES)[number];
