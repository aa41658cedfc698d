import type { Command } from 'commander';
import { Api } from '../core/http-client.ts';
import { resolveContentId } from './content-id.ts';
import { apiFromProfile, cascadeHome } from './profile.ts';
import { badRequest } from '../core/errors.ts';
import { deviceSession } from '../terminals/device.ts';
import { parseRate } from '../transfer/token-bucket.ts';
import { table } from './table.ts';
import { formatBytes } from '../schedule/ordering.ts';
import type { DeliveryRecord } from '../schedule/deliveries.ts';
import type { PlanView } from '../schedule/planning.ts';
import type { PublicSchedule, SelectionView } from '../schedule/requests.ts';
import type { Window, WindowSpec } from '../schedule/windows.ts';

// `cascade schedule add|list|rm|plan|history` (#5, S0.1, S0.2, S0.5, S0.7): this device's
// distribution requests, as its terminal (signed in with its device key, like `cascade
// get`). Every command takes the global --json for one JSON line.

/** The root program: global options (--origin, --json) live there. */
function root(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

const write = (line: string): void => void process.stdout.write(line + '\n');

async function terminalApi(cmd: Command): Promise<Api> {
  const userApi = apiFromProfile({ origin: root(cmd).opts().origin });
  const device = await deviceSession(userApi, cascadeHome());
  return new Api(userApi.origin, device.token);
}

/** This machine's IANA zone: windows without a zone are in the terminal's own time. */
export function localZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

export interface WindowDefaults {
  capBytesPerSecond?: number;
  from?: string;
  until?: string;
  timeZone?: string;
}

const invalidWindow = (text: string, why: string) => badRequest('invalid_window', `--window "${text}": ${why}`, { field: 'window' });

/** "2MB/s", "500k", "16MiB/s" → bytes/s; `invalid_cap` otherwise. */
export function parseCap(text: string): number {
  try {
    return parseRate(text);
  } catch (e) {
    throw badRequest('invalid_cap', `cap "${text}": ${(e as Error).message}`, { field: 'capBytesPerSecond' });
  }
}

/**
 * One --window argument: `DAYS START-END [ZONE] [cap=RATE] [from=DATE] [until=DATE]`,
 * e.g. "weekdays 01:00-05:00 Europe/Berlin" or "sat,sun 22:00-06:00 cap=2MB/s".
 * DAYS: mon…sun, weekdays, weekends, daily, comma-separated. ZONE defaults to this
 * machine's. A JSON object (`{"days": …}`) is taken as it is. The origin validates
 * the result (parseWindow); this only splits the words.
 */
export function parseWindowArg(text: string, defaults: WindowDefaults = {}): WindowSpec {
  const t = text.trim();
  const base: Partial<WindowSpec> = {};
  if (defaults.capBytesPerSecond !== undefined) base.capBytesPerSecond = defaults.capBytesPerSecond;
  if (defaults.from !== undefined) base.from = defaults.from;
  if (defaults.until !== undefined) base.until = defaults.until;
  if (t.startsWith('{')) {
    let obj: unknown;
    try {
      obj = JSON.parse(t);
    } catch {
      throw invalidWindow(text, 'not valid JSON');
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw invalidWindow(text, 'a JSON window is an object');
    return { ...base, ...(obj as WindowSpec) };
  }
  const words = t.split(/\s+/).filter(Boolean);
  if (words.length < 2) throw invalidWindow(text, 'write DAYS START-END [ZONE], e.g. "weekdays 01:00-05:00 Europe/Berlin"');
  const days = words[0]!.toLowerCase().split(/[,+]/).filter(Boolean);
  const m = /^(\d{1,2}:\d{2})\s*[-–]\s*(\d{1,2}:\d{2})$/.exec(words[1]!);
  if (!m) throw invalidWindow(text, `"${words[1]}" is not START-END such as 01:00-05:00`);
  const pad = (hm: string) => (hm.length === 4 ? `0${hm}` : hm);
  const spec: WindowSpec = { ...base, days: days as WindowSpec['days'], start: pad(m[1]!), end: pad(m[2]!), timeZone: defaults.timeZone ?? localZone() };
  let zoneSeen = false;
  for (const w of words.slice(2)) {
    const kv = /^(cap|from|until)=(.+)$/i.exec(w);
    if (kv) {
      const key = kv[1]!.toLowerCase();
      if (key === 'cap') spec.capBytesPerSecond = parseCap(kv[2]!);
      else if (key === 'from') spec.from = kv[2]!;
      else spec.until = kv[2]!;
    } else if (!zoneSeen) {
      spec.timeZone = w;
      zoneSeen = true;
    } else {
      throw invalidWindow(text, `unexpected "${w}" (after the zone only cap=, from= and until= may follow)`);
    }
  }
  return spec;
}

// ---- text output ----

const DAY_ORDER = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

export function formatDays(days: readonly string[]): string {
  const key = DAY_ORDER.filter((d) => days.includes(d)).join(',');
  if (key === DAY_ORDER.join(',')) return 'daily';
  if (key === 'mon,tue,wed,thu,fri') return 'weekdays';
  if (key === 'sat,sun') return 'weekends';
  return key;
}

export function formatWindow(w: Window): string {
  const parts = [`${formatDays(w.days)} ${w.start}-${w.end} ${w.timeZone}`];
  if (w.capBytesPerSecond) parts.push(`cap ${formatBytes(w.capBytesPerSecond)}`);
  if (w.from) parts.push(`from ${w.from}`);
  if (w.until) parts.push(`until ${w.until}`);
  return parts.join(' ');
}

export function formatSelection(s: SelectionView): string {
  if (s.contentId) return `content ${s.contentId}`;
  if (s.publisherId) return `publisher ${s.publisher ?? ''} (${s.publisherId})`.replace('  ', ' ');
  if (s.genre !== undefined) return `genre "${s.genre}"`;
  if (s.series !== undefined) return `series "${s.series}"`;
  return '?';
}

/** "2026-01-05 00:00Z" */
export const when = (iso: string | null) => (iso ? iso.replace('T', ' ').replace(/:\d{2}\.\d{3}Z$/, 'Z') : '-');


function nextText(s: PublicSchedule): string {
  if (!s.next) return 'no window opens again';
  return s.next.open ? `open until ${when(s.next.end)}` : `opens ${when(s.next.start)}`;
}

export function formatSchedules(list: PublicSchedule[]): string[] {
  const rows = list.map((s) => [s.id, formatSelection(s.select), s.windows.map(formatWindow).join('; '), String(s.priority), nextText(s)]);
  return table(['schedule', 'selects', 'windows', 'priority', 'next'], rows, new Set([3]));
}

export function formatPlan(p: PlanView): string[] {
  const rows = p.items.map((i) => [
    i.open ? 'now' : when(i.dueAt),
    when(i.windowEnd),
    i.title,
    i.contentId.slice(0, 12),
    String(i.totalSize),
    i.capBytesPerSecond ? formatBytes(i.capBytesPerSecond) : '-',
    i.deferrals ? String(i.deferrals) : '',
    i.scheduleId,
  ]);
  return table(['due', 'window ends', 'title', 'content', 'bytes', 'cap', 'deferred', 'schedule'], rows, new Set([4, 6]));
}

export function formatHistory(entries: DeliveryRecord[]): string[] {
  const rows = entries.map((e) => [
    when(e.dueAt),
    when(e.startedAt),
    when(e.endedAt),
    String(e.bytes),
    e.source ?? '-',
    e.reason ? `${e.outcome} (${e.reason})` : e.outcome,
    String(e.deferrals),
    e.title ?? e.contentId.slice(0, 12),
    e.id,
  ]);
  return table(['due', 'started', 'ended', 'bytes', 'source', 'outcome', 'deferrals', 'content', 'record'], rows, new Set([3, 6]));
}

function limitOf(v: string, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > max) throw badRequest('invalid_argument', `--limit is a whole number from 1 to ${max}, got "${v}".`);
  return n;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerSchedule(program: Command) {
  const schedule = program.command('schedule').description('this terminal’s distribution schedule (S0.1): what it wants and in which local time windows');

  schedule
    .command('add')
    .description('send a distribution request: one selection and one or more windows')
    .option('--content <id>', 'one content (its ID, or a unique prefix of 8 or more)')
    .option('--publisher <id|name>', 'everything a publisher publishes (user ID usr_… or username)')
    .option('--genre <genre>', 'every content of a genre (case-insensitive)')
    .option('--series <prefix>', 'every content whose title starts with this (case-insensitive)')
    .option('--window <spec>', 'DAYS START-END [ZONE] [cap=RATE] [from=DATE] [until=DATE], e.g. "weekdays 01:00-05:00 Europe/Berlin"; repeat for more', collect)
    .option('--cap <rate>', 'bandwidth cap for every window given, e.g. 2MB/s')
    .option('--from <date>', 'first local date (YYYY-MM-DD) for every window given')
    .option('--until <date>', 'last local date (YYYY-MM-DD) for every window given')
    .option('--zone <zone>', 'IANA time zone for windows that name none (default: this machine’s)')
    .option('--priority <n>', 'priority among this terminal’s own items, 0–100 (default 0)')
    .action(async (opts: Record<string, any>, cmd: Command) => {
      const g = root(cmd).opts();
      const select: SelectionView = {};
      if (opts.content !== undefined) select.contentId = await resolveContentId(apiFromProfile({ origin: g.origin }), opts.content);
      if (opts.publisher !== undefined) {
        if (/^usr_/.test(opts.publisher)) select.publisherId = opts.publisher;
        else select.publisher = opts.publisher;
      }
      if (opts.genre !== undefined) select.genre = opts.genre;
      if (opts.series !== undefined) select.series = opts.series;
      const defaults: WindowDefaults = { from: opts.from, until: opts.until, timeZone: opts.zone };
      if (opts.cap !== undefined) defaults.capBytesPerSecond = parseCap(opts.cap);
      const windows = ((opts.window as string[] | undefined) ?? []).map((w) => parseWindowArg(w, defaults));
      let priority: number | undefined;
      if (opts.priority !== undefined) {
        if (!/^\d+$/.test(opts.priority)) throw badRequest('invalid_priority', `--priority is a whole number from 0 to 100, got "${opts.priority}".`);
        priority = Number(opts.priority);
      }
      const api = await terminalApi(cmd);
      const s = await api.post<PublicSchedule>('/schedules', { select, windows, ...(priority !== undefined ? { priority } : {}) });
      if (g.json) return write(JSON.stringify(s));
      write(`schedule ${s.id}: ${formatSelection(s.select)}, ${s.windows.map(formatWindow).join('; ')}`);
      write(nextText(s));
    });

  schedule
    .command('list')
    .description('this terminal’s schedules, each with its next window')
    .action(async (_opts, cmd: Command) => {
      const g = root(cmd).opts();
      const { schedules } = await (await terminalApi(cmd)).get<{ schedules: PublicSchedule[] }>('/schedules');
      if (g.json) return write(JSON.stringify({ schedules }));
      if (schedules.length === 0) return write('no schedules (add one: cascade schedule add --genre G --window "daily 01:00-05:00")');
      for (const l of formatSchedules(schedules)) write(l);
    });

  schedule
    .command('rm')
    .description('remove one of this terminal’s schedules')
    .argument('<id>', 'schedule ID (sch_…)')
    .action(async (id: string, _opts, cmd: Command) => {
      const g = root(cmd).opts();
      const res = await (await terminalApi(cmd)).request<{ id: string; removed: boolean }>('DELETE', `/schedules/${encodeURIComponent(id)}`);
      if (g.json) return write(JSON.stringify(res));
      write(`removed schedule ${res.id}`);
    });

  schedule
    .command('plan')
    .description('what is due for this terminal and when (S0.5)')
    .option('--limit <n>', 'how many items (1–1000)', '100')
    .action(async (opts: { limit: string }, cmd: Command) => {
      const g = root(cmd).opts();
      const plan = await (await terminalApi(cmd)).get<PlanView>(`/schedules/plan?limit=${limitOf(opts.limit, 1000)}`);
      if (g.json) return write(JSON.stringify(plan));
      if (plan.items.length === 0) write('nothing due');
      else for (const l of formatPlan(plan)) write(l);
      if (plan.truncated) write(`(more are due; --limit ${Math.min(1000, plan.items.length * 2)} shows more)`);
      const next = plan.openings.find((o) => Date.parse(o.start) > Date.parse(plan.at));
      if (next) write(`next window opens ${when(next.start)} (schedule ${next.scheduleId})`);
    });

  schedule
    .command('history')
    .description('this terminal’s scheduled deliveries, newest first (S0.7)')
    .option('--limit <n>', 'how many records (1–1000)', '20')
    .option('--before <id>', 'start after this record (the cursor printed by the previous page)')
    .option('--content <id>', 'only this content')
    .action(async (opts: { limit: string; before?: string; content?: string }, cmd: Command) => {
      const g = root(cmd).opts();
      const contentId = opts.content ? await resolveContentId(apiFromProfile({ origin: g.origin }), opts.content) : undefined;
      const query = new URLSearchParams({ limit: String(limitOf(opts.limit, 1000)), ...(opts.before ? { before: opts.before } : {}), ...(contentId ? { contentId } : {}) });
      const h = await (await terminalApi(cmd)).get<{ entries: DeliveryRecord[]; nextCursor: string | null }>(`/schedules/history?${query}`);
      if (g.json) return write(JSON.stringify(h));
      if (h.entries.length === 0) return write('no scheduled deliveries yet');
      for (const l of formatHistory(h.entries)) write(l);
      if (h.nextCursor) write(`older records: cascade schedule history --before ${h.nextCursor}`);
    });
}
