import type { SignedManifest } from '../content/manifest.ts';

/**
 * What a source (origin, edge, terminal) needs in order to serve pieces: the signed
 * manifest of a content it holds and a way to read one piece. The origin's content
 * store implements it; agents and edges implement it over their local stores.
 */
export interface PieceSource {
  /** The signed manifest, or null if this source does not hold the content. */
  manifest(contentId: string): Promise<SignedManifest | null>;
  /**
   * Piece `index`, ready to be read in parts, or null if this source does not have it.
   * Opening reads no piece bytes: a request waiting for tokens holds no piece buffer (#10.7).
   * `receiver`: the grant's receiver, when a piece server asks (edges count their hits by it).
   */
  openPiece(contentId: string, index: number, receiver?: string): Promise<PieceReader | null>;
  /** The pieces held now (agents fetching a content serve what they verified so far); absent means all. */
  have?(contentId: string): Promise<number[] | null>;
  /**
   * The same as ranges ("0-9,12"), or null for all or unknown; cheap enough to call per piece
   * served (#19: sent with every piece so that receivers learn a peer's new pieces from it directly).
   */
  haveRanges?(contentId: string): string | null;
}

export interface PieceReader {
  /** The piece's size in bytes (from the manifest). */
  length: number;
  /** Reads the piece's bytes from `offset` into `into`; resolves with how many were read (fewer: the store is damaged). */
  read(offset: number, into: Buffer): Promise<number>;
}

/** The whole of piece `index`, or null if the source lacks it or its store is short. */
export async function readWholePiece(source: PieceSource, contentId: string, index: number): Promise<Buffer | null> {
  const piece = await source.openPiece(contentId, index);
  if (!piece) return null;
  const buf = Buffer.allocUnsafe(piece.length);
  return (await piece.read(0, buf)) === piece.length ? buf : null;
}
