import type { AccountSpec } from './ledger.ts';

// Which ledger account holds whose money (docs/ledger.md "Accounts"). Every domain
// names accounts through these helpers, never by spelling the IDs itself.

/** A user's prepaid wallet: pays downloads and plays, receives upload earnings and top-ups. */
export const walletAccount = (userId: string): AccountSpec => ({ id: `wallet:${userId}`, kind: 'wallet', ownerId: userId, noOverdraft: true });
/** A publisher's royalties, paid out by the platform per period (S1.11). */
export const royaltyAccount = (publisherId: string): AccountSpec => ({ id: `royalty:${publisherId}`, kind: 'royalty', ownerId: publisherId, noOverdraft: true });
/**
 * A store's voucher sales: it goes negative by the face value of the vouchers it issued
 * (what the store owes the platform for the cash it took).
 */
export const storeAccount = (storeUserId: string): AccountSpec => ({ id: `store:${storeUserId}`, kind: 'store', ownerId: storeUserId, noOverdraft: false });
/** Platform fees, and the uploader share of pieces the origin itself delivered. */
export const PLATFORM_REVENUE: AccountSpec = { id: 'platform:revenue', kind: 'platform', noOverdraft: false };
/** Where the remainders of rounding go, so no minor unit is ever lost (S1.8). */
export const PLATFORM_ROUNDING: AccountSpec = { id: 'platform:rounding', kind: 'platform', noOverdraft: false };
/** Money paid out to publishers outside the system (bank transfers). */
export const PLATFORM_PAYOUTS: AccountSpec = { id: 'platform:payouts', kind: 'platform', noOverdraft: false };
/** Face value of issued vouchers not yet redeemed. */
export const VOUCHERS_OUTSTANDING: AccountSpec = { id: 'vouchers:outstanding', kind: 'vouchers', noOverdraft: true };
/** Money reserved by holds (two-phase transfers) before a download starts. */
export const HOLDS: AccountSpec = { id: 'holds', kind: 'holds', noOverdraft: false };
