import { badRequest } from './errors.ts';

// The pricing settings an operator sets (S1.8, S1.9, S1.13) and their checks. They are
// configuration, so they live in core beside config.ts, which reads them from the
// environment; the rules that apply them are the ledger's (ledger/tariff.ts).

export interface Tariff {
  /** Uploader's share of a charge, percent. */
  uploaderPercent: number;
  /** Publisher's royalty, percent. The platform fee is what remains of 100. */
  royaltyPercent: number;
  /** Off-peak hours [startHour, endHour) in `offPeakTimeZone`, e.g. 22 → 6 wraps midnight. */
  offPeakStartHour: number;
  offPeakEndHour: number;
  offPeakTimeZone: string;
  /** Rate applied off-peak, percent of the list price. */
  offPeakRatePercent: number;
  /** A user who received at least this many bytes in the last 30 days pays `frequentRatePercent`. */
  frequentReceiverBytes: number;
  frequentRatePercent: number;
  /** A user who served others at least this many bytes in the last 30 days pays `distributorRatePercent`. */
  distributorBytes: number;
  distributorRatePercent: number;
  /** Price of playing a content without a download record on the terminal, percent of its price (S1.13). */
  playPricePercent: number;
}

const GiB = 1024 ** 3;

export const DEFAULT_TARIFF: Tariff = {
  uploaderPercent: 50,
  royaltyPercent: 40,
  offPeakStartHour: 22,
  offPeakEndHour: 6,
  offPeakTimeZone: 'UTC',
  offPeakRatePercent: 80,
  frequentReceiverBytes: 10 * GiB,
  frequentRatePercent: 90,
  distributorBytes: 10 * GiB,
  distributorRatePercent: 85,
  playPricePercent: 10,
};

/** Refuses a tariff that could create or lose money (shares over 100 %, rates over 100 %). */
export function checkTariff(t: Tariff): Tariff {
  const pct = (name: keyof Tariff, max = 100) => {
    const v = t[name] as number;
    if (!Number.isInteger(v) || v < 0 || v > max) throw badRequest('bad_config', `tariff ${name} must be a whole percent from 0 to ${max}, got ${v}`);
  };
  (['uploaderPercent', 'royaltyPercent', 'offPeakRatePercent', 'frequentRatePercent', 'distributorRatePercent', 'playPricePercent'] as const).forEach((n) => pct(n));
  if (t.uploaderPercent + t.royaltyPercent > 100) throw badRequest('bad_config', 'uploader share and royalty add up to more than 100 %');
  for (const h of [t.offPeakStartHour, t.offPeakEndHour]) if (!Number.isInteger(h) || h < 0 || h > 23) throw badRequest('bad_config', 'off-peak hours must be 0–23');
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone: t.offPeakTimeZone });
  } catch {
    throw badRequest('bad_config', `unknown time zone "${t.offPeakTimeZone}"`);
  }
  return t;
}
