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
