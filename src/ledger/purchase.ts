import type { Tariff } from './tariff.ts';

// Charging on totals (S1.8, #10 point 1; docs/ledger.md "Purchases").
//
// A receiver pays for a content as one purchase, however its pieces arrive: in one
// receipt or a thousand, from one source or many, over one transfer or several. The
// purchase keeps exact running totals and every receipt pays the difference between
// what is owed after it and what was paid before it:
//
//   exact charge  E = Σ price · bytes · rate / totalBytes       (rate: the S1.9 rules of that receipt)
//   the receiver has paid         floor(E)
//   the publisher has earned      floor(E · royalty%)
//   the platform fee is           floor(E · fee%)
//   each uploader S has earned    floor(E_S · uploader%)        (E_S: the part of E from S's bytes)
//
// All of it is kept as integer numerators over one denominator (BigInt), so nothing
// rounds until a total is floored, and what a client controls (how it groups receipts,
// retries, the order of sources) changes no total. Bytes beyond the content's size are
// free: a content is paid once (re-fetching it on a new device, or after deleting it,
// costs nothing; REFETCH_POLICY=charge starts a new purchase instead, see reservations).
//
// The floored parts never add up to more than the floored whole (Σ floor(xᵢ) ≤
// floor(Σ xᵢ)), but one receipt may owe a party more than that receipt's charge (the
// charge floor did not move while the royalty's did). So each receipt's charge pays what
// is owed first (uploader, royalty, fee), anything over goes to `platform:rounding`, and
// anything owed beyond the charge is paid out of what this purchase left in rounding
// before (`fromRounding`). Per purchase, rounding holds charged − Σ paid ≥ 0 at every
// step (asserted), a few units at most at the end.

/** Rules that may apply to one receipt (off-peak, frequent receiver, distributor): rates are exact over 100^MAX_RULES. */
export const MAX_RULES = 3;
const RATE_SCALE = 100n ** BigInt(MAX_RULES);

/** A purchase's running totals (one row of ledger_purchases). */
export interface PurchaseTotals {
  price: number;
  totalBytes: number;
  /** Bytes charged so far; never more than totalBytes. */
  paidBytes: number;
  /** Σ price · bytes · rate·100^MAX_RULES: the exact charge is chargeNum / (totalBytes · 100^MAX_RULES). */
  chargeNum: bigint;
  /** What the receiver has paid: floor of the exact charge (self-served shares included, see `selfPaid`). */
  charged: number;
  royaltyPaid: number;
  feePaid: number;
  /** Per uploader account: its part of chargeNum and what it has been paid. */
  shares: Map<string, { num: bigint; paid: number }>;
}

export function newPurchase(price: number, totalBytes: number): PurchaseTotals {
  return { price, totalBytes, paidBytes: 0, chargeNum: 0n, charged: 0, royaltyPaid: 0, feePaid: 0, shares: new Map() };
}

export const isFullyPaid = (p: Pick<PurchaseTotals, 'paidBytes' | 'totalBytes'>) => p.paidBytes >= p.totalBytes;

/** One receipt as the purchase sees it. */
export interface PurchaseStep {
  bytes: number;
  /** Percents of the S1.9 rules that applied (at most MAX_RULES); empty: the list price. */
  ratePercents: number[];
  /** The account the uploader share goes to (the source's owner's wallet, or platform revenue for the origin). */
  uploader: string;
}

/** Money one receipt moves: from the receiver's wallet, and from platform:rounding. */
export interface StepAmounts {
  /** Bytes of this receipt that were charged (the rest was already paid for). */
  chargedBytes: number;
  /** floor(E after) − floor(E before): what this receipt costs the receiver. */
  charge: number;
  fromWallet: { uploader: number; royalty: number; fee: number; rounding: number };
  fromRounding: { uploader: number; royalty: number; fee: number };
}

/**
 * Prices one receipt against the purchase's totals; returns what moves and the totals
 * after it. Pure: the caller applies both or neither.
 */
export function stepPurchase(before: PurchaseTotals, step: PurchaseStep, t: Pick<Tariff, 'uploaderPercent' | 'royaltyPercent'>): { amounts: StepAmounts; after: PurchaseTotals } {
  if (!Number.isSafeInteger(step.bytes) || step.bytes < 0) throw new RangeError(`purchase: bytes ${step.bytes}`);
  if (step.ratePercents.length > MAX_RULES || step.ratePercents.some((p) => !Number.isInteger(p) || p < 0 || p > 100)) throw new RangeError(`purchase: rates ${step.ratePercents}`);
  const chargedBytes = Math.max(0, Math.min(step.bytes, before.totalBytes - before.paidBytes));
  let rate = RATE_SCALE;
  for (const p of step.ratePercents) rate = (rate * BigInt(p)) / 100n; // exact: RATE_SCALE holds a factor 100 per rule
  const add = before.price > 0 ? BigInt(before.price) * BigInt(chargedBytes) * rate : 0n;
  const den = BigInt(Math.max(before.totalBytes, 1)) * RATE_SCALE;
  const feePercent = 100 - t.uploaderPercent - t.royaltyPercent;

  const chargeNum = before.chargeNum + add;
  const share = before.shares.get(step.uploader) ?? { num: 0n, paid: 0 };
  const shareNum = share.num + add;
  const floorOf = (num: bigint, percent = 100) => Number((num * BigInt(percent)) / (den * 100n));
  const charged = floorOf(chargeNum);
  const owed = {
    uploader: floorOf(shareNum, t.uploaderPercent) - share.paid,
    royalty: floorOf(chargeNum, t.royaltyPercent) - before.royaltyPaid,
    fee: floorOf(chargeNum, feePercent) - before.feePaid,
  };
  const charge = charged - before.charged;

  // The charge pays what is owed, in this order; the rest of what is owed comes out of rounding.
  let left = charge;
  const fromWallet = { uploader: 0, royalty: 0, fee: 0, rounding: 0 };
  const fromRounding = { uploader: 0, royalty: 0, fee: 0 };
  for (const part of ['uploader', 'royalty', 'fee'] as const) {
    if (owed[part] < 0) throw new Error(`purchase invariant: ${part} total went down`);
    fromWallet[part] = Math.min(owed[part], left);
    left -= fromWallet[part];
    fromRounding[part] = owed[part] - fromWallet[part];
  }
  fromWallet.rounding = left;

  const shares = new Map(before.shares);
  shares.set(step.uploader, { num: shareNum, paid: share.paid + owed.uploader });
  const after: PurchaseTotals = {
    price: before.price,
    totalBytes: before.totalBytes,
    paidBytes: before.paidBytes + chargedBytes,
    chargeNum,
    charged,
    royaltyPaid: before.royaltyPaid + owed.royalty,
    feePaid: before.feePaid + owed.fee,
    shares,
  };
  assertPurchase(after);
  return { amounts: { chargedBytes, charge, fromWallet, fromRounding }, after };
}

/** What this purchase has left in platform:rounding: what was charged and not paid out. */
export function roundingKept(p: PurchaseTotals): number {
  let paid = p.royaltyPaid + p.feePaid;
  for (const s of p.shares.values()) paid += s.paid;
  return p.charged - paid;
}

// Checked after every step (the ledger core's habit): a breach is a bug in this file.
function assertPurchase(p: PurchaseTotals) {
  const kept = roundingKept(p);
  if (!(kept >= 0)) throw new Error(`purchase invariant: paid out ${-kept} more than was charged`);
  if (p.paidBytes > p.totalBytes || p.paidBytes < 0) throw new Error('purchase invariant: paid bytes out of range');
  if (p.price > 0 && p.paidBytes === p.totalBytes && p.charged > p.price) throw new Error('purchase invariant: charged more than the price');
  if (!Number.isSafeInteger(p.charged)) throw new Error('purchase invariant: charge out of range');
}

/** The most the rest of a purchase can still cost (rates never exceed 100 %): what a reservation must cover. */
export function stillToPay(p: Pick<PurchaseTotals, 'price' | 'charged' | 'paidBytes' | 'totalBytes'>, missingBytes: number): number {
  const unpaid = Math.max(0, Math.min(missingBytes, p.totalBytes - p.paidBytes));
  if (unpaid === 0 || p.price <= 0) return 0;
  // floor(a + b) − floor(a) ≤ ceil(b): the charge of those bytes at the list price, rounded up, covers
  // them whatever fraction the charge so far carries; never more than the rest of the price.
  const exactUp = Number((BigInt(p.price) * BigInt(unpaid) + BigInt(p.totalBytes) - 1n) / BigInt(p.totalBytes));
  return Math.max(0, Math.min(p.price - p.charged, exactUp));
}
