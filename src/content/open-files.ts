import { close, open, read } from 'node:fs';

// Keeps recently read piece files open. Serving a piece is then one read call
// instead of open + read + close: on a loaded origin the three thread-pool round
// trips cost as much as copying the megabyte into the socket. Descriptors in use are
// reference-counted so an eviction never closes (or lets the kernel reuse) an fd
// that a read is still using.

interface Entry {
  fd: number;
  users: number;
  evicted: boolean;
}

export class OpenFiles {
  private readonly entries = new Map<string, Entry>();
  private readonly opening = new Map<string, Promise<Entry | null>>();

  constructor(private readonly max = 4096) {}

  /** Reads up to `buf.length` bytes of `file` from `position`; null if it does not exist. */
  async read(file: string, buf: Buffer, position = 0): Promise<number | null> {
    const entry = this.entries.get(file) ?? (await this.open(file));
    if (!entry) return null;
    entry.users++;
    try {
      return await new Promise<number>((resolve, reject) => read(entry.fd, buf, 0, buf.length, position, (err, n) => (err ? reject(err) : resolve(n))));
    } finally {
      entry.users--;
      if (entry.evicted && entry.users === 0) close(entry.fd, () => {});
    }
  }

  /** Opens `file` (kept open for later reads) and says whether it exists; reads nothing. */
  async ensureOpen(file: string): Promise<boolean> {
    return (this.entries.get(file) ?? (await this.open(file))) !== null;
  }

  private open(file: string): Promise<Entry | null> {
    let pending = this.opening.get(file);
    if (!pending) {
      pending = new Promise<Entry | null>((resolve, reject) =>
        open(file, 'r', (err, fd) => {
          this.opening.delete(file);
          if (err) return err.code === 'ENOENT' ? resolve(null) : reject(err);
          const entry: Entry = { fd, users: 0, evicted: false };
          this.entries.set(file, entry);
          this.evictBeyondMax();
          resolve(entry);
        }),
      );
      this.opening.set(file, pending);
    }
    return pending;
  }

  private evictBeyondMax() {
    // Map order is insertion order: the oldest opened goes first.
    for (const [file, entry] of this.entries) {
      if (this.entries.size <= this.max) break;
      this.entries.delete(file);
      entry.evicted = true;
      if (entry.users === 0) close(entry.fd, () => {});
    }
  }

  /** Closes `file` once no read uses it (it is about to be deleted). */
  forget(file: string) {
    const entry = this.entries.get(file);
    if (!entry) return;
    this.entries.delete(file);
    entry.evicted = true;
    if (entry.users === 0) close(entry.fd, () => {});
  }

  closeAll() {
    for (const entry of this.entries.values()) {
      entry.evicted = true;
      if (entry.users === 0) close(entry.fd, () => {});
    }
    this.entries.clear();
  }
}
