import canonicalizeModule from 'canonicalize';
import type { KeyObject } from 'node:crypto';
import { signBytes, verifyBytes } from '../core/crypto.ts';

const canonicalize = canonicalizeModule as unknown as (v: unknown) => string;

// S3.6: what the broadcaster receives on reconfirmation: everything its encoder needs, signed
// by the origin (Ed25519 over the canonical JSON of `document`), so a tool can check it came
// from this origin and was not edited. `cascade reserve confirm ID -o settings.json` saves it.

export interface SettingsDocument {
  type: 'cascade.live.settings';
  version: 1;
  reservationId: string;
  bookingId: string;
  title: string;
  openLevel: 'public' | 'password' | 'secret';
  /** null for public programs. */
  password: string | null;
  start: string;
  end: string;
  /** S3.9: the broadcaster may connect inside [from, to). */
  connectableWindow: { from: string; to: string };
  ingest: { rtmp: { url: string; server: string; streamKey: string } };
  channel: { id: string; name: string; capacity: number; bitrateKbps: number; slotMinutes: number };
  server: { origin: string; originKey: string; timeUrl: string };
  viewerUrl: string;
  bitrateKbps: number;
  issuedAt: string;
}

export interface SignedSettings {
  document: SettingsDocument;
  /** base64url Ed25519 signature of canonicalize(document). */
  signature: string;
  originKey: string;
}

export function signSettings(document: SettingsDocument, key: KeyObject, originKey: string): SignedSettings {
  return { document, signature: signBytes(key, canonicalize(document)), originKey };
}

/** Whether `signed` carries a valid signature by `originKey` (the origin's published key, GET /origin). */
export function verifySettings(signed: SignedSettings, originKey: string): boolean {
  return verifyBytes(originKey, canonicalize(signed.document), signed.signature);
}
