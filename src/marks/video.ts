import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseVodPlaylist } from '../live/fillers.ts';
import { ffprobeOf, run } from '../live/media-tools.ts';
import { VIDEO_BITS, type Accept, type Found, type NotFound, type PatternKey, type SoftBits } from './carrier.ts';

// S2.3 video carrier: A/B segment variants. Every segment of a VOD package is encoded once in two
// variants that differ only by a faint keyed luma pattern, −P_k in A and +P_k in B (bit 1 = B = a
// positive correlation) (P_k: a grid of
// smooth ±1 bumps, a different keyed grid per segment index k mod 64, so the host picture does not
// bias every bit the same way). A receiver gets, for segment k, the variant its codeword's bit
// k mod 64 selects: the edge picks a file, no per-byte work. Both variants come from one decode of
// the input and two identically configured encoders with key frames forced at the same instants,
// so their init.mp4 is byte-identical and any A/B mix after it is one valid fMP4 stream.
// Detection is blind: the suspect is decoded to grey frames at a small working size, the frames of
// each segment window (by timestamp) are averaged, high-passed (the host's smooth part removed)
// and correlated with P_k: one soft bit per window, summed over the windows that carry the same bit.

/**
 * Pattern cells across the picture; down the picture from the aspect ratio (both survive scaling).
 * Coarse cells survive scaling and compression: on 320×240 testsrc2, 16 across kept a margin of 7
 * (noise σ ≈ 1) after half size + CRF 28 where 40 across kept 0.3, at the same PSNR.
 */
const GRID_X = 16;
/** Peak luma change of the pattern (8-bit levels); its RMS is half that. */
const DEFAULT_STRENGTH = 3;
/** Detection works on frames this wide (the pattern's cells are 10 px there). */
const WORK_W = 160;
/** Windows on each side whose mean is the host's estimate for a window. */
const NEIGHBOURS = 3;
const PACKAGE_TIMEOUT_MS = 2 * 60 * 60_000;

/** Which variant a receiver gets for segment `index` (bits: the 64-bit codeword). */
export const variantOf = (bits: Uint8Array, index: number): 'a' | 'b' => (bits[index % bits.length] ? 'b' : 'a');

export interface VariantPackage {
  init: string;
  segments: Array<{ a: string; b: string; durationMs: number }>;
}

const gridY = (w: number, h: number) => Math.max(4, Math.round((GRID_X * h) / w));

/** The keyed ±1 signs of pattern `index` (one per cell), from HMAC-SHA256(key, "video-ab" ‖ index ‖ block). */
function cellSigns(key: PatternKey, index: number, cells: number): Int8Array {
  const out = new Int8Array(cells);
  for (let block = 0, i = 0; i < cells; block++) {
    const h = createHmac('sha256', key).update(`video-ab:${index % VIDEO_BITS}:${block}`).digest();
    for (let b = 0; b < 256 && i < cells; b++, i++) out[i] = (h[b >> 3] >> (b & 7)) & 1 ? 1 : -1;
  }
  return out;
}

/** Pattern `index` at w×h: a smooth bump sin(πu)·sin(πv) per cell, signed by the key (peak 1). */
export function videoPattern(key: PatternKey, index: number, w: number, h: number, aspect = { w, h }): Float32Array {
  const gx = GRID_X;
  const gy = gridY(aspect.w, aspect.h);
  const signs = cellSigns(key, index, gx * gy);
  const cx = new Int32Array(w);
  const wx = new Float32Array(w);
  for (let x = 0; x < w; x++) {
    const f = ((x + 0.5) / w) * gx;
    cx[x] = Math.min(gx - 1, Math.floor(f));
    wx[x] = Math.sin(Math.PI * (f - Math.floor(f)));
  }
  const p = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    const f = ((y + 0.5) / h) * gy;
    const cy = Math.min(gy - 1, Math.floor(f));
    const wy = Math.sin(Math.PI * (f - Math.floor(f)));
    for (let x = 0; x < w; x++) p[y * w + x] = signs[cy * gx + cx[x]] * wx[x] * wy;
  }
  return p;
}

interface VideoInfo {
  width: number;
  height: number;
  /** Frame rate as ffmpeg writes it ("25/1"). */
  rate: string;
  fps: number;
  durationSeconds: number;
  audio: boolean;
}

async function probeVideo(file: string, ffmpeg: string): Promise<VideoInfo | null> {
  const r = await run(ffprobeOf(ffmpeg), ['-v', 'error', '-show_entries', 'format=duration:stream=codec_type,codec_name,width,height,avg_frame_rate,r_frame_rate', '-of', 'json', file], 60_000);
  if (!r.ok) return null;
  try {
    const j = JSON.parse(r.stdout) as { format?: { duration?: string }; streams?: Array<Record<string, string | number>> };
    const v = j.streams?.find((s) => s.codec_type === 'video');
    if (!v || !(Number(v.width) > 0) || !(Number(v.height) > 0)) return null;
    const rateOf = (s: unknown) => {
      const [n, d] = String(s ?? '').split('/').map(Number);
      return n > 0 && d > 0 ? { rate: `${n}/${d}`, fps: n / d } : null;
    };
    const rate = rateOf(v.avg_frame_rate) ?? rateOf(v.r_frame_rate);
    const sane = rate && rate.fps >= 1 && rate.fps <= 120 ? rate : { rate: '25/1', fps: 25 };
    return {
      width: Number(v.width),
      height: Number(v.height),
      ...sane,
      durationSeconds: Number(j.format?.duration ?? 0),
      audio: !!j.streams?.some((s) => s.codec_type === 'audio'),
    };
  } catch {
    return null;
  }
}

/** Whether ffprobe finds a video stream (a picture that lasts: still images are not videos). */
export async function isVideo(file: string, ffmpeg = 'ffmpeg'): Promise<boolean> {
  const r = await run(ffprobeOf(ffmpeg), ['-v', 'error', '-show_entries', 'format=duration:stream=codec_type,codec_name', '-of', 'json', file], 60_000);
  if (!r.ok) return false;
  try {
    const j = JSON.parse(r.stdout) as { format?: { duration?: string }; streams?: { codec_type: string; codec_name: string }[] };
    const v = j.streams?.find((s) => s.codec_type === 'video');
    return !!v && !['png', 'mjpeg', 'gif', 'bmp', 'webp', 'tiff'].includes(v.codec_name) && Number(j.format?.duration ?? 0) >= 1;
  } catch {
    return false;
  }
}

function spawned(ffmpeg: string, args: string[], stdio: ('pipe' | 'ignore')[]) {
  const proc = spawn(ffmpeg, args, { stdio: stdio as never });
  let stderr = '';
  proc.stderr?.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  // An encoder that dies closes its stdin under us (EPIPE): its exit code reports the failure.
  proc.stdin?.on('error', () => {});
  const done = new Promise<void>((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited ${code}: ${stderr.trim().slice(-1500)}`))));
  });
  return { proc, done };
}

/** Writes `buf` to a child's stdin, waiting when its pipe is full. */
function write(stream: NodeJS.WritableStream, buf: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stream.write(buf)) return resolve();
    const onDrain = () => {
      stream.off('error', onError);
      resolve();
    };
    const onError = (e: Error) => {
      stream.off('drain', onDrain);
      reject(e);
    };
    stream.once('drain', onDrain);
    stream.once('error', onError);
  });
}

/**
 * Makes the two variants of every segment of a VOD package, once: the input decoded to raw frames,
 * ±strength·P_k added to the luma of the frames of segment k, and each stream encoded by its own
 * ffmpeg with the same settings into fMP4 HLS (key frames forced every segmentSeconds). Writes
 * <outDir>/init.mp4 and seg_NNNNN.a.m4s / seg_NNNNN.b.m4s. `strength` 0 makes an unmarked encode
 * (both variants equal: the reference for PSNR).
 */
export async function packageVariants(
  input: string,
  outDir: string,
  key: PatternKey,
  opts: { segmentSeconds: number; ffmpeg?: string; timeoutMs?: number; strength?: number; crf?: number },
): Promise<VariantPackage> {
  const ffmpeg = opts.ffmpeg ?? 'ffmpeg';
  const seg = opts.segmentSeconds;
  const strength = opts.strength ?? DEFAULT_STRENGTH;
  if (!(seg > 0)) throw new Error('segmentSeconds must be positive');
  if (key.length < 16) throw new Error('the pattern key is too short');
  const info = await probeVideo(input, ffmpeg);
  if (!info) throw new Error(`not a video ffmpeg can read: ${input}`);
  // yuv420p wants even sizes; odd ones are cropped by a pixel.
  const w = info.width & ~1;
  const h = info.height & ~1;
  const frameBytes = (w * h * 3) / 2;
  await mkdir(outDir, { recursive: true });
  const dirs = { a: path.join(outDir, '.a'), b: path.join(outDir, '.b') };
  await mkdir(dirs.a, { recursive: true });
  await mkdir(dirs.b, { recursive: true });

  const decoder = spawned(
    ffmpeg,
    ['-hide_banner', '-loglevel', 'error', '-nostdin', '-i', input, '-map', '0:v:0', '-vf', `crop=${w}:${h}:0:0`, '-fps_mode', 'cfr', '-r', info.rate, '-pix_fmt', 'yuv420p', '-f', 'rawvideo', 'pipe:1'],
    ['ignore', 'pipe', 'pipe'],
  );
  const encoderArgs = (dir: string) => [
    '-hide_banner', '-loglevel', 'error',
    '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${w}x${h}`, '-framerate', info.rate, '-i', 'pipe:0',
    ...(info.audio ? ['-i', input, '-map', '0:v:0', '-map', '1:a:0', '-c:a', 'aac', '-b:a', '128k', '-ac', '2'] : ['-map', '0:v:0']),
    // The same settings for A and B (so the same SPS/PPS: one init.mp4), bit-exact muxing (no
    // version strings); key frames at every segment boundary and never elsewhere, so segment k of A
    // and of B cover the same frames. CRF 20: the mark is not to ride on coarse coding noise.
    '-c:v', 'libx264', '-preset', 'veryfast', '-crf', String(opts.crf ?? 20), '-pix_fmt', 'yuv420p',
    '-force_key_frames', `expr:gte(t,n_forced*${seg})`, '-sc_threshold', '0', '-g', String(Math.ceil(info.fps * seg) + 1),
    '-fflags', '+bitexact', '-flags:v', '+bitexact', '-flags:a', '+bitexact',
    '-f', 'hls', '-hls_time', String(seg), '-hls_playlist_type', 'vod', '-hls_segment_type', 'fmp4',
    '-hls_flags', 'independent_segments', '-hls_fmp4_init_filename', 'init.mp4',
    '-hls_segment_filename', path.join(dir, 'seg_%05d.m4s'), path.join(dir, 'index.m3u8'),
  ];
  const encA = spawned(ffmpeg, encoderArgs(dirs.a), ['pipe', 'ignore', 'pipe']);
  const encB = spawned(ffmpeg, encoderArgs(dirs.b), ['pipe', 'ignore', 'pipe']);
  const timeout = setTimeout(() => {
    for (const p of [decoder, encA, encB]) p.proc.kill('SIGKILL');
  }, opts.timeoutMs ?? PACKAGE_TIMEOUT_MS);
  const framesPerSeg = info.fps * seg;
  let pattern: Float32Array | null = null;
  let patternIndex = -1;

  const pump = async () => {
    let pending: Buffer[] = [];
    let have = 0;
    let n = 0;
    for await (const chunk of decoder.proc.stdout! as AsyncIterable<Buffer>) {
      pending.push(chunk);
      have += chunk.length;
      while (have >= frameBytes) {
        const all = pending.length === 1 ? pending[0] : Buffer.concat(pending);
        const frame = Buffer.from(all.subarray(0, frameBytes));
        const rest = all.subarray(frameBytes);
        pending = rest.length ? [rest] : [];
        have = rest.length;
        // Frame n is at n/fps; the encoders force a key frame at the first frame at or past k·seg.
        const k = Math.floor(n / framesPerSeg + 1e-9);
        n++;
        if (k !== patternIndex) {
          pattern = videoPattern(key, k, w, h);
          patternIndex = k;
        }
        const b = Buffer.from(frame);
        if (strength > 0) {
          for (let i = 0; i < w * h; i++) {
            const d = strength * pattern![i];
            const y = frame[i];
            frame[i] = Math.max(0, Math.min(255, Math.round(y - d)));
            b[i] = Math.max(0, Math.min(255, Math.round(y + d)));
          }
        }
        await Promise.all([write(encA.proc.stdin!, frame), write(encB.proc.stdin!, b)]);
      }
    }
    encA.proc.stdin!.end();
    encB.proc.stdin!.end();
  };
  try {
    await Promise.all([pump(), decoder.done, encA.done, encB.done]);
  } catch (e) {
    for (const p of [decoder, encA, encB]) p.proc.kill('SIGKILL');
    throw e;
  } finally {
    clearTimeout(timeout);
  }

  const listA = parseVodPlaylist(await readFile(path.join(dirs.a, 'index.m3u8'), 'utf8'));
  const listB = parseVodPlaylist(await readFile(path.join(dirs.b, 'index.m3u8'), 'utf8'));
  const initA = await readFile(path.join(dirs.a, 'init.mp4'));
  const initB = await readFile(path.join(dirs.b, 'init.mp4'));
  if (!initA.equals(initB)) throw new Error('the two variants’ init.mp4 differ: an A/B mix would not play');
  if (listA.length === 0 || listA.length !== listB.length || listA.some((s, i) => s.durationMs !== listB[i].durationMs)) {
    throw new Error('the two variants’ segments differ in number or duration');
  }
  await rename(path.join(dirs.a, 'init.mp4'), path.join(outDir, 'init.mp4'));
  const segments: VariantPackage['segments'] = [];
  for (let i = 0; i < listA.length; i++) {
    const name = `seg_${String(i).padStart(5, '0')}`;
    if (listA[i].name !== `${name}.m4s` || listB[i].name !== `${name}.m4s`) throw new Error(`unexpected segment ${listA[i].name}`);
    const a = path.join(outDir, `${name}.a.m4s`);
    const b = path.join(outDir, `${name}.b.m4s`);
    await rename(path.join(dirs.a, `${name}.m4s`), a);
    await rename(path.join(dirs.b, `${name}.m4s`), b);
    segments.push({ a, b, durationMs: listA[i].durationMs });
  }
  await rm(dirs.a, { recursive: true, force: true });
  await rm(dirs.b, { recursive: true, force: true });
  // Segment k must hold the frames marked with P_k: every segment segmentSeconds long (within a
  // frame), the last one no longer.
  const slack = 1000 / info.fps + 1;
  const off = segments.findIndex((s, i) => (i < segments.length - 1 ? Math.abs(s.durationMs - seg * 1000) > slack : s.durationMs > seg * 1000 + slack));
  if (off >= 0) throw new Error(`ffmpeg cut segment ${off} at ${segments[off].durationMs} ms, not ${seg} s: its frames would carry the wrong pattern`);
  return { init: path.join(outDir, 'init.mp4'), segments };
}

/** Writes the marked copy for codeword `bits`: init.mp4 then, per segment, the variant `bits` selects (one fragmented MP4 file). */
export async function writeMarkedMp4(pkg: { init: string; segments: Array<{ a: string; b: string }> }, bits: Uint8Array | null, toPath: string): Promise<void> {
  const out = createWriteStream(toPath);
  const files = [pkg.init, ...pkg.segments.map((s, i) => (bits && variantOf(bits, i) === 'b' ? s.b : s.a))];
  async function* all() {
    for (const f of files) yield* createReadStream(f);
  }
  await pipeline(all, out);
}

/**
 * Decodes to grey frames at w×h and hands each to `onFrame` with its timestamp (ffmpeg's showinfo
 * prints each frame's, in order, on stderr): streamed, so a feature film needs no more memory
 * than a few frames.
 */
async function decodeGrey(file: string, ffmpeg: string, w: number, h: number, fps: number, onFrame: (pts: number, frame: Uint8Array) => void): Promise<number> {
  const proc = spawn(
    ffmpeg,
    ['-hide_banner', '-loglevel', 'info', '-nostdin', '-copyts', '-i', file, '-map', '0:v:0', '-vf', `scale=${w}:${h}:flags=area,format=gray,showinfo`, '-fps_mode', 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'gray', 'pipe:1'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const size = w * h;
  const pts: number[] = [];
  const frames: Uint8Array[] = [];
  let pending: Buffer = Buffer.alloc(0);
  let line = '';
  let tail = '';
  let n = 0;
  let failed: Error | null = null;
  // A frame goes on once its bytes (stdout) and its timestamp (stderr) have both arrived.
  const flush = (end: boolean) => {
    while (frames.length > 0 && (pts.length > 0 || end)) {
      const f = frames.shift()!;
      const t = pts.length > 0 ? pts.shift()! : n / fps;
      try {
        onFrame(Number.isFinite(t) ? t : n / fps, f);
      } catch (e) {
        failed ??= e as Error;
        proc.kill('SIGKILL');
      }
      n++;
    }
  };
  proc.stdout.on('data', (d: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, d]) : d;
    let at = 0;
    for (; at + size <= pending.length; at += size) frames.push(Uint8Array.from(pending.subarray(at, at + size)));
    pending = pending.subarray(at);
    flush(false);
  });
  proc.stderr.on('data', (d: Buffer) => {
    const lines = (line + d.toString('latin1')).split('\n');
    line = lines.pop() ?? '';
    for (const l of lines) {
      const m = /\bn:\s*\d+\s+pts:\s*-?\d+\s+pts_time:(-?[\d.e+-]+)/.exec(l);
      if (m) pts.push(Number(m[1]));
      else tail = (tail + l + '\n').slice(-2000);
    }
    flush(false);
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', resolve);
  });
  if (failed) throw failed;
  if (code !== 0) throw new Error(`ffmpeg exited ${code}: ${tail.trim().slice(-300)}`);
  flush(true);
  return n;
}

/** Subtracts a box blur of radius r (the host's smooth part): what is left holds the pattern's bumps. */
function highPass(m: Float64Array, w: number, h: number, r: number): Float64Array {
  const tmp = new Float64Array(w * h);
  const out = new Float64Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      let c = 0;
      for (let d = -r; d <= r; d++) {
        const xx = x + d;
        if (xx >= 0 && xx < w) {
          s += m[y * w + xx];
          c++;
        }
      }
      tmp[y * w + x] = s / c;
    }
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      let c = 0;
      for (let d = -r; d <= r; d++) {
        const yy = y + d;
        if (yy >= 0 && yy < h) {
          s += tmp[yy * w + x];
          c++;
        }
      }
      out[y * w + x] = m[y * w + x] - s / c;
    }
  }
  return out;
}

/**
 * Recovers the 64 soft bits from a suspect copy (any mix of variants, re-encoded, scaled): per
 * segment window (by timestamp, segmentSeconds) the averaged, high-passed grey frame correlated
 * with P_k. Hypotheses: the windows as the timestamps place them (segment k = bit k), then every
 * other cyclic alignment (a copy whose timestamps were re-based), best-correlated first.
 */
export async function detectVideo<T>(
  file: string,
  key: PatternKey,
  nBits: number,
  accept: Accept<T>,
  opts: { segmentSeconds?: number; ffmpeg?: string } = {},
): Promise<Found<T> | NotFound> {
  const ffmpeg = opts.ffmpeg ?? 'ffmpeg';
  const seg = opts.segmentSeconds ?? 4;
  if (nBits !== VIDEO_BITS) return { best: null, hypotheses: 0, reason: `video carries ${VIDEO_BITS} bits, not ${nBits}` };
  const info = await probeVideo(file, ffmpeg).catch(() => null);
  if (!info) return { best: null, hypotheses: 0, reason: 'not a video ffmpeg can read' };
  const w = WORK_W;
  const h = Math.max(2, Math.round((WORK_W * info.height) / info.width / 2) * 2);
  // Per window and pattern p: the normalised correlation of the window's high-passed mean frame with P_p.
  const patterns: Float64Array[] = [];
  const norms: number[] = [];
  const r = Math.max(1, Math.round(w / GRID_X / 2));
  for (let p = 0; p < VIDEO_BITS; p++) {
    const pat = highPass(Float64Array.from(videoPattern(key, p, w, h, { w: info.width, h: info.height })), w, h, r);
    patterns.push(pat);
    norms.push(Math.sqrt(pat.reduce((t, v) => t + v * v, 0)));
  }
  const rowOf = (means: Float64Array[], j: number): Float64Array => {
    // The host's static part: the mean of the neighbouring windows, which carry other (independent)
    // patterns; what is left of a still scene is the pattern and the coding noise.
    const d = Float64Array.from(means[j]);
    const near = [];
    for (let o = -NEIGHBOURS; o <= NEIGHBOURS; o++) if (o !== 0 && means[j + o]) near.push(means[j + o]);
    for (const m of near) for (let i = 0; i < d.length; i++) d[i] -= m[i] / near.length;
    const hp = highPass(d, w, h, r);
    // Strong edges (moving objects, cuts) are clipped so that they do not outweigh the faint pattern.
    const mags = hp.map(Math.abs).sort();
    const clip = 3 * (mags[mags.length >> 1] || 1e-9);
    let e = 0;
    for (let i = 0; i < hp.length; i++) {
      hp[i] = Math.max(-clip, Math.min(clip, hp[i]));
      e += hp[i] * hp[i];
    }
    const row = new Float64Array(VIDEO_BITS);
    for (let p = 0; p < VIDEO_BITS; p++) {
      const pat = patterns[p];
      let c = 0;
      for (let i = 0; i < hp.length; i++) c += hp[i] * pat[i];
      row[p] = e > 0 && norms[p] > 0 ? (c / (Math.sqrt(e) * norms[p])) * Math.sqrt(hp.length) : 0;
    }
    return row;
  };

  // Windows by timestamp (a copy that starts late with its timestamps re-based is caught by the
  // cyclic search), streamed: a window's row is computed once the NEIGHBOURS after it are complete.
  const windows: number[] = [];
  const corr: Float64Array[] = []; // corr[j][p], window j = windows[j]
  const means: Float64Array[] = []; // by window position; only the last 2·NEIGHBOURS+1 are kept
  let t0: number | null = null;
  let cur: { k: number; sum: Float64Array; n: number } | null = null;
  const close = () => {
    if (!cur) return;
    const m = new Float64Array(w * h);
    for (let i = 0; i < m.length; i++) m[i] = cur.sum[i] / cur.n;
    windows.push(cur.k);
    means.push(m);
    const j = means.length - 1 - NEIGHBOURS;
    if (j >= 0) corr.push(rowOf(means, j));
    if (j - NEIGHBOURS >= 0) (means as (Float64Array | undefined)[])[j - NEIGHBOURS] = undefined; // no longer a neighbour of anything to come
  };
  try {
    await decodeGrey(file, ffmpeg, w, h, info.fps, (t, f) => {
      t0 ??= Math.abs(t) >= seg / 2 ? t : 0;
      const k = Math.floor((t - t0) / seg + 1e-6);
      if (k < 0 || (cur && k < cur.k)) return; // out of order: a frame before the window being filled
      if (!cur || k !== cur.k) {
        close();
        cur = { k, sum: new Float64Array(w * h), n: 0 };
      }
      const sum = cur.sum;
      for (let i = 0; i < f.length; i++) sum[i] += f[i];
      cur.n++;
    });
  } catch (e) {
    return { best: null, hypotheses: 0, reason: `could not decode: ${(e as Error).message.slice(0, 200)}` };
  }
  close();
  for (let j = Math.max(0, means.length - NEIGHBOURS); j < means.length; j++) corr.push(rowOf(means, j));
  if (windows.length === 0) return { best: null, hypotheses: 0, reason: 'no frames' };
  if (windows.length < nBits) return { best: null, hypotheses: 0, reason: `only ${windows.length} segment windows of ${seg} s: ${nBits} are needed for the codeword` };
  const start = t0 ?? 0;
  // Hypothesis `shift`: window j carries pattern and bit (windows[j] + shift) mod 64.
  const hyps = [] as { shift: number; soft: Float64Array; energy: number }[];
  for (let shift = 0; shift < VIDEO_BITS; shift++) {
    const soft = new Float64Array(VIDEO_BITS);
    windows.forEach((k, j) => {
      const p = (((k + shift) % VIDEO_BITS) + VIDEO_BITS) % VIDEO_BITS;
      soft[p] += corr[j][p];
    });
    const energy = soft.reduce((t, v) => t + Math.abs(v), 0) / VIDEO_BITS;
    hyps.push({ shift, soft, energy });
  }
  const order = [hyps[0], ...hyps.slice(1).sort((a, b) => b.energy - a.energy)];
  let tried = 0;
  for (const hy of order) {
    tried++;
    const result = accept(hy.soft);
    if (result !== null) return { result, soft: hy.soft, where: `segments of ${seg} s from ${start.toFixed(3)} s, shift ${hy.shift}`, hypotheses: tried };
  }
  const best = hyps.reduce((a, b) => (b.energy > a.energy ? b : a));
  return { best: best.soft as SoftBits, hypotheses: tried, reason: 'no alignment accepted' };
}
