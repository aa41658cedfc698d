import { connectableWindow } from './slots.ts';
import type { BookingStatus } from './tables.ts';

// S3.9: who may publish, as a pure rule with the time passed in. The RTMP server asks this
// before it acknowledges a publish; every refusal has a stable code (logs, metrics, tests), a
// reason for the operator's log, and a sentence for the broadcaster (ffmpeg prints it).

export type IngestRefusal = 'wrong_app' | 'unknown_key' | 'not_reconfirmed' | 'cancelled' | 'ended' | 'too_early' | 'too_late' | 'already_live' | 'malformed_key' | 'error';

export type IngestDecision = { ok: true; windowEnd: number } | { ok: false; code: IngestRefusal; reason: string; tell: string };

export interface IngestBooking {
  status: BookingStatus;
  startAt: number;
  endAt: number;
}

const iso = (t: number) => new Date(t).toISOString();

/** The RTMP application every key is published under: rtmp://host:port/live/<reservation ID>. */
export const INGEST_APP = 'live';

export function ingestDecision(app: string, booking: IngestBooking | undefined, now: number): IngestDecision {
  const no = (code: IngestRefusal, reason: string, tell = reason): IngestDecision => ({ ok: false, code, reason, tell });
  if (app !== INGEST_APP) return no('wrong_app', `application "${app}" is not "${INGEST_APP}"`, `Publish to rtmp://<host>:<port>/${INGEST_APP}/<reservation ID>.`);
  if (!booking) return no('unknown_key', 'no booking holds this reservation ID', 'Unknown reservation ID: use the one from your booking e-mail.');
  const w = connectableWindow(booking.startAt, booking.endAt);
  switch (booking.status) {
    case 'awaiting_reconfirmation':
      return no('not_reconfirmed', 'the booking is not reconfirmed', 'Reconfirm the booking before broadcasting (cascade reserve confirm).');
    case 'cancelled':
      return no('cancelled', 'the booking is cancelled', 'This booking was cancelled.');
    case 'done':
      return no('ended', 'the program is over', `This program ended; its window closed at ${iso(w.to)}.`);
  }
  if (now < w.from) return no('too_early', `the connectable window opens at ${iso(w.from)}`, `Too early: you can connect from ${iso(w.from)} (5 minutes before the start).`);
  if (now >= w.to) return no('too_late', `the connectable window closed at ${iso(w.to)}`, `Too late: the window closed at ${iso(w.to)}.`);
  return { ok: true, windowEnd: w.to };
}
