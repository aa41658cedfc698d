import { badRequest } from '../core/errors.ts';
import type { Tariff } from '../core/tariff-settings.ts';

// Pricing (S1.8, S1.9): what a receipt costs its receiver and how that amount is split.
// Pure arithmetic on integers (minor units); every rule is its own function so it can
// be tested and explained on its own (docs/ledger.md "Pricing"). How a charge is
// split and rounded is decided on a purchase's totals (purchase.ts), never per receipt.

// The settings (Tariff, DEFAULT_TARIFF, checkTariff) live in core beside the configuration that parses them.
export { DEFAULT_TARIFF, checkTariff, type Tariff } from '../core/tariff-settings.ts';

/** What decides the rate of a receipt's bytes (S1.9): when they were delivered, and the receiving user's traffic. */
export interface RateInput {
  /** When the pieces were delivered (ms). */
  at: number;
  /** Bytes the receiving user received / served in the 30 days before. */
  receiverReceived30d: number;
  receiverServed30d: number;
}

/**
 * The S1.9 rate rules that apply to a receipt, each a percent of the list price (they
 * multiply). What a receipt costs is decided on the purchase's totals (purchase.ts).
 * A holder's reliability is not among them: it decides whether a holder is selected
 * (selection.ts), never what its delivered and verified bytes earn (#10 point 4).
 */
export function rateRules(input: RateInput, t: Tariff): Rule[] {
  return [offPeakRule(input.at, t), frequentReceiverRule(input.receiverReceived30d, t), distributorRule(input.receiverServed30d, t)].filter((r): r is Rule => r !== null);
}

/** The rules' combined percent of the list price, e.g. 80 × 90 → 72 (for display). */
export function ratePercent(rules: Rule[]): number {
  // One division of an exact integer product (≤ 100^3), so e.g. 77 × 91 × 87 gives 60.9609, not 60.960899999999995.
  return rules.reduce((product, r) => product * r.percent, 100) / 100 ** rules.length;
}

/** The play price of a content (S1.13): a fixed percent of its list price, rounded down. */
export function playPrice(price: number, t: Tariff): number {
  return Number((BigInt(price) * BigInt(t.playPricePercent)) / 100n);
}

export interface Rule {
  percent: number;
  why: string;
}

/** S1.9: bytes delivered in off-peak hours cost less. */
export function offPeakRule(at: number, t: Tariff): Rule | null {
  const h = hourIn(t.offPeakTimeZone, at);
  const inWindow = t.offPeakStartHour <= t.offPeakEndHour ? h >= t.offPeakStartHour && h < t.offPeakEndHour : h >= t.offPeakStartHour || h < t.offPeakEndHour;
  return inWindow ? { percent: t.offPeakRatePercent, why: `off-peak (${t.offPeakStartHour}:00–${t.offPeakEndHour}:00 ${t.offPeakTimeZone}): ${t.offPeakRatePercent}%` } : null;
}

/** S1.9: users who receive often pay less. */
export function frequentReceiverRule(received30d: number, t: Tariff): Rule | null {
  return received30d >= t.frequentReceiverBytes ? { percent: t.frequentRatePercent, why: `frequent receiver: ${t.frequentRatePercent}%` } : null;
}

/** S1.9: users who distribute to others pay less for what they receive. */
export function distributorRule(served30d: number, t: Tariff): Rule | null {
  return served30d >= t.distributorBytes ? { percent: t.distributorRatePercent, why: `distributor: ${t.distributorRatePercent}%` } : null;
}

/** S1.8: price × bytes / total × the rules' percents, rounded down once. */
export function proRataCharge(price: number, bytes: number, totalBytes: number, percents: number[]): number {
  if (totalBytes <= 0 || bytes <= 0 || price <= 0) return 0;
  let num = BigInt(price) * BigInt(bytes);
  let den = BigInt(totalBytes);
  for (const p of percents) {
    num *= BigInt(p);
    den *= 100n;
  }
  return Number(num / den);
}

const hourFormats = new Map<string, Intl.DateTimeFormat>();

/** The hour of the day (0–23) at `at` in an IANA time zone. */
function hourIn(timeZone: string, at: number): number {
  let f = hourFormats.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-GB', { timeZone, hour: 'numeric', hourCycle: 'h23' });
    } catch {
      throw badRequest('bad_config', `unknown time zone "${timeZone}"`);
    }
    hourFormats.set(timeZone, f);
  }
  return Number(f.formatToParts(at).find((p) => p.type === 'hour')!.value);
}
