import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AppError } from '../../src/core/errors.ts';
import { connectableWindow, dayBounds, monthBounds, priceRange, quotaMonth, slotStarts } from '../../src/live/slots.ts';

// S3.3–S3.6 rules, pure: slot alignment, day bounds in a zone, price and deadline.

const H = 3_600_000;
const M = 60_000;
const limits = { reconfirmLeadMs: 6 * H, maxBookingMs: 4 * H, bookAheadMs: 90 * 24 * H };
const rules = { slotMinutes: 10, tariffPerSlot: 250 };
const now = Date.UTC(2026, 11, 1, 8, 3);

const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof AppError);
    return e.code;
  }
  assert.fail('expected a refusal');
};

describe('slot rules (S3.3–S3.6)', () => {
  test('the charge is slots × tariff and the deadline 6 h before the start', () => {
    const start = Date.UTC(2026, 11, 1, 18, 0);
    const r = priceRange(start, start + 30 * M, rules, limits, now);
    assert.deepEqual(r, { slots: 3, charge: 750, deadline: start - 6 * H, deadlineRule: 'lead' });
  });

  test('booked closer than the lead: reconfirm before the connectable window opens; closer than 5 min: refused', () => {
    const start = Date.UTC(2026, 11, 1, 9, 0);
    const r = priceRange(start, start + 10 * M, rules, limits, now);
    assert.equal(r.deadline, start - 5 * M);
    assert.equal(r.deadlineRule, 'window');
    assert.equal(priceRange(Date.UTC(2026, 11, 1, 8, 10), Date.UTC(2026, 11, 1, 8, 20), rules, limits, now).deadline, Date.UTC(2026, 11, 1, 8, 5));
    assert.equal(code(() => priceRange(Date.UTC(2026, 11, 1, 8, 10), Date.UTC(2026, 11, 1, 8, 20), rules, limits, now + 2 * M)), 'too_soon');
  });

  test('refusals: misaligned, past, over-long, too far ahead, end before start', () => {
    const s = Date.UTC(2026, 11, 2, 10, 0);
    assert.equal(code(() => priceRange(s + 5 * M, s + 20 * M, rules, limits, now)), 'misaligned');
    assert.equal(code(() => priceRange(s, s + 15 * M, rules, limits, now)), 'misaligned');
    assert.equal(code(() => priceRange(Date.UTC(2026, 11, 1, 8, 0), Date.UTC(2026, 11, 1, 8, 10), rules, limits, now)), 'in_the_past');
    assert.equal(code(() => priceRange(s, s + 4 * H + 10 * M, rules, limits, now)), 'too_long');
    assert.equal(code(() => priceRange(s + 91 * 24 * H, s + 91 * 24 * H + 10 * M, rules, limits, now)), 'too_far_ahead');
    assert.equal(code(() => priceRange(s, s, rules, limits, now)), 'invalid_time');
    assert.equal(code(() => priceRange(NaN, s, rules, limits, now)), 'invalid_time');
    // exactly the longest booking is allowed
    assert.equal(priceRange(s, s + 4 * H, rules, limits, now).slots, 24);
  });

  test('a day in a zone: 24 h, or 23/25 h across daylight saving; slots cover it', () => {
    const berlin = dayBounds('2026-12-01', 'Europe/Berlin');
    assert.equal(new Date(berlin.from).toISOString(), '2026-11-30T23:00:00.000Z');
    assert.equal(berlin.to - berlin.from, 24 * H);
    assert.equal(slotStarts(berlin.from, berlin.to, 10).length, 144);
    const spring = dayBounds('2026-03-29', 'Europe/Berlin');
    assert.equal(spring.to - spring.from, 23 * H);
    const autumn = dayBounds('2026-10-25', 'Europe/Berlin');
    assert.equal(autumn.to - autumn.from, 25 * H);
    // a 45-minute zone: its day starts off the 10-minute grid, the first slot is the next boundary
    const nepal = dayBounds('2026-12-01', 'Asia/Kathmandu');
    assert.equal(slotStarts(nepal.from, nepal.to, 10)[0] % (10 * M), 0);
    assert.equal(code(() => dayBounds('2026-13-01', 'UTC')), 'invalid_date');
    assert.equal(code(() => dayBounds('tomorrow', 'UTC')), 'invalid_date');
    assert.equal(code(() => monthBounds('2026-1', 'UTC')), 'invalid_month');
  });

  test('the quota month is the UTC calendar month of the start; the connectable window is start−5 min to end+3 min', () => {
    assert.equal(quotaMonth(Date.UTC(2026, 11, 31, 23, 50)).label, '2026-12');
    assert.equal(quotaMonth(Date.UTC(2027, 0, 1, 0, 0)).label, '2027-01');
    const w = connectableWindow(Date.UTC(2026, 11, 1, 18), Date.UTC(2026, 11, 1, 19));
    assert.equal(w.from, Date.UTC(2026, 11, 1, 17, 55));
    assert.equal(w.to, Date.UTC(2026, 11, 1, 19, 3));
  });
});
