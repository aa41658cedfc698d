// Piece buffers a piece server reuses (#19). A fresh megabyte per piece served is not
// only garbage to collect: the allocator maps new pages for it and the kernel zeroes
// them on first touch, which measured ~0.45 CPU-seconds per GB served on the 2-core
// bench machine (docs/benchmarks.md). Buffers come back only once the socket has taken
// their bytes ('finish'); one whose response was cut short is left to the collector.

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private pooledBytes = 0;

  /** `maxBytes`: what the pool keeps at most while idle (beyond it, returned buffers are dropped). */
  constructor(private readonly maxBytes: number) {}

  /** A buffer of exactly `length` bytes (contents undefined), cut from one of `capacity` bytes. */
  take(length: number, capacity = length): Buffer {
    const list = this.free.get(capacity);
    const buf = list?.pop();
    if (buf) {
      this.pooledBytes -= capacity;
      return buf.subarray(0, length);
    }
    return Buffer.allocUnsafeSlow(capacity).subarray(0, length);
  }

  /** Gives back a buffer from `take`; nothing may read or write it afterwards. */
  give(buf: Buffer) {
    const capacity = buf.buffer.byteLength;
    if (buf.byteOffset !== 0 || this.pooledBytes + capacity > this.maxBytes) return;
    let list = this.free.get(capacity);
    if (!list) this.free.set(capacity, (list = []));
    list.push(Buffer.from(buf.buffer, 0, capacity));
    this.pooledBytes += capacity;
  }

  /** Bytes kept for reuse now. */
  get bytes(): number {
    return this.pooledBytes;
  }
}
