import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

// Debian's ffmpeg as the broadcaster in live tests (S3.9): testsrc + sine over RTMP. Tests fail
// loudly when it is missing rather than skip (.ci/run installs it).

export const FFMPEG = '/usr/bin/ffmpeg';
export const FFPROBE = '/usr/bin/ffprobe';

export function requireFfmpeg() {
  for (const tool of [FFMPEG, FFPROBE]) {
    if (spawnSync(tool, ['-version']).status !== 0) throw new Error(`${tool} is missing: install Debian's ffmpeg package (apt-get install ffmpeg)`);
  }
}

export interface Broadcast {
  proc: ChildProcess;
  /** Settles when ffmpeg exits: its code and what it printed. */
  done: Promise<{ code: number | null; stderr: string }>;
  stop(): Promise<{ code: number | null; stderr: string }>;
}

/** Publishes `seconds` of a 320×180 test picture with a tone, in real time, to `url`. Killed after `seconds` + 30 s whatever happens. */
export function broadcast(url: string, opts: { seconds?: number; extra?: string[] } = {}): Broadcast {
  const seconds = opts.seconds ?? 60;
  const args = ['-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc=size=320x180:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'];
  args.push('-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '25', '-c:a', 'aac', '-t', String(seconds), ...(opts.extra ?? []));
  args.push('-f', 'flv', url);
  const proc = spawn(FFMPEG, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-8000)));
  const killer = setTimeout(() => proc.kill('SIGKILL'), (seconds + 30) * 1000);
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    proc.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stderr });
    }),
  );
  return {
    proc,
    done,
    stop() {
      if (proc.exitCode === null) proc.kill('SIGINT');
      return done;
    },
  };
}
