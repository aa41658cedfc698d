import { execFile } from 'node:child_process';
import path from 'node:path';

// Running Debian's ffmpeg and ffprobe for the live domain's one-shot jobs (filler packaging,
// recordings, rebroadcast probes): output collected, bounded in size and time.

/** Runs `file` to completion: whether it succeeded, and what it printed (at most 4 MiB). */
export const run = (file: string, args: string[], timeoutMs: number) =>
  new Promise<{ ok: boolean; stdout: string; stderr: string }>((resolve) =>
    execFile(file, args, { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => resolve({ ok: !err, stdout, stderr })),
  );

export interface MediaProbe {
  durationSeconds: number;
  video: string | null;
  audio: string | null;
}

/** What ffprobe says of a file: duration and the first video and audio codecs; null if it cannot read it. */
export async function probeMedia(ffprobe: string, file: string): Promise<MediaProbe | null> {
  const r = await run(ffprobe, ['-v', 'error', '-show_entries', 'format=duration:stream=codec_type,codec_name', '-of', 'json', file], 60_000);
  if (!r.ok) return null;
  try {
    const j = JSON.parse(r.stdout) as { format?: { duration?: string }; streams?: { codec_type: string; codec_name: string }[] };
    const first = (t: string) => j.streams?.find((s) => s.codec_type === t)?.codec_name ?? null;
    return { durationSeconds: Number(j.format?.duration ?? 0), video: first('video'), audio: first('audio') };
  } catch {
    return null;
  }
}

/** ffprobe beside the configured ffmpeg (Debian installs both in /usr/bin). */
export function ffprobeOf(ffmpeg: string): string {
  return ffmpeg.includes('/') ? path.join(path.dirname(ffmpeg), 'ffprobe') : 'ffprobe';
}
