import type { KeyObject } from 'node:crypto';
import { signBytes, verifyBytes } from './crypto.ts';

// A compact signed token: base64url(JSON payload) "." base64url(Ed25519 signature).
// Used for grants and device credentials; `typ` keeps one kind from passing as another.

export interface TokenPayload {
  typ: string;
}

export function encodeToken<T extends TokenPayload>(payload: T, privateKey: KeyObject): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  return `${body}.${signBytes(privateKey, body)}`;
}

export type DecodeResult<T> = { ok: true; payload: T } | { ok: false; reason: 'malformed' | 'bad_signature' | 'wrong_type' };

export function decodeToken<T extends TokenPayload>(token: string, publicKey: KeyObject | string, typ: string): DecodeResult<T> {
  const dot = token.indexOf('.');
  if (dot <= 0 || dot !== token.lastIndexOf('.')) return { ok: false, reason: 'malformed' };
  const body = token.slice(0, dot);
  let payload: T;
  try {
    payload = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (!payload || typeof payload !== 'object') return { ok: false, reason: 'malformed' };
  if (!verifyBytes(publicKey, body, token.slice(dot + 1))) return { ok: false, reason: 'bad_signature' };
  if (payload.typ !== typ) return { ok: false, reason: 'wrong_type' };
  return { ok: true, payload };
}
