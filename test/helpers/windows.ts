// Windows placed around a given instant, for tests that run against real time.

/**
 * `win(from, to, cap?)`: a daily window from instant `from` to `to` (whole minutes near W),
 * written in a whole-hour zone where W falls at local noon — so windows a few minutes
 * around W never cross a local midnight, whenever the test runs.
 */
export function windowsAround(W: number) {
  const utcHour = new Date(W).getUTCHours();
  const offset = 12 - utcHour; // local = UTC + offset, in −11…12
  const zone = offset === 0 ? 'Etc/UTC' : `Etc/GMT${offset > 0 ? '-' : '+'}${Math.abs(offset)}`; // Etc/GMT-N is UTC+N
  const hhmm = (t: number) => new Date(t + offset * 3_600_000).toISOString().slice(11, 16);
  const win = (from: number, to: number, cap?: number) => ({ days: 'daily', start: hhmm(from), end: hhmm(to), timeZone: zone, ...(cap ? { capBytesPerSecond: cap } : {}) });
  return { zone, win };
}
