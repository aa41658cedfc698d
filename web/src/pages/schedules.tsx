import { useState } from 'preact/hooks';
import { api, qs } from '../api.ts';
import { ErrorNote, Loading, Page, useLoad } from '../components/common.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { bytes, shortId, when } from '../format.ts';
import { navigate, type Match } from '../router.ts';
import { placeRefusal } from '../refusals.ts';
import { TableWrap } from '../components/table-wrap.tsx';

// Schedules (S0.1, S0.5, S0.7) for one of the member's terminals, through the account-session
// routes /me/terminals/:tid/schedules… (same bodies and answers as the terminal's own routes,
// docs/schedules.md): the list with remove buttons, the form that adds one, a week view of the
// windows in the browser's own time zone, the plan (what comes when) and the delivery history.

interface Terminal {
  id: string;
  name: string;
  region: string;
  online: boolean;
  lastSeenAt: string | null;
}

interface Win {
  days: string[];
  start: string;
  end: string;
  timeZone: string;
  from?: string | null;
  until?: string | null;
  capBytesPerSecond?: number | null;
}

interface Schedule {
  id: string;
  select: { contentId?: string; publisherId?: string; publisher?: string; genre?: string; series?: string };
  windows: Win[];
  priority: number;
  createdAt: string;
  next: { start: string; end: string; open: boolean; windowIndex: number; capBytesPerSecond: number | null } | null;
}

interface Opening {
  scheduleId: string;
  windowIndex: number;
  start: string;
  end: string;
  capBytesPerSecond: number | null;
}

interface PlanItem {
  contentId: string;
  title: string;
  genre: string;
  publisher: string;
  totalSize: number;
  heldPieces: string | null;
  scheduleId: string;
  priority: number;
  dueAt: string;
  windowEnd: string;
  open: boolean;
  capBytesPerSecond: number | null;
  deferrals: number;
  lastOutcome: string | null;
}

interface Plan {
  at: string;
  items: PlanItem[];
  truncated: boolean;
  openings: Opening[];
}

interface DeliveryRecord {
  id: string;
  contentId: string;
  title: string | null;
  dueAt: string;
  windowEnd: string | null;
  startedAt: string | null;
  endedAt: string | null;
  bytes: number;
  source: string | null;
  sourceId: string | null;
  outcome: 'due' | 'running' | 'done' | 'deferred' | 'failed';
  reason: string | null;
  deferrals: number;
}

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
const DAY_NAMES: Record<string, string> = { mon: 'Monday', tue: 'Tuesday', wed: 'Wednesday', thu: 'Thursday', fri: 'Friday', sat: 'Saturday', sun: 'Sunday' };
const browserZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone;

export function SchedulesPage({ query }: Match) {
  const terminals = useLoad(() => api<{ items: Terminal[] }>('GET', '/me/terminals'));
  const list = terminals.data?.items ?? [];
  const wanted = query.get('t');
  const terminal = list.find((t) => t.id === wanted) ?? list[0] ?? null;
  return (
    <Page title="Schedules">
      <p class="muted">
        Say what one of your terminals should receive, and in which local time windows; the origin delivers it then (docs: Schedules).
      </p>
      <ErrorNote message={terminals.error} />
      {terminals.loading && !terminals.data && <Loading what="your terminals" />}
      {terminals.data && list.length === 0 && <NoTerminal />}
      {terminal && (
        <>
          <div class="field terminal-pick">
            <label for="terminal">Terminal</label>
            <select id="terminal" value={terminal.id} onChange={(e) => navigate(`/schedules${qs({ t: e.currentTarget.value })}`)}>
              {list.map((t) => (
                <option key={t.id} value={t.id}>
                  {t.name} ({[t.region, t.online ? 'online' : 'offline'].filter(Boolean).join(', ')})
                </option>
              ))}
            </select>
            <small class="hint">
              {terminal.online ? 'Online now.' : terminal.lastSeenAt ? `Offline; last seen ${when(terminal.lastSeenAt)}.` : 'Offline; it has not called in yet.'} ID{' '}
              <code class="id">{terminal.id}</code>
            </small>
          </div>
          <TerminalSchedules key={terminal.id} terminal={terminal} />
        </>
      )}
    </Page>
  );
}

function NoTerminal() {
  return (
    <div class="notice">
      <p>
        <strong>You have no terminal yet.</strong> Schedules belong to a terminal: the device that receives the deliveries.
      </p>
      <p>Register one on the device with the command line, signed in with your account:</p>
      <pre class="cmd">
        <code>{'cascade login\ncascade terminal register --name living-room\ncascade agent --schedule stream'}</code>
      </pre>
      <p>
        <code>cascade terminal register</code> makes the device a terminal of your account (<code>cascade agent</code> also does it on
        its first start); <code>cascade agent --schedule stream</code> then receives the deliveries. Reload this page afterwards.
      </p>
    </div>
  );
}

function TerminalSchedules({ terminal }: { terminal: Terminal }) {
  const base = `/me/terminals/${encodeURIComponent(terminal.id)}/schedules`;
  const [tick, setTick] = useState(0);
  const reload = () => setTick((t) => t + 1);
  const schedules = useLoad(() => api<{ schedules: Schedule[] }>('GET', base), [base, tick]);
  const plan = useLoad(() => api<Plan>('GET', `${base}/plan${qs({ limit: 50 })}`), [base, tick]);
  const items = schedules.data?.schedules ?? [];
  // Schedules are numbered in the list; the week view and the plan refer to them by number.
  const number = new Map(items.map((s, i) => [s.id, i + 1]));
  return (
    <>
      <ScheduleList items={items} error={schedules.error} loading={schedules.loading && !schedules.data} base={base} onRemoved={reload} />
      <AddSchedule base={base} onAdded={reload} />
      <section aria-labelledby="week-h">
        <h2 id="week-h">Week view</h2>
        <ErrorNote message={plan.error} />
        {plan.data && <WeekView plan={plan.data} number={number} />}
      </section>
      <section aria-labelledby="plan-h">
        <h2 id="plan-h">Plan: what will come and when</h2>
        {plan.data && <PlanTable plan={plan.data} number={number} />}
      </section>
      <History base={base} tick={tick} />
    </>
  );
}

function describeSelect(s: Schedule['select']): string {
  if (s.contentId) return `content ${shortId(s.contentId)}`;
  if (s.publisher || s.publisherId) return `everything published by ${s.publisher ?? s.publisherId}`;
  if (s.genre) return `genre “${s.genre}”`;
  if (s.series) return `series “${s.series}” (titles starting so)`;
  return '—';
}

function describeDays(days: string[]): string {
  const set = days.join(',');
  if (set === DAYS.join(',')) return 'daily';
  if (set === 'mon,tue,wed,thu,fri') return 'weekdays';
  if (set === 'sat,sun') return 'weekends';
  return days.map((d) => d[0].toUpperCase() + d.slice(1)).join(', ');
}

export function describeWindow(w: Win): string {
  const parts = [`${describeDays(w.days)} ${w.start}–${w.end} ${w.timeZone}`];
  if (w.capBytesPerSecond) parts.push(`cap ${bytes(w.capBytesPerSecond)}/s`);
  if (w.from) parts.push(`from ${w.from}`);
  if (w.until) parts.push(`until ${w.until}`);
  return parts.join(', ');
}

function ScheduleList({ items, error, loading, base, onRemoved }: { items: Schedule[]; error: string | null; loading: boolean; base: string; onRemoved: () => void }) {
  const form = useSubmit();
  const [status, setStatus] = useState('');
  return (
    <section aria-labelledby="list-h">
      <h2 id="list-h">Schedules of this terminal</h2>
      <ErrorNote message={error} />
      <FormError message={form.error} />
      <p class="visually-hidden" role="status">
        {status}
      </p>
      {loading && <Loading what="schedules" />}
      {!loading && !error && items.length === 0 && <p class="muted">No schedule yet: add one below.</p>}
      {items.length > 0 && (
        <TableWrap label="Schedules table">
          <table class="schedules">
            <caption class="visually-hidden">Schedules of this terminal</caption>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">What</th>
                <th scope="col">Windows</th>
                <th scope="col" class="num">
                  Priority
                </th>
                <th scope="col">Next window</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((s, i) => (
                <tr key={s.id}>
                  <td>{i + 1}</td>
                  <td>{describeSelect(s.select)}</td>
                  <td>
                    <ul class="plain">
                      {s.windows.map((w, j) => (
                        <li key={j}>{describeWindow(w)}</li>
                      ))}
                    </ul>
                  </td>
                  <td class="num">{s.priority}</td>
                  <td>{!s.next ? 'never opens again' : s.next.open ? `open now, until ${when(s.next.end)}` : `${when(s.next.start)} – ${when(s.next.end)}`}</td>
                  <td>
                    <button
                      type="button"
                      class="secondary"
                      disabled={form.busy}
                      onClick={() =>
                        form.run(async () => {
                          await api('DELETE', `${base}/${encodeURIComponent(s.id)}`);
                          setStatus(`Schedule ${i + 1} removed.`);
                          onRemoved();
                        })
                      }
                    >
                      Remove<span class="visually-hidden"> schedule {i + 1}</span>
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
    </section>
  );
}

interface WinForm {
  days: string[];
  start: string;
  end: string;
  timeZone: string;
  cap: string;
  from: string;
  until: string;
}

const SELECT_KINDS = [
  { kind: 'genre', label: 'A genre', field: 'Genre', hint: 'Every content of this genre, now and later (e.g. Nature).' },
  { kind: 'series', label: 'A series', field: 'Title prefix', hint: 'Every content whose title starts with this text.' },
  { kind: 'publisher', label: 'A publisher', field: 'Publisher’s username', hint: 'Everything a publisher publishes: their username.' },
  { kind: 'contentId', label: 'One content', field: 'Content ID', hint: 'Its content ID: 64 hex characters, on the content’s page.' },
] as const;

const newWindow = (): WinForm => ({ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '01:00', end: '05:00', timeZone: browserZone(), cap: '', from: '', until: '' });

/** The cap as the API takes it: bytes per second from MB/s; text that is not a number goes as is, for the API to refuse. */
function capValue(text: string): number | string | undefined {
  const t = text.trim();
  if (!t) return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? Math.round(n * 1_000_000) : t;
}

function AddSchedule({ base, onAdded }: { base: string; onAdded: () => void }) {
  const [kind, setKind] = useState<(typeof SELECT_KINDS)[number]['kind']>('genre');
  const [value, setValue] = useState('');
  const [priority, setPriority] = useState('0');
  const [windows, setWindows] = useState<WinForm[]>([newWindow()]);
  const [done, setDone] = useState('');
  const fieldNames = ['select', 'priority', 'windows', ...windows.map((_, i) => `w${i}`)];
  const form = useSubmit(fieldNames);
  const setWin = (i: number, patch: Partial<WinForm>) => setWindows((ws) => ws.map((w, j) => (j === i ? { ...w, ...patch } : w)));
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];

  const submit = (e: Event) => {
    e.preventDefault();
    setDone('');
    form.run(async () => {
      const body = {
        select: { [kind]: value.trim() },
        windows: windows.map((w) => ({
          days: w.days,
          start: w.start.trim(),
          end: w.end.trim(),
          timeZone: w.timeZone.trim(),
          ...(capValue(w.cap) !== undefined ? { capBytesPerSecond: capValue(w.cap) } : {}),
          ...(w.from ? { from: w.from } : {}),
          ...(w.until ? { until: w.until } : {}),
        })),
        priority: priority.trim() === '' ? 0 : Number(priority),
      };
      try {
        await api('POST', base, body);
      } catch (err) {
        placeRefusal(err, {
          empty_selection: 'select',
          invalid_selection: 'select',
          invalid_content_id: 'select',
          unknown_content: 'select',
          unknown_publisher: 'select',
          invalid_priority: 'priority',
          too_many_windows: 'windows',
          // "window N: …" names the window (0-based) the refusal is about.
          invalid_window: (e) => windowField(e.message),
          unknown_time_zone: (e) => windowField(e.message),
          invalid_cap: (e) => windowField(e.message),
        });
      }
      setValue('');
      setDone('Schedule added.');
      onAdded();
    });
  };

  const kindDef = SELECT_KINDS.find((k) => k.kind === kind)!;
  return (
    <section aria-labelledby="add-h">
      <h2 id="add-h">Add a schedule</h2>
      <form onSubmit={submit} class="schedule-form" noValidate>
        <FormError message={form.error} />
        <fieldset>
          <legend>What to receive</legend>
          <div class="choices">
            {SELECT_KINDS.map((k) => (
              <label key={k.kind}>
                <input type="radio" name="kind" value={k.kind} checked={kind === k.kind} onChange={() => setKind(k.kind)} /> {k.label}
              </label>
            ))}
          </div>
          <Field label={kindDef.field} name="select" hint={kindDef.hint} error={form.fieldErrors.select} value={value} maxLength={200} onInput={(e) => setValue(e.currentTarget.value)} />
        </fieldset>
        {form.fieldErrors.windows && (
          <p class="field-error" role="alert">
            {form.fieldErrors.windows}
          </p>
        )}
        {windows.map((w, i) => (
          <fieldset key={i} class="window" aria-describedby={form.fieldErrors[`w${i}`] ? `w${i}-error` : undefined}>
            <legend>Window {i + 1}</legend>
            <fieldset class="days">
              <legend>Days it starts on</legend>
              {DAYS.map((d) => (
                <label key={d}>
                  <input
                    type="checkbox"
                    checked={w.days.includes(d)}
                    onChange={(e) => setWin(i, { days: DAYS.filter((x) => (x === d ? e.currentTarget.checked : w.days.includes(x))) })}
                  />{' '}
                  <abbr title={DAY_NAMES[d]}>{d[0].toUpperCase() + d.slice(1)}</abbr>
                </label>
              ))}
            </fieldset>
            <div class="row">
              <Field label="Start (HH:MM)" name={`w${i}-start`} value={w.start} maxLength={5} inputMode="numeric" autocomplete="off" onInput={(e) => setWin(i, { start: e.currentTarget.value })} />
              <Field label="End (HH:MM)" name={`w${i}-end`} hint="At or before the start: the next day." value={w.end} maxLength={5} inputMode="numeric" autocomplete="off" onInput={(e) => setWin(i, { end: e.currentTarget.value })} />
            </div>
            <Field label="Time zone" name={`w${i}-zone`} hint="The terminal’s own zone (IANA name)." value={w.timeZone} maxLength={64} {...({ list: "zones" } as object)} autocomplete="off" onInput={(e) => setWin(i, { timeZone: e.currentTarget.value })} />
            <div class="row">
              <Field label="Bandwidth cap, MB/s (optional)" name={`w${i}-cap`} value={w.cap} maxLength={20} inputMode="decimal" onInput={(e) => setWin(i, { cap: e.currentTarget.value })} />
              <Field label="From date (optional)" name={`w${i}-from`} type="date" value={w.from} onInput={(e) => setWin(i, { from: e.currentTarget.value })} />
              <Field label="Until date (optional)" name={`w${i}-until`} type="date" value={w.until} onInput={(e) => setWin(i, { until: e.currentTarget.value })} />
            </div>
            {form.fieldErrors[`w${i}`] && (
              <p id={`w${i}-error`} class="field-error" role="alert">
                {form.fieldErrors[`w${i}`]}
              </p>
            )}
            {windows.length > 1 && (
              <button type="button" class="secondary" onClick={() => setWindows((ws) => ws.filter((_, j) => j !== i))}>
                Remove window {i + 1}
              </button>
            )}
          </fieldset>
        ))}
        <datalist id="zones">
          {zones.map((z) => (
            <option key={z} value={z} />
          ))}
        </datalist>
        <p>
          <button type="button" class="secondary" disabled={windows.length >= 10} onClick={() => setWindows((ws) => [...ws, newWindow()])}>
            Add another window
          </button>
        </p>
        <Field label="Priority (0–100)" name="priority" hint="Orders this terminal’s own items due at the same time; higher first." type="number" min={0} max={100} step={1} value={priority} error={form.fieldErrors.priority} onInput={(e) => setPriority(e.currentTarget.value)} />
        <Submit busy={form.busy}>Add schedule</Submit>
        <p role="status" class="ok-note">
          {done}
        </p>
      </form>
    </section>
  );
}

function windowField(message: string): string | null {
  const m = /^window (\d+):/.exec(message);
  return m ? `w${m[1]}` : 'windows';
}

/**
 * The delivery windows of the coming 7 days (the plan's `openings`, concrete instants) drawn in
 * the browser's time zone: one column per local day from today, one row per local hour; a cell
 * names the schedules (by number) open during any part of that hour. A list says the same in words.
 */
function WeekView({ plan, number }: { plan: Plan; number: Map<string, number> }) {
  const zone = browserZone();
  const at = new Date(plan.at);
  const y = at.getFullYear();
  const m = at.getMonth();
  const d0 = at.getDate();
  const openings = plan.openings.map((o) => ({ ...o, s: Date.parse(o.start), e: Date.parse(o.end) }));
  const days = Array.from({ length: 7 }, (_, i) => new Date(y, m, d0 + i));
  const dayLabel = (d: Date) => d.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', month: 'short' });
  const time = (ms: number) => new Date(ms).toLocaleString(undefined, { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
  if (openings.length === 0)
    return <p class="muted">No window opens in the coming 7 days{number.size ? '' : ': add a schedule'}.</p>;
  return (
    <>
      <p class="muted">
        In your time zone, <strong>{zone}</strong>, from today for 7 days. A cell lists the schedules (by number) whose window is open during
        that hour.
      </p>
      <TableWrap label="Week view table">
        <table class="week">
          <caption>Delivery windows by hour, next 7 days ({zone})</caption>
          <thead>
            <tr>
              <th scope="col">Hour</th>
              {days.map((d, i) => (
                <th scope="col" key={i} data-day={i}>
                  {dayLabel(d)}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {Array.from({ length: 24 }, (_, h) => (
              <tr key={h}>
                <th scope="row">{`${String(h).padStart(2, '0')}:00`}</th>
                {days.map((d, i) => {
                  const from = new Date(d.getFullYear(), d.getMonth(), d.getDate(), h);
                  // An hour the clocks skip (spring forward) does not exist that day.
                  if (from.getHours() !== h)
                    return (
                      <td key={i} class="gap" data-day={i} data-hour={h}>
                        <span aria-hidden="true">–</span>
                        <span class="visually-hidden">no such hour (clocks change)</span>
                      </td>
                    );
                  const s = from.getTime();
                  const e = new Date(d.getFullYear(), d.getMonth(), d.getDate(), h + 1).getTime();
                  const open = [...new Set(openings.filter((o) => o.s < e && o.e > s).map((o) => number.get(o.scheduleId) ?? 0))].sort((a, b) => a - b);
                  return (
                    <td key={i} class={open.length ? 'open' : undefined} data-day={i} data-hour={h}>
                      {open.length > 0 && (
                        <>
                          <span class="visually-hidden">open: schedule </span>
                          {open.join(' ')}
                        </>
                      )}
                    </td>
                  );
                })}
              </tr>
            ))}
          </tbody>
        </table>
      </TableWrap>
      <details class="openings">
        <summary>The same as a list ({openings.length} openings)</summary>
        <ul>
          {openings.map((o, i) => (
            <li key={i}>
              {time(o.s)} – {time(o.e)}: schedule {number.get(o.scheduleId) ?? '?'}, window {o.windowIndex + 1}
              {o.capBytesPerSecond ? `, capped at ${bytes(o.capBytesPerSecond)}/s` : ''}
            </li>
          ))}
        </ul>
      </details>
    </>
  );
}

function PlanTable({ plan, number }: { plan: Plan; number: Map<string, number> }) {
  if (plan.items.length === 0) return <p class="muted">Nothing is due: your schedules select nothing this terminal does not have yet.</p>;
  return (
    <>
      <TableWrap label="Plan table">
        <table>
          <caption class="visually-hidden">Plan: contents due, with their window</caption>
          <thead>
            <tr>
              <th scope="col">Content</th>
              <th scope="col">Schedule</th>
              <th scope="col">Due</th>
              <th scope="col">Window ends</th>
              <th scope="col" class="num">
                Size
              </th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {plan.items.map((it) => (
              <tr key={it.contentId}>
                <td>
                  <a href={`#/content/${it.contentId}`}>{it.title}</a>
                  <div class="muted small">
                    {it.genre} · {it.publisher}
                  </div>
                </td>
                <td>{number.get(it.scheduleId) ?? '—'}</td>
                <td>{when(it.dueAt)}</td>
                <td>{when(it.windowEnd)}</td>
                <td class="num">{bytes(it.totalSize)}</td>
                <td>
                  {it.open ? 'window open' : 'waiting for its window'}
                  {it.deferrals > 0 && `, carried over ${it.deferrals}×`}
                  {it.lastOutcome && `, last attempt ${it.lastOutcome}`}
                  {it.heldPieces && `, has pieces ${it.heldPieces}`}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableWrap>
      {plan.truncated && <p class="muted">More is due than shown here.</p>}
    </>
  );
}

function History({ base, tick }: { base: string; tick: number }) {
  const [before, setBefore] = useState<string[]>([]);
  const cursor = before.at(-1);
  const page = useLoad(() => api<{ entries: DeliveryRecord[]; nextCursor: string | null }>('GET', `${base}/history${qs({ limit: 20, before: cursor })}`), [base, cursor, tick]);
  const rows = page.data?.entries ?? [];
  return (
    <section aria-labelledby="history-h">
      <h2 id="history-h">Delivery history</h2>
      <ErrorNote message={page.error} />
      {page.data && rows.length === 0 && <p class="muted">No scheduled delivery yet.</p>}
      {rows.length > 0 && (
        <TableWrap label="Delivery history table">
          <table>
            <caption class="visually-hidden">Scheduled deliveries, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Content</th>
                <th scope="col">Due</th>
                <th scope="col">Started</th>
                <th scope="col">Ended</th>
                <th scope="col" class="num">
                  Bytes
                </th>
                <th scope="col">Source</th>
                <th scope="col">Outcome</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id}>
                  <td>{r.title ?? shortId(r.contentId)}</td>
                  <td>{when(r.dueAt)}</td>
                  <td>{when(r.startedAt)}</td>
                  <td>{when(r.endedAt)}</td>
                  <td class="num">{bytes(r.bytes)}</td>
                  <td>{r.source ? `${r.source}${r.sourceId ? ` ${shortId(r.sourceId)}` : ''}` : '—'}</td>
                  <td>
                    <span class={`tag ${r.outcome === 'done' ? 'ok' : r.outcome === 'failed' || r.outcome === 'deferred' ? 'warn' : ''}`}>{r.outcome}</span>
                    {r.reason && ` ${r.reason}`}
                    {r.deferrals > 0 && ` (carried over ${r.deferrals}×)`}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
      <div class="pager">
        {before.length > 0 && (
          <button type="button" class="secondary" onClick={() => setBefore((b) => b.slice(0, -1))}>
            Newer deliveries
          </button>
        )}
        {page.data?.nextCursor && (
          <button type="button" class="secondary" onClick={() => setBefore((b) => [...b, page.data!.nextCursor!])}>
            Older deliveries
          </button>
        )}
      </div>
    </section>
  );
}
