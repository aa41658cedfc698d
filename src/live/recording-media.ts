import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sha256Hex } from '../core/crypto.ts';
import { readWholePiece, type PieceSource } from '../transfer/piece-source.ts';
import { run, type MediaProbe } from './media-tools.ts';
import { verifySegmentLog, type SignedSegmentEntry } from './segment-log.ts';

// S3.15 (#16 point 3), the media half of recordings and rebroadcasts, all by Debian's ffmpeg:
// - a program's recording is made from its signed segment log only: every entry verified, every
//   segment file checked against its logged SHA-256; per take, the init segment followed by the
//   media segments is a valid fragmented MP4; the takes are joined by ffmpeg's concat demuxer
//   (-c copy, nothing re-encoded) into one MP4 with the index first (+faststart). Bit-exact
//   flags keep the output the same for the same log, so making it again publishes the same content.
// - a content to rebroadcast is assembled from its pieces (each checked against the manifest's
//   hash), probed (it must have a video stream), and fed to the packager as FLV in real time.

/** A reason a recording cannot be made; recorded on the recording row. */
export class RecordingProblem extends Error {}


const lastLines = (s: string) => s.trim().split('\n').slice(-3).join(' | ');

/**
 * Writes `out`, the program's recording, from the segments its log holds. Returns the logged
 * media duration, or null when the log holds no media segment. Throws RecordingProblem when the
 * log does not verify, a segment file is missing or differs from its entry, or ffmpeg fails.
 */
export async function assembleRecording(o: {
  dir: string;
  entries: SignedSegmentEntry[];
  originKey: string;
  work: string;
  out: string;
  ffmpeg: string;
}): Promise<{ durationMs: number; takes: number; segments: number } | null> {
  const problem = verifySegmentLog(o.entries, o.originKey);
  if (problem) throw new RecordingProblem(`the program's segment log does not verify: ${problem}`);
  const media = o.entries.filter((e) => e.entry.durationMs > 0);
  if (media.length === 0) return null;
  await mkdir(o.work, { recursive: true });
  const byName = new Map(o.entries.map((e) => [e.entry.name, e.entry]));
  // Takes in log order; a take's file is its init followed by its media segments.
  const takes: { init: string; media: string[] }[] = [];
  for (const { entry } of media) {
    if (!byName.has(entry.init)) throw new RecordingProblem(`segment ${entry.name} names an initialisation segment ${entry.init} the log does not hold`);
    const last = takes[takes.length - 1];
    if (last?.init === entry.init) last.media.push(entry.name);
    else takes.push({ init: entry.init, media: [entry.name] });
  }
  const files: string[] = [];
  for (const [i, take] of takes.entries()) {
    const file = path.join(o.work, `take_${i + 1}.mp4`);
    const w = createWriteStream(file);
    try {
      for (const name of [take.init, ...take.media]) {
        const entry = byName.get(name)!;
        let bytes: Buffer;
        try {
          bytes = await readFile(path.join(o.dir, name));
        } catch {
          throw new RecordingProblem(`segment ${name} is missing from the program's directory`);
        }
        if (bytes.length !== entry.bytes || sha256Hex(bytes) !== entry.sha256) throw new RecordingProblem(`segment ${name} does not match the program's signed log (SHA-256 differs)`);
        if (!w.write(bytes)) await new Promise<void>((r) => w.once('drain', () => r()));
      }
    } finally {
      await new Promise<void>((resolve, reject) => w.end((e?: Error | null) => (e ? reject(e) : resolve())));
    }
    files.push(file);
  }
  const list = path.join(o.work, 'takes.txt');
  await writeFile(list, files.map((f) => `file '${f.replace(/'/g, "'\\''")}'`).join('\n') + '\n');
  const tmp = `${o.out}.part.mp4`;
  const r = await run(
    o.ffmpeg,
    ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', '-f', 'concat', '-safe', '0', '-i', list, '-map', '0', '-c', 'copy', '-map_metadata', '-1', '-fflags', '+bitexact', '-movflags', '+faststart', tmp],
    10 * 60_000,
  );
  if (!r.ok) {
    await rm(tmp, { force: true });
    throw new RecordingProblem(`ffmpeg could not join the takes: ${lastLines(r.stderr) || 'no output'}`);
  }
  await rename(tmp, o.out);
  return { durationMs: media.reduce((s, e) => s + e.entry.durationMs, 0), takes: takes.length, segments: media.length };
}


/**
 * Writes a content's bytes to `out` from the origin's piece source, each piece checked against
 * the manifest's hash. Throws RecordingProblem on a missing or altered piece.
 */
export async function assembleContent(pieces: PieceSource, contentId: string, out: string): Promise<void> {
  const manifest = await pieces.manifest(contentId);
  if (!manifest) throw new RecordingProblem(`no content ${contentId}`);
  await mkdir(path.dirname(out), { recursive: true });
  const tmp = `${out}.${randomBytes(6).toString('hex')}.part`; // two requests at once each write their own
  const w = createWriteStream(tmp);
  try {
    const { pieces: hashes } = manifest.body;
    for (let i = 0; i < hashes.length; i++) {
      const buf = await readWholePiece(pieces, contentId, i);
      if (!buf) throw new RecordingProblem(`piece ${i} of content ${contentId} is missing`);
      if (sha256Hex(buf) !== hashes[i]) throw new RecordingProblem(`piece ${i} of content ${contentId} does not match its manifest`);
      if (!w.write(buf)) await new Promise<void>((r) => w.once('drain', () => r()));
    }
  } catch (e) {
    w.destroy();
    await rm(tmp, { force: true });
    throw e;
  }
  await new Promise<void>((resolve, reject) => w.end((e?: Error | null) => (e ? reject(e) : resolve())));
  await rename(tmp, out);
}

/**
 * ffmpeg playing `file` in real time as FLV on its stdout: copied when it is already H.264 + AAC
 * (the packager re-encodes within the channel's bitrate anyway), else encoded quickly to them.
 */
export function playAsFlv(o: { ffmpeg: string; file: string; probe: MediaProbe }): ChildProcess {
  const copy = o.probe.video === 'h264' && (o.probe.audio === null || o.probe.audio === 'aac');
  const codecs = copy ? ['-c', 'copy'] : ['-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '18', '-g', '50', '-c:a', 'aac', '-b:a', '128k'];
  return spawn(o.ffmpeg, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-i', o.file, '-map', '0:v:0', '-map', '0:a:0?', ...codecs, '-f', 'flv', 'pipe:1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}
