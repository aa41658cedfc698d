import { sql, type Generated, type Kysely, type Migration } from 'kysely';

// Tables the live domain owns (S3, docs/live.md): channels, bookings (a reservation of a
// channel's slots), each booking's timestamped history, and members' private calendar feeds.
// Other domains ask LiveService (boundaries.test.ts).
export const OWNED_TABLES = ['live_channels', 'live_bookings', 'live_booking_events', 'live_calendar_feeds', 'live_segments', 'live_viewer_sessions', 'live_fillers', 'live_recordings', 'live_rebroadcasts'] as const;

/** S3.2: a channel of the streaming server. */
export interface LiveChannelsTable {
  id: string;
  name: string;
  /** S3.12: viewers admitted at once. */
  capacity: number;
  bitrate_kbps: number;
  /** Minor units per slot (S3.6: the charge is slots × tariff). */
  tariff_per_slot: number;
  /** Slots are aligned to multiples of this from the Unix epoch (UTC); divides a day. */
  slot_minutes: number;
  /** S3.5: slots one member may book on this channel per calendar month (UTC). */
  monthly_quota_slots: number;
  created_at: Date;
  updated_at: Date;
}

export type BookingStatus = 'awaiting_reconfirmation' | 'confirmed' | 'live' | 'done' | 'cancelled';
export type OpenLevel = 'public' | 'password' | 'secret';

/** S3.4: one booking. `during` is generated from start_at/end_at and guarded by the exclusion constraint. */
export interface LiveBookingsTable {
  id: string;
  channel_id: string;
  member_id: string;
  start_at: Date;
  end_at: Date;
  slots: number;
  open_level: OpenLevel;
  title: string;
  genre: string;
  outline: string;
  detail: string;
  disclose_email: boolean;
  disclose_web_page: boolean;
  /** scrypt hash (accounts' password format) for viewers' admission; null for public programs. */
  password_hash: string | null;
  /** The password sealed under a key derived from the origin's private key (sealed-password.ts); null for public. */
  password_sealed: string | null;
  friends: string[];
  /** The zone the member booked in: e-mails state times in it. */
  time_zone: string;
  /** SHA-256 of the reservation ID (the stream key, S3.9); the ID itself is only in the member's hands. */
  reservation_key_hash: string;
  status: BookingStatus;
  /** The channel's tariff when booked: later tariff changes do not reprice a booking. */
  tariff_per_slot: number;
  charge: number;
  /** S3.6: reconfirm before this or the booking is cancelled. */
  deadline_at: Date;
  /** The ledger transfer that charged it (at reconfirmation); null before, and on a free channel. */
  charge_transfer_id: string | null;
  /** When it was reconfirmed; null before. */
  confirmed_at: Date | null;
  cancel_reason: string | null;
  /** S3.10, S3.17: most viewers admitted at once while live; null before it went live. */
  viewer_peak: number | null;
  /** S3.17: distinct viewers admitted over the program; null before it went live. */
  viewer_total: number | null;
  created_at: Date;
  updated_at: Date;
}

/** S3.7: every state change and edit of a booking, timestamped. */
export interface LiveBookingEventsTable {
  /** Insertion order: events of one instant keep the order they happened in. */
  seq: Generated<number>;
  booking_id: string;
  at: Date;
  /** booked, reconfirmed, changed, cancelled, live, done. */
  event: string;
  /** The status after the event. */
  status: BookingStatus;
  /** Why, or which fields changed. */
  detail: string;
}

/** A member's private iCalendar feed of its bookings: only the token's hash is kept. */
export interface LiveCalendarFeedsTable {
  user_id: string;
  token_hash: string;
  created_at: Date;
}

/**
 * #15 point 2: a program's live manifest, an append-only log of origin-signed entries, one per
 * HLS segment (seq 0 is the fMP4 initialisation segment). Each entry names the previous
 * entry's hash, so a relay holding the log can check that nothing was dropped or reordered.
 */
export interface LiveSegmentsTable {
  program_id: string;
  seq: number;
  /** The canonical JSON of the entry, as signed. */
  entry: string;
  signature: string;
  name: string;
  sha256: string;
  bytes: number;
  duration_ms: number;
  at: Date;
}

/** S3.12: one admitted viewer of one program; counts against the channel's capacity while fresh. */
export interface LiveViewerSessionsTable {
  id: string;
  program_id: string;
  viewer_id: string;
  admitted_at: Date;
  /** Last playlist or segment fetch (flushed from memory every few seconds). */
  last_seen_at: Date;
  /** Set when the viewer left, was replaced by its own new session, or the program ended. */
  ended_at: Date | null;
}

/** S3.14: a channel's filler, packaged to HLS segments that loop while nothing is on air. */
export interface LiveFillersTable {
  channel_id: string;
  kind: 'slate' | 'clip' | 'default';
  /** The slate's text (null for a clip). */
  text: string | null;
  /** Names the packaged files' directory: a new filler never reuses a URL a player cached. */
  version: string;
  /** JSON: [{ name, durationMs, sha256, bytes }] in playing order. */
  segments: string;
  total_ms: number;
  updated_at: Date;
  updated_by: string | null;
}

export type RecordingStatus = 'requested' | 'making' | 'made' | 'failed' | 'empty';

/** S3.15 (#16 point 3): a broadcaster's request that a program be recorded, and what became of it. */
export interface LiveRecordingsTable {
  program_id: string;
  requested_by: string;
  /** Price of the content it becomes (minor units, S1.1). */
  price: number;
  /** The content's title; null: the program's title when it is made. */
  title: string | null;
  status: RecordingStatus;
  /** The published content (status made). */
  content_id: string | null;
  /** Why the last attempt failed. */
  error: string | null;
  attempts: number;
  /** A failed recording is tried again from then (bounded by attempts); a making one is taken over after it (a crashed maker). */
  retry_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

/** S3.15: a booking whose program is a content the member owns, fed by the origin itself at the start. */
export interface LiveRebroadcastsTable {
  program_id: string;
  content_id: string;
  member_id: string;
  /** When the origin started feeding it (once: a content that ends early is not started again). */
  started_at: Date | null;
  created_at: Date;
}

export interface LiveTables {
  live_fillers: LiveFillersTable;
  live_channels: LiveChannelsTable;
  live_bookings: LiveBookingsTable;
  live_booking_events: LiveBookingEventsTable;
  live_calendar_feeds: LiveCalendarFeedsTable;
  live_segments: LiveSegmentsTable;
  live_viewer_sessions: LiveViewerSessionsTable;
  live_recordings: LiveRecordingsTable;
  live_rebroadcasts: LiveRebroadcastsTable;
}

export const liveMigration: Migration = {
  async up(db: Kysely<any>) {
    // S3.5: double booking is refused by the database itself. btree_gist lets one GiST index hold
    // the channel (=) with the time range (&&). It goes in `public`, never in a test run's own
    // schema (dropping that schema would drop the extension under everyone else's constraints);
    // the lock keeps parallel first migrations from racing to create it.
    await sql`select pg_advisory_xact_lock(hashtext('cascade:create extension btree_gist'))`.execute(db);
    await sql`create extension if not exists btree_gist with schema public`.execute(db);
    await db.schema
      .createTable('live_channels')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('capacity', 'integer', (c) => c.notNull().check(sql`capacity > 0`))
      .addColumn('bitrate_kbps', 'integer', (c) => c.notNull().check(sql`bitrate_kbps > 0`))
      .addColumn('tariff_per_slot', 'bigint', (c) => c.notNull().check(sql`tariff_per_slot >= 0`))
      .addColumn('slot_minutes', 'integer', (c) => c.notNull().check(sql`slot_minutes > 0 and 1440 % slot_minutes = 0`))
      .addColumn('monthly_quota_slots', 'integer', (c) => c.notNull().check(sql`monthly_quota_slots >= 0`))
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await sql`
      create table live_bookings (
        id text primary key,
        channel_id text not null references live_channels(id),
        member_id text not null references users(id),
        start_at timestamptz not null,
        end_at timestamptz not null,
        during tstzrange not null generated always as (tstzrange(start_at, end_at, '[)')) stored,
        slots integer not null check (slots > 0),
        open_level text not null check (open_level in ('public', 'password', 'secret')),
        title text not null,
        genre text not null,
        outline text not null,
        detail text not null,
        disclose_email boolean not null,
        disclose_web_page boolean not null,
        password_hash text,
        password_sealed text,
        friends text[] not null,
        time_zone text not null,
        reservation_key_hash text not null unique,
        status text not null check (status in ('awaiting_reconfirmation', 'confirmed', 'live', 'done', 'cancelled')),
        tariff_per_slot bigint not null,
        charge bigint not null,
        deadline_at timestamptz not null,
        charge_transfer_id text,
        confirmed_at timestamptz,
        cancel_reason text,
        viewer_peak integer,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        check (end_at > start_at),
        check ((open_level = 'public') = (password_hash is null)),
        constraint live_bookings_no_overlap exclude using gist (channel_id with =, during with &&) where (status <> 'cancelled')
      )`.execute(db);
    await db.schema.createIndex('live_bookings_member').on('live_bookings').columns(['member_id', 'start_at']).execute();
    await db.schema.createIndex('live_bookings_start').on('live_bookings').columns(['start_at', 'channel_id']).execute();
    await sql`create index live_bookings_deadline on live_bookings (deadline_at) where status = 'awaiting_reconfirmation'`.execute(db);
    await db.schema
      .createTable('live_booking_events')
      .addColumn('seq', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
      .addColumn('booking_id', 'text', (c) => c.notNull().references('live_bookings.id'))
      .addColumn('at', 'timestamptz', (c) => c.notNull())
      .addColumn('event', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('detail', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('live_booking_events_booking').on('live_booking_events').columns(['booking_id', 'seq']).execute();
    await db.schema
      .createTable('live_calendar_feeds')
      .addColumn('user_id', 'text', (c) => c.primaryKey().references('users.id'))
      .addColumn('token_hash', 'text', (c) => c.notNull().unique())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .execute();
  },
};

/**
 * S3.5, #14 point 9: a booking's write as one statement — one round trip instead of five
 * (channel, lock, quota count, booking with its first event). PL/pgSQL runs each statement with a
 * fresh snapshot, so the count after the lock sees every booking committed by whoever held it
 * before; called outside an explicit transaction, the statement is the transaction and the lock
 * ends with it. `channel` is what the caller priced and checked the booking with (its cached
 * copy): name, tariff_per_slot, slot_minutes, monthly_quota_slots; the row is read FOR KEY SHARE
 * (a channel change waits for the booking, and the other way round) and compared. Refusals:
 * message `live_channel_changed` (the copy is stale: read it again and retry), `live_quota_exceeded`
 * (detail: the slots already used), and the exclusion constraint's 23P01 for an overlap.
 */
export const liveBookFunctionMigration: Migration = {
  async up(db: Kysely<any>) {
    // The quota count's index: a member's bookings on one channel in a month, whatever they hold elsewhere.
    await db.schema.createIndex('live_bookings_member_channel').on('live_bookings').columns(['member_id', 'channel_id', 'start_at']).execute();
    await sql`
      create function live_book(lock_key text, quota_from timestamptz, quota_to timestamptz, channel jsonb, booking jsonb, event_detail text)
      returns integer language plpgsql volatile as $$
      declare
        b live_bookings;
        c live_channels;
        used integer;
      begin
        b := jsonb_populate_record(null::live_bookings, booking);
        select * into c from live_channels where id = b.channel_id for key share;
        if not found or c.name <> channel->>'name' or c.tariff_per_slot <> (channel->>'tariff_per_slot')::bigint
            or c.slot_minutes <> (channel->>'slot_minutes')::integer or c.monthly_quota_slots <> (channel->>'monthly_quota_slots')::integer then
          raise exception 'live_channel_changed';
        end if;
        perform pg_advisory_xact_lock(hashtext(lock_key));
        -- Counts as BookingService.quotaUsed does: what is not cancelled, or was cancelled after reconfirmation (paid).
        select coalesce(sum(slots), 0) into used from live_bookings
          where member_id = b.member_id and channel_id = b.channel_id and start_at >= quota_from and start_at < quota_to
            and (status <> 'cancelled' or confirmed_at is not null);
        if used + b.slots > c.monthly_quota_slots then
          raise exception 'live_quota_exceeded' using detail = used::text;
        end if;
        insert into live_bookings (id, channel_id, member_id, start_at, end_at, slots, open_level, title, genre, outline, detail,
            disclose_email, disclose_web_page, password_hash, password_sealed, friends, time_zone, reservation_key_hash, status,
            tariff_per_slot, charge, deadline_at, charge_transfer_id, confirmed_at, cancel_reason, viewer_peak, created_at, updated_at)
          values (b.id, b.channel_id, b.member_id, b.start_at, b.end_at, b.slots, b.open_level, b.title, b.genre, b.outline, b.detail,
            b.disclose_email, b.disclose_web_page, b.password_hash, b.password_sealed, b.friends, b.time_zone, b.reservation_key_hash, b.status,
            b.tariff_per_slot, b.charge, b.deadline_at, b.charge_transfer_id, b.confirmed_at, b.cancel_reason, b.viewer_peak, b.created_at, b.updated_at);
        insert into live_booking_events (booking_id, at, event, status, detail) values (b.id, b.created_at, 'booked', b.status, event_detail);
        return used;
      end
      $$`.execute(db);
  },
};

/** #15: the streaming half — each program's signed segment log, viewer sessions, total viewers. */
export const liveStreamingMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable('live_bookings').addColumn('viewer_total', 'integer').execute();
    await db.schema
      .createTable('live_segments')
      .addColumn('program_id', 'text', (c) => c.notNull().references('live_bookings.id'))
      .addColumn('seq', 'integer', (c) => c.notNull().check(sql`seq >= 0`))
      .addColumn('entry', 'text', (c) => c.notNull())
      .addColumn('signature', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('sha256', 'text', (c) => c.notNull())
      .addColumn('bytes', 'integer', (c) => c.notNull())
      .addColumn('duration_ms', 'integer', (c) => c.notNull())
      .addColumn('at', 'timestamptz', (c) => c.notNull())
      .addPrimaryKeyConstraint('live_segments_pk', ['program_id', 'seq'])
      .execute();
    await db.schema
      .createTable('live_viewer_sessions')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('program_id', 'text', (c) => c.notNull().references('live_bookings.id'))
      .addColumn('viewer_id', 'text', (c) => c.notNull())
      .addColumn('admitted_at', 'timestamptz', (c) => c.notNull())
      .addColumn('last_seen_at', 'timestamptz', (c) => c.notNull())
      .addColumn('ended_at', 'timestamptz')
      .execute();
    // The admission count: a program's sessions still open.
    await sql`create index live_viewer_sessions_open on live_viewer_sessions (program_id, last_seen_at) where ended_at is null`.execute(db);
    await db.schema.createIndex('live_viewer_sessions_viewer').on('live_viewer_sessions').columns(['program_id', 'viewer_id']).execute();
  },
};

/** #16: each channel's filler (S3.14). */
export const liveFillersMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('live_fillers')
      .addColumn('channel_id', 'text', (c) => c.primaryKey().references('live_channels.id'))
      .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('slate', 'clip', 'default')`))
      .addColumn('text', 'text')
      .addColumn('version', 'text', (c) => c.notNull())
      .addColumn('segments', 'text', (c) => c.notNull())
      .addColumn('total_ms', 'integer', (c) => c.notNull().check(sql`total_ms > 0`))
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_by', 'text')
      .execute();
  },
};

/** S3.15 (#16 point 3): recordings of programs, and bookings that rebroadcast a content. */
export const liveRecordingsMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('live_recordings')
      .addColumn('program_id', 'text', (c) => c.primaryKey().references('live_bookings.id'))
      .addColumn('requested_by', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('price', 'bigint', (c) => c.notNull().check(sql`price >= 0`))
      .addColumn('title', 'text')
      .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('requested', 'making', 'made', 'failed', 'empty')`))
      .addColumn('content_id', 'text')
      .addColumn('error', 'text')
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('retry_at', 'timestamptz')
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
      .addCheckConstraint('live_recordings_made_has_content', sql`(status = 'made') = (content_id is not null)`)
      .execute();
    await db.schema.createIndex('live_recordings_member').on('live_recordings').columns(['requested_by', 'created_at']).execute();
    await sql`create index live_recordings_pending on live_recordings (program_id) where status in ('requested', 'making', 'failed')`.execute(db);
    await db.schema
      .createTable('live_rebroadcasts')
      .addColumn('program_id', 'text', (c) => c.primaryKey().references('live_bookings.id'))
      .addColumn('content_id', 'text', (c) => c.notNull())
      .addColumn('member_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('started_at', 'timestamptz')
      .addColumn('created_at', 'timestamptz', (c) => c.notNull())
      .execute();
  },
};
