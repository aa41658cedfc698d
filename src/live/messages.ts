import ical, { ICalCalendarMethod, ICalEventStatus } from 'ical-generator';
import { DateTime } from 'luxon';
import type { OutgoingMail } from '../mail/types.ts';

// S3.5, S3.6, S3.8: the e-mails a booking sends, each with an iCalendar attachment. Times are
// stated in the zone the member booked in, with that zone named, and in UTC.

export interface ProgramFacts {
  bookingId: string;
  channelName: string;
  start: number;
  end: number;
  title: string;
  outline: string;
  openLevel: 'public' | 'password' | 'secret';
  timeZone: string;
  viewerUrl: string;
  broadcaster: string;
}

export function when(p: Pick<ProgramFacts, 'start' | 'end' | 'timeZone'>): string {
  const s = DateTime.fromMillis(p.start, { zone: p.timeZone });
  const e = DateTime.fromMillis(p.end, { zone: p.timeZone });
  const utc = `${DateTime.fromMillis(p.start, { zone: 'utc' }).toFormat('yyyy-LL-dd HH:mm')}–${DateTime.fromMillis(p.end, { zone: 'utc' }).toFormat('HH:mm')} UTC`;
  return `${s.toFormat('cccc d LLLL yyyy, HH:mm')}–${e.toFormat('HH:mm')} (${p.timeZone}; ${utc})`;
}

/** One program as an iCalendar file; the UID is stable so a change or cancel updates the same event. */
export function programIcs(p: ProgramFacts, kind: 'request' | 'cancel', sequence: number): string {
  const cal = ical({ prodId: { company: 'Cascade', product: 'live', language: 'EN' }, method: kind === 'cancel' ? ICalCalendarMethod.CANCEL : ICalCalendarMethod.REQUEST });
  cal.createEvent({
    id: `${p.bookingId}@cascade`,
    sequence,
    start: new Date(p.start),
    end: new Date(p.end),
    stamp: new Date(p.start),
    summary: p.title,
    description: `${p.outline}\n${p.viewerUrl}`,
    url: p.viewerUrl,
    location: `Cascade channel ${p.channelName}`,
    status: kind === 'cancel' ? ICalEventStatus.CANCELLED : ICalEventStatus.CONFIRMED,
  });
  return cal.toString();
}

const ics = (p: ProgramFacts, kind: 'request' | 'cancel', sequence: number) => [
  { filename: 'program.ics', contentType: `text/calendar; charset=utf-8; method=${kind === 'cancel' ? 'CANCEL' : 'REQUEST'}`, content: programIcs(p, kind, sequence) },
];

/** S3.5: to the broadcaster at booking: the reservation ID and the duty to reconfirm. */
export function bookedMail(to: string, p: ProgramFacts, reservationId: string, charge: number, deadline: number): OutgoingMail {
  return {
    kind: 'live.booked',
    ref: p.bookingId,
    to: [to],
    subject: `Reserved: ${p.title} — reconfirm by ${DateTime.fromMillis(deadline, { zone: p.timeZone }).toFormat('d LLL HH:mm')}`,
    text: [
      `Your booking on channel ${p.channelName} is reserved.`,
      ``,
      `Program: ${p.title}`,
      `When: ${when(p)}`,
      `Reservation ID (also your stream key; keep it secret): ${reservationId}`,
      ``,
      `Reconfirm it before ${when({ start: deadline, end: deadline, timeZone: p.timeZone }).replace(/–\d\d:\d\d/g, '')} or it is cancelled automatically:`,
      `  cascade reserve confirm ${reservationId} -o settings.json`,
      `or on the "My channel" page. Reconfirming charges ${charge} and sends your encoder settings.`,
      `Cancelling before reconfirmation is free.`,
    ].join('\n'),
    attachments: ics(p, 'request', 0),
  };
}

/** S3.6: to the broadcaster at reconfirmation, with the signed settings document attached. */
export function confirmedMail(to: string, p: ProgramFacts, charge: number, settingsJson: string): OutgoingMail {
  return {
    kind: 'live.confirmed',
    ref: p.bookingId,
    to: [to],
    subject: `Confirmed: ${p.title}`,
    text: [
      `Your program is confirmed and ${charge} has been charged.`,
      ``,
      `Program: ${p.title}`,
      `When: ${when(p)}`,
      `Channel: ${p.channelName}`,
      `Viewers: ${p.viewerUrl}`,
      ``,
      `Your encoder settings (signed by the origin) are attached as settings.json.`,
    ].join('\n'),
    attachments: [{ filename: 'settings.json', contentType: 'application/json', content: settingsJson }, ...ics(p, 'request', 1)],
  };
}

/** S3.8: to the friend list on confirmation and change. `password` is told for Password/Secret programs when known. */
export function friendsMail(to: string[], p: ProgramFacts, event: 'confirmed' | 'changed', password: string | null, sequence: number): OutgoingMail {
  const lines = [
    `${p.broadcaster} ${event === 'confirmed' ? 'invites you to a live program' : 'has changed a live program you were invited to'}.`,
    ``,
    `Program: ${p.title}`,
    `About: ${p.outline}`,
    `When: ${when(p)}`,
    `Watch: ${p.viewerUrl}`,
  ];
  if (p.openLevel !== 'public') lines.push(password !== null ? `Password: ${password}` : `Password: unchanged (the one you were sent before)`);
  return {
    kind: `live.friends.${event}`,
    ref: p.bookingId,
    to,
    subject: `${event === 'confirmed' ? 'Live' : 'Changed'}: ${p.title}`,
    text: lines.join('\n'),
    attachments: ics(p, 'request', sequence),
  };
}

/** S3.7, S3.8: a cancellation, to the broadcaster or (after confirmation) to the friends. */
export function cancelledMail(to: string[], p: ProgramFacts, audience: 'broadcaster' | 'friends', reason: string, sequence: number): OutgoingMail {
  return {
    kind: audience === 'friends' ? 'live.friends.cancelled' : 'live.cancelled',
    ref: p.bookingId,
    to,
    subject: `Cancelled: ${p.title}`,
    text: [
      audience === 'friends' ? `${p.broadcaster} has cancelled a live program you were invited to.` : `Your booking has been cancelled: ${reason}`,
      ``,
      `Program: ${p.title}`,
      `When: ${when(p)}`,
    ].join('\n'),
    attachments: ics(p, 'cancel', sequence),
  };
}

/** S3.7: to the broadcaster when its booking's details change. */
export function changedMail(to: string, p: ProgramFacts, fields: string[], sequence: number): OutgoingMail {
  return {
    kind: 'live.changed',
    ref: p.bookingId,
    to: [to],
    subject: `Changed: ${p.title}`,
    text: [`Your booking was changed (${fields.join(', ')}).`, ``, `Program: ${p.title}`, `About: ${p.outline}`, `When: ${when(p)}`, `Viewers: ${p.viewerUrl}`].join('\n'),
    attachments: ics(p, 'request', sequence),
  };
}
