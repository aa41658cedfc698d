import { open, readFile, stat } from 'node:fs/promises';
import { ffprobeOf, probeMedia } from '../live/media-tools.ts';
import { decodeAudio, detectAudio, isWav, readWav } from './audio.ts';
import { isFound, type Found, type NotFound } from './carrier.ts';
import { detectImage, isImage } from './image.ts';
import { falseMatch, readPayload, type CodeKind, type PayloadSecrets, type ReadPayload } from './payload.ts';
import { detectVideo } from './video.ts';

// S2.7: which carrier a suspect file is, and the payload it carries if any. Images are told by
// their magic bytes (ffprobe would call a PNG a video), WAV likewise; anything else ffprobe reads
// is a video (its picture carries the mark, whatever its audio) or an audio file (an MP3 of a
// marked WAV: decoded to PCM and read as audio). Everything else has no carrier.

export type Carrier = 'image' | 'audio' | 'video';

/** Images are read whole into memory: larger ones are refused (a 50-megapixel PNG is ~100 MB). */
export const MAX_IMAGE_BYTES = 200 * 1024 * 1024;

export type Detection =
  | { found: true; carrier: Carrier; payload: ReadPayload; falseMatch: number; where: string; hypotheses: number }
  | { found: false; carrier: Carrier | null; reason: string; hypotheses: number; best: Float64Array | null };

function verdict(carrier: Carrier, kind: CodeKind, d: Found<ReadPayload> | NotFound): Detection {
  if (isFound(d)) return { found: true, carrier, payload: d.result, falseMatch: falseMatch(kind, d.result.bitErrors, d.hypotheses), where: d.where, hypotheses: d.hypotheses };
  return { found: false, carrier, reason: d.reason, hypotheses: d.hypotheses, best: d.best };
}

/** The first `n` bytes of a file (its magic). */
export async function readHead(file: string, n: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The mark in the file at `file`, if it carries one of this origin's. */
export async function detectFile(file: string, secrets: PayloadSecrets, opts: { ffmpeg?: string } = {}): Promise<Detection> {
  const ffmpeg = opts.ffmpeg ?? 'ffmpeg';
  const accept = (kind: CodeKind) => (soft: Float64Array) => readPayload(kind, secrets, soft);
  const start = await readHead(file, 64);
  if (isImage(start)) {
    if ((await stat(file)).size > MAX_IMAGE_BYTES) return { found: false, carrier: 'image', reason: `images over ${MAX_IMAGE_BYTES / 1024 / 1024} MiB are not read`, hypotheses: 0, best: null };
    return verdict('image', 'long', await detectImage(await readFile(file), secrets.pattern, 128, accept('long')));
  }
  if (isWav(start)) {
    let pcm;
    try {
      pcm = readWav(await readFile(file));
    } catch (err) {
      return { found: false, carrier: 'audio', reason: `not a readable WAV file (${(err as Error).message})`, hypotheses: 0, best: null };
    }
    return verdict('audio', 'long', await detectAudio(pcm, secrets.pattern, 128, accept('long')));
  }
  const probe = await probeMedia(ffprobeOf(ffmpeg), file);
  if (probe?.video) return verdict('video', 'short', await detectVideo(file, secrets.pattern, 64, accept('short'), { ffmpeg }));
  if (probe?.audio) return verdict('audio', 'long', await detectAudio(await decodeAudio(file, ffmpeg), secrets.pattern, 128, accept('long')));
  return { found: false, carrier: null, reason: 'not an image, audio or video file (marks are carried by PNG/JPEG images, audio and video)', hypotheses: 0, best: null };
}
