import { DateTime } from 'luxon';
import { badRequest } from '../core/errors.ts';

// Pure rules of the slot calendar (S3.3–S3.6): slot alignment, a day's bounds in a time zone,
// what a booking costs and when it must be reconfirmed. Time is passed in; nothing here reads a clock.

export const MINUTE_MS = 60_000;
/** S3.9: the broadcaster may connect from 5 minutes before the start to 3 minutes after the end. */
export const CONNECT_BEFORE_MS = 5 * MINUTE_MS;
export const CONNECT_AFTER_MS = 3 * MINUTE_MS;

export interface SlotRules {
  slotMinutes: number;
  tariffPerSlot: number;
}

export interface BookingLimits {
  /** S3.6: reconfirm this long before the start. */
  reconfirmLeadMs: number;
  maxBookingMs: number;
  bookAheadMs: number;
}

/** Whether `zone` is an IANA time zone this runtime knows. */
export function validTimeZone(zone: string): boolean {
  return zone.length <= 64 && DateTime.local().setZone(zone).isValid;
}

/** [from, to) of the calendar day `date` (YYYY-MM-DD) in `zone`; 23 or 25 hours on a DST change. */
export function dayBounds(date: string, zone: string): { from: number; to: number } {
  const start = DateTime.fromISO(date, { zone });
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date) || !start.isValid) throw badRequest('invalid_date', `"${date}" is not a date: use YYYY-MM-DD.`);
  return { from: start.startOf('day').toMillis(), to: start.startOf('day').plus({ days: 1 }).toMillis() };
}

/** [from, to) of the month `month` (YYYY-MM) in `zone`. */
export function monthBounds(month: string, zone: string): { from: number; to: number } {
  const start = DateTime.fromISO(`${month}-01`, { zone });
  if (!/^\d{4}-\d{2}$/.test(month) || !start.isValid) throw badRequest('invalid_month', `"${month}" is not a month: use YYYY-MM.`);
  return { from: start.toMillis(), to: start.plus({ months: 1 }).toMillis() };
}

/** Today's date (YYYY-MM-DD) in `zone` at `now`. */
export function dateIn(now: number, zone: string): string {
  return DateTime.fromMillis(now, { zone }).toISODate()!;
}

/** [from, to) of the UTC calendar month holding `t`: the quota's month (S3.5). */
export function quotaMonth(t: number): { from: number; to: number; label: string } {
  const d = DateTime.fromMillis(t, { zone: 'utc' }).startOf('month');
  return { from: d.toMillis(), to: d.plus({ months: 1 }).toMillis(), label: d.toFormat('yyyy-MM') };
}

/** Slot starts covering [from, to), aligned to the slot length from the epoch. */
export function slotStarts(from: number, to: number, slotMinutes: number): number[] {
  const len = slotMinutes * MINUTE_MS;
  const out: number[] = [];
  for (let t = Math.ceil(from / len) * len; t < to; t += len) out.push(t);
  return out;
}

/**
 * S3.4–S3.6: checks a requested time range against a channel's slots and the limits, and
 * computes what it costs and its reconfirmation deadline. The deadline is `reconfirmLeadMs`
 * before the start; a booking made later than that must be reconfirmed before its connectable
 * window opens (start − 5 min), and one starting sooner than that is refused.
 */
export function priceRange(start: number, end: number, rules: SlotRules, limits: BookingLimits, now: number) {
  const len = rules.slotMinutes * MINUTE_MS;
  if (!Number.isFinite(start) || !Number.isFinite(end)) throw badRequest('invalid_time', 'start and end must be ISO 8601 times, e.g. 2026-12-01T18:00:00Z.');
  if (end <= start) throw badRequest('invalid_time', 'The end must be after the start.', { field: 'end' });
  if (start % len !== 0 || end % len !== 0) {
    throw badRequest('misaligned', `Bookings cover whole slots: this channel's slots are ${rules.slotMinutes} minutes, starting on the hour (UTC); start and end must fall on slot boundaries.`, {
      field: start % len !== 0 ? 'start' : 'end',
      slotMinutes: rules.slotMinutes,
    });
  }
  if (start <= now) throw badRequest('in_the_past', 'That time has already begun: choose a slot that starts later.', { field: 'start' });
  if (end - start > limits.maxBookingMs) {
    throw badRequest('too_long', `One booking may last at most ${limits.maxBookingMs / MINUTE_MS} minutes; book the rest separately.`, { field: 'end', maxMinutes: limits.maxBookingMs / MINUTE_MS });
  }
  if (start - now > limits.bookAheadMs) {
    throw badRequest('too_far_ahead', `Bookings open ${Math.round(limits.bookAheadMs / 86_400_000)} days ahead; choose an earlier date.`, { field: 'start' });
  }
  let deadline = start - limits.reconfirmLeadMs;
  let deadlineRule = 'lead';
  if (deadline <= now) {
    deadline = start - CONNECT_BEFORE_MS;
    deadlineRule = 'window';
    if (deadline <= now) throw badRequest('too_soon', 'This slot starts in less than 5 minutes, too soon to book and reconfirm; choose a later one.', { field: 'start' });
  }
  const slots = (end - start) / len;
  return { slots, charge: slots * rules.tariffPerSlot, deadline, deadlineRule: deadlineRule as 'lead' | 'window' };
}

/** S3.9: when the broadcaster may connect. */
export function connectableWindow(start: number, end: number): { from: number; to: number } {
  return { from: start - CONNECT_BEFORE_MS, to: end + CONNECT_AFTER_MS };
}
