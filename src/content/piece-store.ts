import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { access, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { PieceReader } from '../transfer/piece-source.ts';
import { OpenFiles } from './open-files.ts';

// Pieces on disk (ARCHITECTURE "Storage and scale"): content-addressed files
// `dir/<first 2 hex>/<sha256 hex>`. A piece file is either absent or whole: uploads
// are written to a private staging directory and only renamed into the store on
// commit (rename is atomic on one file system, and staging lives beside the store).

const HASH = /^[0-9a-f]{64}$/;

/** Staging directories are named `<pid>-<instance>-<seq>` so a restart can tell its own from a dead process's. */
const liveInstances = new Set<string>();

export class PieceStore {
  readonly stagingRoot: string;
  private readonly instance = randomBytes(6).toString('hex');
  private seq = 0;
  private readonly openFiles = new OpenFiles();

  constructor(readonly dir: string) {
    this.stagingRoot = path.join(path.dirname(dir), 'staging');
    mkdirSync(dir, { recursive: true });
    mkdirSync(this.stagingRoot, { recursive: true });
    liveInstances.add(this.instance);
    this.removeStaleStaging();
  }

  /** Path of a piece file; refuses anything that is not a hex SHA-256 (no path tricks). */
  pathOf(hash: string): string {
    if (!HASH.test(hash)) throw new Error(`not a SHA-256 hex digest: ${hash}`);
    return path.join(this.dir, hash.slice(0, 2), hash);
  }

  async has(hash: string): Promise<boolean> {
    try {
      await access(this.pathOf(hash));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * The bytes of a piece, or null if the store lacks it. When the caller knows the
   * length (from the manifest) this is one read on a kept-open descriptor and no
   * stat: the origin's hot path when serving pieces. A file of another length than
   * expected is treated as missing rather than served.
   */
  async read(hash: string, expectedLength?: number): Promise<Buffer | null> {
    const file = this.pathOf(hash);
    const length = expectedLength ?? (await stat(file).then((st) => st.size, () => null));
    if (length === null) return null;
    // One spare byte tells a too-long file from an exact one in the same read.
    const buf = Buffer.allocUnsafe(length + 1);
    const filled = await this.openFiles.read(file, buf);
    if (filled !== length) return null;
    return buf.subarray(0, length);
  }

  /**
   * Piece `hash` of `length` bytes (from the manifest), to be read in parts; null if the
   * store lacks it. Only opens its file (kept open): the caller reads as it sends.
   */
  async reader(hash: string, length: number): Promise<PieceReader | null> {
    const file = this.pathOf(hash);
    if (!(await this.openFiles.ensureOpen(file))) return null;
    return { length, read: async (offset, into) => (await this.openFiles.read(file, into, offset)) ?? 0 };
  }

  /** Closes the descriptors kept open for reading. */
  close() {
    this.openFiles.closeAll();
  }

  createStaging(): PieceStaging {
    const name = `${process.pid}-${this.instance}-${++this.seq}-${randomBytes(4).toString('hex')}`;
    return new PieceStaging(this, path.join(this.stagingRoot, name));
  }

  /**
   * Removes staging directories left by a process that died mid-upload. A directory
   * belongs to a live uploader only if its pid is alive and, for our own pid, its
   * instance is one of this process's stores (a restarted container often reuses a pid).
   */
  private removeStaleStaging() {
    for (const name of readdirSync(this.stagingRoot)) {
      const [pidText, instance] = name.split('-');
      const pid = Number(pidText);
      const alive = pid === process.pid ? liveInstances.has(instance) : Number.isInteger(pid) && pid > 0 && processAlive(pid);
      if (!alive) rmSync(path.join(this.stagingRoot, name), { recursive: true, force: true });
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err: any) {
    return err?.code === 'EPERM';
  }
}

/**
 * One upload's pieces, invisible to readers until `commit()`. Exactly one of
 * `commit()` or `abort()` ends it; either way the staging directory is gone after.
 */
export class PieceStaging {
  private readonly staged = new Set<string>();
  private created = false;
  private done = false;

  constructor(
    private readonly store: PieceStore,
    readonly dir: string,
  ) {}

  /** Number of distinct pieces staged (a repeated piece is kept once). */
  get size(): number {
    return this.staged.size;
  }

  /**
   * Stages one piece. The caller vouches that `hash` is the SHA-256 of `bytes`
   * (the publisher computes it while cutting the stream; hashing twice would double
   * the CPU cost of an upload). The data is flushed to disk before this resolves, so
   * a committed piece survives a power cut as well as a crash.
   */
  async write(hash: string, bytes: Uint8Array): Promise<void> {
    if (this.done) throw new Error('staging area already committed or aborted');
    this.store.pathOf(hash); // validates the hash
    if (this.staged.has(hash)) return;
    if (!this.created) {
      await mkdir(this.dir, { recursive: true });
      this.created = true;
    }
    const fh = await open(path.join(this.dir, hash), 'wx');
    try {
      let off = 0;
      while (off < bytes.length) off += (await fh.write(bytes, off, bytes.length - off)).bytesWritten;
      await fh.datasync();
    } finally {
      await fh.close();
    }
    this.staged.add(hash);
  }

  /**
   * Moves every staged piece into the store. A piece already there is skipped: the
   * store is content-addressed, so it holds the same bytes. Each renamed piece's
   * directory is synced so the rename itself is durable before the caller records
   * the content as available.
   */
  async commit(): Promise<void> {
    if (this.done) throw new Error('staging area already committed or aborted');
    this.done = true;
    try {
      const touched = new Set<string>();
      for (const hash of this.staged) {
        const target = this.store.pathOf(hash);
        if (await exists(target)) continue;
        const shard = path.dirname(target);
        await mkdir(shard, { recursive: true });
        await rename(path.join(this.dir, hash), target);
        touched.add(shard);
      }
      for (const d of touched) await syncDir(d);
    } finally {
      await rm(this.dir, { recursive: true, force: true });
    }
  }

  /** Drops everything staged; the store is untouched. Safe to call more than once. */
  async abort(): Promise<void> {
    this.done = true;
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

async function syncDir(dir: string) {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still atomic there.
  } finally {
    await fh.close();
  }
}
