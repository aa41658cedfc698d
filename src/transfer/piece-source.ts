import type { SignedManifest } from '../content/manifest.ts';

/**
 * What a source (origin, edge, terminal) needs in order to serve pieces: the signed
 * manifest of a content it holds and the bytes of one piece. The origin's content
 * store implements it; agents and edges implement it over their local stores.
 */
export interface PieceSource {
  /** The signed manifest, or null if this source does not hold the content. */
  manifest(contentId: string): Promise<SignedManifest | null>;
  /** The bytes of piece `index`, or null if this source does not have that piece. */
  readPiece(contentId: string, index: number): Promise<Buffer | null>;
  /** The pieces held now (agents fetching a content serve what they verified so far); absent means all. */
  have?(contentId: string): Promise<number[] | null>;
}
