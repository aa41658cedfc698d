import { spawn } from 'node:child_process';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';

// #15 point 2: one program's FLV in, fMP4 HLS segments out, by Debian's ffmpeg (no codec code of
// ours). ffmpeg re-encodes to the channel's bitrate (H.264 + AAC, a key frame every segment) so
// a broadcaster cannot send more than the channel carries, and writes each segment and the
// playlist to a temporary name first (hls_flags temp_file): a name in the playlist is a finished
// file. We watch the directory, read ffmpeg's playlist, and hand each new segment on in order.

export interface PackagedSegment {
  /** File name inside the program's directory. */
  name: string;
  file: string;
  /** 0 for the initialisation segment. */
  durationMs: number;
}

export interface PackagerOptions {
  dir: string;
  /** Names this take's files apart from the program's earlier takes (a reconnect): "t2_". */
  prefix: string;
  flv: Readable;
  /** The channel's bitrate: video and audio together are encoded within it. */
  bitrateKbps: number;
  segmentSeconds: number;
  /** Called once per segment, init first, in playlist order; the next waits for it. */
  onSegment(seg: PackagedSegment): Promise<void>;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void };
  ffmpeg?: string;
}

export interface Packager {
  /** Settles when ffmpeg has exited and every segment it wrote was handed on. */
  done: Promise<{ exitCode: number | null; error: string | null }>;
  /** Stops ffmpeg (the segments it finished are still handed on). */
  stop(): void;
}


/** Audio and video bitrates within the channel's bitrate. */
export function encodingBitrates(bitrateKbps: number): { videoKbps: number; audioKbps: number } {
  const audioKbps = bitrateKbps >= 800 ? 128 : bitrateKbps >= 300 ? 64 : 32;
  return { videoKbps: Math.max(50, bitrateKbps - audioKbps), audioKbps };
}

export function ffmpegArgs(o: { dir: string; prefix: string; bitrateKbps: number; segmentSeconds: number }): string[] {
  const { videoKbps, audioKbps } = encodingBitrates(o.bitrateKbps);
  return [
    '-hide_banner', '-loglevel', 'error', '-nostdin',
    '-f', 'flv', '-analyzeduration', '1000000', '-i', 'pipe:0',
    '-map', '0:v:0', '-map', '0:a:0?',
    // The channel's bitrate as a ceiling (S3.2): constrained VBR with a one-second buffer.
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
    '-b:v', `${videoKbps}k`, '-maxrate', `${videoKbps}k`, '-bufsize', `${videoKbps}k`,
    // A key frame at every segment boundary, so every segment starts one and is independently playable.
    '-force_key_frames', `expr:gte(t,n_forced*${o.segmentSeconds})`, '-sc_threshold', '0',
    '-c:a', 'aac', '-b:a', `${audioKbps}k`, '-ac', '2', '-ar', '48000',
    '-f', 'hls', '-hls_time', String(o.segmentSeconds), '-hls_list_size', '0',
    '-hls_segment_type', 'fmp4', '-hls_fmp4_init_filename', `${o.prefix}init.mp4`,
    '-hls_flags', 'independent_segments+temp_file',
    '-hls_segment_filename', path.join(o.dir, `${o.prefix}seg_%06d.m4s`),
    path.join(o.dir, `${o.prefix}index.m3u8`),
  ];
}

/** The segments ffmpeg's playlist lists, in order: name and duration. */
export function parsePlaylist(text: string): { name: string; durationMs: number }[] {
  const out: { name: string; durationMs: number }[] = [];
  let duration: number | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#EXTINF:')) duration = Math.round(parseFloat(line.slice(8)) * 1000);
    else if (line && !line.startsWith('#') && duration !== null) {
      out.push({ name: path.basename(line), durationMs: duration });
      duration = null;
    }
  }
  return out;
}

export function startPackager(o: PackagerOptions): Packager {
  const PLAYLIST = `${o.prefix}index.m3u8`;
  const INIT = `${o.prefix}init.mp4`;
  const proc = spawn(o.ffmpeg ?? 'ffmpeg', ffmpegArgs(o), { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000); // bounded: only the end says why it stopped
  });
  // ffmpeg closing its input early (it failed) must not crash the origin with EPIPE.
  proc.stdin.on('error', () => {});
  o.flv.on('error', () => proc.stdin.end());
  o.flv.pipe(proc.stdin);

  let handed = 0; // media segments handed on
  let initHanded = false;
  let chain: Promise<void> = Promise.resolve();
  let failure: string | null = null;

  const scan = async () => {
    let text: string;
    try {
      text = await readFile(path.join(o.dir, PLAYLIST), 'utf8');
    } catch {
      return; // not written yet
    }
    const listed = parsePlaylist(text);
    if (listed.length > handed && !initHanded) {
      await o.onSegment({ name: INIT, file: path.join(o.dir, INIT), durationMs: 0 });
      initHanded = true;
    }
    for (const s of listed.slice(handed)) {
      await o.onSegment({ name: s.name, file: path.join(o.dir, s.name), durationMs: s.durationMs });
      handed++;
    }
  };
  const rescan = () => {
    chain = chain.then(scan).catch((e: unknown) => {
      failure = e instanceof Error ? e.message : String(e);
      o.log.warn({ err: failure, dir: o.dir }, 'live segment could not be logged');
      proc.kill('SIGTERM');
    });
    return chain;
  };

  let watcher: FSWatcher | null = null;
  try {
    // ffmpeg renames the playlist into place after each segment: that rename is our signal.
    watcher = watch(o.dir, (_event, name) => {
      if (name === PLAYLIST) void rescan();
    });
  } catch (e) {
    o.log.warn({ err: String(e) }, 'cannot watch the live directory; segments appear when ffmpeg exits');
  }

  const done = new Promise<{ exitCode: number | null; error: string | null }>((resolve) => {
    proc.on('error', (e) => {
      failure = `ffmpeg could not start: ${e.message}`;
    });
    proc.on('close', async (code) => {
      watcher?.close();
      await rescan(); // the last segment is written as ffmpeg ends
      const error = failure ?? (code === 0 || code === 255 || proc.signalCode === 'SIGTERM' ? null : `ffmpeg exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
      resolve({ exitCode: code, error });
    });
  });
  return {
    done,
    stop: () => {
      o.flv.unpipe(proc.stdin);
      proc.stdin.end();
      proc.kill('SIGTERM');
    },
  };
}
