import type { RtmpMessage } from './chunk-reader.ts';

// RTMP message types and the protocol control messages (S3.9; RTMP 1.0 specification §5.4,
// §6.2, §7.1). Protocol control messages travel on chunk stream 2, message stream 0.

export const MSG = {
  setChunkSize: 1,
  abort: 2,
  acknowledgement: 3,
  userControl: 4,
  windowAckSize: 5,
  setPeerBandwidth: 6,
  audio: 8,
  video: 9,
  dataAmf3: 15,
  sharedObjectAmf3: 16,
  commandAmf3: 17,
  dataAmf0: 18,
  sharedObjectAmf0: 19,
  commandAmf0: 20,
  aggregate: 22,
} as const;

/** User control event types (§7.1.7) we send or answer. */
export const USER_CONTROL = { streamBegin: 0, streamEof: 1, pingRequest: 6, pingResponse: 7 } as const;

const control = (type: number, payload: Buffer): RtmpMessage => ({ csid: 2, type, streamId: 0, timestamp: 0, payload });

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
};

export const setChunkSize = (n: number) => control(MSG.setChunkSize, u32(n & 0x7fffffff));
export const acknowledgement = (sequence: number) => control(MSG.acknowledgement, u32(sequence));
export const windowAckSize = (n: number) => control(MSG.windowAckSize, u32(n));
/** limit type 2 = dynamic. */
export const setPeerBandwidth = (n: number, limitType = 2) => control(MSG.setPeerBandwidth, Buffer.concat([u32(n), Buffer.from([limitType])]));

export function userControl(event: number, data: Buffer): RtmpMessage {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(event, 0);
  return control(MSG.userControl, Buffer.concat([b, data]));
}

export const streamBegin = (streamId: number) => userControl(USER_CONTROL.streamBegin, u32(streamId));

/** A 4-byte big-endian field of a control message, or null if the payload is too short. */
export function readU32(payload: Buffer, at = 0): number | null {
  return payload.length >= at + 4 ? payload.readUInt32BE(at) : null;
}
