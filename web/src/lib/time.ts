// Times for the live pages (S3.3, S3.10, S3.11): the API answers instants (ISO 8601, UTC); the
// pages show them in the browser's own time zone. Framework-free.

/** The browser's IANA time zone (what the pages send as `tz`). */
export function browserZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

/** YYYY-MM-DD of the instant `ms` in `zone`. */
export function dateInZone(ms: number, zone = browserZone()): string {
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(ms);
  const get = (t: string) => parts.find((p) => p.type === t)?.value ?? '';
  return `${get('year')}-${get('month')}-${get('day')}`;
}

/** The calendar date `days` after `date` (YYYY-MM-DD). */
export function addDays(date: string, days: number): string {
  const [y, m, d] = date.split('-').map(Number);
  const t = new Date(Date.UTC(y, m - 1, d + days));
  return t.toISOString().slice(0, 10);
}

/** The month `n` after `month` (YYYY-MM). */
export function addMonths(month: string, n: number): string {
  const [y, m] = month.split('-').map(Number);
  const t = new Date(Date.UTC(y, m - 1 + n, 1));
  return t.toISOString().slice(0, 7);
}

/** "May 2026" for YYYY-MM. */
export function monthName(month: string): string {
  const [y, m] = month.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, 15)).toLocaleDateString(undefined, { month: 'long', year: 'numeric', timeZone: 'UTC' });
}

/** "Mon 4 May 2026" for YYYY-MM-DD. */
export function dayName(date: string): string {
  const [y, m, d] = date.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d, 12)).toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' });
}

/** Local "HH:MM" (24 h). */
export function hm(t: string | number): string {
  return new Date(t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
}

/** Local "HH:MM:SS" (24 h). */
export function hms(t: string | number): string {
  return new Date(t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
}

/** A local date and time: "Mon 4 May 2026, 20:00". */
export function dayTime(t: string | number): string {
  const d = new Date(t);
  return `${d.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' })}, ${hm(d.getTime())}`;
}

/** A local time range: "Mon 4 May 2026, 20:00–20:30" (the end's date too when it is another day). */
export function timeRange(start: string, end: string): string {
  const s = Date.parse(start);
  const e = Date.parse(end);
  const sameDay = new Date(s).toDateString() === new Date(e - 1).toDateString();
  return `${dayTime(s)}–${sameDay ? hm(e) : dayTime(e)}`;
}

/** A duration in words: "2 d 3 h", "5 h 04 min", "12 min 30 s", "45 s". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${String(m).padStart(2, '0')} min`;
  if (m > 0) return `${m} min ${String(sec).padStart(2, '0')} s`;
  return `${sec} s`;
}

/** The value of a datetime-local input for the instant `ms` (browser's zone). */
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** The instant of a datetime-local value (browser's zone) as ISO 8601; the text as is when it is not one (the API refuses it). */
export function fromLocalInput(value: string): string {
  const t = new Date(value).getTime();
  return Number.isFinite(t) ? new Date(t).toISOString() : value;
}

/** A local date and time to the second: "Mon 4 May 2026, 20:00:05" (clocks). */
export function dayTimeSeconds(t: string | number): string {
  return `${dayTime(t).replace(/, [\d:]+$/, '')}, ${hms(t)}`;
}

/** Seconds as "H:MM:SS", as the CLI prints elapsed and remaining times. */
export function clockTime(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const p = (n: number) => String(n).padStart(2, '0');
  return `${Math.floor(s / 3600)}:${p(Math.floor((s % 3600) / 60))}:${p(s % 60)}`;
}

/** How far this browser's clock is from the origin's, `aheadMs` = browser − origin: "1.2 s ahead of", "2 d 3 h behind". */
export function offsetWords(aheadMs: number): string {
  const abs = Math.abs(aheadMs);
  if (abs < 50) return 'in step with';
  const size = abs < 60_000 ? `${(abs / 1000).toFixed(1)} s` : duration(abs);
  return `${size} ${aheadMs > 0 ? 'ahead of' : 'behind'}`;
}
