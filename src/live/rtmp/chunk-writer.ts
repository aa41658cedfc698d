import type { RtmpMessage } from './chunk-reader.ts';

// The RTMP chunk stream, writing side (S3.9; RTMP 1.0 specification §5.3). Our messages are
// few and small (replies, status, acknowledgements), so each starts with a full fmt 0 header
// and continues with fmt 3 chunks: always valid, never dependent on what the peer remembers.
// A timestamp at or above 0xFFFFFF goes in the extended field, repeated in every fmt 3 chunk.

export class ChunkWriter {
  private size = 128;

  /** Our chunk size; call after the Set Chunk Size message announcing it has been written. */
  setChunkSize(n: number) {
    if (!Number.isInteger(n) || n < 1 || n > 0x7fffffff) throw new RangeError(`chunk size ${n}`);
    this.size = n;
  }

  get chunkSize() {
    return this.size;
  }

  write(m: RtmpMessage): Buffer {
    const ts = m.timestamp >>> 0;
    const extended = ts >= 0xffffff;
    const parts: Buffer[] = [];
    const header = Buffer.alloc(11);
    header.writeUIntBE(extended ? 0xffffff : ts, 0, 3);
    header.writeUIntBE(m.payload.length, 3, 3);
    header[6] = m.type;
    header.writeUInt32LE(m.streamId, 7);
    const ext = extended ? Buffer.alloc(4) : null;
    ext?.writeUInt32BE(ts, 0);
    let off = 0;
    do {
      parts.push(basicHeader(off === 0 ? 0 : 3, m.csid));
      if (off === 0) parts.push(header);
      if (ext) parts.push(ext);
      const take = Math.min(this.size, m.payload.length - off);
      parts.push(m.payload.subarray(off, off + take));
      off += take;
    } while (off < m.payload.length);
    return Buffer.concat(parts);
  }
}

/** fmt and chunk stream ID in 1, 2 or 3 bytes (IDs 2–63, 64–319, 320–65599). */
export function basicHeader(fmt: number, csid: number): Buffer {
  if (csid >= 2 && csid <= 63) return Buffer.from([(fmt << 6) | csid]);
  if (csid >= 64 && csid <= 319) return Buffer.from([fmt << 6, csid - 64]);
  if (csid >= 320 && csid <= 65599) return Buffer.from([(fmt << 6) | 1, (csid - 64) & 0xff, (csid - 64) >> 8]);
  throw new RangeError(`chunk stream ID ${csid}`);
}
