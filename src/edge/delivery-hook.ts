import { createHash } from 'node:crypto';

// S2.3's seam (the marks themselves are issue #18): everything an edge sends to one user —
// pieces under a grant, a home server's file ranges and HLS segments, a store's package —
// passes through the edge's DeliveryHook with the delivery's mark: who receives it (user and
// delivery serial), which edge made it, which origin it came from.

export interface DeliveryMark {
  /** Compact delivery number, unique on the origin (the payload a watermark carries); 0 when the delivery has none yet (piece grants). */
  serial: number;
  /** The delivery's ID (a grant's ID for pieces). */
  deliveryId: string;
  /** The receiving user (for piece grants: the receiving terminal). */
  userId: string;
  edgeId: string;
  originId: string;
  contentId: string;
  /** S2.3: the 128-bit codeword images and audio carry (src/marks/payload.ts); null or absent: not marked. */
  bits?: Uint8Array | null;
  /** S2.3: the 64-bit codeword video segments carry, one bit per segment (A/B variants); null or absent: variant a throughout. */
  videoBits?: Uint8Array | null;
}

export interface DeliveryHook {
  /** Bytes on their way to one receiver; `part` names the file or segment and the offset of `bytes` in it. */
  transform(mark: DeliveryMark, part: { name: string; offset: number }, bytes: Buffer): Buffer | Promise<Buffer>;
}

/** No mark yet: the bytes as they are (issue #18 brings the watermarks). */
export const identityHook: DeliveryHook = { transform: (_mark, _part, bytes) => bytes };

/** An origin's ID in marks: the first 16 hex digits of the SHA-256 of its public key (base64url). */
export function originIdOf(originKey: string): string {
  return createHash('sha256').update(originKey).digest('hex').slice(0, 16);
}
