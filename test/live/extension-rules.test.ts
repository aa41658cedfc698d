import assert from 'node:assert/strict';
import { test } from 'node:test';
import { extensionOffer, type ExtensionInput } from '../../src/live/extension-rules.ts';

// S3.13: the extension offer as a pure rule (time passed in).

const M = 60_000;
const END = Date.UTC(2026, 5, 15, 19, 0);
const base: ExtensionInput = { status: 'live', end: END, now: END - 5 * M, slotMinutes: 10, tariffPerSlot: 300, nextTakenFrom: null, quotaLeft: 10, maxSlots: 12 };

test('S3.13: offered from exactly ten minutes before the end until the end', () => {
  assert.equal(extensionOffer({ ...base, now: END - 10 * M - 1 }).code, 'not_yet');
  assert.equal(extensionOffer({ ...base, now: END - 10 * M }).code, 'offered');
  assert.equal(extensionOffer({ ...base, now: END - 1 }).code, 'offered');
  assert.equal(extensionOffer({ ...base, now: END }).code, 'over');
  const o = extensionOffer(base);
  assert.equal(o.until, new Date(END + 10 * M).toISOString());
  assert.equal(o.opensAt, new Date(END - 10 * M).toISOString());
  assert.equal(o.chargePerSlot, 300);
});

test('S3.13: only if the next slot is free; as many slots as are free, within the quota and the longest booking', () => {
  assert.equal(extensionOffer({ ...base, nextTakenFrom: END }).code, 'next_slot_taken');
  assert.equal(extensionOffer({ ...base, nextTakenFrom: END + 9 * M }).code, 'next_slot_taken', 'a part of the next slot taken is taken');
  assert.equal(extensionOffer({ ...base, nextTakenFrom: END + 30 * M }).slots, 3);
  assert.equal(extensionOffer({ ...base, quotaLeft: 2 }).slots, 2);
  assert.equal(extensionOffer({ ...base, quotaLeft: 0 }).code, 'quota_exceeded');
  assert.equal(extensionOffer({ ...base, maxSlots: 4 }).slots, 4);
});

test('S3.13: not for bookings awaiting reconfirmation, cancelled or done; confirmed (between takes) counts', () => {
  assert.equal(extensionOffer({ ...base, status: 'awaiting_reconfirmation' }).code, 'not_reconfirmed');
  assert.equal(extensionOffer({ ...base, status: 'cancelled' }).code, 'over');
  assert.equal(extensionOffer({ ...base, status: 'done' }).code, 'over');
  assert.equal(extensionOffer({ ...base, status: 'confirmed' }).code, 'offered');
  for (const code of ['not_yet', 'next_slot_taken', 'over'] as const) {
    const o = extensionOffer({ ...base, ...(code === 'not_yet' ? { now: END - 20 * M } : code === 'over' ? { now: END } : { nextTakenFrom: END }) });
    assert.equal(o.offered, false);
    assert.equal(o.slots, 0);
    assert.ok(o.reason.length > 20, 'says why');
  }
});
