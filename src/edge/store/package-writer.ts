import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import yauzl from 'yauzl';
import yazl from 'yazl';
import { AppError } from '../../core/errors.ts';

// S2.6 (docs/edge.md "Store server"): one content written for one receiver into an ISO 9660
// image (Debian's xorriso, Joliet and Rock Ridge) or a zip package (yazl). The file given is the
// receiver's own copy (marked by the edge's delivery hook, S2.3); it is copied into the working
// directory, the package is made from it and read back (the ISO's file extents, the zip's
// entries) to check that it holds exactly those bytes. Nothing is held in memory whole: the copy,
// yazl and yauzl stream, xorriso reads files itself.

export type PackageFormat = 'iso' | 'zip';

export interface PackageInput {
  format: PackageFormat;
  /** The receiver's copy of the content (marked by the delivery hook; complete, verified). */
  dataPath: string;
  contentId: string;
  title: string;
  /** The delivery serial (S2.4), also in the metadata text. */
  serial: number;
  /** A directory of this order's own: the working copy and the package are made in it. */
  workDir: string;
  /** The xorriso program (default `xorriso` on PATH). */
  xorriso?: string;
}

export interface WrittenPackage {
  /** The package file. */
  path: string;
  /** Its size and SHA-256 (hex). */
  bytes: number;
  sha256: string;
  /** The name of the content's file inside the package. */
  fileName: string;
  /** SHA-256 of the marked copy (what the receiver's file hashes to). */
  markedSha256: string;
  markedBytes: number;
}

/** Bytes read from the copy at a time. */
export const CHUNK = 1024 * 1024;
export const README_NAME = 'README.txt';

/**
 * A file name safe on every disc and file system: ASCII letters, digits, `.`, `-` and `_`
 * (spaces become `_`, accented letters lose their accents, anything else goes), no leading dot,
 * at most 60 characters (Joliet allows 64), never README.txt; `content` when nothing is left.
 */
export function sanitiseFileName(title: string): string {
  let name = title
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/\s+/g, '_')
    .replace(/[^A-Za-z0-9._-]/g, '')
    .replace(/_{2,}/g, '_')
    .replace(/\.{2,}/g, '.')
    .replace(/^[._-]+/, '');
  if (name.length > 60) {
    const dot = name.lastIndexOf('.');
    const ext = dot > 0 && name.length - dot <= 8 ? name.slice(dot) : '';
    name = name.slice(0, 60 - ext.length).replace(/[._-]+$/, '') + ext;
  }
  name = name.replace(/[._-]+$/, '');
  if (!name || name.toLowerCase() === README_NAME.toLowerCase()) name = 'content';
  return name;
}

/** The small text that goes beside the content: title, content ID, delivery serial. */
export function readmeText(input: { title: string; contentId: string; serial: number; fileName: string }): string {
  return [
    'Cascade content package',
    '',
    `Title:           ${input.title}`,
    `File:            ${input.fileName}`,
    `Content ID:      ${input.contentId}`,
    `Delivery serial: ${input.serial}`,
    '',
    'This copy was made for one receiver; its delivery serial identifies it.',
    '',
  ].join('\n');
}

/**
 * Writes the marked working copy and the package, and checks the package. The working copy
 * (`<workDir>/files/`) stays until `removeWork` (the caller deletes it with the package).
 */
export async function writePackage(input: PackageInput): Promise<WrittenPackage> {
  const fileName = sanitiseFileName(input.title);
  const files = path.join(input.workDir, 'files');
  await rm(files, { recursive: true, force: true });
  await mkdir(files, { recursive: true });
  const marked = await writeMarkedCopy(input, path.join(files, fileName));
  const readme = readmeText({ title: input.title, contentId: input.contentId, serial: input.serial, fileName });
  await writeFile(path.join(files, README_NAME), readme);
  const out = path.join(input.workDir, `package.${input.format}`);
  await rm(out, { force: true });
  if (input.format === 'iso') await makeIso(input.xorriso ?? 'xorriso', files, out, input.serial);
  else await makeZip(files, [fileName, README_NAME], out);
  const check = input.format === 'iso' ? await isoFiles(input.xorriso ?? 'xorriso', out) : await zipFiles(out);
  const inside = check.get(fileName);
  if (!inside || inside.sha256 !== marked.sha256 || inside.bytes !== marked.bytes) {
    throw new AppError('package_mismatch', `The ${input.format} package does not hold the marked copy of ${input.contentId} (${inside ? `${inside.bytes} bytes, SHA-256 ${inside.sha256}` : 'file missing'}; expected ${marked.bytes} bytes, ${marked.sha256}).`, 500);
  }
  const readmeInside = check.get(README_NAME);
  if (!readmeInside || readmeInside.sha256 !== createHash('sha256').update(readme).digest('hex')) {
    throw new AppError('package_mismatch', `The ${input.format} package does not hold its ${README_NAME}.`, 500);
  }
  const whole = await hashFile(out);
  return { path: out, bytes: whole.bytes, sha256: whole.sha256, fileName, markedSha256: marked.sha256, markedBytes: marked.bytes };
}

/** Deletes an order's working copy and package. */
export async function removeWork(workDir: string): Promise<void> {
  await rm(workDir, { recursive: true, force: true });
}

/** The receiver's copy into `to`; returns its size and hash. */
async function writeMarkedCopy(input: PackageInput, to: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  const source = createReadStream(input.dataPath, { highWaterMark: CHUNK });
  async function* hashed() {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      hash.update(chunk);
      yield chunk;
    }
  }
  await pipeline(hashed, createWriteStream(to));
  return { bytes: (await stat(to)).size, sha256: hash.digest('hex') };
}

/** A volume ID xorriso accepts (d-characters, at most 32). */
const volumeId = (serial: number) => `CASCADE_${serial}`.slice(0, 32);

async function makeIso(xorriso: string, dir: string, out: string, serial: number): Promise<void> {
  // -iso-level 3: files of 4 GiB and more as several extents; -J Joliet, -R Rock Ridge.
  await run(xorriso, ['-as', 'mkisofs', '-quiet', '-iso-level', '3', '-J', '-joliet-long', '-R', '-input-charset', 'utf-8', '-V', volumeId(serial), '-o', out, dir]);
}

function makeZip(dir: string, names: string[], out: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const zip = new yazl.ZipFile();
    // Stored, not deflated: media hardly shrinks, and the package is made while the user waits.
    for (const name of names) zip.addReadStream(createReadStream(path.join(dir, name)), name, { compress: false, mtime: new Date(0) });
    zip.end();
    const sink = createWriteStream(out);
    pipeline(zip.outputStream, sink).then(resolve, reject);
  });
}

/** Every file of an ISO image with its size and SHA-256, read from the image's own extents. */
export async function isoFiles(xorriso: string, iso: string): Promise<Map<string, { bytes: number; sha256: string }>> {
  const { stdout } = await run(xorriso, ['-indev', iso, '-find', '/', '-type', 'f', '-exec', 'report_lba', '--']);
  const extents = new Map<string, { lba: number; size: number }[]>();
  for (const m of stdout.matchAll(/^File data lba:\s*\d+\s*,\s*(\d+)\s*,\s*\d+\s*,\s*(\d+)\s*,\s*'(.*)'\s*$/gm)) {
    const name = m[3].replace(/^\//, '').replace(/'"'"'/g, "'");
    extents.set(name, [...(extents.get(name) ?? []), { lba: Number(m[1]), size: Number(m[2]) }]);
  }
  const out = new Map<string, { bytes: number; sha256: string }>();
  const fh = await open(iso, 'r');
  try {
    const buf = Buffer.alloc(CHUNK);
    for (const [name, parts] of extents) {
      const hash = createHash('sha256');
      let bytes = 0;
      for (const { lba, size } of parts) {
        for (let done = 0; done < size; ) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, size - done), lba * 2048 + done);
          if (bytesRead === 0) break;
          hash.update(buf.subarray(0, bytesRead));
          done += bytesRead;
          bytes += bytesRead;
        }
      }
      out.set(name, { bytes, sha256: hash.digest('hex') });
    }
  } finally {
    await fh.close();
  }
  return out;
}

/** Every file of a zip package with its size and SHA-256, read back through yauzl. */
export async function zipFiles(zipPath: string): Promise<Map<string, { bytes: number; sha256: string }>> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.open(zipPath, { lazyEntries: true, autoClose: false }, (err, z) => (err || !z ? reject(err ?? new Error('no zip')) : resolve(z))),
  );
  const out = new Map<string, { bytes: number; sha256: string }>();
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on('error', reject);
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        zip.openReadStream(entry, (err, stream) => {
          if (err || !stream) return reject(err ?? new Error('no stream'));
          const hash = createHash('sha256');
          let bytes = 0;
          stream.on('data', (c: Buffer) => {
            hash.update(c);
            bytes += c.length;
          });
          stream.on('error', reject);
          stream.on('end', () => {
            out.set(entry.fileName, { bytes, sha256: hash.digest('hex') });
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  return out;
}

export async function hashFile(file: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: CHUNK }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** Runs a program; its standard output, or an AppError with the end of its standard error. */
function run(cmd: string, args: string[]): Promise<{ stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString('utf8')).slice(-4000)));
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(new AppError('packager_missing', `${cmd} could not be run (${err.code ?? err.message}): install Debian's xorriso, or set XORRISO.`, 500)),
    );
    child.on('close', (code) => {
      if (code === 0) resolve({ stdout });
      else reject(new AppError('packaging_failed', `${cmd} ${args.slice(0, 2).join(' ')} failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`, 500));
    });
  });
}
