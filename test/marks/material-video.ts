import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { FFMPEG } from '../helpers/ffmpeg.ts';

// Test videos for the A/B carrier (S2.3), made by ffmpeg's test sources: small pictures, a tone,
// encoded nearly losslessly so that the material itself adds little coding noise.
// `rate` (default 25 fps) keeps long clips cheap: the carrier works per segment, not per frame.

export type VideoSource = 'testsrc2' | 'mandelbrot';

/** Writes `<dir>/<source>-<w>x<h>-<seconds>s.mp4` (H.264 + AAC) and answers its path. */
export function testVideo(dir: string, opts: { source?: VideoSource; seconds: number; size?: string; rate?: number; audio?: boolean }): string {
  const source = opts.source ?? 'testsrc2';
  const size = opts.size ?? '320x240';
  const rate = opts.rate ?? 25;
  const file = path.join(dir, `${source}-${size}-${rate}fps-${opts.seconds}s.mp4`);
  const audio = opts.audio ?? true;
  const args = ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', `${source}=size=${size}:rate=${rate}`];
  if (audio) args.push('-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000');
  args.push('-t', String(opts.seconds), '-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '16', '-pix_fmt', 'yuv420p');
  if (audio) args.push('-c:a', 'aac', '-b:a', '64k', '-shortest');
  args.push(file);
  const made = spawnSync(FFMPEG, args);
  if (made.status !== 0) throw new Error(`ffmpeg could not make ${file}: ${made.stderr.toString().slice(-500)}`);
  return file;
}
