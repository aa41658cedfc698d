import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DAY_MS, MAX_RENTAL_DAYS, rentalFee, rentalOver, rentalReport, rentalTerms, unitPrice, VIEWING_WINDOW_MS, type RentalTerms } from '../../src/edge/home/rental-rules.ts';

// S2.5: a home server's rental rules as pure functions (time passed in), at their boundaries.

const NOW = Date.UTC(2026, 11, 1, 12, 0);
const terms = (r: ReturnType<typeof rentalTerms>): RentalTerms => {
  assert.ok(r.ok, JSON.stringify(r));
  return r.terms;
};

test('S2.5 days plan: N × price per day, ends exactly N × 24 h after it starts', () => {
  const t = terms(rentalTerms({ plan: 'days', days: 3, contentPrice: 1000, now: NOW }));
  assert.deepEqual(t, { plan: 'days', days: 3, unitPrice: 100, maxFee: 300, startsAt: NOW, endsAt: NOW + 3 * DAY_MS });
  assert.equal(rentalOver(t, NOW + 3 * DAY_MS - 1), false);
  assert.equal(rentalOver(t, NOW + 3 * DAY_MS), true);
  // Charged in full at open, whatever was watched; the edge reports nothing (no second charge).
  assert.equal(rentalFee(t, 0), 300);
  assert.equal(rentalFee(t, 99_999), 300);
  assert.equal(rentalReport(t, 120, NOW + 3 * DAY_MS), null);
});

test('S2.5 days plan: 1 to 30 whole days, nothing else', () => {
  assert.ok(rentalTerms({ plan: 'days', days: 1, contentPrice: 10, now: NOW }).ok);
  assert.ok(rentalTerms({ plan: 'days', days: MAX_RENTAL_DAYS, contentPrice: 10, now: NOW }).ok);
  for (const days of [0, -1, MAX_RENTAL_DAYS + 1, 1.5, '2', undefined, null, Number.NaN, Infinity]) {
    const r = rentalTerms({ plan: 'days', days, contentPrice: 10, now: NOW });
    assert.equal(r.ok ? 'ok' : r.code, 'invalid_days', `days=${String(days)}`);
  }
});

test('S2.5 plans other than days/viewing are refused; viewing takes no days', () => {
  for (const plan of ['weeks', '', null, undefined, 1]) {
    const r = rentalTerms({ plan, contentPrice: 10, now: NOW });
    assert.equal(r.ok ? 'ok' : r.code, 'invalid_plan');
  }
  const r = rentalTerms({ plan: 'viewing', days: 2, contentPrice: 10, now: NOW });
  assert.equal(r.ok ? 'ok' : r.code, 'invalid_days');
  const bad = rentalTerms({ plan: 'days', days: 1, contentPrice: 1.5, now: NOW });
  assert.equal(bad.ok ? 'ok' : bad.code, 'invalid_price');
});

test('S2.5 prices: a tenth of the content per day, a hundredth per minute, rounded up, free stays free', () => {
  assert.equal(unitPrice(1000, 10), 100);
  assert.equal(unitPrice(1001, 10), 101);
  assert.equal(unitPrice(1, 10), 1);
  assert.equal(unitPrice(1, 1), 1);
  assert.equal(unitPrice(0, 10), 0);
  const free = terms(rentalTerms({ plan: 'viewing', contentPrice: 0, now: NOW }));
  assert.equal(rentalFee(free, 3600), 0);
});

test('S2.5 viewing plan: per started minute of the TOTAL viewed seconds, capped at the content price', () => {
  const t = terms(rentalTerms({ plan: 'viewing', contentPrice: 1000, now: NOW }));
  assert.deepEqual(t, { plan: 'viewing', days: null, unitPrice: 10, maxFee: 1000, startsAt: NOW, endsAt: NOW + VIEWING_WINDOW_MS });
  assert.equal(rentalFee(t, 0), 0);
  assert.equal(rentalFee(t, 1), 10);
  assert.equal(rentalFee(t, 60), 10);
  assert.equal(rentalFee(t, 61), 20);
  assert.equal(rentalFee(t, 120), 20);
  // The total, not rounded parts: 30 segments of 4 s are 120 s = 2 minutes, not 30 started minutes.
  assert.equal(rentalFee(t, Array.from({ length: 30 }, () => 4).reduce((a, b) => a + b, 0)), 20);
  // The cap: 100 minutes cost the content's price; more costs no more.
  assert.equal(rentalFee(t, 99 * 60 + 1), 1000);
  assert.equal(rentalFee(t, 100 * 60), 1000);
  assert.equal(rentalFee(t, 10 * 3600), 1000);
  assert.equal(rentalFee(t, -5), 0);
});

test('S2.5 viewing plan reports: progress (not final) before the end, the final report at the end', () => {
  const t = terms(rentalTerms({ plan: 'viewing', contentPrice: 1000, now: NOW }));
  assert.deepEqual(rentalReport(t, 61.9, NOW + VIEWING_WINDOW_MS - 1), { fee: 20, viewedSeconds: 61, final: false });
  assert.deepEqual(rentalReport(t, 61.9, NOW + VIEWING_WINDOW_MS), { fee: 20, viewedSeconds: 61, final: true });
});
