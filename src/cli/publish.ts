import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { monotonicMs } from '../core/clock.ts';
import { AppError, badRequest } from '../core/errors.ts';
import { checkThumbnail, imageTooLarge, THUMBNAIL_MAX_BYTES } from '../content/thumbnail-image.ts';
import { apiFromProfile } from './profile.ts';

// `cascade publish FILE` (S1.1): streams a file to the origin as a new content, with
// a progress bar on stderr; the content ID is the last line on stdout (or `--json`).
// `--thumbnail IMG` (S1.1) is checked here first (type from its bytes, size, dimensions: a
// bad image is refused before anything is published) and uploaded once the content is.

interface PublishOptions {
  title: string;
  genre: string;
  price: string;
  summary?: string;
  author?: string;
  thumbnail?: string;
}

export function registerPublish(program: Command) {
  program
    .command('publish')
    .description('publish a file as a content (needs the publisher role)')
    .argument('<file>', 'file to publish')
    .requiredOption('--title <title>', 'title (1–200 characters)')
    .requiredOption('--genre <genre>', 'genre (1–60 characters)')
    .requiredOption('--price <minor units>', 'price for the whole content, in minor units (e.g. cents)')
    .option('--summary <text>', 'summary')
    .option('--author <name>', 'author')
    .option('--thumbnail <image>', 'thumbnail: a PNG, JPEG, WebP or GIF image of at most 256 KiB and 4096×4096')
    .action(async (file: string, opts: PublishOptions) => {
      const g = program.opts();
      const size = await fileSize(file);
      if (!/^\d+$/.test(opts.price)) throw badRequest('invalid_price', `--price is a whole number of minor units, got "${opts.price}".`);
      const thumbnail = opts.thumbnail === undefined ? null : await readThumbnail(opts.thumbnail);

      const query = new URLSearchParams({ title: opts.title, genre: opts.genre, price: opts.price });
      if (opts.summary !== undefined) query.set('summary', opts.summary);
      if (opts.author !== undefined) query.set('author', opts.author);

      const api = apiFromProfile({ origin: g.origin });
      const bar = g.json ? null : progressBar(size);
      let result: { id: string; title: string; pieces: number; totalSize: number };
      try {
        result = await api.upload(`/contents?${query}`, counted(createReadStream(file), (n) => bar?.increment(n)), size);
      } finally {
        bar?.stop();
      }

      const { id, title, pieces, totalSize } = result;
      let thumbnailUrl: string | undefined;
      if (thumbnail) {
        try {
          ({ thumbnailUrl } = await api.request<{ thumbnailUrl: string }>('PUT', `/contents/${id}/thumbnail`, { body: thumbnail.bytes, headers: { 'content-type': thumbnail.mime } }));
        } catch (err) {
          if (!(err instanceof AppError)) throw err;
          throw new AppError(err.code, `Published "${title}" as ${id}, but its thumbnail was not stored: ${err.message}`, err.status);
        }
      }
      if (g.json) {
        process.stdout.write(JSON.stringify({ id, title, pieces, totalSize, ...(thumbnailUrl ? { thumbnailUrl } : {}) }) + '\n');
      } else {
        process.stdout.write(`published "${title}": ${totalSize} bytes in ${pieces} pieces${thumbnailUrl ? `, thumbnail ${thumbnailUrl}` : ''}\n${id}\n`);
      }
    });
}

async function fileSize(file: string): Promise<number> {
  let s;
  try {
    s = await stat(file);
  } catch (err: any) {
    if (err?.code === 'ENOENT') throw badRequest('file_not_found', `No such file: ${path.resolve(file)}`);
    throw badRequest('file_unreadable', `Cannot read ${file}: ${err?.message ?? err}`);
  }
  if (!s.isFile()) throw badRequest('not_a_file', `${file} is not a regular file.`);
  return s.size;
}

/** The thumbnail's bytes and type, checked as the origin will check them (src/content/thumbnail-image.ts). */
async function readThumbnail(file: string): Promise<{ bytes: Buffer; mime: string }> {
  const size = await fileSize(file);
  try {
    if (size > THUMBNAIL_MAX_BYTES) throw imageTooLarge(); // not read at all
    const bytes = await readFile(file);
    return { bytes, mime: checkThumbnail(bytes).mime };
  } catch (err) {
    if (err instanceof AppError) throw new AppError(err.code, `--thumbnail ${file}: ${err.message} Nothing was published.`, err.status);
    throw err;
  }
}

/** Passes chunks through, reporting each chunk's length as it is handed to the upload. */
async function* counted(source: AsyncIterable<Buffer>, onBytes: (n: number) => void): AsyncIterable<Uint8Array> {
  for await (const chunk of source) {
    onBytes(chunk.length);
    yield chunk;
  }
}

/** Bytes sent of total with throughput in MB/s; cli-progress draws nothing when stderr is not a terminal. */
function progressBar(total: number) {
  const started = monotonicMs();
  const mb = (n: number) => (n / 1e6).toFixed(1);
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: 'publishing [{bar}] {percentage}% | {sent}/{size} MB | {speed} MB/s', hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let sent = 0;
  bar.start(total, 0, { sent: mb(0), size: mb(total), speed: '0.0' });
  return {
    increment(n: number) {
      sent += n;
      const seconds = Math.max((monotonicMs() - started) / 1000, 0.001);
      bar.update(sent, { sent: mb(sent), speed: mb(sent / seconds) });
    },
    stop: () => bar.stop(),
  };
}
