import type { KeyObject } from 'node:crypto';
import { decodeToken, encodeToken } from '../core/signed-token.ts';
import { rentalOver, type RentalTerms } from './home/rental-rules.ts';

// S2.5: the ticket a member's player shows a home edge. The origin signs it when the rental is
// opened (POST /edges/{edgeId}/rentals); the edge checks it with the origin's public key and never
// trusts anything else a player says. It names everything the edge needs to serve, count and
// report the rental without asking the origin: rental, delivery and its serial (the #18 mark),
// user, content, edge, origin, plan and terms, end.

export const RENTAL_TICKET_TYP = 'edge-rental';
/** The origin lists an edge's rentals that ended this long ago too (an edge away at their end still reports them), and the edge remembers the ones it closed as long. */
export const SYNC_GRACE_MS = 7 * 24 * 60 * 60 * 1000;
/** Longer tokens are refused unread (a real one is about 700 characters). */
export const RENTAL_TICKET_MAX = 2048;

/** The rental's terms (rental-rules.ts) and whom and what it is for. */
export interface RentalTicket extends RentalTerms {
  typ: typeof RENTAL_TICKET_TYP;
  rentalId: string;
  deliveryId: string;
  serial: number;
  userId: string;
  contentId: string;
  edgeId: string;
  originId: string;
  /** S2.3: the mark's data bytes the origin minted for this delivery (src/marks/payload.ts); absent: not marked. */
  wm?: string;
}

export function signRentalTicket(t: Omit<RentalTicket, 'typ'>, key: KeyObject): string {
  return encodeToken<RentalTicket>({ typ: RENTAL_TICKET_TYP, ...t }, key);
}

export const ticketTerms = (t: RentalTicket): RentalTerms => ({ plan: t.plan, days: t.days, unitPrice: t.unitPrice, maxFee: t.maxFee, startsAt: t.startsAt, endsAt: t.endsAt });

export type TicketCheck =
  | { ok: true; ticket: RentalTicket }
  | { ok: false; status: 401 | 403; code: 'rental_invalid' | 'rental_over'; message: string };

/** Whether `token` is a rental ticket of this origin for `edgeId` that still plays at `now` (`ended: true`: ended ones pass too). */
export function checkRentalTicket(token: string, originKey: KeyObject | string, edgeId: string, now: number, opts: { ended?: boolean } = {}): TicketCheck {
  const invalid = (message: string): TicketCheck => ({ ok: false, status: 401, code: 'rental_invalid', message });
  if (token.length > RENTAL_TICKET_MAX) return invalid(`A rental ticket is at most ${RENTAL_TICKET_MAX} characters.`);
  const r = decodeToken<RentalTicket>(token, originKey, RENTAL_TICKET_TYP);
  if (!r.ok) return invalid(`This is not a rental ticket of this server's origin (${r.reason.replace('_', ' ')}): rent again from the origin's page.`);
  const t = r.payload;
  const valid =
    typeof t.rentalId === 'string' && typeof t.deliveryId === 'string' && Number.isSafeInteger(t.serial) && typeof t.userId === 'string' &&
    typeof t.contentId === 'string' && /^[0-9a-f]{64}$/.test(t.contentId) && typeof t.edgeId === 'string' && typeof t.originId === 'string' &&
    (t.plan === 'days' || t.plan === 'viewing') && Number.isSafeInteger(t.unitPrice) && Number.isSafeInteger(t.maxFee) &&
    Number.isSafeInteger(t.startsAt) && Number.isSafeInteger(t.endsAt);
  if (!valid) return invalid('The rental ticket lacks a field this server needs: rent again from the origin’s page.');
  if (t.edgeId !== edgeId) return { ok: false, status: 403, code: 'rental_invalid', message: `This ticket is for the home server ${t.edgeId}, not this one (${edgeId}).` };
  if (!opts.ended && rentalOver(t, now)) return { ok: false, status: 403, code: 'rental_over', message: `This rental ended at ${new Date(t.endsAt).toISOString()}; rent it again to watch.` };
  return { ok: true, ticket: t };
}
