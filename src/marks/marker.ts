import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { embedWav, isWav } from './audio.ts';
import type { PatternKey } from './carrier.ts';
import { readHead } from './detect.ts';
import { embedImage, isImage } from './image.ts';
import { isVideo, packageVariants, writeMarkedMp4 } from './video.ts';

// S2.3 on the edge: the copy of a whole file one receiver gets — a home edge's file download, a
// store edge's package — made once per delivery under <dir>/<deliveryId>/ and kept until the
// delivery is released. Images (PNG, JPEG) and WAV audio are marked here; a video's marked copy
// is its A/B variants spelling the receiver's codeword (the home edge's VOD package, injected as
// `markVideo`); anything else has no carrier and is delivered as it is, and the answer says so.

export type MarkCarrier = 'image' | 'audio' | 'video';

export interface MarkedFile {
  /** The file to send. */
  path: string;
  carrier: MarkCarrier | null;
  /** What was done, for logs and the delivery's status: "marked (image, PSNR 44.1 dB)", or why not. */
  note: string;
}

/** The parts of a delivery mark (delivery-hook.ts) the marker reads. */
export interface MarkTarget {
  deliveryId: string;
  contentId: string;
  bits?: Uint8Array | null;
  videoBits?: Uint8Array | null;
}

/** Writes the marked copy of a video to `out` (false: not a video this edge can mark). */
export type VideoMarker = (out: string) => Promise<boolean>;

/** Segments of a video packaged for a whole marked copy (as a home edge's VOD package). */
const SEGMENT_SECONDS = 4;

/** Images and WAV files are marked in memory: larger ones are delivered unmarked (and said so). */
export const MAX_MARKED_BYTES = 512 * 1024 * 1024;

const DELIVERY_ID = /^[A-Za-z0-9_-]{1,80}$/;

export class Marker {
  private readonly making = new Map<string, Promise<MarkedFile>>();

  constructor(
    private readonly deps: {
      /** The origin's pattern key (GET /marks/key); null: this edge marks nothing. */
      key: () => PatternKey | null;
      dir: string;
      ffmpeg?: string;
      logger: Logger;
    },
  ) {}

  /** The copy `target`'s receiver gets of `source` (made on first call, then reused). */
  fileFor(target: MarkTarget, source: string, opts: { video?: VideoMarker } = {}): Promise<MarkedFile> {
    const key = this.deps.key();
    if (!key) return Promise.resolve({ path: source, carrier: null, note: 'not marked: this edge has no mark key from its origin yet' });
    if (!target.bits && !target.videoBits) return Promise.resolve({ path: source, carrier: null, note: 'not marked: the delivery carries no mark payload' });
    if (!DELIVERY_ID.test(target.deliveryId)) throw new Error(`not a delivery ID: ${target.deliveryId.slice(0, 80)}`);
    const known = this.making.get(target.deliveryId);
    if (known) return known;
    const job = this.make(target, source, key, opts.video).finally(() => this.making.delete(target.deliveryId));
    this.making.set(target.deliveryId, job);
    return job;
  }

  /** Forgets a delivery's copy (the rental or order is over). */
  async release(deliveryId: string): Promise<void> {
    if (!DELIVERY_ID.test(deliveryId)) return;
    await rm(path.join(this.deps.dir, deliveryId), { recursive: true, force: true });
  }

  private async make(target: MarkTarget, source: string, key: PatternKey, video: VideoMarker | undefined): Promise<MarkedFile> {
    const dir = path.join(this.deps.dir, target.deliveryId);
    const copy = path.join(dir, 'copy');
    const record = path.join(dir, 'copy.json');
    const done = await readFile(record, 'utf8').then((t) => JSON.parse(t) as { carrier: MarkCarrier; note: string; source: string }, () => null);
    if (done && done.source === source) return { path: copy, carrier: done.carrier, note: done.note };
    await mkdir(dir, { recursive: true });
    const unmarked = (note: string): MarkedFile => {
      this.deps.logger.info({ delivery: target.deliveryId, content: target.contentId, note }, 'delivered unmarked');
      return { path: source, carrier: null, note };
    };
    const head = await readHead(source, 64);
    const size = (await stat(source)).size;
    let carrier: MarkCarrier;
    let note: string;
    const tmp = `${copy}.tmp`;
    if (isImage(head) || isWav(head)) {
      if (!target.bits) return unmarked('not marked: the delivery carries no payload for images and audio');
      if (size > MAX_MARKED_BYTES) return unmarked(`not marked: files over ${MAX_MARKED_BYTES / 1024 / 1024} MiB are not marked in memory`);
      const bytes = await readFile(source);
      try {
        if (isImage(head)) {
          const out = await embedImage(bytes, target.bits, key);
          await writeFile(tmp, out.bytes);
          carrier = 'image';
          note = `marked (${out.format} image, PSNR ${out.psnrDb.toFixed(1)} dB)`;
        } else {
          const out = await embedWav(bytes, target.bits, key);
          await writeFile(tmp, out.bytes);
          carrier = 'audio';
          note = `marked (WAV audio, SNR ${out.snrDb.toFixed(1)} dB)`;
        }
      } catch (err) {
        return unmarked(`not marked: ${(err as Error).message}`);
      }
    } else {
      const bits = target.videoBits;
      if (!bits || !(await isVideo(source, this.deps.ffmpeg))) return unmarked('not marked: not an image, WAV audio or video this edge can mark');
      try {
        const made = video ? await video(tmp) : await this.variantsCopy(source, bits, key, path.join(dir, 'variants'), tmp);
        if (!made) return unmarked('not marked: this video could not be packaged in A/B variants');
      } catch (err) {
        await rm(tmp, { force: true });
        return unmarked(`not marked: ${(err as Error).message}`);
      }
      carrier = 'video';
      note = 'marked (video: A/B segment variants)';
    }
    await rename(tmp, copy);
    await writeFile(record, JSON.stringify({ carrier, note, source }));
    this.deps.logger.info({ delivery: target.deliveryId, content: target.contentId, note }, 'marked copy made');
    return { path: copy, carrier, note };
  }

  /** A video's A/B variants made here (a store edge has no VOD package), the copy written, the variants dropped. */
  private async variantsCopy(source: string, bits: Uint8Array, key: PatternKey, work: string, out: string): Promise<boolean> {
    try {
      const pkg = await packageVariants(source, work, key, { segmentSeconds: SEGMENT_SECONDS, ffmpeg: this.deps.ffmpeg });
      await writeMarkedMp4(pkg, bits, out);
      return true;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
}
