// Rates for people to read (selection's and the schedule policy's `why` texts):
// decimal units, one decimal place above the base unit.

function scaled(n: number, units: string[]): string {
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** "48.0 Mbit/s" (bits/s, as links are reported). */
export function formatBitRate(bitsPerSecond: number): string {
  return scaled(bitsPerSecond, ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s']);
}

/** "1.3 MB/s" (bytes/s). */
export function formatByteRate(bytesPerSecond: number): string {
  return scaled(bytesPerSecond, ['B/s', 'kB/s', 'MB/s', 'GB/s', 'TB/s']);
}

/** "6.1 MB" (bytes; decimal, like the rates). */
export function formatBytes(bytes: number): string {
  return scaled(bytes, ['B', 'kB', 'MB', 'GB', 'TB']);
}

/** A size as people write it: `10GB`, `500MiB`, `2g`, `1048576` (bytes). Decimal units are powers of 1000, `i` ones of 1024. */
export function parseSize(text: string): number {
  const n = readSize(text);
  if (n === null) throw new RangeError(`cannot read size "${text}" (try 10GB or 500MiB)`);
  if (!(n > 0) || !Number.isSafeInteger(n)) throw new RangeError(`size must be a positive number of bytes: "${text}"`);
  return n;
}

/** The bytes a size as people write it names (`20GB`, `500MiB`, `0`), unchecked; null when it is not a size. */
export function readSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?$/i.exec(text.trim());
  if (!m) return null;
  const unit = (m[2] ?? '').toLowerCase();
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3, ti: 1024 ** 4 }[unit]!;
  return Math.floor(Number(m[1]) * mult);
}
