import { createHash } from 'node:crypto';
import { open, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { sha256Hex } from '../../core/crypto.ts';
import { newId } from '../../core/ids.ts';
import { parseVodPlaylist } from '../../live/fillers.ts';
import { ffprobeOf, probeMedia, run } from '../../live/media-tools.ts';
import { packageVariants, variantOf } from '../../marks/video.ts';

// S2.5 (docs/edge.md "Home server"): a video a home edge keeps is packaged ONCE into VOD HLS
// (fMP4 segments of about 4 s, `#EXT-X-PLAYLIST-TYPE:VOD`, ENDLIST) by Debian's ffmpeg — copied
// when it is already H.264/AAC, re-encoded otherwise — so that any player can seek in it. Each
// file's SHA-256 is recorded when it is written, and only matching bytes are ever served (as the
// live domain's fillers do). A content that is not a video is served as a file (HTTP Range) only.
// Layout: <dir>/<contentId>/{package.json, init.mp4, seg_00000.m4s, …}; a package is written in a
// temporary directory and renamed into place, so a half-made package is never seen.
// S2.3 (#18): when the edge has the origin's pattern key, a video is always re-encoded, in two
// variants of every segment (src/marks/video.ts): seg_00000.a.m4s and seg_00000.b.m4s, both hashed;
// the playlist still names seg_00000.m4s, and `file(…, variant)` picks the variant a receiver's
// codeword selects. The package records which key marked it (its fingerprint): another key, or
// none, makes it again.

export const SEGMENT_SECONDS = 4;
/** ffmpeg's longest run for one content (a re-encode of a feature film on a small box). */
const PACKAGE_TIMEOUT_MS = 2 * 60 * 60_000;
const NAME = /^(init\.mp4|seg_\d{5}\.m4s)$/;

export interface VodFile {
  name: string;
  /** 0 for init.mp4. */
  durationMs: number;
  sha256: string;
  bytes: number;
  /** A/B segments (S2.3): the two variants' files (<base>.a.m4s, <base>.b.m4s); sha256/bytes above are variant a's. */
  variants?: { a: { sha256: string; bytes: number }; b: { sha256: string; bytes: number } };
}

export interface VodPackage {
  contentId: string;
  /** false: not a video ffmpeg can read; the content is served as a file only. */
  video: boolean;
  /** How it was packaged: the streams copied or re-encoded. */
  mode: 'copy' | 'encode' | null;
  init: VodFile | null;
  segments: VodFile[];
  totalMs: number;
  /** S2.3: the fingerprint of the pattern key its A/B variants were made with; null or absent: one variant, unmarked. */
  marked?: string | null;
}

/** A pattern key's fingerprint (recorded in package.json, never the key). */
export const markKeyId = (key: Buffer | undefined | null): string | null => (key ? createHash('sha256').update('cascade-mark-key').update(key).digest('hex').slice(0, 16) : null);

export class VodPackager {
  /** One packaging per content at a time. */
  private readonly making = new Map<string, Promise<VodPackage>>();
  private readonly cache = new Map<string, VodPackage>();

  constructor(private readonly deps: { dir: string; ffmpeg?: string; logger: Logger; /** The origin's pattern key, when the edge has it (read at each packaging). */ markKey?: () => Buffer | null | undefined }) {}

  private get key(): Buffer | undefined {
    return this.deps.markKey?.() ?? undefined;
  }

  private get ffmpeg() {
    return this.deps.ffmpeg ?? 'ffmpeg';
  }

  private dirOf(contentId: string) {
    if (!/^[0-9a-f]{8,64}$/.test(contentId)) throw new Error(`not a content ID: ${contentId.slice(0, 80)}`);
    return path.join(this.deps.dir, contentId);
  }

  /** The content's package (made on first call from `dataPath`; later calls read the record). */
  async get(contentId: string, dataPath: string): Promise<VodPackage> {
    const known = this.cache.get(contentId) ?? (await this.load(contentId));
    // A video packaged without the current key (or with another) is made again, marked as the key says.
    if (known && (!known.video || (known.marked ?? null) === markKeyId(this.key))) return known;
    let made = this.making.get(contentId);
    if (!made) {
      made = this.make(contentId, dataPath);
      this.making.set(contentId, made);
      void made.finally(() => this.making.delete(contentId)).catch(() => {});
    }
    return made;
  }

  /** The package already made, if any (no probing, no packaging). */
  async peek(contentId: string): Promise<VodPackage | null> {
    return this.cache.get(contentId) ?? (await this.load(contentId));
  }

  private async load(contentId: string): Promise<VodPackage | null> {
    try {
      const pkg = JSON.parse(await readFile(path.join(this.dirOf(contentId), 'package.json'), 'utf8')) as VodPackage;
      this.cache.set(contentId, pkg);
      return pkg;
    } catch {
      return null;
    }
  }

  private async make(contentId: string, dataPath: string): Promise<VodPackage> {
    const final = this.dirOf(contentId);
    await mkdir(this.deps.dir, { recursive: true });
    const tmp = path.join(this.deps.dir, `.${contentId}.${newId('tmp', 8)}`);
    await mkdir(tmp, { recursive: true });
    try {
      const probe = await probeMedia(ffprobeOf(this.ffmpeg), dataPath);
      // A still image probes as a one-frame "video": a video has a picture and lasts a second or more.
      const isVideo = !!probe?.video && !['png', 'mjpeg', 'gif', 'bmp', 'webp', 'tiff'].includes(probe.video) && probe.durationSeconds >= 1;
      let pkg: VodPackage;
      if (!isVideo) {
        pkg = { contentId, video: false, mode: null, init: null, segments: [], totalMs: 0 };
      } else {
        const key = this.key;
        if (key) {
          pkg = await this.makeVariants(contentId, dataPath, tmp, key);
        } else {
          const copy = probe!.video === 'h264' && (probe!.audio === null || probe!.audio === 'aac');
          const r = await run(this.ffmpeg, this.args(dataPath, tmp, copy, probe!.audio !== null), PACKAGE_TIMEOUT_MS);
          if (!r.ok) throw new Error(`ffmpeg: ${r.stderr.trim().slice(-2000) || 'failed'}`);
          const listed = parseVodPlaylist(await readFile(path.join(tmp, 'index.m3u8'), 'utf8'));
          if (listed.length === 0) throw new Error('ffmpeg wrote no segments');
          const describe = async (name: string, durationMs: number): Promise<VodFile> => {
            const bytes = await readFile(path.join(tmp, name));
            return { name, durationMs, sha256: sha256Hex(bytes), bytes: bytes.length };
          };
          const segments: VodFile[] = [];
          for (const s of listed) segments.push(await describe(s.name, s.durationMs));
          pkg = { contentId, video: true, mode: copy ? 'copy' : 'encode', init: await describe('init.mp4', 0), segments, totalMs: segments.reduce((t, s) => t + s.durationMs, 0) };
          await rm(path.join(tmp, 'index.m3u8'), { force: true }); // the playlist is ours (playlist())
        }
      }
      await writeFile(path.join(tmp, 'package.json'), JSON.stringify(pkg));
      await rm(final, { recursive: true, force: true });
      await rename(tmp, final);
      this.cache.set(contentId, pkg);
      this.deps.logger.info({ content: contentId, video: pkg.video, mode: pkg.mode, segments: pkg.segments.length, marked: !!pkg.marked }, 'vod packaged');
      return pkg;
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  /** S2.3: both variants of every segment, re-encoded whatever the input's codecs (the pattern is added to decoded frames). */
  private async makeVariants(contentId: string, dataPath: string, tmp: string, key: Buffer): Promise<VodPackage> {
    const made = await packageVariants(dataPath, tmp, key, { segmentSeconds: SEGMENT_SECONDS, ffmpeg: this.ffmpeg, timeoutMs: PACKAGE_TIMEOUT_MS });
    const hashOf = async (file: string) => {
      const bytes = await readFile(file);
      return { sha256: sha256Hex(bytes), bytes: bytes.length };
    };
    const segments: VodFile[] = [];
    for (const [i, s] of made.segments.entries()) {
      const a = await hashOf(s.a);
      const b = await hashOf(s.b);
      segments.push({ name: `seg_${String(i).padStart(5, '0')}.m4s`, durationMs: s.durationMs, ...a, variants: { a, b } });
    }
    const init = await hashOf(made.init);
    return {
      contentId,
      video: true,
      mode: 'encode',
      init: { name: 'init.mp4', durationMs: 0, ...init },
      segments,
      totalMs: segments.reduce((t, s) => t + s.durationMs, 0),
      marked: markKeyId(key),
    };
  }

  private args(input: string, dir: string, copy: boolean, hasAudio: boolean): string[] {
    const codecs = copy
      ? ['-c', 'copy']
      : [
          '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-pix_fmt', 'yuv420p',
          // A key frame at every segment boundary: every segment starts one, so seeking lands anywhere.
          '-force_key_frames', `expr:gte(t,n_forced*${SEGMENT_SECONDS})`, '-sc_threshold', '0',
          ...(hasAudio ? ['-c:a', 'aac', '-b:a', '128k', '-ac', '2'] : []),
        ];
    return [
      '-hide_banner', '-loglevel', 'error', '-nostdin', '-i', input,
      '-map', '0:v:0', ...(hasAudio ? ['-map', '0:a:0'] : []), ...codecs,
      '-f', 'hls', '-hls_time', String(SEGMENT_SECONDS), '-hls_playlist_type', 'vod', '-hls_segment_type', 'fmp4',
      '-hls_flags', 'independent_segments', '-hls_fmp4_init_filename', 'init.mp4',
      '-hls_segment_filename', path.join(dir, 'seg_%05d.m4s'), path.join(dir, 'index.m3u8'),
    ];
  }

  /** The VOD playlist of a package; `uri(name)` says where each file is fetched. */
  static playlist(pkg: VodPackage, uri: (name: string) => string): string {
    const target = Math.max(1, ...pkg.segments.map((s) => Math.ceil(s.durationMs / 1000)));
    const lines = ['#EXTM3U', '#EXT-X-VERSION:7', `#EXT-X-TARGETDURATION:${target}`, '#EXT-X-MEDIA-SEQUENCE:0', '#EXT-X-PLAYLIST-TYPE:VOD', '#EXT-X-INDEPENDENT-SEGMENTS'];
    if (pkg.init) lines.push(`#EXT-X-MAP:URI="${uri(pkg.init.name)}"`);
    for (const s of pkg.segments) lines.push(`#EXTINF:${(s.durationMs / 1000).toFixed(3)},`, uri(s.name));
    lines.push('#EXT-X-ENDLIST', '');
    return lines.join('\n');
  }

  /**
   * One file of a package, or null if there is no such file; throws if its bytes no longer match
   * their hash. For an A/B segment, `variant` says which one (default a); other files have one.
   */
  async file(contentId: string, name: string, variant: 'a' | 'b' = 'a'): Promise<{ bytes: Buffer; file: VodFile; variant: 'a' | 'b' | null } | null> {
    if (!NAME.test(name)) return null;
    const pkg = await this.peek(contentId);
    if (!pkg) return null;
    const file = name === 'init.mp4' ? pkg.init : pkg.segments.find((s) => s.name === name);
    if (!file) return null;
    const disk = file.variants ? name.replace(/\.m4s$/, `.${variant}.m4s`) : name;
    const want = file.variants ? file.variants[variant].sha256 : file.sha256;
    const bytes = await readFile(path.join(this.dirOf(contentId), disk)).catch(() => null);
    if (!bytes) return null;
    if (sha256Hex(bytes) !== want) throw new SegmentCorrupt(disk);
    return { bytes, file, variant: file.variants ? variant : null };
  }

  /**
   * S2.3: the marked copy of a packaged video as one fragmented MP4 file — init.mp4, then per
   * segment the variant `videoBits` selects (null: variant a throughout) — for a file download or
   * a store package. Every file is checked against its hash as it is copied.
   */
  async writeMarked(contentId: string, videoBits: Uint8Array | null, toPath: string): Promise<{ bytes: number }> {
    const pkg = await this.peek(contentId);
    if (!pkg?.video || !pkg.init) throw new Error(`no video package for ${contentId}`);
    const out = await open(toPath, 'w');
    let total = 0;
    try {
      const parts: [string, 'a' | 'b'][] = [['init.mp4', 'a'], ...pkg.segments.map((s, i): [string, 'a' | 'b'] => [s.name, videoBits ? variantOf(videoBits, i) : 'a'])];
      for (const [name, v] of parts) {
        const got = await this.file(contentId, name, v);
        if (!got) throw new Error(`packaged file ${name} is missing`);
        await out.write(got.bytes);
        total += got.bytes.length;
      }
      await out.sync();
    } finally {
      await out.close();
    }
    return { bytes: total };
  }

  /** Deletes the content's package. */
  async remove(contentId: string): Promise<void> {
    this.cache.delete(contentId);
    await this.making.get(contentId)?.catch(() => {});
    await rm(this.dirOf(contentId), { recursive: true, force: true });
  }
}

export class SegmentCorrupt extends Error {
  constructor(readonly name: string) {
    super(`packaged file ${name} does not match what was packaged`);
  }
}
