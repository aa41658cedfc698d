import type { Command } from 'commander';
import type { Rebroadcast, Recording } from '../live/recordings.ts';
import { root, wholeNumber } from './channel.ts';
import { apiFromProfile } from './profile.ts';
import { table } from './table.ts';

// `cascade reserve record|recordings|rebroadcast` (S3.15, #16 point 3; docs/live.md "Recording
// and rebroadcast"): ask for a program's recording (or withdraw it), list one's recordings with
// the content each became, and make a booking rebroadcast a video one published. --json prints
// the API's answer as one line.

const write = (line = ''): void => void process.stdout.write(line + '\n');
const api = (cmd: Command) => apiFromProfile({ origin: root(cmd).opts().origin });

const STATUS_TEXT: Record<Recording['status'], string> = {
  requested: 'requested (made when the program is over)',
  making: 'being made',
  made: 'made',
  failed: 'failed',
  empty: 'nothing was broadcast',
};

export function registerRecordingCommands(reserve: Command) {
  reserve
    .command('record')
    .description('record my program (S3.15): once over, it is published as content with this price; --withdraw takes the request back')
    .argument('<booking-id>', 'bkg_…')
    .option('--price <minor-units>', 'the price of the content it becomes')
    .option('--title <text>', 'the content’s title (default: the program’s)')
    .option('--withdraw', 'withdraw the request (until it is being made)')
    .action(async (id: string, opts: { price?: string; title?: string; withdraw?: boolean }, cmd: Command) => {
      const a = api(cmd);
      const path = `/live/bookings/${encodeURIComponent(id)}/recording`;
      const json = root(cmd).opts().json;
      if (opts.withdraw) {
        const r = await a.request<{ programId: string; withdrawn: true }>('DELETE', path);
        return write(json ? JSON.stringify(r) : `withdrawn: ${id} will not be recorded`);
      }
      const price = wholeNumber('--price', opts.price ?? '', 0, 1e12);
      const r = await a.post<Recording>(path, { price, ...(opts.title !== undefined ? { title: opts.title } : {}) });
      if (json) return write(JSON.stringify(r));
      write(`${r.programId} ("${r.programTitle}") will be recorded as "${r.title}" at the price ${r.price}`);
      write('once the program is over it is published as content: see cascade reserve recordings');
    });

  reserve
    .command('recordings')
    .description('my recordings: program, status and the content each became (S3.15)')
    .action(async (_opts, cmd: Command) => {
      const { items } = await api(cmd).get<{ items: Recording[] }>('/live/recordings');
      if (root(cmd).opts().json) return write(JSON.stringify({ items }));
      if (items.length === 0) return write('no recordings (ask for one: cascade reserve record bkg_… --price N)');
      const rows = items.map((r) => [r.programId, r.title, String(r.price), STATUS_TEXT[r.status], r.contentId ?? (r.error ? `(${r.error})` : '')]);
      for (const l of table(['program', 'title', 'price', 'status', 'content'], rows, [2])) write(l);
    });

  reserve
    .command('rebroadcast')
    .description('make my booking a rebroadcast of a video I published (S3.15): the origin feeds it at the start; --clear undoes it')
    .argument('<booking-id>', 'bkg_…')
    .argument('[content-id]', 'the content (e.g. a recording’s, from cascade reserve recordings)')
    .option('--clear', 'take a live publish again instead')
    .action(async (id: string, contentId: string | undefined, opts: { clear?: boolean }, cmd: Command) => {
      const a = api(cmd);
      const path = `/live/bookings/${encodeURIComponent(id)}/rebroadcast`;
      const json = root(cmd).opts().json;
      if (opts.clear || contentId === undefined) {
        const r = await a.request<{ programId: string }>('DELETE', path);
        return write(json ? JSON.stringify(r) : `${id} takes a live publish again`);
      }
      const r = await a.post<Rebroadcast>(path, { contentId });
      if (json) return write(JSON.stringify(r));
      write(`${r.programId} will rebroadcast "${r.title}" (${Math.round(r.durationSeconds)} s) from its start; RTMP publishes to it are refused`);
    });
}
