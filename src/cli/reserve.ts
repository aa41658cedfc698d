import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { DateTime } from 'luxon';
import { systemClock } from '../core/clock.ts';
import { AppError, badRequest } from '../core/errors.ts';
import type { Api } from '../core/http-client.ts';
import type { Booking, BookingChange, BookingRequest, Quote } from '../live/bookings.ts';
import type { Channel } from '../live/channels.ts';
import type { ExtensionOffer } from '../live/extension-rules.ts';
import type { Calendar, CalendarSlot, Program } from '../live/guide.ts';
import { verifySettings, type SignedSettings } from '../live/settings.ts';
import { validTimeZone } from '../live/slots.ts';
import type { BookingStatus } from '../live/tables.ts';
import { resolveChannel, root, wholeNumber } from './channel.ts';
import { ask, askNewPassword, doneAsking } from './prompt.ts';
import { registerRecordingCommands } from './reserve-recordings.ts';
import { apiFromProfile, chooseOrigin, readProfile } from './profile.ts';
import { localZone } from './schedule.ts';
import { table } from './table.ts';

// `cascade reserve …` (S3.3–S3.8, S3.11, S3.17; docs/live.md): a premium member books a live
// channel's slots from the terminal — the day's calendar, a quote, the booking (after a yes),
// reconfirmation with the origin-signed settings saved to a file, my bookings, changes and
// cancellation, the guide and a private calendar feed. `cascade time` (S3.10) shows how far this
// machine's clock is from the origin's. Times are read and shown in this machine's zone unless
// --tz names another; the origin's clock decides what "today" and "past" mean. Every command
// takes the global --json for one JSON line (the API's answer).

const write = (line = ''): void => void process.stdout.write(line + '\n');
const note = (line = ''): void => void process.stderr.write(line + '\n');

// ---- times and zones ----

/** --tz, or this machine's zone; `invalid_time_zone` for a name the runtime does not know. */
export function zoneOf(tz: string | undefined): string {
  const zone = tz ?? localZone();
  if (!validTimeZone(zone)) throw badRequest('invalid_time_zone', `"${zone}" is not a time zone; use an IANA name such as Europe/Berlin.`, { field: 'tz' });
  return zone;
}

/**
 * A time given on the command line: ISO 8601 with an offset or Z (an instant), or a local
 * "YYYY-MM-DD HH:MM" (also with T, or with seconds) read in `zone`. Milliseconds since the epoch.
 */
export function parseTime(text: string, zone: string, flag: string): number {
  const t = text.trim();
  const local = /^(\d{4}-\d{2}-\d{2})[ T](\d{1,2}:\d{2}(?::\d{2})?)$/.exec(t);
  let dt: DateTime;
  if (local) {
    const [h, rest] = local[2]!.split(/:(.*)/s);
    dt = DateTime.fromISO(`${local[1]}T${h!.padStart(2, '0')}:${rest}`, { zone });
    // A local time skipped by a daylight-saving change has no instant: say so rather than move it.
    if (dt.isValid && dt.toFormat(local[2]!.length > 5 ? 'H:mm:ss' : 'H:mm') !== local[2]!.replace(/^0(\d)/, '$1')) {
      throw badRequest('invalid_time', `${flag} "${text}" does not exist in ${zone} (the clocks skip it that day).`, { field: flag });
    }
  } else if (/^\d{4}-\d{2}-\d{2}T.*(Z|[+-]\d{2}:?\d{2})$/i.test(t)) {
    dt = DateTime.fromISO(t, { setZone: true });
  } else {
    throw badRequest('invalid_time', `${flag} "${text}": write "YYYY-MM-DD HH:MM" (in ${zone}) or an ISO time with its offset, e.g. 2026-12-01T18:00:00Z.`, { field: flag });
  }
  if (!dt.isValid) throw badRequest('invalid_time', `${flag} "${text}" is not a valid time.`, { field: flag });
  return dt.toMillis();
}

/** "2026-12-01 19:00" in `zone`. */
export const localTime = (iso: string | number, zone: string, format = 'yyyy-MM-dd HH:mm') =>
  (typeof iso === 'number' ? DateTime.fromMillis(iso) : DateTime.fromISO(iso)).setZone(zone).toFormat(format);

/** "2026-12-01 19:00–19:30 Europe/Berlin" (the end's date only when it differs). */
export function localRange(start: string, end: string, zone: string): string {
  const s = localTime(start, zone);
  const e = localTime(end, zone);
  return `${s}–${e.slice(0, 10) === s.slice(0, 10) ? e.slice(11) : e} ${zone}`;
}

/** "2026-12-01 19:00 Europe/Berlin (18:00Z)" */
const withUtc = (iso: string, zone: string) => `${localTime(iso, zone)} ${zone}${zone === 'UTC' ? '' : ` (${localTime(iso, 'UTC', 'yyyy-MM-dd HH:mm')}Z)`}`;

// ---- the origin's clock (S3.10) ----

export interface ClockOffset {
  origin: { now: string; epochMs: number };
  local: { now: string; epochMs: number };
  /** The origin's clock minus this machine's, at the middle of the request. */
  offsetMs: number;
  offsetSeconds: number;
  roundTripMs: number;
}

/**
 * This machine's offset from the origin's clock: GET /time three times, keeping the sample with
 * the shortest round trip; offset = server − (t0 + t1) / 2. The one place the CLI reads the real
 * clock (what "today" and "past" mean is the origin's to say).
 */
export async function measureOffset(api: Api, samples = 3): Promise<ClockOffset> {
  let best: ClockOffset | null = null;
  for (let i = 0; i < samples; i++) {
    const t0 = systemClock.now();
    const server = await api.get<{ now: string; epochMs: number }>('/time');
    const t1 = systemClock.now();
    const mid = (t0 + t1) / 2;
    const offsetMs = Math.round(server.epochMs - mid);
    const sample: ClockOffset = {
      origin: server,
      local: { now: new Date(Math.round(mid)).toISOString(), epochMs: Math.round(mid) },
      offsetMs,
      offsetSeconds: Math.round(offsetMs / 100) / 10,
      roundTripMs: t1 - t0,
    };
    if (!best || sample.roundTripMs < best.roundTripMs) best = sample;
  }
  return best!;
}

/** "your clock is 2.4 s behind the origin's (round trip 3 ms)" */
export function offsetText(o: ClockOffset): string {
  const abs = Math.abs(o.offsetMs);
  const about = abs >= 3_600_000 ? `${(abs / 3_600_000).toFixed(1)} h` : `${(abs / 60_000).toFixed(1)} min`;
  const amount = abs < 1000 ? `${abs} ms` : abs < 60_000 ? `${(abs / 1000).toFixed(1)} s` : `${Math.round(abs / 1000)} s (about ${about})`;
  const side = Math.abs(o.offsetMs) <= o.roundTripMs / 2 + 1 ? `your clock agrees with the origin's (within ${Math.ceil(o.roundTripMs / 2) + 1} ms)` : `your clock is ${amount} ${o.offsetMs > 0 ? 'behind' : 'ahead of'} the origin's`;
  return `${side}; round trip ${o.roundTripMs} ms`;
}

// ---- the booking's fields ----

/** The booking's options: the texts, disclosure and password as the API names them, the rest as flags. */
interface BookingOpts extends Omit<BookingChange, 'channelId' | 'start' | 'end' | 'openLevel'> {
  channel?: string;
  start?: string;
  end?: string;
  slots?: string;
  level?: string;
  friend?: string[];
  tz?: string;
  yes?: boolean;
}

const LEVELS = ['public', 'password', 'secret'] as const;
const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The request the options describe, with the channel they name (resolved through GET /live/channels). */
async function bookingRequest(api: Api, o: BookingOpts): Promise<{ req: BookingRequest; channel: Channel; zone: string }> {
  const zone = zoneOf(o.tz);
  const missing = (['channel', 'start', 'level', 'title', 'genre'] as const).filter((k) => o[k] === undefined);
  if (missing.length) throw badRequest('missing_option', `A booking needs ${missing.map((m) => `--${m}`).join(', ')} (and --end or --slots).`);
  if (!(LEVELS as readonly string[]).includes(o.level!)) throw badRequest('invalid_argument', `--level is public, password or secret; got "${o.level}".`, { field: 'level' });
  if ((o.end === undefined) === (o.slots === undefined)) throw badRequest('missing_option', 'Give either --end TIME or --slots N (not both).');
  const channel = await resolveChannel(api, o.channel!);
  const start = parseTime(o.start!, zone, '--start');
  const end = o.end !== undefined ? parseTime(o.end, zone, '--end') : start + wholeNumber('--slots', o.slots!, 1, 10_000) * channel.slotMinutes * 60_000;
  const level = o.level as BookingRequest['openLevel'];
  // An explicit --password always goes (the origin refuses one for a public program); the
  // environment's only where the level uses one, and on a terminal it is asked for.
  let password = o.password ?? (level === 'public' ? undefined : process.env.CASCADE_PROGRAM_PASSWORD || undefined);
  if (password === undefined && level !== 'public' && process.stdin.isTTY) password = await askNewPassword('program password for viewers: ');
  const req: BookingRequest = {
    channelId: channel.id,
    start: new Date(start).toISOString(),
    end: new Date(end).toISOString(),
    openLevel: level,
    title: o.title!,
    genre: o.genre!,
    ...(o.outline !== undefined ? { outline: o.outline } : {}),
    ...(o.detail !== undefined ? { detail: o.detail } : {}),
    ...(o.discloseEmail ? { discloseEmail: true } : {}),
    ...(o.discloseWebPage ? { discloseWebPage: true } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(o.friend?.length ? { friends: o.friend } : {}),
    timeZone: zone,
  };
  return { req, channel, zone };
}

function bookingOptions(cmd: Command): Command {
  return cmd
    .option('--channel <name|id>', 'the channel (`cascade channel list`)')
    .option('--start <time>', '"YYYY-MM-DD HH:MM" in your zone (or --tz), or ISO 8601 with an offset')
    .option('--end <time>', 'the end, written like --start')
    .option('--slots <n>', 'or how many slots from the start')
    .option('--level <level>', 'public (listed, open), password (listed, needs the password) or secret (not listed, needs the password)')
    .option('--title <text>', 'the program’s title (1–100 characters)')
    .option('--genre <text>', 'e.g. music, talk, sport (1–40 characters)')
    .option('--outline <text>', 'a short outline (up to 20 characters)')
    .option('--detail <text>', 'more detail (up to 200 characters)')
    .option('--disclose-email', 'show your e-mail address on the program page')
    .option('--disclose-web-page', 'show your web page on the program page')
    .option('--password <password>', 'viewers’ password for the password and secret levels (default: $CASCADE_PROGRAM_PASSWORD, or asked on a terminal)')
    .option('--friend <email>', 'tell this address when the program is confirmed; repeat for more (up to 50)', collect)
    .option('--tz <zone>', 'the zone of the times given and shown (default: this machine’s)');
}

export function formatQuote(q: Quote, zone: string): string[] {
  return [
    `${q.channel.name}, ${localRange(q.start, q.end, zone)}: ${q.slots} slot${q.slots === 1 ? '' : 's'} of ${q.channel.slotMinutes} minutes`,
    `  charge     ${q.charge} (${q.slots} × ${q.tariffPerSlot} per slot), charged when you reconfirm`,
    `  reconfirm  by ${withUtc(q.deadline, zone)}: ${q.deadlineReason}; unconfirmed, the booking is cancelled then`,
    `  connect    ${localRange(q.connectableWindow.from, q.connectableWindow.to, zone)} (your encoder may connect in this window)`,
    `  quota      ${q.quota.afterBooking} of ${q.quota.limit} slots on ${q.channel.name} in ${q.quota.month} after this booking (${q.quota.used} used before)`,
    `  wallet     ${q.wallet.available} available: ${q.wallet.enough ? 'enough for the charge' : `NOT enough for the charge of ${q.charge}; top up (cascade wallet topup CODE) before you reconfirm`}`,
  ];
}

// ---- my bookings ----

const STATUSES: BookingStatus[] = ['awaiting_reconfirmation', 'confirmed', 'live', 'done', 'cancelled'];
const statusText = (s: BookingStatus) => s.replace('_', ' ');

export function formatBookings(items: Booking[], zone: string): string[] {
  const rows = items.map((b) => [
    b.id,
    localRange(b.start, b.end, zone).replace(` ${zone}`, ''),
    b.channelName,
    b.title,
    statusText(b.status),
    String(b.charge),
    b.charged ? 'yes' : 'no',
    b.status === 'awaiting_reconfirmation' ? localTime(b.deadline, zone) : '',
  ]);
  return table(['booking', `time (${zone})`, 'channel', 'title', 'status', 'charge', 'charged', 'reconfirm by'], rows, [5]);
}

export function formatBooking(b: Booking, zone: string): string[] {
  const lines = [
    `${b.id}  "${b.title}" (${b.genre}) on ${b.channelName}`,
    `  time       ${localRange(b.start, b.end, zone)}, ${b.slots} slot${b.slots === 1 ? '' : 's'}`,
    `  status     ${statusText(b.status)}${b.cancelReason ? ` (${b.cancelReason})` : ''}`,
    `  level      ${b.openLevel}${b.openLevel === 'secret' ? ' (not listed: share the viewer URL)' : ''}`,
    `  charge     ${b.charge} (${b.slots} × ${b.tariffPerSlot}); ${b.charged ? 'charged' : 'not charged'}`,
  ];
  if (b.status === 'awaiting_reconfirmation') lines.push(`  reconfirm  by ${withUtc(b.deadline, zone)} (cascade reserve confirm RESERVATION_ID -o settings.json)`);
  lines.push(`  connect    ${localRange(b.connectableWindow.from, b.connectableWindow.to, zone)}`, `  viewers    ${b.viewerUrl}`);
  if (b.outline) lines.push(`  outline    ${b.outline}`);
  if (b.detail) lines.push(`  detail     ${b.detail}`);
  lines.push(`  disclose   e-mail ${b.discloseEmail ? 'yes' : 'no'}, web page ${b.discloseWebPage ? 'yes' : 'no'}`);
  if (b.friends.length) lines.push(`  friends    ${b.friends.join(', ')}`);
  if (b.viewerPeak !== null) lines.push(`  peak       ${b.viewerPeak} viewers`);
  lines.push('  history');
  for (const l of table(['time', 'event', 'status', 'detail'], b.history.map((h) => [localTime(h.at, zone, 'yyyy-MM-dd HH:mm:ss'), h.event, statusText(h.status), h.detail]))) lines.push(`    ${l}`);
  return lines;
}

// ---- the calendar grid (S3.3) ----

const CELL: Record<string, string> = { free: '.', taken: '#', mine: '*', past: ' ' };
const cellOf = (s: CalendarSlot) => (s.mine ? CELL.mine! : CELL[s.state]!);

/**
 * One channel's day as rows of the local hour with one cell per slot (`.` free, `#` taken, `*`
 * mine, blank past); slots longer than an hour get a row each. Columns are the slots' minutes
 * past the local hour (":00 :10 …", or ":05 :15 …" in a zone 45 minutes off UTC).
 */
export function calendarGrid(slots: CalendarSlot[], slotMinutes: number, zone: string): string[] {
  const perHour = slotMinutes <= 60;
  const rows = new Map<string, { label: string; offset: string; cells: Map<string, string> }>();
  const minutes = new Set<string>();
  for (const s of slots) {
    const t = DateTime.fromISO(s.start).setZone(zone);
    const key = perHour ? `${t.toFormat('yyyy-MM-dd HH')} ${t.offset}` : s.start;
    const minute = perHour ? t.toFormat(':mm') : ':00';
    minutes.add(minute);
    if (!rows.has(key)) rows.set(key, { label: t.toFormat(perHour ? 'HH:00' : 'HH:mm'), offset: t.toFormat('ZZ'), cells: new Map() });
    rows.get(key)!.cells.set(minute, cellOf(s));
  }
  const cols = [...minutes].sort();
  const all = [...rows.values()];
  // The same hour twice (the clocks going back): tell them apart by their offset.
  const labels = all.map((r) => (all.filter((x) => x.label === r.label).length > 1 ? `${r.label} (${r.offset})` : r.label));
  const width = Math.max(5, ...labels.map((l) => l.length));
  const out = perHour ? [`  ${' '.repeat(width)}${cols.join('')}`] : [];
  all.forEach((r, i) => out.push(`  ${labels[i]!.padEnd(width)}${cols.map((c) => ` ${r.cells.get(c) ?? ' '} `).join('')}`.trimEnd()));
  return out;
}

/** The programs holding a channel's slots that day: consecutive slots of one program as one line. */
function programLines(slots: CalendarSlot[], zone: string): string[] {
  const runs: { start: string; end: string; title: string; mine: boolean; id: string | null }[] = [];
  for (const s of slots) {
    if (s.state !== 'taken') continue;
    const last = runs.at(-1);
    const id = s.program?.id ?? null;
    if (last && last.end === s.start && last.id === id && last.mine === s.mine && id !== null) last.end = s.end;
    else if (last && last.end === s.start && id === null && last.id === null && last.mine === s.mine) last.end = s.end;
    else runs.push({ start: s.start, end: s.end, title: s.program?.title ?? '(not listed)', mine: s.mine, id });
  }
  return runs.map((r) => `  ${localTime(r.start, zone, 'HH:mm')}–${localTime(r.end, zone, 'HH:mm')}  ${r.title}${r.mine ? '  (yours)' : ''}`);
}

export function formatCalendar(cal: Calendar): string[] {
  const lines: string[] = [`${cal.date} in ${cal.timeZone}`];
  for (const { channel: c, slots } of cal.channels) {
    lines.push('', `${c.name}: capacity ${c.capacity} viewers, ${c.bitrateKbps} kbps, ${c.tariffPerSlot} per ${c.slotMinutes}-minute slot, quota ${c.monthlyQuotaSlots} slots a month`);
    lines.push(...calendarGrid(slots, c.slotMinutes, cal.timeZone));
    const programs = programLines(slots, cal.timeZone);
    if (programs.length) lines.push(...programs);
    const free = slots.filter((s) => s.state === 'free').length;
    lines.push(`  ${free} free slot${free === 1 ? '' : 's'}`);
  }
  if (cal.channels.length === 0) lines.push('no channels yet (an operator adds them: cascade channel add)');
  lines.push('', `legend: ${CELL.free} free  ${CELL.taken} taken  ${CELL.mine} yours  (blank) past`);
  return lines;
}

// ---- the guide (S3.11) ----

function programLine(p: Program, zone: string): string {
  const by = [p.broadcaster.username, p.broadcaster.email, p.broadcaster.webPage].filter(Boolean).join(', ');
  const flags = [p.needsPassword ? 'password' : '', p.when === 'on_air' ? 'ON AIR' : p.when === 'ended' ? 'ended' : ''].filter(Boolean).join(', ');
  return `  ${localTime(p.start, zone, 'HH:mm')}–${localTime(p.end, zone, 'HH:mm')}  ${p.channelName}  ${p.title} (${p.genre})${flags ? ` [${flags}]` : ''}  by ${by}  ${p.viewerUrl}`;
}

// ---- commands ----

const api = (cmd: Command) => apiFromProfile({ origin: root(cmd).opts().origin });

export function registerTime(program: Command) {
  program
    .command('time')
    .description('the origin’s clock and how far this machine’s clock is from it (S3.10)')
    .option('--tz <zone>', 'show the times in this zone (default: this machine’s)')
    .action(async (opts: { tz?: string }, cmd: Command) => {
      const zone = zoneOf(opts.tz);
      const o = await measureOffset(api(cmd));
      if (root(cmd).opts().json) return write(JSON.stringify(o));
      write(`origin  ${localTime(o.origin.epochMs, zone, 'yyyy-MM-dd HH:mm:ss.SSS')} ${zone}  (${o.origin.now})`);
      write(`local   ${localTime(o.local.epochMs, zone, 'yyyy-MM-dd HH:mm:ss.SSS')} ${zone}  (${o.local.now})`);
      write(`offset  ${o.offsetMs > 0 ? '+' : ''}${o.offsetMs} ms (${o.offsetSeconds > 0 ? '+' : ''}${o.offsetSeconds} s): ${offsetText(o)}`);
    });
}

export function registerReserve(program: Command) {
  const reserve = program.command('reserve').description('book live channel slots (premium members, S3.3–S3.8): calendar, quote, book, confirm, list, change, cancel, guide');

  reserve
    .command('calendar')
    .description('a day’s slots per channel: free, taken, yours (S3.3)')
    .option('--date <date>', 'YYYY-MM-DD (default: today by the origin’s clock, in the zone)')
    .option('--tz <zone>', 'the zone of the day and the times (default: this machine’s)')
    .option('--channel <name|id>', 'only this channel')
    .action(async (opts: { date?: string; tz?: string; channel?: string }, cmd: Command) => {
      const zone = zoneOf(opts.tz);
      if (opts.date !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(opts.date)) throw badRequest('invalid_date', `--date "${opts.date}" is not a date: use YYYY-MM-DD.`);
      const a = api(cmd);
      const query = new URLSearchParams({ tz: zone, ...(opts.date ? { date: opts.date } : {}) });
      const cal = await a.get<Calendar>(`/live/calendar?${query}`);
      if (opts.channel !== undefined) {
        const wanted = opts.channel;
        const only = cal.channels.filter((c) => c.channel.id === wanted || c.channel.name === wanted || c.channel.name.toLowerCase() === wanted.toLowerCase());
        if (only.length === 0) await resolveChannel(a, wanted); // the refusal, with the names there are
        cal.channels = only.slice(0, 1);
      }
      if (root(cmd).opts().json) return write(JSON.stringify(cal));
      const offset = await measureOffset(a, 1);
      write(`origin time ${localTime(offset.origin.epochMs, zone, 'yyyy-MM-dd HH:mm:ss')} ${zone}: ${offsetText(offset)}`);
      for (const l of formatCalendar(cal)) write(l);
    });

  bookingOptions(reserve.command('quote'))
    .description('what a booking would cost and by when to reconfirm it; books nothing (S3.4)')
    .action(async (opts: BookingOpts, cmd: Command) => {
      const a = api(cmd);
      const { req, zone } = await bookingRequest(a, opts);
      doneAsking();
      const q = await a.post<Quote>('/live/quote', req);
      if (root(cmd).opts().json) return write(JSON.stringify(q));
      for (const l of formatQuote(q, zone)) write(l);
    });

  bookingOptions(reserve.command('book'))
    .description('book the slots (S3.5): shows the quote, asks for a yes, prints the reservation ID to reconfirm with')
    .option('-y, --yes', 'book without asking (needed without a terminal)')
    .action(async (opts: BookingOpts, cmd: Command) => {
      const json = !!root(cmd).opts().json;
      const a = api(cmd);
      const { req, zone } = await bookingRequest(a, opts);
      const q = await a.post<Quote>('/live/quote', req);
      const show = json ? note : write;
      if (!opts.yes || !json) for (const l of formatQuote(q, zone)) show(l);
      if (!opts.yes) {
        if (!process.stdin.isTTY) {
          throw new AppError('confirmation_required', 'Nothing booked: booking needs a yes. Run it on a terminal to answer, or add --yes to book what the quote shows.', 400);
        }
        const answer = (await ask(`book ${q.slots} slot${q.slots === 1 ? '' : 's'} on ${q.channel.name} (${q.charge} charged when you reconfirm)? [y/N] `)).toLowerCase();
        doneAsking();
        if (answer !== 'y' && answer !== 'yes') {
          if (json) return write(JSON.stringify({ booked: false, quote: q }));
          return write('nothing booked');
        }
      }
      doneAsking();
      const res = await a.post<{ booking: Booking; reservationId: string }>('/live/bookings', req);
      const next = `cascade reserve confirm ${res.reservationId} -o settings.json`;
      if (json) return write(JSON.stringify({ ...res, quote: q, next }));
      const b = res.booking;
      write('');
      write(`booked ${b.id}: "${b.title}" on ${b.channelName}, ${localRange(b.start, b.end, zone)}`);
      write('');
      write('reservation ID (also e-mailed to you; it is your stream key: keep it secret):');
      write('');
      write(`    ${res.reservationId}`);
      write('');
      write(`reconfirm by ${withUtc(b.deadline, zone)} or the booking is cancelled; reconfirming charges ${b.charge}:`);
      write(`    ${next}`);
    });

  reserve
    .command('confirm')
    .description('reconfirm a booking with its reservation ID (S3.6): charges it once, saves the origin-signed settings')
    .argument('<reservation-id>', 'rsv_… from the booking (and its e-mail)')
    .option('-o, --output <file>', 'save the settings document (JSON, mode 0600: it holds the stream key and password)')
    .option('--tz <zone>', 'show times in this zone (default: this machine’s)')
    .action(async (reservationId: string, opts: { output?: string; tz?: string }, cmd: Command) => {
      const zone = zoneOf(opts.tz);
      if (!/^rsv_[A-Za-z0-9_-]{20,60}$/.test(reservationId)) throw badRequest('invalid_argument', `"${reservationId}" is not a reservation ID (rsv_… from the booking and its e-mail).`);
      const a = api(cmd);
      const { publicKey } = await a.get<{ publicKey: string }>('/origin');
      const profile = readProfile();
      if (profile.originKey && profile.origin.replace(/\/+$/, '') === chooseOrigin(root(cmd).opts().origin) && profile.originKey !== publicKey) {
        throw new AppError('bad_signature', `The origin's key (${publicKey}) is not the one pinned when you signed in (${profile.originKey}); nothing reconfirmed. Sign in again if the origin's key really changed.`, 502);
      }
      const res = await a.post<{ booking: Booking; settings: SignedSettings; charged: number; already: boolean }>('/live/reconfirm', { reservationId });
      const b = res.booking;
      const settings = res.settings;
      if (!verifySettings(settings, publicKey) || settings.document.reservationId !== reservationId || settings.document.bookingId !== b.id) {
        throw new AppError(
          'bad_signature',
          `The settings the origin answered do not carry a valid signature of its key (${publicKey}); nothing saved. The booking is ${statusText(b.status)}${res.charged ? ` and ${res.charged} was charged` : ''}: reconfirming again charges nothing more.`,
          502,
        );
      }
      if (opts.output) {
        // The file holds the stream key and the viewers' password: only its owner reads it.
        if (existsSync(opts.output)) chmodSync(opts.output, 0o600);
        writeFileSync(opts.output, JSON.stringify(settings, null, 2) + '\n', { mode: 0o600 });
        chmodSync(opts.output, 0o600);
      }
      if (root(cmd).opts().json) return write(JSON.stringify({ ...res, verified: true, file: opts.output ?? null }));
      const d = settings.document;
      write(`reconfirmed ${b.id}: "${b.title}" on ${b.channelName}, ${localRange(b.start, b.end, zone)}`);
      write(res.already ? 'already confirmed, nothing charged' : res.charged > 0 ? `charged ${res.charged} (${b.slots} × ${b.tariffPerSlot})` : 'free channel: nothing charged');
      write(opts.output ? `settings saved to ${opts.output} (mode 0600: it holds the stream key${d.password ? ' and the password' : ''}); signature verified against the origin's key` : 'settings verified but not saved: add -o settings.json to save them');
      write(`ingest     ${d.ingest.rtmp.url}`);
      write(`           (server ${d.ingest.rtmp.server}, stream key: the reservation ID)`);
      write(`connect    ${localRange(d.connectableWindow.from, d.connectableWindow.to, zone)}`);
      write(`bitrate    ${d.bitrateKbps} kbps`);
      write(`viewers    ${d.viewerUrl}`);
    });

  reserve
    .command('list')
    .description('my bookings, latest start first (S3.17)')
    .option('--status <status>', `only these: ${STATUSES.join(', ')}`)
    .option('--tz <zone>', 'show times in this zone (default: this machine’s)')
    .action(async (opts: { status?: string; tz?: string }, cmd: Command) => {
      const zone = zoneOf(opts.tz);
      if (opts.status !== undefined && !(STATUSES as string[]).includes(opts.status)) throw badRequest('invalid_argument', `--status is one of ${STATUSES.join(', ')}; got "${opts.status}".`);
      const query = new URLSearchParams({ limit: '500', ...(opts.status ? { status: opts.status } : {}) });
      const { items } = await api(cmd).get<{ items: Booking[] }>(`/live/bookings?${query}`);
      if (root(cmd).opts().json) return write(JSON.stringify({ items }));
      if (items.length === 0) return write(opts.status ? `no bookings ${statusText(opts.status as BookingStatus)}` : 'no bookings yet (see the free slots: cascade reserve calendar)');
      for (const l of formatBookings(items, zone)) write(l);
    });

  reserve
    .command('show')
    .description('one booking with its history')
    .argument('<booking-id>', 'bkg_…')
    .option('--tz <zone>', 'show times in this zone (default: this machine’s)')
    .action(async (id: string, opts: { tz?: string }, cmd: Command) => {
      const zone = zoneOf(opts.tz);
      const b = await api(cmd).get<Booking>(`/live/bookings/${encodeURIComponent(id)}`);
      if (root(cmd).opts().json) return write(JSON.stringify(b));
      for (const l of formatBooking(b, zone)) write(l);
    });

  reserve
    .command('change')
    .description('change a booking’s title, genre, outline, detail, disclosure or password (S3.7); the time and channel cannot change')
    .argument('<booking-id>', 'bkg_…')
    .option('--title <text>', 'a new title')
    .option('--genre <text>', 'a new genre')
    .option('--outline <text>', 'a new outline (up to 20 characters)')
    .option('--detail <text>', 'a new detail (up to 200 characters)')
    .option('--disclose-email', 'show your e-mail address on the program page')
    .option('--no-disclose-email', 'stop showing it')
    .option('--disclose-web-page', 'show your web page on the program page')
    .option('--no-disclose-web-page', 'stop showing it')
    .option('--password <password>', 'a new viewers’ password (password and secret programs; friends are told once confirmed)')
    .action(async (id: string, opts: Record<string, string | boolean | undefined>, cmd: Command) => {
      const patch: Record<string, string | boolean> = {};
      for (const k of ['title', 'genre', 'outline', 'detail', 'password', 'discloseEmail', 'discloseWebPage']) if (opts[k] !== undefined) patch[k] = opts[k]!;
      if (Object.keys(patch).length === 0) throw badRequest('nothing_to_change', 'Name at least one of --title, --genre, --outline, --detail, --[no-]disclose-email, --[no-]disclose-web-page, --password. (To change the time or channel, cancel and book again.)');
      const a = api(cmd);
      const path = `/live/bookings/${encodeURIComponent(id)}`;
      const before = await a.get<Booking>(path);
      const after = await a.request<Booking>('PATCH', path, { json: patch });
      if (root(cmd).opts().json) return write(JSON.stringify(after));
      const event = after.history.length > before.history.length ? after.history.at(-1) : undefined;
      if (!event) return write(`nothing changed: ${after.id} already had those values`);
      write(`changed ${event.detail} of ${after.id} ("${after.title}")`);
      write(after.status === 'confirmed' && after.friends.length ? 'you and your friends are told by e-mail' : 'you are told by e-mail');
    });

  reserve
    .command('extend')
    .description('extend a booking into the next free slots (S3.13): offered in its last ten minutes; without --yes it shows the offer')
    .argument('<booking-id>', 'bkg_…')
    .option('--slots <n>', 'how many slots to add (default 1)')
    .option('--yes', 'accept: book and charge the slots')
    .action(async (id: string, opts: { slots?: string; yes?: boolean }, cmd: Command) => {
      const a = api(cmd);
      const json = root(cmd).opts().json;
      const offer = await a.get<ExtensionOffer>(`/live/bookings/${encodeURIComponent(id)}/extension`);
      if (!opts.yes || !offer.offered) {
        if (json) return write(JSON.stringify(offer));
        write(offer.reason);
        if (offer.offered) write(`accept with: cascade reserve extend ${id} --yes${offer.slots > 1 ? ' [--slots N]' : ''}`);
        return;
      }
      const slots = opts.slots === undefined ? 1 : wholeNumber('--slots', opts.slots, 1, offer.slots);
      const until = new Date(Date.parse(offer.until!) + (slots - 1) * offer.slotMinutes * 60_000).toISOString();
      const res = await a.post<{ booking: Booking; charged: number; already: boolean; end: string }>(`/live/bookings/${encodeURIComponent(id)}/extend`, { until });
      if (json) return write(JSON.stringify(res));
      write(res.already ? `already extended to ${res.end}; nothing more charged` : `extended "${res.booking.title}" to ${res.end}; charged ${res.charged}; the connection may stay until ${res.booking.connectableWindow.to}`);
    });

  reserve
    .command('cancel')
    .description('cancel a booking (S3.7): free before reconfirmation; after it the charge stands')
    .argument('<booking-id>', 'bkg_…')
    .action(async (id: string, _opts, cmd: Command) => {
      const res = await api(cmd).post<{ booking: Booking; refunded: number; charged: number }>(`/live/bookings/${encodeURIComponent(id)}/cancel`);
      if (root(cmd).opts().json) return write(JSON.stringify(res));
      const b = res.booking;
      write(`cancelled ${b.id} ("${b.title}" on ${b.channelName}); the slots are free again`);
      write(
        res.charged > 0
          ? `the charge of ${res.charged} stands: the booking was reconfirmed (nothing is refunded after reconfirmation)`
          : b.charged || b.history.some((h) => h.event === 'reconfirmed')
            ? 'it was reconfirmed on a free channel: nothing was charged'
            : 'nothing charged: it was not yet reconfirmed',
      );
    });

  reserve
    .command('guide')
    .description('the program guide (S3.11): today’s live programs, or a month’s')
    .option('--today', 'today’s programs (the default)')
    .option('--month <month>', 'YYYY-MM: the month’s programs by day')
    .option('--tz <zone>', 'the zone of the day and the times (default: this machine’s)')
    .action(async (opts: { today?: boolean; month?: string; tz?: string }, cmd: Command) => {
      const zone = zoneOf(opts.tz);
      if (opts.today && opts.month) throw badRequest('invalid_argument', 'Give --today or --month, not both.');
      if (opts.month !== undefined && !/^\d{4}-\d{2}$/.test(opts.month)) throw badRequest('invalid_month', `--month "${opts.month}" is not a month: use YYYY-MM.`);
      const a = api(cmd);
      const json = root(cmd).opts().json;
      if (opts.month === undefined) {
        const today = await a.get<{ date: string; timeZone: string; items: Program[] }>(`/live/today?${new URLSearchParams({ tz: zone })}`);
        if (json) return write(JSON.stringify(today));
        write(`live on ${today.date} (${zone})`);
        if (today.items.length === 0) return write('  nothing listed today');
        for (const p of today.items) write(programLine(p, zone));
        return;
      }
      const month = await a.get<{ month: string; timeZone: string; days: { date: string; items: Program[] }[] }>(`/live/guide?${new URLSearchParams({ month: opts.month, tz: zone })}`);
      if (json) return write(JSON.stringify(month));
      write(`live in ${month.month} (${zone})`);
      if (month.days.length === 0) return write('  nothing listed this month');
      for (const d of month.days) {
        write(d.date);
        for (const p of d.items) write(programLine(p, zone));
      }
    });

  reserve
    .command('feed')
    .description('a private iCalendar feed of my bookings for a calendar app; asking again replaces the old address')
    .action(async (_opts, cmd: Command) => {
      const res = await api(cmd).post<{ url: string }>('/me/calendar-feed');
      if (root(cmd).opts().json) return write(JSON.stringify(res));
      write(res.url);
      note('subscribe to it in your calendar app; anyone with the address sees your bookings, and `cascade reserve feed` again replaces it');
    });

  registerRecordingCommands(reserve);
}
