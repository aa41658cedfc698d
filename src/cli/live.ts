import type { Command } from 'commander';
import { createParser } from 'eventsource-parser';
import { systemClock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import type { ExtensionOffer } from '../live/extension-rules.ts';
import type { BroadcastStatus } from '../live/streams.ts';
import { root } from './channel.ts';
import { apiFromProfile } from './profile.ts';
import { localTime, measureOffset, offsetText, zoneOf, type ClockOffset } from './reserve.ts';

// `cascade live status <booking>` (S3.10; docs/live.md "Broadcasting"): what the broadcaster
// sees while on air — the origin's clock and this machine's offset from it, elapsed time and
// the slot's end, the incoming bitrate against the channel's, the channel, and the viewers now,
// at peak and in total. --follow keeps it on screen from the origin's once-a-second push.

const write = (line = ''): void => void process.stdout.write(line + '\n');

const clockText = (s: number) => {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}`;
};

/** The status as an origin sends it; one from before S3.13 has no distribution state nor extension offer. */
export type StatusView = Omit<BroadcastStatus, 'extension' | 'distribution'> & Partial<Pick<BroadcastStatus, 'distribution'>> & { extension?: ExtensionOffer | null };

/**
 * The S3.10 figures as lines; `offset` is this machine's clock against the origin's. In the
 * slot's last ten minutes the extension offer (S3.13) and how to accept it (`accept`).
 */
export function formatStatus(s: StatusView, offset: ClockOffset, zone: string, accept = `cascade reserve extend ${s.programId} --yes`): string[] {
  const air = s.ingest.live ? `ON AIR since ${localTime(s.ingest.since!, zone, 'HH:mm:ss')} (take ${s.ingest.take})` : s.status === 'done' ? 'ended' : 'not on air';
  const startsIn = Math.max(0, Math.ceil((Date.parse(s.start) - s.epochMs) / 1000));
  return [
    `program   ${s.title} (${s.programId})  ${air}`,
    `channel   ${s.channel.name}  (capacity ${s.channel.capacity} viewers, ${s.channel.bitrateKbps} kbit/s)`,
    `clock     origin ${localTime(s.epochMs, zone, 'yyyy-MM-dd HH:mm:ss')} ${zone}; ${offsetText(offset)}`,
    `time      ${startsIn > 0 ? `starts in ${clockText(startsIn)}` : `elapsed ${clockText(s.elapsedSeconds)}`} · slot ends ${localTime(s.end, zone, 'HH:mm:ss')} (in ${clockText(s.remainingSeconds)}) · connection cut at ${localTime(s.windowEnd, zone, 'HH:mm:ss')}`,
    `bitrate   ${s.ingest.bitrateKbps} kbit/s received; the channel carries ${s.channel.bitrateKbps}`,
    `viewers   ${s.viewers.now} now of ${s.viewers.capacity} · peak ${s.viewers.peak} · total ${s.viewers.total}`,
    ...(s.distribution === 'stopped' && s.ingest.live ? [`end       the slot has ended: viewers no longer receive what you send (connection cut at ${localTime(s.windowEnd, zone, 'HH:mm:ss')})`] : []),
    ...(s.extension?.offered ? [`extension ${s.extension.reason} Accept: ${accept}`] : s.extension && ['next_slot_taken', 'quota_exceeded'].includes(s.extension.code) ? [`extension ${s.extension.reason}`] : []),
  ];
}

export function registerLive(program: Command) {
  const live = program.command('live').description('while broadcasting (S3.10): the origin’s clock, elapsed time, slot end, bitrate, channel and viewers');
  live
    .command('status')
    .description('a booking’s live figures, once or (--follow) every second while it runs')
    .argument('<booking-id>', 'bkg_…')
    .option('--follow', 'keep showing them, one update a second, until interrupted')
    .option('--tz <zone>', 'show times in this zone (default: this machine’s)')
    .action(async (id: string, opts: { follow?: boolean; tz?: string }, cmd: Command) => {
      const zone = zoneOf(opts.tz);
      const api = apiFromProfile({ origin: root(cmd).opts().origin });
      const json = root(cmd).opts().json;
      const offset = await measureOffset(api);
      const show = (s: BroadcastStatus) => {
        if (json) return write(JSON.stringify({ ...s, offsetMs: offset.offsetMs }));
        for (const l of formatStatus(s, offset, zone)) write(l);
        if (opts.follow) write();
      };
      const path = `/live/bookings/${encodeURIComponent(id)}/status`;
      if (!opts.follow) return show(await api.get<BroadcastStatus>(path));
      // Node's fetch: `cascade --help` must not load an HTTP client package (test/cli/built.test.ts).
      const res = await fetch(`${api.origin}${path}/events`, { headers: { authorization: `Bearer ${api.token}`, accept: 'text/event-stream' } });
      if (res.status !== 200 || !res.body) {
        const body = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
        throw new AppError(body?.error?.code ?? 'stream_refused', body?.error?.message ?? `the origin answered ${res.status}`, res.status);
      }
      const parser = createParser({ onEvent: (m) => m.event === 'status' && show(JSON.parse(m.data) as BroadcastStatus) });
      const text = new TextDecoder();
      for await (const chunk of res.body) parser.feed(text.decode(chunk, { stream: true }));
      write(`the origin closed the stream at ${localTime(systemClock.now(), zone, 'HH:mm:ss')} (local time)`);
    });
}
