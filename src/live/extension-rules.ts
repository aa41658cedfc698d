import { MINUTE_MS } from './slots.ts';
import type { BookingStatus } from './tables.ts';

// S3.13: the extension offer, as a pure rule with the time passed in. In the last ten minutes
// of a reconfirmed program, if the channel's next slot is free, the broadcaster may buy the
// following free slots (up to the longest booking allowed, the next booking on the channel and
// what is left of the month's quota). The write (BookingService.extend) asks this again under
// its locks, and the database's exclusion constraint has the last word on overlaps.

/** The offer opens this long before the slot's end (seed 003: "for example, ten minutes"). */
export const EXTENSION_OFFER_MS = 10 * MINUTE_MS;

export type ExtensionCode = 'offered' | 'not_yet' | 'over' | 'not_reconfirmed' | 'next_slot_taken' | 'quota_exceeded';

export interface ExtensionOffer {
  offered: boolean;
  /** Why (not): a stable code and a sentence for the broadcaster. */
  code: ExtensionCode;
  reason: string;
  /** When the offer opens (end − 10 minutes). */
  opensAt: string;
  /** How many slots may be added now (0 when not offered). */
  slots: number;
  slotMinutes: number;
  /** The end after adding one slot (null when not offered). */
  until: string | null;
  /** What each added slot costs: the channel's tariff now. */
  chargePerSlot: number;
}

export interface ExtensionInput {
  status: BookingStatus;
  end: number;
  now: number;
  slotMinutes: number;
  tariffPerSlot: number;
  /** Start of the next non-cancelled booking on the channel at or after `end`, or null. */
  nextTakenFrom: number | null;
  /** Slots of the month's quota not used yet. */
  quotaLeft: number;
  /** The most slots one booking may have (LIVE_MAX_BOOKING_MINUTES / slot length). */
  maxSlots: number;
}

const iso = (t: number) => new Date(t).toISOString();
const hhmm = (t: number) => iso(t).slice(11, 16);

export function extensionOffer(x: ExtensionInput): ExtensionOffer {
  const len = x.slotMinutes * MINUTE_MS;
  const opensAt = x.end - EXTENSION_OFFER_MS;
  const base = { opensAt: iso(opensAt), slotMinutes: x.slotMinutes, chargePerSlot: x.tariffPerSlot, slots: 0, until: null };
  const no = (code: ExtensionCode, reason: string): ExtensionOffer => ({ ...base, offered: false, code, reason });
  if (x.status === 'awaiting_reconfirmation') return no('not_reconfirmed', 'Reconfirm the booking first; an extension is offered in its last ten minutes.');
  if (x.status === 'cancelled' || x.status === 'done' || x.now >= x.end) return no('over', 'The slot has ended; extensions are offered only before the end.');
  if (x.now < opensAt) return no('not_yet', `An extension is offered from ${hhmm(opensAt)} UTC, ten minutes before the slot ends, if the next slot is free.`);
  const free = x.nextTakenFrom === null ? Infinity : Math.floor((x.nextTakenFrom - x.end) / len);
  if (free < 1) return no('next_slot_taken', `The next slot on this channel is booked from ${hhmm(x.nextTakenFrom!)} UTC; the program ends at ${hhmm(x.end)} UTC.`);
  if (x.quotaLeft < 1) return no('quota_exceeded', 'Your monthly quota on this channel is used up, so the program cannot be extended.');
  const slots = Math.max(0, Math.min(free, x.quotaLeft, x.maxSlots));
  return {
    ...base,
    offered: slots > 0,
    code: slots > 0 ? 'offered' : 'quota_exceeded',
    reason:
      slots > 0
        ? `The next slot is free: extend to ${hhmm(x.end + len)} UTC for ${x.tariffPerSlot}${slots > 1 ? ` (up to ${slots} slots, to ${hhmm(x.end + slots * len)} UTC)` : ''}.`
        : 'No slot can be added.',
    slots,
    until: slots > 0 ? iso(x.end + len) : null,
  };
}
