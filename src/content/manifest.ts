import canonicalizeModule from 'canonicalize';
import type { KeyObject } from 'node:crypto';
import { sha256Hex, signBytes, verifyBytes } from '../core/crypto.ts';

const canonicalize = canonicalizeModule as unknown as (v: unknown) => string;

// S1.1 / S1.6: a manifest lists a content's pieces by SHA-256, in order. Its body is
// serialised canonically (RFC 8785), the content ID is the SHA-256 of those bytes,
// and the origin signs the same bytes with Ed25519. Anyone holding the origin's
// public key can check a manifest, and then every piece, without trusting the sender.

export interface ManifestBody {
  v: 1;
  title: string;
  summary: string;
  author: string;
  genre: string;
  /** Whole-content price in minor units. */
  price: number;
  publisher: string;
  pieceSize: number;
  totalSize: number;
  /** Hex SHA-256 per piece; every piece is `pieceSize` bytes except possibly the last. */
  pieces: string[];
  createdAt: string;
}

export interface SignedManifest {
  body: ManifestBody;
  /** base64url Ed25519 signature over the canonical body. */
  signature: string;
}

export function canonicalBody(body: ManifestBody): string {
  return canonicalize(body);
}

export function contentIdOf(body: ManifestBody): string {
  return sha256Hex(canonicalBody(body));
}

export function signManifest(body: ManifestBody, originKey: KeyObject): { id: string; manifest: SignedManifest } {
  const bytes = canonicalBody(body);
  return { id: sha256Hex(bytes), manifest: { body, signature: signBytes(originKey, bytes) } };
}

export type ManifestCheck = { ok: true } | { ok: false; reason: string };

/** Checks that `manifest` is the one named by `contentId` and was signed by the origin. */
export function checkManifest(manifest: SignedManifest, contentId: string, originPublicKey: KeyObject | string): ManifestCheck {
  const b = manifest?.body;
  if (!b || typeof manifest.signature !== 'string' || !Array.isArray(b.pieces)) return { ok: false, reason: 'manifest is not well formed' };
  const bytes = canonicalBody(b);
  if (sha256Hex(bytes) !== contentId) return { ok: false, reason: 'manifest does not hash to the content ID' };
  if (!verifyBytes(originPublicKey, bytes, manifest.signature)) return { ok: false, reason: 'manifest signature is not the origin’s' };
  const expectedPieces = b.totalSize === 0 ? 0 : Math.ceil(b.totalSize / b.pieceSize);
  if (b.pieces.length !== expectedPieces) return { ok: false, reason: 'piece count does not match total size' };
  return { ok: true };
}

export function pieceCount(body: ManifestBody): number {
  return body.pieces.length;
}

export function pieceLength(body: ManifestBody, index: number): number {
  if (index < 0 || index >= body.pieces.length) throw new RangeError(`piece ${index} out of range`);
  return index === body.pieces.length - 1 ? body.totalSize - index * body.pieceSize : body.pieceSize;
}

export function pieceOffset(body: ManifestBody, index: number): number {
  return index * body.pieceSize;
}
