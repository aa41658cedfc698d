import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AppError } from '../../src/core/errors.ts';
import {
  DEFAULT_TARIFF,
  checkTariff,
  distributorRule,
  frequentReceiverRule,
  offPeakRule,
  playPrice,
  proRataCharge,
  ratePercent,
  rateRules,
  type Tariff,
} from '../../src/ledger/tariff.ts';

// Pricing rules (S1.8, S1.9, S1.13), one rule per test, exact integer amounts.

const T: Tariff = { ...DEFAULT_TARIFF };
const GiB = 1024 ** 3;
const at = (iso: string) => Date.parse(iso);
const badConfig = (e: unknown) => e instanceof AppError && e.code === 'bad_config';

test('the default tariff passes its own checks and leaves the platform a fee', () => {
  assert.equal(checkTariff(DEFAULT_TARIFF), DEFAULT_TARIFF);
  assert.ok(DEFAULT_TARIFF.uploaderPercent + DEFAULT_TARIFF.royaltyPercent < 100);
});

test('offPeakRule: a window wrapping midnight (22 → 6), start included, end excluded', () => {
  const on = { percent: 80, why: 'off-peak (22:00–6:00 UTC): 80%' };
  assert.equal(offPeakRule(at('2024-01-15T12:00:00Z'), T), null);
  assert.equal(offPeakRule(at('2024-01-15T21:59:59.999Z'), T), null);
  assert.deepEqual(offPeakRule(at('2024-01-15T22:00:00Z'), T), on);
  assert.deepEqual(offPeakRule(at('2024-01-15T23:59:59.999Z'), T), on);
  assert.deepEqual(offPeakRule(at('2024-01-16T00:00:00Z'), T), on);
  assert.deepEqual(offPeakRule(at('2024-01-16T03:30:00Z'), T), on);
  assert.deepEqual(offPeakRule(at('2024-01-16T05:59:59.999Z'), T), on);
  assert.equal(offPeakRule(at('2024-01-16T06:00:00Z'), T), null);
});

test('offPeakRule: a window not wrapping midnight (9 → 17)', () => {
  const t = { ...T, offPeakStartHour: 9, offPeakEndHour: 17, offPeakRatePercent: 70 };
  const on = { percent: 70, why: 'off-peak (9:00–17:00 UTC): 70%' };
  assert.equal(offPeakRule(at('2024-01-15T08:59:59.999Z'), t), null);
  assert.deepEqual(offPeakRule(at('2024-01-15T09:00:00Z'), t), on);
  assert.deepEqual(offPeakRule(at('2024-01-15T12:00:00Z'), t), on);
  assert.deepEqual(offPeakRule(at('2024-01-15T16:59:59.999Z'), t), on);
  assert.equal(offPeakRule(at('2024-01-15T17:00:00Z'), t), null);
  assert.equal(offPeakRule(at('2024-01-15T23:00:00Z'), t), null);
  assert.equal(offPeakRule(at('2024-01-15T00:00:00Z'), t), null);
});

test('offPeakRule: hours are local to the zone, on both sides of a DST change (Europe/Berlin)', () => {
  const t = { ...T, offPeakTimeZone: 'Europe/Berlin' };
  const on = { percent: 80, why: 'off-peak (22:00–6:00 Europe/Berlin): 80%' };
  // Winter (CET, UTC+1), the day before clocks go forward on 2024-03-31 01:00 UTC.
  assert.equal(offPeakRule(at('2024-03-30T20:59:59Z'), t), null); // 21:59 local
  assert.deepEqual(offPeakRule(at('2024-03-30T21:00:00Z'), t), on); // 22:00 local
  assert.deepEqual(offPeakRule(at('2024-03-30T04:59:59Z'), t), on); // 05:59 local
  assert.equal(offPeakRule(at('2024-03-30T05:00:00Z'), t), null); // 06:00 local
  // The change itself: 01:30 CET and 03:00 CEST are both off-peak.
  assert.deepEqual(offPeakRule(at('2024-03-31T00:30:00Z'), t), on);
  assert.deepEqual(offPeakRule(at('2024-03-31T01:00:00Z'), t), on);
  // Summer (CEST, UTC+2): the same UTC instants fall an hour later locally.
  assert.equal(offPeakRule(at('2024-04-01T19:59:59Z'), t), null); // 21:59 local
  assert.deepEqual(offPeakRule(at('2024-04-01T20:00:00Z'), t), on); // 22:00 local
  assert.deepEqual(offPeakRule(at('2024-04-01T03:59:59Z'), t), on); // 05:59 local
  assert.equal(offPeakRule(at('2024-04-01T04:00:00Z'), t), null); // 06:00 local
  assert.equal(offPeakRule(at('2024-04-01T04:30:00Z'), t), null); // 06:30 CEST …
  assert.deepEqual(offPeakRule(at('2024-03-30T04:30:00Z'), t), on); // … but 05:30 CET
  // Autumn change (2024-10-27 01:00 UTC, back to UTC+1).
  assert.equal(offPeakRule(at('2024-10-26T19:59:59Z'), t), null); // 21:59 CEST
  assert.deepEqual(offPeakRule(at('2024-10-26T20:00:00Z'), t), on); // 22:00 CEST
  assert.deepEqual(offPeakRule(at('2024-10-28T04:59:59Z'), t), on); // 05:59 CET
  assert.equal(offPeakRule(at('2024-10-28T05:00:00Z'), t), null); // 06:00 CET
  // The same instant is peak time in UTC.
  assert.equal(offPeakRule(at('2024-03-30T21:00:00Z'), T), null);
});

test('frequentReceiverRule: applies at the threshold, not below', () => {
  assert.deepEqual(frequentReceiverRule(10 * GiB, T), { percent: 90, why: 'frequent receiver: 90%' });
  assert.deepEqual(frequentReceiverRule(10 * GiB + 1, T), { percent: 90, why: 'frequent receiver: 90%' });
  assert.equal(frequentReceiverRule(10 * GiB - 1, T), null);
  assert.equal(frequentReceiverRule(0, T), null);
  assert.deepEqual(frequentReceiverRule(500, { ...T, frequentReceiverBytes: 500, frequentRatePercent: 75 }), { percent: 75, why: 'frequent receiver: 75%' });
});

test('distributorRule: applies at the threshold, not below', () => {
  assert.deepEqual(distributorRule(10 * GiB, T), { percent: 85, why: 'distributor: 85%' });
  assert.equal(distributorRule(10 * GiB - 1, T), null);
  assert.equal(distributorRule(0, T), null);
  assert.deepEqual(distributorRule(1000, { ...T, distributorBytes: 1000, distributorRatePercent: 60 }), { percent: 60, why: 'distributor: 60%' });
});

test('proRataCharge: exact pro rata, rounded down once, rules multiply, exact beyond 2^53', () => {
  // 40 % and 60 % of a 1000-unit content.
  assert.equal(proRataCharge(1000, 40, 100, []), 400);
  assert.equal(proRataCharge(1000, 60, 100, []), 600);
  assert.equal(proRataCharge(1000, 100, 100, []), 1000);
  // Rounded down.
  assert.equal(proRataCharge(1000, 1, 3, []), 333);
  assert.equal(proRataCharge(1000, 2, 3, []), 666);
  assert.equal(proRataCharge(999, 1, 1000, []), 0);
  // Percents multiply: 80 % × 90 % = 72 %; 80 × 90 × 85 % of 500 = 306.
  assert.equal(proRataCharge(1000, 100, 100, [80]), 800);
  assert.equal(proRataCharge(1000, 100, 100, [80, 90]), 720);
  assert.equal(proRataCharge(1000, 50, 100, [80, 90, 85]), 306);
  assert.equal(proRataCharge(1000, 100, 100, [0]), 0);
  // Rounded once: 10 × 1/3 × 90 % = 3 (rounding twice would give 2).
  assert.equal(proRataCharge(10, 1, 3, [90]), 3);
  // Nothing to charge.
  assert.equal(proRataCharge(1000, 0, 100, []), 0);
  assert.equal(proRataCharge(1000, 10, 0, []), 0);
  assert.equal(proRataCharge(0, 10, 100, []), 0);
  // Intermediate products far beyond 2^53 stay exact.
  assert.equal(proRataCharge(9e12, 5e12, 1e13, []), 4.5e12);
  assert.equal(proRataCharge(9e12, 5e12, 1e13, [80, 90]), 3_240_000_000_000);
  assert.equal(proRataCharge(9_000_000_997_609, 5_000_000_998_116, 1e13, []), 4_500_001_397_108); // floating point says …109
  assert.equal(proRataCharge(9_000_000_000_001, 4_999_999_999_999, 1e13, [80, 90]), 3_239_999_999_999);
  assert.equal(proRataCharge(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER, []), Number.MAX_SAFE_INTEGER - 1);
});

const rateInput = (over: Partial<Parameters<typeof rateRules>[0]> = {}) => ({ at: at('2024-01-15T12:00:00Z'), receiverReceived30d: 0, receiverServed30d: 0, ...over });

test('rateRules: the rules that apply, in words; the combined rate is exact (no reliability rule: #10)', () => {
  assert.deepEqual(rateRules(rateInput(), T), []);
  assert.deepEqual(rateRules(rateInput({ at: at('2024-01-15T23:00:00Z') }), T), [{ percent: 80, why: 'off-peak (22:00–6:00 UTC): 80%' }]);
  const all = rateRules(rateInput({ at: at('2024-01-15T23:00:00Z'), receiverReceived30d: 10 * GiB, receiverServed30d: 10 * GiB }), T);
  assert.deepEqual(
    all.map((r) => r.why),
    ['off-peak (22:00–6:00 UTC): 80%', 'frequent receiver: 90%', 'distributor: 85%'],
  );
  assert.equal(ratePercent(all), 61.2);
  const odd = { ...T, offPeakRatePercent: 77, frequentRatePercent: 91, distributorRatePercent: 87 };
  assert.equal(ratePercent(rateRules(rateInput({ at: at('2024-01-15T23:00:00Z'), receiverReceived30d: 10 * GiB, receiverServed30d: 10 * GiB }), odd)), 60.9609);
});

test('playPrice: a percent of the list price, rounded down', () => {
  assert.equal(playPrice(1000, T), 100);
  assert.equal(playPrice(999, T), 99);
  assert.equal(playPrice(9, T), 0);
  assert.equal(playPrice(0, T), 0);
  assert.equal(playPrice(7, { ...T, playPricePercent: 25 }), 1);
  assert.equal(playPrice(1000, { ...T, playPricePercent: 0 }), 0);
  assert.equal(playPrice(1000, { ...T, playPricePercent: 100 }), 1000);
  assert.equal(playPrice(Number.MAX_SAFE_INTEGER, T), 900_719_925_474_099);
});

test('checkTariff: refuses shares over 100, rates over 100, bad hours and unknown zones with bad_config', () => {
  const ok = (t: Partial<Tariff>) => assert.doesNotThrow(() => checkTariff({ ...T, ...t }));
  const bad = (t: Partial<Tariff>) => assert.throws(() => checkTariff({ ...T, ...t }), badConfig, JSON.stringify(t));
  ok({ uploaderPercent: 100, royaltyPercent: 0 });
  ok({ uploaderPercent: 0, royaltyPercent: 100 });
  ok({ offPeakRatePercent: 100, frequentRatePercent: 0, playPricePercent: 100, offPeakStartHour: 0, offPeakEndHour: 23 });
  ok({ offPeakTimeZone: 'Europe/Berlin' });
  ok({ offPeakTimeZone: 'America/New_York' });
  bad({ uploaderPercent: 60, royaltyPercent: 50 });
  bad({ uploaderPercent: 101, royaltyPercent: 0 });
  bad({ royaltyPercent: -1 });
  bad({ uploaderPercent: 50.5 });
  bad({ offPeakRatePercent: 101 });
  bad({ frequentRatePercent: 150 });
  bad({ distributorRatePercent: 101 });
  bad({ playPricePercent: 101 });
  bad({ offPeakRatePercent: NaN });
  bad({ offPeakStartHour: 24 });
  bad({ offPeakEndHour: 24 });
  bad({ offPeakStartHour: -1 });
  bad({ offPeakEndHour: 1.5 });
  bad({ offPeakTimeZone: 'Mars/Olympus' });
  bad({ offPeakTimeZone: '' });
});

test('property: proRataCharge is the exact fraction rounded down, never above the pro-rata list price', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.array(fc.integer({ min: 0, max: 100 }), { maxLength: 4 }),
      (price, total, fraction, percents) => {
        const bytes = Math.min(total, Math.floor(total * fraction));
        const charge = proRataCharge(price, bytes, total, percents);
        const exact = (BigInt(price) * BigInt(bytes) * percents.reduce((a, p) => a * BigInt(p), 1n)) / (BigInt(total) * 100n ** BigInt(percents.length));
        assert.equal(BigInt(charge), exact);
        assert.ok(charge <= Number((BigInt(price) * BigInt(bytes)) / BigInt(total)));
      },
    ),
    { numRuns: 2000 },
  );
});
