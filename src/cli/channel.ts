import type { Command } from 'commander';
import { createReadStream, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { AppError, badRequest } from '../core/errors.ts';
import type { Api } from '../core/http-client.ts';
import type { Channel } from '../live/channels.ts';
import type { Filler } from '../live/fillers.ts';
import { apiFromProfile } from './profile.ts';
import { table } from './table.ts';

// `cascade channel add|list|set` (S3.2, docs/live.md): the streaming server's channels, set
// up by operators: capacity, bitrate, tariff per slot, slot length and monthly quota. Anyone
// may list them. Every command takes the global --json for one JSON line.

/** The root program: global options (--origin, --json) live there. */
export function root(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

const write = (line: string): void => void process.stdout.write(line + '\n');

/** A whole number from `min` to `max` for `--flag`, or an `invalid_argument` naming the flag. */
export function wholeNumber(flag: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n < min || n > max) throw badRequest('invalid_argument', `${flag} is a whole number from ${min} to ${max}, got "${v}".`, { field: flag });
  return n;
}

/** The channel named `nameOrId` (its ID chn_…, or its exact name, case-insensitive as a fallback). */
export async function resolveChannel(api: Api, nameOrId: string): Promise<Channel> {
  const { items } = await api.get<{ items: Channel[] }>('/live/channels');
  const found =
    items.find((c) => c.id === nameOrId) ??
    items.find((c) => c.name === nameOrId) ??
    (() => {
      const folded = items.filter((c) => c.name.toLowerCase() === nameOrId.toLowerCase());
      return folded.length === 1 ? folded[0] : undefined;
    })();
  if (!found) {
    const names = items.map((c) => c.name).join(', ');
    throw new AppError('unknown_channel', `No channel "${nameOrId}"${names ? ` (channels: ${names})` : ' (no channels are set up yet: an operator adds them with `cascade channel add`)'}.`, 404);
  }
  return found;
}

export function formatChannels(items: Channel[]): string[] {
  const rows = items.map((c) => [c.name, String(c.capacity), String(c.bitrateKbps), String(c.tariffPerSlot), String(c.slotMinutes), String(c.monthlyQuotaSlots), c.id]);
  return table(['channel', 'capacity', 'kbps', 'tariff/slot', 'slot min', 'quota/month', 'id'], rows, [1, 2, 3, 4, 5]);
}

const describeChannel = (c: Channel) =>
  `${c.name}: capacity ${c.capacity} viewers, ${c.bitrateKbps} kbps, ${c.tariffPerSlot} per ${c.slotMinutes}-minute slot, quota ${c.monthlyQuotaSlots} slots a month per member (${c.id})`;

interface FieldOpts {
  name?: string;
  capacity?: string;
  bitrate?: string;
  tariff?: string;
  slotMinutes?: string;
  quota?: string;
}

function fields(o: FieldOpts) {
  const f: Record<string, string | number> = {};
  if (o.name !== undefined) f.name = o.name;
  if (o.capacity !== undefined) f.capacity = wholeNumber('--capacity', o.capacity, 1, 10_000_000);
  if (o.bitrate !== undefined) f.bitrateKbps = wholeNumber('--bitrate', o.bitrate, 1, 1_000_000);
  if (o.tariff !== undefined) f.tariffPerSlot = wholeNumber('--tariff', o.tariff, 0, 1_000_000_000);
  if (o.slotMinutes !== undefined) f.slotMinutes = wholeNumber('--slot-minutes', o.slotMinutes, 1, 1440);
  if (o.quota !== undefined) f.monthlyQuotaSlots = wholeNumber('--quota', o.quota, 0, 1_000_000);
  return f;
}

export function registerChannel(program: Command) {
  const channel = program.command('channel').description('live channels (S3.2): operators add and set them; anyone lists them');
  const api = (cmd: Command) => apiFromProfile({ origin: root(cmd).opts().origin });

  channel
    .command('add')
    .description('add a channel (operator)')
    .argument('<name>', '1–40 letters, digits, spaces, ".", "_", "-"')
    .option('--capacity <n>', 'viewers admitted at once')
    .option('--bitrate <kbps>', 'the program bitrate in kbit/s')
    .option('--tariff <minor>', 'charge per slot in minor units (0: free)')
    .option('--slot-minutes <n>', 'slot length; must divide a day (5, 10, 15, 20, 30, 60…)', '10')
    .option('--quota <slots>', 'slots one member may book per calendar month (default: the origin’s LIVE_MONTHLY_QUOTA_SLOTS)')
    .action(async (name: string, opts: FieldOpts, cmd: Command) => {
      const missing = (['capacity', 'bitrate', 'tariff'] as const).filter((k) => opts[k] === undefined);
      if (missing.length) throw badRequest('missing_option', `A channel needs ${missing.map((m) => `--${m}`).join(', ')} (e.g. --capacity 50 --bitrate 2500 --tariff 100).`);
      const created = await api(cmd).post<Channel>('/live/channels', fields({ ...opts, name }));
      if (root(cmd).opts().json) return write(JSON.stringify(created));
      write(`added ${describeChannel(created)}`);
    });

  channel
    .command('list')
    .description('the channels with capacity, bitrate, tariff, slot length and quota')
    .action(async (_opts, cmd: Command) => {
      const { items } = await api(cmd).get<{ items: Channel[] }>('/live/channels');
      if (root(cmd).opts().json) return write(JSON.stringify({ items }));
      if (items.length === 0) return write('no channels yet (an operator adds one: cascade channel add NAME --capacity 50 --bitrate 2500 --tariff 100)');
      for (const l of formatChannels(items)) write(l);
    });

  channel
    .command('set')
    .description('change a channel’s settings (operator); bookings keep the tariff they were made at')
    .argument('<channel>', 'its name or ID')
    .option('--name <name>', 'a new name')
    .option('--capacity <n>', 'viewers admitted at once')
    .option('--bitrate <kbps>', 'the program bitrate in kbit/s')
    .option('--tariff <minor>', 'charge per slot in minor units, for bookings made from now on')
    .option('--slot-minutes <n>', 'slot length (refused while bookings to come would not fit)')
    .option('--quota <slots>', 'slots one member may book per calendar month')
    .action(async (nameOrId: string, opts: FieldOpts, cmd: Command) => {
      const f = fields(opts);
      if (Object.keys(f).length === 0) throw badRequest('nothing_to_change', 'Name at least one of --name, --capacity, --bitrate, --tariff, --slot-minutes, --quota.');
      const a = api(cmd);
      const found = await resolveChannel(a, nameOrId);
      const updated = await a.request<Channel>('PATCH', `/live/channels/${encodeURIComponent(found.id)}`, { json: f });
      if (root(cmd).opts().json) return write(JSON.stringify(updated));
      write(`updated ${describeChannel(updated)}`);
      if (f.tariffPerSlot !== undefined && f.tariffPerSlot !== found.tariffPerSlot) write('bookings already made keep the tariff they were made at');
    });
  channel
    .command('filler')
    .description('show or set what the channel carries when no program is on it (S3.14, operator): a slate or a looping clip')
    .argument('<channel>', 'its name or ID')
    .option('--slate <text>', 'a slate with this text (up to 200 characters; "\\n" breaks a line)')
    .option('--clip <file>', 'a video file (at most 200 MiB), re-encoded within the channel’s bitrate and looped')
    .action(async (nameOrId: string, opts: { slate?: string; clip?: string }, cmd: Command) => {
      if (opts.slate !== undefined && opts.clip !== undefined) throw badRequest('invalid_argument', 'Give --slate or --clip, not both.');
      const a = api(cmd);
      const found = await resolveChannel(a, nameOrId);
      const route = `/live/channels/${encodeURIComponent(found.id)}/filler`;
      let f: Filler;
      if (opts.slate !== undefined) f = await a.request<Filler>('PUT', route, { json: { slate: opts.slate.replace(/\\n/g, '\n') } });
      else if (opts.clip !== undefined) {
        let size: number;
        try {
          size = statSync(opts.clip).size;
        } catch {
          throw badRequest('file_not_found', `No file ${opts.clip}.`);
        }
        if (!root(cmd).opts().json) write(`sending ${opts.clip} (${(size / 1024 / 1024).toFixed(1)} MiB); the origin packages it with ffmpeg…`);
        f = await a.request<Filler>('PUT', route, { body: Readable.toWeb(createReadStream(opts.clip)), headers: { 'content-type': 'video/mp4' } });
      } else f = await a.get<Filler>(route);
      if (root(cmd).opts().json) return write(JSON.stringify(f));
      const what = f.kind === 'clip' ? 'a clip' : f.kind === 'slate' ? `a slate: "${f.text?.replace(/\n/g, ' / ')}"` : `the default slate ("${f.text?.replace(/\n/g, ' / ')}")`;
      write(`${found.name} carries ${what}, ${(f.totalMs / 1000).toFixed(1)} s looped, when no program is on air`);
      write(`play it: ${a.origin}${f.playlist}`);
    });
}
