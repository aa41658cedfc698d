import { rtmpError } from './errors.ts';

// The RTMP chunk stream, reading side (S3.9; RTMP 1.0 specification §5.3). Messages arrive cut
// into chunks of at most `chunkSize` bytes (128 until the peer sends Set Chunk Size), chunks of
// different chunk streams interleaved. Each chunk has a basic header (fmt and chunk stream ID,
// 1–3 bytes) and a message header whose size depends on fmt:
//   fmt 0: 11 bytes, absolute timestamp, length, type, message stream ID — a new message;
//   fmt 1: 7 bytes, timestamp delta, length, type — same stream ID as before;
//   fmt 2: 3 bytes, timestamp delta — same length, type and stream ID;
//   fmt 3: none — a continuation of the message in progress, or a new message repeating
//          everything including the delta.
// A timestamp field of 0xFFFFFF means a 4-byte extended timestamp follows; a fmt 3 chunk then
// carries it too (the specification, ffmpeg and librtmp agree). The "delta" reused by fmt 3 is
// the last timestamp field read on that chunk stream, absolute for fmt 0 (as ffmpeg reads and
// writes it).
//
// Bounds: a chunk is consumed only once it is whole, so unparsed input stays below one chunk
// plus one socket read (maxInputBytes); a message's length is checked against the caller's
// limit as soon as its header arrives, before any of its body; a message's buffer is counted in
// maxPendingBytes from then until it completes; and at most maxChunkStreams chunk stream IDs are
// tracked.

export interface RtmpMessage {
  csid: number;
  type: number;
  streamId: number;
  /** Milliseconds, 32 bits, wrapping. */
  timestamp: number;
  payload: Buffer;
}

export interface ChunkReaderLimits {
  maxChunkSize: number;
  maxPendingBytes: number;
  maxChunkStreams: number;
  maxInputBytes: number;
}

interface ChunkStream {
  timestamp: number;
  /** The last timestamp field read: absolute after fmt 0, a delta after fmt 1 and 2. */
  tsField: number;
  extended: boolean;
  length: number;
  type: number;
  streamId: number;
  /** The message being assembled, and how much of it has arrived. */
  body: Buffer | null;
  received: number;
}

const EMPTY: Buffer = Buffer.alloc(0);

export class ChunkReader {
  private chunkSize = 128;
  private input: Buffer = EMPTY;
  private off = 0;
  private pending = 0;
  private readonly streams = new Map<number, ChunkStream>();

  /** `maxLength(type)` is the longest message of that type accepted now (commands vs media, before vs after publish). */
  constructor(
    private readonly limits: ChunkReaderLimits,
    private readonly maxLength: (type: number) => number,
  ) {}

  /** Bytes received and not yet parsed. */
  get buffered() {
    return this.input.length - this.off;
  }

  /** Bytes held in messages not yet complete. */
  get pendingBytes() {
    return this.pending;
  }

  push(data: Buffer) {
    const left = this.input.length - this.off;
    if (left + data.length > this.limits.maxInputBytes) {
      throw rtmpError('input_over_limit', `${left + data.length} unparsed bytes, limit ${this.limits.maxInputBytes}`);
    }
    this.input = left === 0 ? data : Buffer.concat([this.input.subarray(this.off), data]);
    this.off = 0;
  }

  /** Set Chunk Size (type 1) from the peer: applies to the chunks after that message. */
  setChunkSize(n: number) {
    if (n < 1) throw rtmpError('chunk_size_invalid', `Set Chunk Size ${n}`);
    if (n > this.limits.maxChunkSize) throw rtmpError('chunk_size_over_limit', `Set Chunk Size ${n}, limit ${this.limits.maxChunkSize}`);
    this.chunkSize = n;
  }

  /** Abort (type 2): drop the partly received message of chunk stream `csid`. */
  abort(csid: number) {
    const s = this.streams.get(csid);
    if (s?.body) {
      this.pending -= s.length;
      s.body = null;
      s.received = 0;
    }
  }

  /** The next complete message, or null when more bytes are needed. */
  next(): RtmpMessage | null {
    for (;;) {
      const r = this.readChunk();
      if (r === 'more') return null;
      if (r) return r;
    }
  }

  /** Consumes one whole chunk if it is all there: a completed message, null for a partial one, 'more' for too few bytes. */
  private readChunk(): RtmpMessage | null | 'more' {
    const buf = this.input;
    let p = this.off;
    const end = buf.length;
    if (p >= end) return 'more';
    const fmt = buf[p] >> 6;
    let csid = buf[p] & 0x3f;
    p++;
    if (csid === 0) {
      if (end - p < 1) return 'more';
      csid = 64 + buf[p];
      p += 1;
    } else if (csid === 1) {
      if (end - p < 2) return 'more';
      csid = 64 + buf[p] + buf[p + 1] * 256;
      p += 2;
    }
    const prev = this.streams.get(csid);
    if (fmt !== 0 && !prev) throw rtmpError('chunk_stream_unknown', `chunk stream ${csid} starts with fmt ${fmt}, not 0`);
    if (fmt === 0 && !prev && this.streams.size >= this.limits.maxChunkStreams) {
      throw rtmpError('too_many_chunk_streams', `more than ${this.limits.maxChunkStreams} chunk stream IDs`);
    }
    const headerSize = [11, 7, 3, 0][fmt];
    if (end - p < headerSize) return 'more';
    let tsField = prev?.tsField ?? 0;
    let length = prev?.length ?? 0;
    let type = prev?.type ?? 0;
    let streamId = prev?.streamId ?? 0;
    let extended = prev?.extended ?? false;
    if (fmt <= 2) {
      tsField = buf.readUIntBE(p, 3);
      extended = tsField === 0xffffff;
    }
    if (fmt <= 1) {
      length = buf.readUIntBE(p + 3, 3);
      type = buf[p + 6];
    }
    if (fmt === 0) streamId = buf.readUInt32LE(p + 7);
    p += headerSize;
    if (extended) {
      if (end - p < 4) return 'more';
      // (On a fmt 3 continuation it repeats the message's own and is not kept: see the commit below.)
      tsField = buf.readUInt32BE(p);
      p += 4;
    }

    const continuing = fmt === 3 && prev?.body != null;
    if (!continuing && prev?.body) {
      throw rtmpError('chunk_stream_unknown', `chunk stream ${csid}: new header (fmt ${fmt}) inside a message ${prev.received}/${prev.length} received`);
    }
    if (!continuing) {
      const max = this.maxLength(type);
      if (length > max) throw rtmpError('message_too_long', `message type ${type} of ${length} bytes, limit ${max}`);
      if (this.pending + length > this.limits.maxPendingBytes) {
        throw rtmpError('pending_bytes_over_limit', `${this.pending + length} bytes in partial messages, limit ${this.limits.maxPendingBytes}`);
      }
    }
    const received = continuing ? prev!.received : 0;
    const take = Math.min(this.chunkSize, length - received);
    if (end - p < take) return 'more';

    // The chunk is whole: commit.
    let s = prev;
    if (!s) {
      s = { timestamp: 0, tsField: 0, extended: false, length: 0, type: 0, streamId: 0, body: null, received: 0 };
      this.streams.set(csid, s);
    }
    if (!continuing) {
      s.timestamp = fmt === 0 ? tsField : (s.timestamp + tsField) >>> 0;
      s.tsField = tsField;
      s.extended = extended;
      s.length = length;
      s.type = type;
      s.streamId = streamId;
      s.body = Buffer.allocUnsafe(length);
      s.received = 0;
      this.pending += length;
    }
    buf.copy(s.body!, s.received, p, p + take);
    s.received += take;
    this.off = p + take;
    if (s.received < s.length) return null;
    const msg: RtmpMessage = { csid, type: s.type, streamId: s.streamId, timestamp: s.timestamp, payload: s.body! };
    this.pending -= s.length;
    s.body = null;
    s.received = 0;
    return msg;
  }
}
