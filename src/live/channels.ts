import type { Clock } from '../core/clock.ts';
import { badRequest, conflict, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Db } from '../db/connection.ts';
import type { LiveChannelsTable } from './tables.ts';

// S3.2: the streaming server's channels, configured by operators.

export interface Channel {
  id: string;
  name: string;
  capacity: number;
  bitrateKbps: number;
  tariffPerSlot: number;
  slotMinutes: number;
  monthlyQuotaSlots: number;
  createdAt: string;
  updatedAt: string;
}

export interface ChannelFields {
  name: string;
  capacity: number;
  bitrateKbps: number;
  tariffPerSlot: number;
  slotMinutes?: number;
  monthlyQuotaSlots?: number;
}

export const DEFAULT_SLOT_MINUTES = 10;
const NAME = /^[\p{L}\p{N}][\p{L}\p{N} ._-]{0,39}$/u;

export function toChannel(r: LiveChannelsTable): Channel {
  return {
    id: r.id,
    name: r.name,
    capacity: r.capacity,
    bitrateKbps: r.bitrate_kbps,
    tariffPerSlot: r.tariff_per_slot,
    slotMinutes: r.slot_minutes,
    monthlyQuotaSlots: r.monthly_quota_slots,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

function check(f: Partial<ChannelFields>) {
  if (f.name !== undefined && !NAME.test(f.name)) {
    throw badRequest('invalid_channel_name', 'A channel name is 1–40 letters, digits, spaces, ".", "_" or "-", starting with a letter or digit.', { field: 'name' });
  }
  if (f.slotMinutes !== undefined && (f.slotMinutes < 1 || 1440 % f.slotMinutes !== 0)) {
    throw badRequest('invalid_slot_length', 'The slot length must divide a day evenly: 5, 10, 15, 20, 30, 60 minutes…', { field: 'slotMinutes' });
  }
}

/** Channels kept by `recent` at most: operators configure a handful; a bound all the same. */
const RECENT_MAX = 1000;

const unknownChannel = (id: string) => notFound('unknown_channel', `No channel ${id} (\`cascade channel list\` lists them).`);

export class Channels {
  /** Channels as last read, by ID, for `recent`. */
  private readonly seen = new Map<string, Channel>();

  constructor(private readonly deps: { db: Db; clock: Clock; defaultQuota: number }) {}

  async add(f: ChannelFields): Promise<Channel> {
    check(f);
    const now = new Date(this.deps.clock.now());
    const row = await this.deps.db
      .insertInto('live_channels')
      .values({
        id: newId('chn'),
        name: f.name,
        capacity: f.capacity,
        bitrate_kbps: f.bitrateKbps,
        tariff_per_slot: f.tariffPerSlot,
        slot_minutes: f.slotMinutes ?? DEFAULT_SLOT_MINUTES,
        monthly_quota_slots: f.monthlyQuotaSlots ?? this.deps.defaultQuota,
        created_at: now,
        updated_at: now,
      })
      .onConflict((oc) => oc.column('name').doNothing())
      .returningAll()
      .executeTakeFirst();
    if (!row) throw conflict('channel_name_taken', `A channel is already named "${f.name}".`);
    return toChannel(row);
  }

  async list(): Promise<Channel[]> {
    return (await this.deps.db.selectFrom('live_channels').selectAll().orderBy('name').execute()).map(toChannel);
  }

  async get(id: string): Promise<Channel> {
    const row = await this.deps.db.selectFrom('live_channels').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw unknownChannel(id);
    const channel = toChannel(row);
    if (this.seen.size >= RECENT_MAX) this.seen.clear();
    this.seen.set(id, channel);
    return channel;
  }

  /**
   * The channel as this process last read it, without a query; read once when unknown. It may
   * be out of date (another origin may have changed it): a caller that writes on its strength
   * must compare what it relies on in the same statement (live_book does) and `forget` it when stale.
   */
  async recent(id: string): Promise<Channel> {
    return this.seen.get(id) ?? this.get(id);
  }

  forget(id: string): void {
    this.seen.delete(id);
  }

  /**
   * Changes a channel's settings. Bookings keep the tariff they were made at. The slot length
   * cannot change while bookings that have not ended would stop falling on slot boundaries.
   */
  async set(id: string, f: Partial<ChannelFields>): Promise<Channel> {
    check(f);
    const { db, clock } = this.deps;
    try {
      // The row is locked for the check and the update: a booking holds it FOR KEY SHARE while it
      // is written (live_book), so none can fall between them on the old slot length or tariff.
      const row = await db.transaction().execute(async (trx) => {
        const current = await trx.selectFrom('live_channels').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
        if (!current) throw unknownChannel(id);
        if (f.slotMinutes !== undefined && f.slotMinutes !== current.slot_minutes) {
          const len = f.slotMinutes * 60_000;
          const open = await trx
            .selectFrom('live_bookings')
            .select(['start_at', 'end_at'])
            .where('channel_id', '=', id)
            .where('status', '<>', 'cancelled')
            .where('end_at', '>', new Date(clock.now()))
            .execute();
          const misfit = open.filter((b) => b.start_at.getTime() % len !== 0 || b.end_at.getTime() % len !== 0).length;
          if (misfit > 0) {
            throw conflict('slot_length_in_use', `${misfit} booking${misfit === 1 ? '' : 's'} still to come would not fall on ${f.slotMinutes}-minute slots; change the slot length after they end.`);
          }
        }
        const values: Partial<LiveChannelsTable> = { updated_at: new Date(clock.now()) };
        if (f.name !== undefined) values.name = f.name;
        if (f.capacity !== undefined) values.capacity = f.capacity;
        if (f.bitrateKbps !== undefined) values.bitrate_kbps = f.bitrateKbps;
        if (f.tariffPerSlot !== undefined) values.tariff_per_slot = f.tariffPerSlot;
        if (f.slotMinutes !== undefined) values.slot_minutes = f.slotMinutes;
        if (f.monthlyQuotaSlots !== undefined) values.monthly_quota_slots = f.monthlyQuotaSlots;
        return trx.updateTable('live_channels').set(values).where('id', '=', id).returningAll().executeTakeFirstOrThrow();
      });
      // After the commit: a read before it could have kept the old row.
      this.forget(id);
      return toChannel(row);
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw conflict('channel_name_taken', `A channel is already named "${f.name}".`);
      throw err;
    }
  }
}
