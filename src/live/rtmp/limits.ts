// Every bound of the RTMP ingest in one place (S3.9): nothing the network sends is trusted or
// buffered without a bound. Worst-case memory of one connection, with the defaults:
//   before its publish is accepted: input buffer (≤ maxChunkSize + 64 KiB) + one command
//   (≤ maxCommandLength) ≈ 200 KiB;
//   while publishing: input buffer + partly received messages (≤ maxPendingBytes) + the FLV
//   queue (flvHighWaterMark + one message) ≈ 14 MiB.
// so maxConnections × 14 MiB bounds the whole ingest (≈ 450 MiB at 32 publishers).

export interface RtmpLimits {
  /** Longest wait for C0+C1 and C2 after the TCP connection opens. */
  handshakeTimeoutMs: number;
  /** Longest silence from the peer (no byte received) before the connection is closed. */
  idleTimeoutMs: number;
  /** Longest time from the TCP connection to an accepted publish: a connection that only talks is closed. */
  publishTimeoutMs: number;
  /** Longest wait for the application's authorize(); past it the publish is refused. */
  authorizeTimeoutMs: number;
  /** Connections open at once; more are closed on arrival. */
  maxConnections: number;
  /** Largest Set Chunk Size the peer may announce (ffmpeg and OBS use 4096; the protocol allows 2^31−1). */
  maxChunkSize: number;
  /** Largest audio/video/data message of an accepted publisher (a key frame). At most 0xFFFFFF (an FLV tag's size field). */
  maxMessageLength: number;
  /** Largest message before the publish is accepted, and of any command or control message. */
  maxCommandLength: number;
  /** Bytes held in partly received messages, all chunk streams together. */
  maxPendingBytes: number;
  /** Distinct chunk stream IDs one connection may use. */
  maxChunkStreams: number;
  /** Nesting of AMF0 objects and arrays in one value. */
  maxAmfDepth: number;
  /** createStream calls on one connection. */
  maxStreams: number;
  /** Longest stream key (the reservation ID) accepted. */
  maxKeyLength: number;
  /** Longest application name (the `live` in rtmp://host/live). */
  maxAppLength: number;
  /** Bytes of FLV queued for the consumer before the socket is paused (backpressure). */
  flvHighWaterMark: number;
  /** Longest the consumer may leave a full FLV queue unread before the publisher is cut off. */
  consumerStallMs: number;
  /** Bytes queued towards a peer that does not read before it is cut off. */
  maxOutputBytes: number;
  /** How long a refused peer has to receive its answer before the socket is destroyed. */
  refuseGraceMs: number;
}

export const DEFAULT_RTMP_LIMITS: Readonly<RtmpLimits> = Object.freeze({
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  publishTimeoutMs: 30_000,
  authorizeTimeoutMs: 10_000,
  maxConnections: 32,
  maxChunkSize: 65_536,
  maxMessageLength: 4 * 1024 * 1024,
  maxCommandLength: 64 * 1024,
  maxPendingBytes: 8 * 1024 * 1024,
  maxChunkStreams: 16,
  maxAmfDepth: 8,
  maxStreams: 4,
  maxKeyLength: 128,
  maxAppLength: 64,
  flvHighWaterMark: 1024 * 1024,
  consumerStallMs: 10_000,
  maxOutputBytes: 256 * 1024,
  refuseGraceMs: 1_000,
});

/** The defaults with `over` applied; throws on a bound that could not hold. */
export function rtmpLimits(over: Partial<RtmpLimits> = {}): RtmpLimits {
  const l: RtmpLimits = { ...DEFAULT_RTMP_LIMITS, ...over };
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`RTMP limit ${k} must be a positive integer, got ${v}`);
  }
  // A chunk smaller than 128 bytes is the protocol's default; above 2^31−1 is not representable.
  if (l.maxChunkSize < 128 || l.maxChunkSize > 0x7fffffff) throw new RangeError('RTMP limit maxChunkSize must be in [128, 2^31−1]');
  // An FLV tag carries its size in 24 bits: a longer message could not be passed on.
  if (l.maxMessageLength > 0xffffff) throw new RangeError('RTMP limit maxMessageLength must be ≤ 0xFFFFFF (FLV tag size)');
  if (l.maxCommandLength > l.maxMessageLength) throw new RangeError('RTMP limit maxCommandLength must be ≤ maxMessageLength');
  if (l.maxPendingBytes < l.maxMessageLength) throw new RangeError('RTMP limit maxPendingBytes must be ≥ maxMessageLength');
  return l;
}
