import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import { sha256Hex } from '../core/crypto.ts';
import { AppError, badRequest, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Db } from '../db/connection.ts';
import type { Channels } from './channels.ts';
import { renderLoopPlaylist } from './filler-playlist.ts';
import { ffprobeOf, probeMedia, run } from './media-tools.ts';
import { encodingBitrates } from './packager.ts';
import type { LiveFillersTable } from './tables.ts';

// S3.14: what a channel carries when no program is on it — between programs and in empty
// slots. An operator sets a slate (text rendered by ffmpeg) or a clip (a video file, re-encoded
// within the channel's bitrate); a channel without one gets a default slate with its name.
// Either is packaged once into fMP4 HLS segments and looped by the clock (filler-playlist.ts).

export const FILLER_CLIP_MAX_BYTES = 200 * 1024 * 1024;
/** A clip is cut to this length: filler loops, it need not be long. */
const CLIP_MAX_SECONDS = 600;
const SLATE_SECONDS = 8;
const SEGMENT_SECONDS = 2;
const TEXT_MAX = 200;
const FONT = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';

export interface FillerSegment {
  name: string;
  durationMs: number;
  sha256: string;
  bytes: number;
}

export interface Filler {
  channelId: string;
  kind: 'slate' | 'clip' | 'default';
  text: string | null;
  version: string;
  segments: FillerSegment[];
  totalMs: number;
  updatedAt: string;
  /** The looping playlist, for any player (no session: filler is the channel's shop window). */
  playlist: string;
}

const toFiller = (r: LiveFillersTable): Filler => ({
  channelId: r.channel_id,
  kind: r.kind,
  text: r.text,
  version: r.version,
  segments: JSON.parse(r.segments) as FillerSegment[],
  totalMs: r.total_ms,
  updatedAt: r.updated_at.toISOString(),
  playlist: `/live/channels/${r.channel_id}/filler.m3u8`,
});

/** The media segments ffmpeg's VOD playlist lists, with their durations. */
export function parseVodPlaylist(text: string): { name: string; durationMs: number }[] {
  const out: { name: string; durationMs: number }[] = [];
  let duration: number | null = null;
  for (const line of text.split('\n').map((l) => l.trim())) {
    const m = /^#EXTINF:([\d.]+)/.exec(line);
    if (m) duration = Math.round(Number(m[1]) * 1000);
    else if (line && !line.startsWith('#') && duration !== null) {
      out.push({ name: line, durationMs: duration });
      duration = null;
    }
  }
  return out;
}

export class Fillers {
  /** One packaging of the default slate per channel at a time. */
  private readonly making = new Map<string, Promise<Filler>>();

  constructor(private readonly deps: { db: Db; clock: Clock; channels: Channels; dir: string; ffmpeg?: string; logger: Logger }) {}

  private get ffmpeg() {
    return this.deps.ffmpeg ?? 'ffmpeg';
  }

  /** The channel's filler; the default slate is made on first use. */
  async get(channelId: string): Promise<Filler> {
    const row = await this.deps.db.selectFrom('live_fillers').selectAll().where('channel_id', '=', channelId).executeTakeFirst();
    if (row) return toFiller(row);
    const channel = await this.deps.channels.get(channelId); // unknown_channel
    let made = this.making.get(channelId);
    if (!made) {
      made = this.store(channelId, 'default', `${channel.name}\nNothing on air right now`, null, (dir) => this.renderSlate(dir, `${channel.name}\nNothing on air right now`, channel.bitrateKbps), true);
      this.making.set(channelId, made);
      void made.finally(() => this.making.delete(channelId)).catch(() => {});
    }
    return made;
  }

  /** S3.14: the operator's slate: `text` (up to 200 characters, lines kept) on a plain background. */
  async setSlate(channelId: string, text: string, operatorId: string): Promise<Filler> {
    const t = text.trim();
    if (!t) throw badRequest('filler_text_required', 'Give the slate some text, e.g. "Back at 20:00".', { field: 'slate' });
    if ([...t].length > TEXT_MAX) throw badRequest('filler_text_too_long', `A slate's text is at most ${TEXT_MAX} characters.`, { field: 'slate' });
    const channel = await this.deps.channels.get(channelId);
    return this.store(channelId, 'slate', t, operatorId, (dir) => this.renderSlate(dir, t, channel.bitrateKbps));
  }

  /** S3.14: the operator's clip, read from `body` (at most 200 MiB), re-encoded within the channel's bitrate. */
  async setClip(channelId: string, body: Readable, operatorId: string): Promise<Filler> {
    const channel = await this.deps.channels.get(channelId);
    await mkdir(this.deps.dir, { recursive: true });
    const tmp = await mkdtemp(path.join(this.deps.dir, 'upload-'));
    try {
      const file = path.join(tmp, 'clip');
      let bytes = 0;
      body.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > FILLER_CLIP_MAX_BYTES) body.destroy(new AppError('filler_too_large', `A filler clip is at most ${FILLER_CLIP_MAX_BYTES / 1024 / 1024} MiB.`, 413));
      });
      await pipeline(body, createWriteStream(file));
      if (bytes === 0) throw badRequest('filler_clip_empty', 'Send the clip’s bytes as the request body.');
      const probe = await probeMedia(ffprobeOf(this.ffmpeg), file);
      if (!probe?.video) throw badRequest('filler_not_video', 'That file is not a video ffmpeg can read; send an MP4, WebM, MKV…');
      return await this.store(channelId, 'clip', null, operatorId, (dir) => this.renderClip(dir, file, probe.audio !== null, channel.bitrateKbps));
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** Packages into a new version directory, then points the channel at it (the old one is removed). */
  private async store(channelId: string, kind: Filler['kind'], text: string | null, by: string | null, render: (dir: string) => Promise<void>, onlyIfNone = false): Promise<Filler> {
    const version = newId('flv', 12);
    const dir = path.join(this.deps.dir, channelId, version);
    await mkdir(dir, { recursive: true });
    try {
      await render(dir);
      const listed = parseVodPlaylist(await readFile(path.join(dir, 'index.m3u8'), 'utf8'));
      if (listed.length === 0) throw new Error('ffmpeg wrote no segments');
      const segments: FillerSegment[] = [];
      for (const s of listed) {
        const bytes = await readFile(path.join(dir, s.name));
        segments.push({ ...s, sha256: sha256Hex(bytes), bytes: bytes.length });
      }
      const row: LiveFillersTable = {
        channel_id: channelId,
        kind,
        text,
        version,
        segments: JSON.stringify(segments),
        total_ms: segments.reduce((t, s) => t + s.durationMs, 0),
        updated_at: new Date(this.deps.clock.now()),
        updated_by: by,
      };
      const old = await this.deps.db.selectFrom('live_fillers').select('version').where('channel_id', '=', channelId).executeTakeFirst();
      const q = this.deps.db.insertInto('live_fillers').values(row);
      const written = onlyIfNone
        ? await q.onConflict((oc) => oc.column('channel_id').doNothing()).returningAll().executeTakeFirst()
        : await q.onConflict((oc) => oc.column('channel_id').doUpdateSet({ kind, text, version, segments: row.segments, total_ms: row.total_ms, updated_at: row.updated_at, updated_by: by })).returningAll().executeTakeFirst();
      if (!written) {
        // Another origin made the default first: use its.
        await rm(dir, { recursive: true, force: true });
        return this.get(channelId);
      }
      if (old && old.version !== version) await rm(path.join(this.deps.dir, channelId, old.version), { recursive: true, force: true });
      this.deps.logger.info({ channel: channelId, kind, version, segments: segments.length }, 'filler set');
      return toFiller(written);
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      if (e instanceof AppError) throw e;
      throw new AppError('filler_failed', `The filler could not be packaged: ${(e as Error).message}`, 500);
    }
  }

  private hlsOut(dir: string): string[] {
    return [
      '-f', 'hls', '-hls_time', String(SEGMENT_SECONDS), '-hls_playlist_type', 'vod', '-hls_segment_type', 'fmp4',
      '-hls_fmp4_init_filename', 'init.mp4', '-hls_segment_filename', path.join(dir, 'seg_%04d.m4s'), path.join(dir, 'index.m3u8'),
    ];
  }

  private encode(bitrateKbps: number): string[] {
    const { videoKbps, audioKbps } = encodingBitrates(bitrateKbps);
    return [
      '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-b:v', `${videoKbps}k`, '-maxrate', `${videoKbps}k`, '-bufsize', `${videoKbps}k`,
      '-force_key_frames', `expr:gte(t,n_forced*${SEGMENT_SECONDS})`, '-sc_threshold', '0',
      '-c:a', 'aac', '-b:a', `${audioKbps}k`, '-ac', '2', '-ar', '48000',
    ];
  }

  private async renderSlate(dir: string, text: string, bitrateKbps: number) {
    // The text goes through a file: nothing an operator types is parsed as filter syntax.
    const textFile = path.join(dir, 'slate.txt');
    await writeFile(textFile, text);
    const font = (await stat(FONT).then(() => true, () => false)) ? `fontfile=${FONT}:` : '';
    const draw = `drawtext=${font}textfile=${textFile}:expansion=none:fontcolor=white:fontsize=30:line_spacing=12:x=(w-text_w)/2:y=(h-text_h)/2`;
    const r = await run(this.ffmpeg, [
      '-hide_banner', '-loglevel', 'error', '-nostdin',
      '-f', 'lavfi', '-i', `color=c=0x1d2b3a:s=640x360:r=25:d=${SLATE_SECONDS}`,
      '-f', 'lavfi', '-i', `anullsrc=r=48000:cl=stereo`,
      '-vf', draw, '-t', String(SLATE_SECONDS), ...this.encode(bitrateKbps), ...this.hlsOut(dir),
    ], 120_000);
    await rm(textFile, { force: true });
    if (!r.ok) throw new Error(`ffmpeg: ${r.stderr.trim().slice(-2000) || 'failed'}`);
  }

  private async renderClip(dir: string, file: string, hasAudio: boolean, bitrateKbps: number) {
    // Every filler has sound (silence if the clip has none): players switching between filler
    // and programs then always find the same tracks.
    const input = hasAudio ? ['-i', file] : ['-i', file, '-f', 'lavfi', '-i', 'anullsrc=r=48000:cl=stereo'];
    const map = hasAudio ? ['-map', '0:v:0', '-map', '0:a:0'] : ['-map', '0:v:0', '-map', '1:a:0', '-shortest'];
    const r = await run(this.ffmpeg, [
      '-hide_banner', '-loglevel', 'error', '-nostdin', ...input, ...map,
      '-t', String(CLIP_MAX_SECONDS), '-vf', 'scale=-2:min(ih\\,720)', ...this.encode(bitrateKbps), ...this.hlsOut(dir),
    ], 15 * 60_000);
    if (!r.ok) throw new Error(`ffmpeg: ${r.stderr.trim().slice(-2000) || 'failed'}`);
  }

  /** S3.14: the looping playlist at `now`. */
  async playlist(channelId: string): Promise<string> {
    const f = await this.get(channelId);
    return renderLoopPlaylist({
      init: `filler/${f.version}/init.mp4`,
      segments: f.segments.map((s) => ({ uri: `filler/${f.version}/${s.name}`, durationMs: s.durationMs })),
      epochMs: Date.parse(f.updatedAt),
      now: this.deps.clock.now(),
      count: 4,
    });
  }

  /** One of the filler's files, checked against its recorded hash (the init segment: as written). */
  async file(channelId: string, version: string, name: string): Promise<Buffer> {
    const f = await this.get(channelId);
    if (version !== f.version || !/^(init\.mp4|seg_\d{4,6}\.m4s)$/.test(name)) throw notFound('unknown_segment', `No filler file ${version}/${name} (the filler may have changed: reload the playlist).`);
    const seg = f.segments.find((s) => s.name === name);
    if (name !== 'init.mp4' && !seg) throw notFound('unknown_segment', `No filler file ${name}.`);
    const bytes = await readFile(path.join(this.deps.dir, channelId, version, name)).catch(() => {
      throw notFound('unknown_segment', `The filler file ${name} is not on this origin.`);
    });
    if (seg && sha256Hex(bytes) !== seg.sha256) throw new AppError('segment_corrupt', `Filler file ${name} does not match what was packaged.`, 500);
    return bytes;
  }
}

