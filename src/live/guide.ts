import ical, { ICalEventStatus } from 'ical-generator';
import type { Clock } from '../core/clock.ts';
import { sha256Hex } from '../core/crypto.ts';
import { badRequest, notFound } from '../core/errors.ts';
import { newSecret } from '../core/ids.ts';
import type { Db } from '../db/connection.ts';
import type { BookingRow, BookingService, Contact } from './bookings.ts';
import type { Channel, Channels } from './channels.ts';
import { dateIn, dayBounds, monthBounds, slotStarts, validTimeZone } from './slots.ts';
import type { BookingStatus, OpenLevel } from './tables.ts';

// What people look at: the broadcasters' slot calendar (S3.3), the viewers' guide — today's live,
// the month, program pages (S3.11) — and each member's private calendar feed. S3.11: Public and
// Password programs are listed; Secret ones never are, here or anywhere (only their own page,
// reached by the link the broadcaster shares, shows them).

export interface CalendarSlot {
  start: string;
  end: string;
  state: 'free' | 'taken' | 'past';
  /** The program holding a taken slot, when it is listed (never a Secret one). */
  program: { id: string; title: string } | null;
  /** Whether the caller holds it. */
  mine: boolean;
}

export interface Calendar {
  date: string;
  timeZone: string;
  from: string;
  to: string;
  channels: { channel: Channel; slots: CalendarSlot[] }[];
}

export interface Program {
  id: string;
  channelId: string;
  channelName: string;
  start: string;
  end: string;
  title: string;
  genre: string;
  outline: string;
  detail: string;
  openLevel: OpenLevel;
  needsPassword: boolean;
  status: BookingStatus;
  /** Live now, to come, or over, at the time of the answer. */
  when: 'upcoming' | 'on_air' | 'ended';
  broadcaster: { username: string; email: string | null; webPage: string | null };
  viewerUrl: string;
  viewerPeak: number | null;
}

const listed = (r: BookingRow) => r.open_level !== 'secret';

export class Guide {
  constructor(
    private readonly deps: {
      db: Db;
      clock: Clock;
      channels: Channels;
      bookings: BookingService;
      contact: (userId: string) => Promise<Contact>;
      usernames: (ids: string[]) => Promise<Map<string, string>>;
      baseUrl: () => string;
    },
  ) {}

  private zone(tz: string | undefined): string {
    const zone = tz || 'UTC';
    if (!validTimeZone(zone)) throw badRequest('invalid_time_zone', `"${zone}" is not a time zone; use an IANA name such as Europe/Berlin.`, { field: 'tz' });
    return zone;
  }

  /** S3.3: every channel's slots on `date` in `tz`, free or taken, with capacity, bitrate and tariff. */
  async calendar(callerId: string, date: string | undefined, tz: string | undefined): Promise<Calendar> {
    const zone = this.zone(tz);
    const now = this.deps.clock.now();
    const day = date ?? dateIn(now, zone);
    const { from, to } = dayBounds(day, zone);
    const [channels, rows] = await Promise.all([this.deps.channels.list(), this.deps.bookings.between(from, to)]);
    return {
      date: day,
      timeZone: zone,
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      channels: channels.map((channel) => {
        const len = channel.slotMinutes * 60_000;
        const mine = rows.filter((r) => r.channel_id === channel.id);
        return {
          channel,
          slots: slotStarts(from, to, channel.slotMinutes).map((s) => {
            const holder = mine.find((r) => r.start_at.getTime() < s + len && r.end_at.getTime() > s);
            return {
              start: new Date(s).toISOString(),
              end: new Date(s + len).toISOString(),
              state: holder ? 'taken' : s <= now ? 'past' : 'free',
              program: holder && listed(holder) ? { id: holder.id, title: holder.title } : null,
              mine: holder?.member_id === callerId,
            };
          }),
        };
      }),
    };
  }

  /** S3.11: today's listed programs in `tz`. */
  async today(tz: string | undefined): Promise<{ date: string; timeZone: string; items: Program[] }> {
    const zone = this.zone(tz);
    const date = dateIn(this.deps.clock.now(), zone);
    const { from, to } = dayBounds(date, zone);
    return { date, timeZone: zone, items: await this.programs(from, to, 'overlapping') };
  }

  /** S3.11: the month's listed programs in `tz`, grouped by day. */
  async month(month: string | undefined, tz: string | undefined): Promise<{ month: string; timeZone: string; days: { date: string; items: Program[] }[] }> {
    const zone = this.zone(tz);
    const m = month ?? dateIn(this.deps.clock.now(), zone).slice(0, 7);
    const { from, to } = monthBounds(m, zone);
    const items = await this.programs(from, to, 'starting');
    const days = new Map<string, Program[]>();
    for (const p of items) {
      const d = dateIn(Date.parse(p.start), zone);
      days.set(d, [...(days.get(d) ?? []), p]);
    }
    return { month: m, timeZone: zone, days: [...days].map(([date, list]) => ({ date, items: list })) };
  }

  /** A program's page: any level, by its ID (a Secret program's link is how friends find it). */
  async program(id: string): Promise<Program> {
    const row = await this.deps.bookings.rowForProgram(id);
    if (!row || row.status === 'cancelled') throw notFound('unknown_program', `No program ${id}; it may have been cancelled.`);
    const contact = await this.deps.contact(row.member_id);
    return this.toProgram(row, contact.username, contact);
  }

  /** Listed programs in [from, to): those on the air in it (today's live: last night's late show too), or those starting in it (the month). */
  private async programs(from: number, to: number, which: 'overlapping' | 'starting'): Promise<Program[]> {
    const rows = (await this.deps.bookings.between(from, to)).filter(listed).filter((r) => which === 'overlapping' || r.start_at.getTime() >= from);
    const names = await this.deps.usernames([...new Set(rows.map((r) => r.member_id))]);
    const contacts = new Map<string, Contact>();
    for (const r of rows) if ((r.disclose_email || r.disclose_web_page) && !contacts.has(r.member_id)) contacts.set(r.member_id, await this.deps.contact(r.member_id));
    return rows.map((r) => this.toProgram(r, names.get(r.member_id) ?? '?', contacts.get(r.member_id)));
  }

  private toProgram(r: BookingRow, username: string, contact: Contact | undefined): Program {
    const now = this.deps.clock.now();
    return {
      id: r.id,
      channelId: r.channel_id,
      channelName: r.channel_name,
      start: r.start_at.toISOString(),
      end: r.end_at.toISOString(),
      title: r.title,
      genre: r.genre,
      outline: r.outline,
      detail: r.detail,
      openLevel: r.open_level,
      needsPassword: r.open_level !== 'public',
      status: r.status,
      // A broadcast sending in the minutes before its start is on air already.
      when: r.status === 'live' || (now >= r.start_at.getTime() && now < r.end_at.getTime()) ? 'on_air' : now < r.start_at.getTime() ? 'upcoming' : 'ended',
      // S3.4: the broadcaster chose whether to disclose these.
      broadcaster: { username, email: r.disclose_email ? (contact?.email ?? null) : null, webPage: r.disclose_web_page ? (contact?.webPage ?? null) : null },
      viewerUrl: this.deps.bookings.viewerUrl(r.id),
      viewerPeak: r.viewer_peak,
    };
  }

  // ---- the member's private calendar feed ----

  /** A new feed URL for the member (any earlier one stops working). */
  async rotateFeed(userId: string): Promise<{ url: string }> {
    const token = newSecret(24);
    await this.deps.db
      .insertInto('live_calendar_feeds')
      .values({ user_id: userId, token_hash: sha256Hex(token), created_at: new Date(this.deps.clock.now()) })
      .onConflict((oc) => oc.column('user_id').doUpdateSet({ token_hash: sha256Hex(token), created_at: new Date(this.deps.clock.now()) }))
      .execute();
    return { url: `${this.deps.baseUrl()}/live/feeds/${token}.ics` };
  }

  /** The feed's iCalendar text: the member's bookings from a month ago on, cancelled ones marked so. */
  async feed(token: string): Promise<string> {
    const row = /^[A-Za-z0-9_-]{32}$/.test(token)
      ? await this.deps.db.selectFrom('live_calendar_feeds').select('user_id').where('token_hash', '=', sha256Hex(token)).executeTakeFirst()
      : undefined;
    if (!row) throw notFound('unknown_feed', 'No calendar feed at this address; create a new one on your "My channel" page.');
    const rows = await this.deps.bookings.ofMember(row.user_id, this.deps.clock.now() - 31 * 86_400_000);
    const cal = ical({ name: 'Cascade: my live programs', prodId: { company: 'Cascade', product: 'live', language: 'EN' } });
    for (const r of rows) {
      cal.createEvent({
        id: `${r.id}@cascade`,
        start: r.start_at,
        end: r.end_at,
        stamp: r.updated_at,
        summary: `${r.status === 'awaiting_reconfirmation' ? '[reconfirm by ' + r.deadline_at.toISOString().slice(0, 16).replace('T', ' ') + ' UTC] ' : ''}${r.title}`,
        description: `${r.outline}\nChannel ${r.channel_name}; status ${r.status.replace('_', ' ')}`,
        url: this.deps.bookings.viewerUrl(r.id),
        status: r.status === 'cancelled' ? ICalEventStatus.CANCELLED : ICalEventStatus.CONFIRMED,
      });
    }
    return cal.toString();
  }
}
