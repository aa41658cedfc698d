import { Readable } from 'node:stream';

// The publisher's media as an FLV byte stream (S3.9), what `ffmpeg -f flv -i pipe:0` reads.
// RTMP audio (type 8), video (type 9) and data (type 18) message bodies are FLV tag bodies
// already: a tag is an 11-byte header (type, 24-bit size, 24-bit timestamp + 8 high bits,
// stream ID 0), the body, then PreviousTagSize (11 + body size). No codec is parsed here: the
// bytes are ffmpeg's to read.
//
// The queue towards the consumer is bounded: once `highWaterMark` bytes wait unread, write()
// answers false and the connection pauses its socket, so a slow consumer slows the publisher
// down through TCP instead of growing memory; `onDrain` says when to read again.

export const FLV_TAG = { audio: 8, video: 9, script: 18 } as const;
export type FlvTagType = (typeof FLV_TAG)[keyof typeof FLV_TAG];

/** "FLV", version 1, audio and video present, header size 9, then PreviousTagSize0 = 0. */
export const FLV_HEADER = Buffer.from([0x46, 0x4c, 0x56, 0x01, 0x05, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00]);

/** One FLV tag with its trailing PreviousTagSize. `data` is at most 0xFFFFFF bytes (the limits see to it). */
export function flvTag(type: FlvTagType, timestamp: number, data: Buffer): Buffer {
  if (data.length > 0xffffff) throw new RangeError(`FLV tag body of ${data.length} bytes`);
  const ts = timestamp >>> 0;
  const tag = Buffer.allocUnsafe(11 + data.length + 4);
  tag[0] = type;
  tag.writeUIntBE(data.length, 1, 3);
  tag.writeUIntBE(ts & 0xffffff, 4, 3);
  tag[7] = ts >>> 24;
  tag.writeUIntBE(0, 8, 3);
  data.copy(tag, 11);
  tag.writeUInt32BE(11 + data.length, 11 + data.length);
  return tag;
}

export class FlvOutput {
  readonly stream: Readable;
  private finished = false;

  constructor(highWaterMark: number, onDrain: () => void) {
    this.stream = new Readable({ highWaterMark, read: () => onDrain() });
    this.stream.push(FLV_HEADER);
  }

  /** Queues one tag; false when the queue is full and the producer must wait for onDrain. */
  write(type: FlvTagType, timestamp: number, data: Buffer): boolean {
    if (this.finished) return true;
    return this.stream.push(flvTag(type, timestamp, data));
  }

  /** Bytes queued and not yet read by the consumer. */
  get queued() {
    return this.stream.readableLength;
  }

  /** The stream ends normally: what was queued is still delivered, then EOF. */
  end() {
    if (this.finished) return;
    this.finished = true;
    this.stream.push(null);
  }

  /**
   * The consumer stalled: queued bytes are dropped and the stream closes without 'end' (a
   * pipeline sees a premature close). No error is emitted: a consumer without an 'error'
   * listener would bring the process down.
   */
  destroy() {
    if (this.finished) return;
    this.finished = true;
    this.stream.destroy();
  }
}
