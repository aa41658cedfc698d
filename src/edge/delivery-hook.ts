import type { MarkedFile, Marker } from '../marks/marker.ts';
import { codewordBits, parseTicketMark } from '../marks/payload.ts';

export { originIdOf } from '../marks/keys.ts';

// S2.3 (docs/marks.md): everything an edge sends to one user goes through its DeliveryHook with
// the delivery's mark — who receives it (user and delivery serial), which edge made it, which
// origin it came from, and the codewords the origin minted for it (`wm` in the rental ticket or
// the order). Whole copies (a home edge's file download, a store's package) are marked by
// `fileFor`; a home edge's HLS segments are the A/B variants the codeword picks (home/). Pieces a
// delivery edge serves under a grant are checked by the receiver against the origin-signed
// manifest, so they pass unmarked (`transform` is the seam, the identity today).

export interface DeliveryMark {
  /** Compact delivery number, unique on the origin (the payload a watermark carries); 0 when the delivery has none (piece grants). */
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
  /** Piece or segment bytes on their way to one receiver; `part` names the piece or segment and its offset. */
  transform(mark: DeliveryMark, part: { name: string; offset: number }, bytes: Buffer): Buffer | Promise<Buffer>;
  /**
   * The copy of the whole file at `source` that `mark`'s receiver gets (made once per delivery).
   * `video` writes a video's marked copy when the caller has its A/B package already (a home edge).
   */
  fileFor(mark: DeliveryMark, source: string, opts?: { video?: (out: string) => Promise<boolean> }): Promise<MarkedFile>;
  /** The delivery is over: its copy may go. */
  release(deliveryId: string): Promise<void>;
}

/** No marks (an edge without its origin's key, tests of other parts): the bytes as they are. */
export const identityHook: DeliveryHook = {
  transform: (_mark, _part, bytes) => bytes,
  fileFor: async (_mark, source) => ({ path: source, carrier: null, note: 'not marked: no marker on this edge' }),
  release: async () => {},
};

/** The edge's hook: whole copies through its Marker (src/marks/marker.ts), pieces as they are. */
export function markingHook(marker: Pick<Marker, 'fileFor' | 'release'>): DeliveryHook {
  return {
    transform: (_mark, _part, bytes) => bytes,
    fileFor: (mark, source, opts) => marker.fileFor(mark, source, opts),
    release: (deliveryId) => marker.release(deliveryId),
  };
}

/** A delivery's mark, its codewords made from the origin's `wm` with the pattern key (none without either). */
export function deliveryMark(
  d: { serial: number; deliveryId: string; userId: string; originId: string; contentId: string; wm?: string },
  edgeId: string,
  key: Buffer | null | undefined,
): DeliveryMark {
  const data = key ? parseTicketMark(d.wm) : null;
  return {
    serial: d.serial,
    deliveryId: d.deliveryId,
    userId: d.userId,
    edgeId,
    originId: d.originId,
    contentId: d.contentId,
    bits: data && key ? codewordBits('long', key, data.long) : null,
    videoBits: data && key ? codewordBits('short', key, data.short) : null,
  };
}
