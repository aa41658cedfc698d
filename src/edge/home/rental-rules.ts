// S2.5 (docs/edge.md "Home server"): the rules of a rental on a home server, pure (time is passed
// in). Two plans:
// - `days`: N rental days at a price per day; it ends N × 24 h after it starts; the fee is known
//   at the start (N × price per day) and charged once, when the rental is opened.
// - `viewing`: charged per started minute of viewing time, capped; the viewing window ends
//   VIEWING_WINDOW_MS after the start. The fee is computed on the TOTAL viewed seconds (never
//   summed from per-segment or per-report rounded parts) and billed once, by the final report.
// Prices derive from the content's whole price (S1.1): a day costs a tenth of it, a minute a
// hundredth, and neither plan ever costs more than the content itself (the cap).

export type RentalPlan = 'days' | 'viewing';

export const DAY_MS = 24 * 60 * 60 * 1000;
export const MAX_RENTAL_DAYS = 30;
/** A viewing-time rental may be watched for this long after it starts. */
export const VIEWING_WINDOW_MS = 2 * DAY_MS;
/** Share of the content's price per rental day and per viewing minute, in percent. */
export const DAY_PRICE_PERCENT = 10;
export const MINUTE_PRICE_PERCENT = 1;

export interface RentalTerms {
  plan: RentalPlan;
  /** Days plan: how many days (1–30). Viewing plan: null. */
  days: number | null;
  /** Minor units per day (days plan) or per started minute (viewing plan). */
  unitPrice: number;
  /** The most the rental can cost (the delivery's maxFee). */
  maxFee: number;
  startsAt: number;
  endsAt: number;
}

export type TermsResult = { ok: true; terms: RentalTerms } | { ok: false; code: 'invalid_plan' | 'invalid_days' | 'invalid_price'; message: string };

/** ceil(price × percent / 100) in integers, at least 1 for a priced content (0 stays free). */
export function unitPrice(contentPrice: number, percent: number): number {
  if (contentPrice === 0) return 0;
  return Math.max(1, Math.ceil((contentPrice * percent) / 100));
}

/** The terms of a rental of a content priced `contentPrice` opened at `now`. */
export function rentalTerms(input: { plan: unknown; days?: unknown; contentPrice: number; now: number }): TermsResult {
  const { plan, contentPrice, now } = input;
  if (!Number.isSafeInteger(contentPrice) || contentPrice < 0) return { ok: false, code: 'invalid_price', message: `The content's price ${contentPrice} is not a whole number of minor units.` };
  if (plan === 'days') {
    const days = input.days;
    if (typeof days !== 'number' || !Number.isInteger(days) || days < 1 || days > MAX_RENTAL_DAYS) {
      return { ok: false, code: 'invalid_days', message: `A rental by days lasts 1 to ${MAX_RENTAL_DAYS} whole days; give "days".` };
    }
    const perDay = unitPrice(contentPrice, DAY_PRICE_PERCENT);
    return { ok: true, terms: { plan, days, unitPrice: perDay, maxFee: perDay * days, startsAt: now, endsAt: now + days * DAY_MS } };
  }
  if (plan === 'viewing') {
    if (input.days !== undefined && input.days !== null) return { ok: false, code: 'invalid_days', message: 'A rental by viewing time takes no "days": it is charged per started minute watched.' };
    return { ok: true, terms: { plan, days: null, unitPrice: unitPrice(contentPrice, MINUTE_PRICE_PERCENT), maxFee: contentPrice, startsAt: now, endsAt: now + VIEWING_WINDOW_MS } };
  }
  return { ok: false, code: 'invalid_plan', message: 'The plan is "days" (N rental days) or "viewing" (charged per minute watched).' };
}

/** The fee for `viewedSeconds` in all: days plan the full fee; viewing plan per started minute, capped. */
export function rentalFee(terms: RentalTerms, viewedSeconds: number): number {
  if (terms.plan === 'days') return terms.maxFee;
  const seconds = Math.max(0, Math.floor(viewedSeconds));
  const minutes = Math.ceil(seconds / 60);
  return Math.min(terms.maxFee, minutes * terms.unitPrice);
}

/** Whether the rental is over at `now` (its end is the first instant it no longer plays). */
export function rentalOver(terms: Pick<RentalTerms, 'endsAt'>, now: number): boolean {
  return now >= terms.endsAt;
}

export interface RentalReport {
  fee: number;
  viewedSeconds: number;
  final: boolean;
}

/**
 * What the home edge reports for a rental at `now`. Viewing plan: the final report once the
 * rental is over (the fee on the total viewed seconds), before that a progress report (fee so
 * far, not final, bills nothing). Days plan: null: it was charged in full when opened, and a
 * second report could only risk a second charge.
 */
export function rentalReport(terms: RentalTerms, viewedSeconds: number, now: number): RentalReport | null {
  if (terms.plan === 'days') return null;
  const seconds = Math.max(0, Math.floor(viewedSeconds));
  return { fee: rentalFee(terms, seconds), viewedSeconds: seconds, final: rentalOver(terms, now) };
}
