import { createHash } from 'node:crypto';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import { normalizeEmail } from '../core/email-address.ts';
import type { KeyPair } from '../core/crypto.ts';
import { AppError, badRequest, conflict, forbidden, notFound } from '../core/errors.ts';
import type { Principal } from '../core/http.ts';
import { newId, newSecret } from '../core/ids.ts';
import type { Db } from '../db/connection.ts';
import type { Database } from '../db/schema.ts';
import { PLATFORM_REVENUE } from '../ledger/accounts.ts';
import { transferError, type Ledger } from '../ledger/ledger.ts';
import type { Wallets } from '../ledger/wallets.ts';
import type { MailQueue } from '../mail/types.ts';
import type { Channel, Channels } from './channels.ts';
import { bookedMail, cancelledMail, changedMail, confirmedMail, friendsMail, type ProgramFacts } from './messages.ts';
import { openPassword, sealKey, sealPassword } from './sealed-password.ts';
import { signSettings, type SignedSettings } from './settings.ts';
import { extensionOffer, type ExtensionOffer } from './extension-rules.ts';
import { CONNECT_AFTER_MS, connectableWindow, MINUTE_MS, priceRange, quotaMonth, validTimeZone, type BookingLimits } from './slots.ts';
import type { BookingStatus, LiveBookingsTable, OpenLevel } from './tables.ts';

// S3.4–S3.8: quote, book, reconfirm, change and cancel a booking of a channel's slots.
// The database refuses overlapping bookings (exclusion constraint, tables.ts); the quota is
// checked under a per-member lock in the booking's transaction; the charge is one ledger
// transfer at reconfirmation, identified by the booking, so a retry never charges twice; every
// e-mail is queued in the same transaction as the change it reports (nothing sent for a
// refused change, nothing lost for a committed one).

export interface BookingRequest {
  channelId: string;
  start: string;
  end: string;
  openLevel: OpenLevel;
  title: string;
  genre: string;
  outline?: string;
  detail?: string;
  discloseEmail?: boolean;
  discloseWebPage?: boolean;
  password?: string;
  friends?: string[];
  /** The zone the member thinks in (e-mails state times in it); default UTC. */
  timeZone?: string;
}

export interface BookingChange {
  title?: string;
  genre?: string;
  outline?: string;
  detail?: string;
  discloseEmail?: boolean;
  discloseWebPage?: boolean;
  password?: string;
  /** Present only to be refused with a clear reason (S3.7). */
  channelId?: unknown;
  start?: unknown;
  end?: unknown;
  openLevel?: unknown;
}

export interface Quote {
  channel: Channel;
  start: string;
  end: string;
  slots: number;
  tariffPerSlot: number;
  charge: number;
  /** S3.6: reconfirm before this, or the booking is cancelled. */
  deadline: string;
  /** Why the deadline is where it is. */
  deadlineReason: string;
  connectableWindow: { from: string; to: string };
  quota: { month: string; used: number; limit: number; afterBooking: number };
  wallet: { available: number; enough: boolean };
}

export interface BookingEvent {
  at: string;
  event: string;
  status: BookingStatus;
  detail: string;
}

export interface Booking {
  id: string;
  channelId: string;
  channelName: string;
  start: string;
  end: string;
  slots: number;
  openLevel: OpenLevel;
  title: string;
  genre: string;
  outline: string;
  detail: string;
  discloseEmail: boolean;
  discloseWebPage: boolean;
  friends: string[];
  timeZone: string;
  status: BookingStatus;
  tariffPerSlot: number;
  charge: number;
  charged: boolean;
  deadline: string;
  connectableWindow: { from: string; to: string };
  viewerUrl: string;
  cancelReason: string | null;
  viewerPeak: number | null;
  viewerTotal: number | null;
  createdAt: string;
  updatedAt: string;
  history: BookingEvent[];
}

export interface Contact {
  username: string;
  email: string | null;
  webPage: string | null;
}

export interface BookingDeps {
  db: Db;
  clock: Clock;
  keys: KeyPair;
  logger: Logger;
  channels: Channels;
  ledger: Ledger;
  wallets: Wallets;
  mail: MailQueue & { wake(): void };
  contact: (userId: string) => Promise<Contact>;
  /** A program password's hash, at the origin's password cost (accounts, PASSWORD_SCRYPT_N). */
  hashPassword: (password: string) => Promise<string>;
  limits: BookingLimits;
  /** The origin's address for viewers (PUBLIC_URL or where it listens). */
  baseUrl: () => string;
  /** The port RTMP ingest listens on (known once listening). */
  rtmpPort: () => number;
  /** Called after a booking commits with its deadline, so the deadline job looks again if that is sooner. */
  onBooked: (deadline: number) => void;
  /** Called after an extension commits (S3.13): the stream's end moves. */
  onExtended?: (bookingId: string, end: number) => void;
}

/** A booking with what the settings document needs of its channel (joined in selectRows). */
type Row = LiveBookingsTable & { channel_name: string; channel_capacity: number; channel_bitrate_kbps: number; channel_slot_minutes: number };

export const LIMITS = { title: 100, genre: 40, outline: 20, detail: 200, friends: 50, password: [4, 100] } as const;
const chars = (s: string) => [...s].length;
export const reservationKeyHash = (reservationId: string) => createHash('sha256').update(reservationId).digest('hex');

/** The row's slots count against the quota: it holds its slots, or was charged for them. */
const countsForQuota = sql<boolean>`(status <> 'cancelled' or confirmed_at is not null)`;

/** What a booking is priced and checked with, compared by live_book with the channel's row. */
const channelVersion = (c: Channel) => ({ name: c.name, tariff_per_slot: c.tariffPerSlot, slot_minutes: c.slotMinutes, monthly_quota_slots: c.monthlyQuotaSlots });

/** live_book found the channel's copy out of date. */
class ChannelChanged extends Error {}

const channelColumns = (c: Channel) => ({ channel_name: c.name, channel_capacity: c.capacity, channel_bitrate_kbps: c.bitrateKbps, channel_slot_minutes: c.slotMinutes });

export class BookingService {
  private readonly sealSecret: Buffer;

  constructor(private readonly deps: BookingDeps) {
    this.sealSecret = deps.keys.privateKey.export({ format: 'der', type: 'pkcs8' }) as Buffer;
  }

  viewerUrl(bookingId: string): string {
    return `${this.deps.baseUrl()}/#/live/${bookingId}`;
  }

  // ---- checks shared by quote and book ----

  /** S3.4: the request's fields, normalised; refusals name the field. */
  private checkFields(req: BookingRequest) {
    const title = req.title.trim();
    const genre = req.genre.trim();
    const outline = (req.outline ?? '').trim();
    const detail = (req.detail ?? '').trim();
    if (!title) throw badRequest('title_required', 'Give the program a title.', { field: 'title' });
    if (chars(title) > LIMITS.title) throw badRequest('title_too_long', `A title is at most ${LIMITS.title} characters.`, { field: 'title' });
    if (!genre) throw badRequest('genre_required', 'Give the program a genre (e.g. music, talk, sport).', { field: 'genre' });
    if (chars(genre) > LIMITS.genre) throw badRequest('genre_too_long', `A genre is at most ${LIMITS.genre} characters.`, { field: 'genre' });
    if (chars(outline) > LIMITS.outline) throw badRequest('outline_too_long', `The outline is at most ${LIMITS.outline} characters; it has ${chars(outline)}. Put more in the detail.`, { field: 'outline' });
    if (chars(detail) > LIMITS.detail) throw badRequest('detail_too_long', `The detail is at most ${LIMITS.detail} characters; it has ${chars(detail)}.`, { field: 'detail' });
    this.checkPassword(req.openLevel, req.password);
    const friends = [...new Set((req.friends ?? []).map((f) => f.trim().toLowerCase()).filter(Boolean))];
    if (friends.length > LIMITS.friends) throw badRequest('too_many_friends', `A friend list holds at most ${LIMITS.friends} addresses.`, { field: 'friends' });
    // The mail queue's own test of an address: a friend accepted here is one it will take at reconfirmation.
    const bad = friends.find((f) => normalizeEmail(f) === null);
    if (bad) throw badRequest('invalid_friend', `"${bad}" is not an e-mail address.`, { field: 'friends', email: bad });
    const timeZone = req.timeZone ?? 'UTC';
    if (!validTimeZone(timeZone)) throw badRequest('invalid_time_zone', `"${timeZone}" is not a time zone; use an IANA name such as Europe/Berlin.`, { field: 'timeZone' });
    return { title, genre, outline, detail, friends, timeZone };
  }

  private checkPassword(level: OpenLevel | unknown, password: string | undefined) {
    if (level === 'public') {
      if (password !== undefined && password !== '') throw badRequest('password_not_used', 'Public programs have no password; choose the Password or Secret level to set one.', { field: 'password' });
      return;
    }
    if (password === undefined || password === '') {
      throw badRequest('password_required', 'Password and Secret programs need a password for viewers.', { field: 'password' });
    }
    const n = chars(password);
    if (n < LIMITS.password[0] || n > LIMITS.password[1]) {
      throw badRequest('invalid_password', `A program password is ${LIMITS.password[0]}–${LIMITS.password[1]} characters.`, { field: 'password' });
    }
  }

  private requirePremium(p: Principal) {
    if (!p.roles.includes('premium')) {
      throw forbidden('premium_required', 'Reserving a channel is for premium members (S3.1); ask an operator to make your account premium.');
    }
  }

  /** Everything a booking is checked against, without writing: the quote (S3.4) and the booking's pre-checks. */
  private async assess(p: Principal, req: BookingRequest, opts: { quota: boolean; recentChannel?: boolean } = { quota: true }) {
    this.requirePremium(p);
    const fields = this.checkFields(req);
    if (!p.email) {
      throw badRequest('email_required', 'The reservation ID is sent by e-mail: set your address first (cascade user contact --email you@example.org, or your account page).');
    }
    // A booking may use the copy this process read before: live_book checks it against the row.
    const channel = await (opts.recentChannel ? this.deps.channels.recent(req.channelId) : this.deps.channels.get(req.channelId));
    const start = Date.parse(req.start);
    const end = Date.parse(req.end);
    const now = this.deps.clock.now();
    const price = priceRange(start, end, channel, this.deps.limits, now);
    const month = quotaMonth(start);
    // A booking counts its quota only under its lock, in the statement that books it (book(), live_book).
    const used = opts.quota ? await this.quotaUsed(this.deps.db, p.userId, channel.id, month) : 0;
    if (used + price.slots > channel.monthlyQuotaSlots) throw this.overQuota(channel, month.label, used, price.slots);
    return { fields, channel, start, end, now, price, month, used, email: p.email };
  }

  private overQuota(channel: Channel, month: string, used: number, requested: number): AppError {
    return new AppError(
      'quota_exceeded',
      `This would make ${used + requested} slots on ${channel.name} in ${month}; your monthly quota there is ${channel.monthlyQuotaSlots} (${used} used).`,
      409,
      { month, used, limit: channel.monthlyQuotaSlots, requested },
    );
  }

  private async quotaUsed(db: Kysely<Database>, memberId: string, channelId: string, month: { from: number; to: number }): Promise<number> {
    const r = await db
      .selectFrom('live_bookings')
      .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('slots'), sql<number>`0`).as('used'))
      .where('member_id', '=', memberId)
      .where('channel_id', '=', channelId)
      .where('start_at', '>=', new Date(month.from))
      .where('start_at', '<', new Date(month.to))
      .where(countsForQuota)
      .executeTakeFirstOrThrow();
    return Number(r.used);
  }

  /** A free time range: the slots overlapping it that someone holds, for the quote's early answer. */
  private async overlapping(db: Kysely<Database>, channelId: string, start: number, end: number) {
    return db
      .selectFrom('live_bookings')
      .select(['id', 'member_id', 'start_at', 'end_at'])
      .where('channel_id', '=', channelId)
      .where('status', '<>', 'cancelled')
      .where('start_at', '<', new Date(end))
      .where('end_at', '>', new Date(start))
      .orderBy('start_at')
      .limit(1)
      .executeTakeFirst();
  }

  private slotTaken(p: Principal, other: { id: string; member_id: string; start_at: Date; end_at: Date } | undefined): AppError {
    const mine = other?.member_id === p.userId;
    return new AppError(
      'slot_taken',
      mine
        ? `You already hold ${other!.start_at.toISOString()}–${other!.end_at.toISOString()} on this channel (booking ${other!.id}); choose other slots.`
        : 'Some of these slots are already taken on this channel; the calendar shows which are free.',
      409,
      other ? { takenFrom: other.start_at.toISOString(), takenTo: other.end_at.toISOString(), ...(mine ? { bookingId: other.id } : {}) } : {},
    );
  }

  // ---- S3.4 quote ----

  async quote(p: Principal, req: BookingRequest): Promise<Quote> {
    const a = await this.assess(p, req);
    const other = await this.overlapping(this.deps.db, a.channel.id, a.start, a.end);
    if (other) throw this.slotTaken(p, other);
    const wallet = await this.deps.wallets.open(p.userId);
    const available = (await this.deps.ledger.balance(wallet)).available;
    const w = connectableWindow(a.start, a.end);
    return {
      channel: a.channel,
      start: new Date(a.start).toISOString(),
      end: new Date(a.end).toISOString(),
      slots: a.price.slots,
      tariffPerSlot: a.channel.tariffPerSlot,
      charge: a.price.charge,
      deadline: new Date(a.price.deadline).toISOString(),
      deadlineReason:
        a.price.deadlineRule === 'lead'
          ? `${this.deps.limits.reconfirmLeadMs / 3_600_000} hours before the start`
          : `the start is less than ${this.deps.limits.reconfirmLeadMs / 3_600_000} hours away, so before the connectable window opens (5 minutes before the start)`,
      connectableWindow: { from: new Date(w.from).toISOString(), to: new Date(w.to).toISOString() },
      quota: { month: a.month.label, used: a.used, limit: a.channel.monthlyQuotaSlots, afterBooking: a.used + a.price.slots },
      wallet: { available, enough: available >= a.price.charge },
    };
  }

  // ---- S3.5 book ----

  /** Books the slots; the reservation ID is in this answer and the broadcaster's e-mail, nowhere else. */
  async book(p: Principal, req: BookingRequest): Promise<{ booking: Booking; reservationId: string }> {
    try {
      return await this.bookWith(p, req, true);
    } catch (err) {
      if (!(err instanceof ChannelChanged)) throw err;
      // The channel changed since this process read it: once more with the row as it is now.
      this.deps.channels.forget(req.channelId);
      try {
        return await this.bookWith(p, req, false);
      } catch (again) {
        if (!(again instanceof ChannelChanged)) throw again;
        throw conflict('channel_changed', "The channel's settings changed while you were booking; ask for a quote again.");
      }
    }
  }

  private async bookWith(p: Principal, req: BookingRequest, recentChannel: boolean): Promise<{ booking: Booking; reservationId: string }> {
    // Every check but the quota's final count runs before the write: most refusals need no lock (nor a scrypt hash).
    const a = await this.assess(p, req, { quota: false, recentChannel });
    const id = newId('bkg');
    const reservationId = `rsv_${newSecret(20)}`; // 160 random bits: the stream key (S3.9)
    const passwordHash = req.openLevel === 'public' ? null : await this.deps.hashPassword(req.password!);
    const passwordSealed = req.openLevel === 'public' ? null : sealPassword(req.password!, sealKey(this.sealSecret, id));
    const now = new Date(a.now);
    const row: LiveBookingsTable = {
      id,
      channel_id: a.channel.id,
      member_id: p.userId,
      start_at: new Date(a.start),
      end_at: new Date(a.end),
      slots: a.price.slots,
      open_level: req.openLevel,
      title: a.fields.title,
      genre: a.fields.genre,
      outline: a.fields.outline,
      detail: a.fields.detail,
      disclose_email: req.discloseEmail ?? false,
      disclose_web_page: req.discloseWebPage ?? false,
      password_hash: passwordHash,
      password_sealed: passwordSealed,
      friends: a.fields.friends,
      time_zone: a.fields.timeZone,
      reservation_key_hash: reservationKeyHash(reservationId),
      status: 'awaiting_reconfirmation',
      tariff_per_slot: a.channel.tariffPerSlot,
      charge: a.price.charge,
      deadline_at: new Date(a.price.deadline),
      charge_transfer_id: null,
      confirmed_at: null,
      cancel_reason: null,
      viewer_peak: null,
      viewer_total: null,
      created_at: now,
      updated_at: now,
    };
    const written: Row = { ...row, ...channelColumns(a.channel) };
    const booked: BookingEvent = { at: now.toISOString(), event: 'booked', status: 'awaiting_reconfirmation', detail: `${a.price.slots} slots, ${a.price.charge} to pay on reconfirmation` };
    const { db } = this.deps;
    const mail = this.deps.mail.enqueueing(db, bookedMail(a.email, this.facts(written, p.username), reservationId, a.price.charge, a.price.deadline));
    try {
      // One statement, so one round trip and its own transaction: the booked e-mail is queued by
      // it, and live_book (tables.ts) checks the channel is as priced, takes the member's quota
      // lock for this channel, counts the quota, and writes the booking and its first event — or
      // refuses, and nothing is written. The lock lets one booking at a time per member and
      // channel count, so two at once cannot both fit the quota.
      await db
        .with('queued', () => mail.insert)
        .selectNoFrom(
          sql<number>`live_book(${`live-quota:${p.userId}:${a.channel.id}`}, ${new Date(a.month.from)}, ${new Date(a.month.to)}, ${JSON.stringify(channelVersion(a.channel))}::jsonb, ${JSON.stringify(row)}::jsonb, ${booked.detail})`.as('used'),
        )
        .execute();
    } catch (err) {
      const e = err as { code?: string; message?: string; detail?: string };
      if (e.code === '23P01') throw this.slotTaken(p, await this.overlapping(db, a.channel.id, a.start, a.end));
      if (e.code === 'P0001' && e.message === 'live_quota_exceeded') throw this.overQuota(a.channel, a.month.label, Number(e.detail), a.price.slots);
      if (e.code === 'P0001' && e.message === 'live_channel_changed') throw new ChannelChanged();
      throw err;
    }
    this.deps.mail.wake();
    this.deps.onBooked(row.deadline_at.getTime());
    // The answer is what was just written: no need to read it back.
    return { booking: this.toBooking(written, [booked]), reservationId };
  }

  // ---- S3.6 reconfirm ----

  /**
   * Reconfirms the caller's booking holding `reservationId`: charges slots × tariff (one ledger
   * transfer `live:<booking>`), marks it confirmed, e-mails the broadcaster the signed settings and
   * tells the friends. Reconfirming again answers the same settings, charged once.
   */
  async reconfirm(p: Principal, reservationId: string): Promise<{ booking: Booking; settings: SignedSettings; charged: number; already: boolean }> {
    const { db, ledger, wallets, clock } = this.deps;
    const found = await this.rowByKey(db, reservationId);
    if (!found || found.member_id !== p.userId) {
      throw notFound('unknown_reservation', 'No booking of yours has this reservation ID; copy it from the e-mail sent when you booked.');
    }
    if (found.status === 'cancelled') throw conflict('booking_cancelled', `This booking was cancelled (${found.cancel_reason ?? 'cancelled'}); book again.`);
    if (found.status !== 'awaiting_reconfirmation') {
      return { booking: await this.get(p, found.id), settings: this.settings(found, reservationId), charged: 0, already: true };
    }
    const wallet = await wallets.open(p.userId);
    await ledger.ensureAccount(PLATFORM_REVENUE);
    const UNAFFORDABLE = new Error('unaffordable');
    try {
      const outcome = await db.transaction().execute(async (trx) => {
        const row = await this.rowByKey(trx, reservationId, true);
        if (!row) throw new Error('booking vanished');
        if (row.status === 'cancelled') throw conflict('booking_cancelled', `This booking was cancelled (${row.cancel_reason ?? 'cancelled'}); book again.`);
        if (row.status !== 'awaiting_reconfirmation') return { row, already: true };
        const now = clock.now();
        if (now >= row.deadline_at.getTime()) {
          throw conflict('deadline_passed', `The reconfirmation deadline (${row.deadline_at.toISOString()}) has passed; the booking is being cancelled. Book again if the slots are still free.`);
        }
        let transferId: string | null = null;
        if (row.charge > 0) {
          transferId = `live:${row.id}`;
          const [r] = await ledger.apply([{ id: transferId, debit: wallet, credit: PLATFORM_REVENUE.id, amount: row.charge, reason: 'live_slots', ref: row.id }], { trx });
          if (r.status === 'failed') throw r.code === 'insufficient_balance' ? UNAFFORDABLE : transferError(r);
        }
        const updated = await trx
          .updateTable('live_bookings')
          .set({ status: 'confirmed', charge_transfer_id: transferId, confirmed_at: new Date(now), updated_at: new Date(now) })
          .where('id', '=', row.id)
          .returningAll()
          .executeTakeFirstOrThrow();
        await this.event(trx, row.id, 'reconfirmed', 'confirmed', row.charge > 0 ? `charged ${row.charge}` : 'free channel: nothing charged');
        const next: Row = { ...row, ...updated };
        const facts = this.facts(next, p.username);
        const settings = this.settings(next, reservationId);
        if (p.email) await this.deps.mail.enqueue(trx, confirmedMail(p.email, facts, row.charge, JSON.stringify(settings, null, 2)));
        if (next.friends.length > 0) await this.deps.mail.enqueue(trx, friendsMail(next.friends, facts, 'confirmed', this.password(next), 1));
        return { row: next, already: false };
      });
      this.deps.mail.wake();
      return {
        booking: await this.get(p, outcome.row.id),
        settings: this.settings(outcome.row, reservationId),
        charged: outcome.already ? 0 : outcome.row.charge,
        already: outcome.already,
      };
    } catch (err) {
      if (err === UNAFFORDABLE) {
        const available = (await ledger.balance(wallet)).available;
        throw new AppError('insufficient_balance', `Reconfirming charges ${found.charge}; your wallet has ${available} available. Top up (cascade wallet topup CODE) and reconfirm before ${found.deadline_at.toISOString()}.`, 409, {
          needed: found.charge,
          available,
        });
      }
      throw err;
    }
  }

  // ---- S3.7 change and cancel ----

  async change(p: Principal, id: string, patch: BookingChange): Promise<Booking> {
    for (const f of ['channelId', 'start', 'end', 'openLevel'] as const) {
      if (patch[f] !== undefined) {
        throw conflict(
          'cannot_change_time_or_channel',
          f === 'openLevel'
            ? 'The open level cannot change once booked (viewers and friends were told it); cancel this booking and book again.'
            : 'The channel and time of a booking cannot change: cancel this booking and book the new slots.',
        );
      }
    }
    const { db, clock } = this.deps;
    const before = await this.ownRow(p, id);
    const passwordHash = patch.password !== undefined && patch.password !== '' && before.open_level !== 'public' ? await this.deps.hashPassword(patch.password) : undefined;
    await db.transaction().execute(async (trx) => {
      const row = await this.ownRow(p, id, trx, true);
      if (row.status !== 'awaiting_reconfirmation' && row.status !== 'confirmed') {
        throw conflict('booking_closed', `This booking is ${row.status.replace('_', ' ')}; only bookings still to come can change.`);
      }
      const merged = this.checkFields({
        channelId: row.channel_id,
        start: '',
        end: '',
        openLevel: row.open_level,
        title: patch.title ?? row.title,
        genre: patch.genre ?? row.genre,
        outline: patch.outline ?? row.outline,
        detail: patch.detail ?? row.detail,
        password: patch.password ?? (row.open_level === 'public' ? undefined : 'unchanged'),
        friends: row.friends,
        timeZone: row.time_zone,
      });
      const set: Partial<LiveBookingsTable> = {};
      const changed: string[] = [];
      const maybe = <K extends keyof LiveBookingsTable>(field: string, col: K, value: LiveBookingsTable[K] | undefined) => {
        if (value !== undefined && value !== row[col]) {
          (set as any)[col] = value;
          changed.push(field);
        }
      };
      maybe('title', 'title', patch.title === undefined ? undefined : merged.title);
      maybe('genre', 'genre', patch.genre === undefined ? undefined : merged.genre);
      maybe('outline', 'outline', patch.outline === undefined ? undefined : merged.outline);
      maybe('detail', 'detail', patch.detail === undefined ? undefined : merged.detail);
      maybe('discloseEmail', 'disclose_email', patch.discloseEmail);
      maybe('discloseWebPage', 'disclose_web_page', patch.discloseWebPage);
      if (passwordHash) {
        set.password_hash = passwordHash;
        set.password_sealed = sealPassword(patch.password!, sealKey(this.sealSecret, row.id));
        changed.push('password');
      }
      if (changed.length === 0) return;
      const now = new Date(clock.now());
      const updated = await trx.updateTable('live_bookings').set({ ...set, updated_at: now }).where('id', '=', id).returningAll().executeTakeFirstOrThrow();
      await this.event(trx, id, 'changed', row.status, changed.join(', '));
      const next: Row = { ...row, ...updated };
      const facts = this.facts(next, p.username);
      const sequence = await this.sequence(trx, id);
      if (p.email) await this.deps.mail.enqueue(trx, changedMail(p.email, facts, changed, sequence));
      // Friends hear of programs once confirmed (S3.8); the password only if it changed.
      if (row.status === 'confirmed' && next.friends.length > 0) {
        await this.deps.mail.enqueue(trx, friendsMail(next.friends, facts, 'changed', changed.includes('password') ? patch.password! : null, sequence));
      }
    });
    this.deps.mail.wake();
    return this.get(p, id);
  }

  /** S3.7: free before reconfirmation; after it, the charge stands. */
  async cancel(p: Principal, id: string): Promise<{ booking: Booking; refunded: 0; charged: number }> {
    await this.deps.db.transaction().execute(async (trx) => {
      const row = await this.ownRow(p, id, trx, true);
      if (row.status === 'cancelled') return; // cancelling twice is the same cancel
      if (row.status === 'live' || row.status === 'done') throw conflict('booking_closed', `This booking is ${row.status}; it can no longer be cancelled.`);
      await this.cancelIn(trx, row, 'cancelled by the member', p.email, p.username);
    });
    this.deps.mail.wake();
    const booking = await this.get(p, id);
    return { booking, refunded: 0, charged: booking.charged ? booking.charge : 0 };
  }

  /** Cancels `row` (locked by the caller) and queues who must hear of it. */
  private async cancelIn(trx: Transaction<Database>, row: Row, reason: string, email: string | null, broadcaster: string) {
    const now = new Date(this.deps.clock.now());
    await trx.updateTable('live_bookings').set({ status: 'cancelled', cancel_reason: reason, updated_at: now }).where('id', '=', row.id).execute();
    const charged = row.charge_transfer_id !== null;
    await this.event(trx, row.id, 'cancelled', 'cancelled', `${reason}${charged ? `; the charge of ${row.charge} stands` : '; nothing charged'}`);
    const facts = this.facts(row, broadcaster);
    const sequence = (await this.sequence(trx, row.id)) + 1;
    if (email) await this.deps.mail.enqueue(trx, cancelledMail([email], facts, 'broadcaster', reason, sequence));
    if (row.confirmed_at !== null && row.friends.length > 0) await this.deps.mail.enqueue(trx, cancelledMail(row.friends, facts, 'friends', reason, sequence));
  }

  /**
   * S3.6: cancels every booking still unconfirmed at its deadline, and marks confirmed programs
   * whose connectable window has closed as done. Conditional updates: run twice (or by two
   * origins, or after a restart) it changes each booking once. Returns how many it cancelled.
   */
  async sweep(): Promise<{ cancelled: number; done: number }> {
    const { db, clock } = this.deps;
    const now = clock.now();
    let cancelled = 0;
    for (;;) {
      const due = await db
        .selectFrom('live_bookings')
        .select(['id', 'member_id'])
        .where('status', '=', 'awaiting_reconfirmation')
        .where('deadline_at', '<=', new Date(now))
        .orderBy('deadline_at')
        .limit(100)
        .execute();
      if (due.length === 0) break;
      for (const { id, member_id } of due) {
        const c = await this.deps.contact(member_id); // read before the transaction (PGlite: one connection)
        const did = await db.transaction().execute(async (trx) => {
          const row = await this.rowById(trx, id, true);
          if (!row || row.status !== 'awaiting_reconfirmation' || row.deadline_at.getTime() > now) return false;
          await this.cancelIn(trx, row, 'not reconfirmed before the deadline', c.email, c.username);
          return true;
        });
        if (did) cancelled++;
      }
    }
    const ended = await db
      .updateTable('live_bookings')
      .set({ status: 'done', updated_at: new Date(now) })
      .where('status', 'in', ['confirmed', 'live'])
      .where('end_at', '<=', new Date(now - CONNECT_AFTER_MS))
      .returning('id')
      .execute();
    for (const { id } of ended) await this.event(db, id, 'done', 'done', 'the connectable window closed');
    if (cancelled > 0) this.deps.mail.wake();
    return { cancelled, done: ended.length };
  }

  /** When the sweep next has something to do (the earliest deadline or window end), or null. */
  async nextDue(): Promise<number | null> {
    const r = await this.deps.db
      .selectFrom('live_bookings')
      .select((eb) => [
        eb.fn.min(sql<Date>`case when status = 'awaiting_reconfirmation' then deadline_at end`).as('deadline'),
        eb.fn.min(sql<Date>`case when status in ('confirmed', 'live') then end_at end`).as('ends'),
      ])
      .executeTakeFirst();
    const times = [r?.deadline ? new Date(r.deadline).getTime() : null, r?.ends ? new Date(r.ends).getTime() + CONNECT_AFTER_MS : null].filter((t): t is number => t !== null);
    return times.length ? Math.min(...times) : null;
  }

  // ---- S3.9 ingest ----

  /** The booking holding `reservationId` (the stream key), for the ingest's decision. */
  async forIngest(reservationId: string): Promise<Row | undefined> {
    return this.rowByKey(this.deps.db, reservationId);
  }

  /** A publish was accepted: the program is on air. False if the booking can no longer go live (cancelled or done meanwhile). */
  async markLive(id: string, detail: string): Promise<boolean> {
    const { db } = this.deps;
    const r = await db
      .updateTable('live_bookings')
      .set({ status: 'live', updated_at: new Date(this.deps.clock.now()) })
      .where('id', '=', id)
      .where('status', 'in', ['confirmed', 'live'])
      .returning('id')
      .executeTakeFirst();
    if (!r) return false;
    await this.event(db, id, 'live', 'live', detail);
    return true;
  }

  /** The publisher stopped: back to confirmed, so it may reconnect inside its window; the sweep marks it done once the window closes. */
  async markOffAir(id: string, detail: string): Promise<void> {
    const { db } = this.deps;
    const r = await db
      .updateTable('live_bookings')
      .set({ status: 'confirmed', updated_at: new Date(this.deps.clock.now()) })
      .where('id', '=', id)
      .where('status', '=', 'live')
      .returning('id')
      .executeTakeFirst();
    if (r) await this.event(db, id, 'off_air', 'confirmed', detail);
  }

  // ---- S3.13 extension ----

  /** What the channel's next slots allow the booking now: the offer, or why there is none. */
  async extensionFor(row: Row, db: Kysely<Database> = this.deps.db, known?: Channel): Promise<ExtensionOffer> {
    const now = this.deps.clock.now();
    // Inside a transaction the caller passes the channel (PGlite has one connection).
    const channel = known ?? (await this.deps.channels.recent(row.channel_id));
    const end = row.end_at.getTime();
    const input = { status: row.status, end, now, slotMinutes: channel.slotMinutes, tariffPerSlot: channel.tariffPerSlot, nextTakenFrom: null, quotaLeft: 1, maxSlots: 1 };
    // Outside the last ten minutes the answer needs no query (the status asks every second).
    const early = extensionOffer(input);
    if (early.code !== 'offered') return early;
    const len = channel.slotMinutes * MINUTE_MS;
    const next = await db
      .selectFrom('live_bookings')
      .select('start_at')
      .where('channel_id', '=', row.channel_id)
      .where('status', '<>', 'cancelled')
      .where('id', '<>', row.id)
      .where('end_at', '>', new Date(end))
      .orderBy('start_at')
      .limit(1)
      .executeTakeFirst();
    const used = await this.quotaUsed(db, row.member_id, row.channel_id, quotaMonth(row.start_at.getTime()));
    return extensionOffer({
      ...input,
      nextTakenFrom: next ? Math.max(end, next.start_at.getTime()) : null,
      quotaLeft: channel.monthlyQuotaSlots - used,
      maxSlots: Math.max(1, Math.floor(this.deps.limits.maxBookingMs / len)),
    });
  }

  /** The caller's booking's extension offer (S3.13). */
  async extensionOffer(p: Principal, id: string): Promise<ExtensionOffer> {
    return this.extensionFor(await this.ownRow(p, id));
  }

  /**
   * S3.13: adds `slots` slots after the booking's end, or extends it to `until` (a retry with the
   * same `until` changes and charges nothing more). Checked again under the row's lock and the
   * member's quota lock; charged at the channel's tariff now as one ledger transfer named by the
   * booking and its new end; the exclusion constraint refuses an overlap as for any booking.
   */
  async extend(p: Principal, id: string, ask: { slots?: number; until?: string }): Promise<{ booking: Booking; charged: number; already: boolean; end: string }> {
    const { db, ledger, wallets } = this.deps;
    const found = await this.ownRow(p, id);
    const channel = await this.deps.channels.get(found.channel_id);
    const len = channel.slotMinutes * MINUTE_MS;
    const wallet = await wallets.open(p.userId);
    await ledger.ensureAccount(PLATFORM_REVENUE);
    let target: number;
    if (ask.until !== undefined) {
      target = Date.parse(ask.until);
      if (!Number.isFinite(target)) throw badRequest('invalid_time', 'until must be an ISO 8601 time, e.g. 2026-12-01T19:10:00Z.', { field: 'until' });
      if (target <= found.end_at.getTime()) {
        // Already as long as asked: a retry of an extension that went through.
        return { booking: await this.get(p, id), charged: 0, already: true, end: found.end_at.toISOString() };
      }
    } else target = found.end_at.getTime() + (ask.slots ?? 1) * len;
    const slots = (target - found.end_at.getTime()) / len;
    if (!Number.isInteger(slots) || slots < 1) {
      throw badRequest('misaligned', `An extension adds whole slots of ${channel.slotMinutes} minutes after ${found.end_at.toISOString()}.`, { field: 'until', slotMinutes: channel.slotMinutes });
    }
    const UNAFFORDABLE = new Error('unaffordable');
    const amount = slots * channel.tariffPerSlot;
    try {
      const outcome = await db.transaction().execute(async (trx) => {
        const row = await this.rowById(trx, id, true);
        if (!row) throw notFound('unknown_booking', `No booking ${id} of yours.`);
        const end = row.end_at.getTime();
        if (end >= target) return { already: true, end };
        if (end !== found.end_at.getTime()) throw new AppError('extension_not_offered', 'The booking changed meanwhile; look at the offer again.', 409, { code: 'changed' });
        await sql`select pg_advisory_xact_lock(hashtext(${`live-quota:${row.member_id}:${row.channel_id}`}))`.execute(trx);
        const offer = await this.extensionFor(row, trx, channel);
        if (!offer.offered) throw new AppError('extension_not_offered', offer.reason, 409, { code: offer.code, opensAt: offer.opensAt });
        if (slots > offer.slots) {
          throw new AppError('extension_too_long', `At most ${offer.slots} slot${offer.slots > 1 ? 's' : ''} can be added now (to ${new Date(end + offer.slots * len).toISOString()}).`, 409, { slots: offer.slots });
        }
        if (amount > 0) {
          const [r] = await ledger.apply([{ id: `live-ext:${row.id}:${target}`, debit: wallet, credit: PLATFORM_REVENUE.id, amount, reason: 'live_slots', ref: row.id }], { trx });
          if (r.status === 'failed') throw r.code === 'insufficient_balance' ? UNAFFORDABLE : transferError(r);
        }
        await trx
          .updateTable('live_bookings')
          .set({ end_at: new Date(target), slots: row.slots + slots, charge: row.charge + amount, updated_at: new Date(this.deps.clock.now()) })
          .where('id', '=', row.id)
          .execute();
        await this.event(trx, row.id, 'extended', row.status, `extended by ${slots} slot${slots > 1 ? 's' : ''} to ${new Date(target).toISOString()}; charged ${amount}`);
        return { already: false, end: target };
      });
      if (!outcome.already) this.deps.onExtended?.(id, outcome.end);
      return { booking: await this.get(p, id), charged: outcome.already ? 0 : amount, already: outcome.already, end: new Date(outcome.end).toISOString() };
    } catch (err) {
      if (err === UNAFFORDABLE) {
        const available = (await ledger.balance(wallet)).available;
        throw new AppError('insufficient_balance', `Extending by ${slots} slot${slots > 1 ? 's' : ''} charges ${amount}; your wallet has ${available} available.`, 409, { needed: amount, available });
      }
      if ((err as { code?: string }).code === '23P01') throw this.slotTaken(p, await this.overlapping(db, found.channel_id, found.end_at.getTime(), target));
      throw err;
    }
  }

  // ---- reading ----

  async mine(p: Principal, opts: { limit: number; status?: BookingStatus }): Promise<Booking[]> {
    let q = this.selectRows(this.deps.db).where('b.member_id', '=', p.userId).orderBy('b.start_at', 'desc').limit(opts.limit);
    if (opts.status) q = q.where('b.status', '=', opts.status);
    return this.withHistory(await q.execute());
  }

  /** The caller's booking (an operator may read any). */
  async get(p: Principal, id: string): Promise<Booking> {
    const row = await this.rowById(this.deps.db, id);
    if (!row || (row.member_id !== p.userId && !p.roles.includes('operator'))) throw notFound('unknown_booking', `No booking ${id} of yours.`);
    return (await this.withHistory([row]))[0];
  }

  /** Bookings on the channels overlapping [from, to), not cancelled: the calendar and guide read these. */
  async between(from: number, to: number): Promise<Row[]> {
    return this.selectRows(this.deps.db)
      .where('b.status', '<>', 'cancelled')
      .where('b.start_at', '<', new Date(to))
      .where('b.end_at', '>', new Date(from))
      .orderBy('b.start_at')
      .limit(10_000)
      .execute();
  }

  /** One channel's bookings overlapping [from, to), reconfirmed and not cancelled, in order (S3.14: what the channel carries). */
  async onChannel(channelId: string, from: number, to: number): Promise<Row[]> {
    return this.selectRows(this.deps.db)
      .where('b.channel_id', '=', channelId)
      .where('b.status', 'in', ['confirmed', 'live', 'done'])
      .where('b.start_at', '<', new Date(to))
      .where('b.end_at', '>', new Date(from))
      .orderBy('b.start_at')
      .limit(200)
      .execute();
  }

  async rowForProgram(id: string): Promise<Row | undefined> {
    return this.rowById(this.deps.db, id);
  }

  /** Bookings of one member from `from` on, for the calendar feed. */
  async ofMember(memberId: string, from: number): Promise<Row[]> {
    return this.selectRows(this.deps.db).where('b.member_id', '=', memberId).where('b.end_at', '>', new Date(from)).orderBy('b.start_at').limit(1000).execute();
  }

  facts(row: Row, broadcaster: string): ProgramFacts {
    return {
      bookingId: row.id,
      channelName: row.channel_name,
      start: row.start_at.getTime(),
      end: row.end_at.getTime(),
      title: row.title,
      outline: row.outline,
      openLevel: row.open_level,
      timeZone: row.time_zone,
      viewerUrl: this.viewerUrl(row.id),
      broadcaster,
    };
  }

  private password(row: LiveBookingsTable): string | null {
    return row.password_sealed ? openPassword(row.password_sealed, sealKey(this.sealSecret, row.id)) : null;
  }

  /** S3.6: the signed settings document for a confirmed booking. */
  private settings(row: Row, reservationId: string): SignedSettings {
    const base = this.deps.baseUrl();
    const host = new URL(base).hostname;
    const server = `rtmp://${host}:${this.deps.rtmpPort()}/live`;
    const w = connectableWindow(row.start_at.getTime(), row.end_at.getTime());
    const channel = { id: row.channel_id, name: row.channel_name, capacity: row.channel_capacity, bitrateKbps: row.channel_bitrate_kbps, slotMinutes: row.channel_slot_minutes };
    return signSettings(
      {
        type: 'cascade.live.settings',
        version: 1,
        reservationId,
        bookingId: row.id,
        title: row.title,
        openLevel: row.open_level,
        password: this.password(row),
        start: row.start_at.toISOString(),
        end: row.end_at.toISOString(),
        connectableWindow: { from: new Date(w.from).toISOString(), to: new Date(w.to).toISOString() },
        ingest: { rtmp: { url: `${server}/${reservationId}`, server, streamKey: reservationId } },
        channel,
        server: { origin: base, originKey: this.deps.keys.publicKeyB64, timeUrl: `${base}/time` },
        viewerUrl: this.viewerUrl(row.id),
        bitrateKbps: channel.bitrateKbps,
        issuedAt: new Date(this.deps.clock.now()).toISOString(),
      },
      this.deps.keys.privateKey,
      this.deps.keys.publicKeyB64,
    );
  }

  private selectRows(db: Kysely<Database>) {
    return db
      .selectFrom('live_bookings as b')
      .innerJoin('live_channels as c', 'c.id', 'b.channel_id')
      .selectAll('b')
      .select(['c.name as channel_name', 'c.capacity as channel_capacity', 'c.bitrate_kbps as channel_bitrate_kbps', 'c.slot_minutes as channel_slot_minutes'])
      .$castTo<Row>();
  }

  private async rowById(db: Kysely<Database>, id: string, lock = false): Promise<Row | undefined> {
    let q = this.selectRows(db).where('b.id', '=', id);
    if (lock) q = q.forUpdate();
    return q.executeTakeFirst();
  }

  private async rowByKey(db: Kysely<Database>, reservationId: string, lock = false): Promise<Row | undefined> {
    if (!/^rsv_[A-Za-z0-9_-]{20,60}$/.test(reservationId)) return undefined;
    let q = this.selectRows(db).where('b.reservation_key_hash', '=', reservationKeyHash(reservationId));
    if (lock) q = q.forUpdate();
    return q.executeTakeFirst();
  }

  private async ownRow(p: Principal, id: string, db: Kysely<Database> = this.deps.db, lock = false): Promise<Row> {
    const row = await this.rowById(db, id, lock);
    if (!row || row.member_id !== p.userId) throw notFound('unknown_booking', `No booking ${id} of yours (\`cascade reserve list\` lists them).`);
    return row;
  }

  private async event(db: Kysely<Database>, bookingId: string, event: string, status: BookingStatus, detail: string): Promise<BookingEvent> {
    const at = new Date(this.deps.clock.now());
    await db.insertInto('live_booking_events').values({ booking_id: bookingId, at, event, status, detail }).execute();
    return { at: at.toISOString(), event, status, detail };
  }

  /** The iCalendar SEQUENCE for the next message about a booking: its number of events so far. */
  private async sequence(db: Kysely<Database>, bookingId: string): Promise<number> {
    const r = await db.selectFrom('live_booking_events').select((eb) => eb.fn.countAll<number>().as('n')).where('booking_id', '=', bookingId).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  private async withHistory(rows: Row[]): Promise<Booking[]> {
    if (rows.length === 0) return [];
    const events = await this.deps.db
      .selectFrom('live_booking_events')
      .selectAll()
      .where(
        'booking_id',
        'in',
        rows.map((r) => r.id),
      )
      .orderBy('seq')
      .execute();
    const byBooking = new Map<string, BookingEvent[]>();
    for (const e of events) {
      const list = byBooking.get(e.booking_id) ?? [];
      list.push({ at: e.at.toISOString(), event: e.event, status: e.status as BookingStatus, detail: e.detail });
      byBooking.set(e.booking_id, list);
    }
    return rows.map((r) => this.toBooking(r, byBooking.get(r.id) ?? []));
  }

  private toBooking(r: Row, history: BookingEvent[]): Booking {
    const w = connectableWindow(r.start_at.getTime(), r.end_at.getTime());
    return {
      id: r.id,
      channelId: r.channel_id,
      channelName: r.channel_name,
      start: r.start_at.toISOString(),
      end: r.end_at.toISOString(),
      slots: r.slots,
      openLevel: r.open_level,
      title: r.title,
      genre: r.genre,
      outline: r.outline,
      detail: r.detail,
      discloseEmail: r.disclose_email,
      discloseWebPage: r.disclose_web_page,
      friends: r.friends,
      timeZone: r.time_zone,
      status: r.status,
      tariffPerSlot: r.tariff_per_slot,
      charge: r.charge,
      charged: r.charge_transfer_id !== null,
      deadline: r.deadline_at.toISOString(),
      connectableWindow: { from: new Date(w.from).toISOString(), to: new Date(w.to).toISOString() },
      viewerUrl: this.viewerUrl(r.id),
      cancelReason: r.cancel_reason,
      viewerPeak: r.viewer_peak,
      viewerTotal: r.viewer_total,
      createdAt: r.created_at.toISOString(),
      updatedAt: r.updated_at.toISOString(),
      history,
    };
  }
}

export type { Row as BookingRow };
