import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

// Shared by benchmarks that run the origin in a child process (this benchmark's file with
// --serve, which prints one JSON line when ready and serves until its stdin closes) and read
// processes' CPU from /proc. Not a benchmark itself (run-bench skips files starting with "_").

/** Linux's USER_HZ: /proc reports CPU times in these ticks. */
const CLOCK_TICKS = 100;

/** CPU time (user + system) process `pid` has used, in ms, from /proc (Linux); null elsewhere or when gone. */
export function cpuMs(pid: number): number | null {
  try {
    // Fields 14 and 15 (utime, stime) in clock ticks; the command name (field 2) may hold spaces, so count from its ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** Runs this benchmark's file again with `--serve` and `args`; answers its first output line (parsed), its pid and how to stop it. */
export async function startServeChild<T>(args: string[]): Promise<{ setup: T; pid: number; close(): Promise<void> }> {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, '--serve', ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the origin process exited (${code}) before it was ready`)));
  });
  return {
    setup: JSON.parse(line) as T,
    pid: child.pid!,
    async close() {
      child.stdin!.end();
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}
