import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { LRUCache } from 'lru-cache';

// Ed25519 everywhere: the origin signs manifests, grants and device credentials;
// terminals sign receipts and request proofs. Public keys travel as base64url raw bytes.

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** base64url of the 32 raw public key bytes. */
  publicKeyB64: string;
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, publicKeyB64: exportPublicKey(publicKey) };
}

export function exportPublicKey(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  return jwk.x as string;
}

/**
 * The keys of recent signers (receipts, request proofs, logins come in bursts from the same
 * terminals). Bounded small on purpose (#19): a KeyObject holds ~1 KB of OpenSSL memory outside
 * the JavaScript heap, and importing one again costs ~8 µs against ~85 µs for a verify.
 */
const publicKeyCache = new LRUCache<string, KeyObject>({ max: 1024 });

/** Parses a base64url raw Ed25519 public key; throws on anything else. */
export function importPublicKey(b64: string): KeyObject {
  let key = publicKeyCache.get(b64);
  if (!key) {
    if (!/^[A-Za-z0-9_-]{43}$/.test(b64)) throw new Error('not an Ed25519 public key');
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64 }, format: 'jwk' });
    publicKeyCache.set(b64, key);
  }
  return key;
}

export function signBytes(privateKey: KeyObject, data: Buffer | string): string {
  return sign(null, Buffer.from(data), privateKey).toString('base64url');
}

export function verifyBytes(publicKey: KeyObject | string, data: Buffer | string, signatureB64: string): boolean {
  try {
    const key = typeof publicKey === 'string' ? importPublicKey(publicKey) : publicKey;
    return verify(null, Buffer.from(data), key, Buffer.from(signatureB64, 'base64url'));
  } catch {
    return false;
  }
}

export function keyPairFromPem(pem: string): KeyPair {
  const privateKey = createPrivateKey(pem);
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, publicKeyB64: exportPublicKey(publicKey) };
}

export function keyPairToPem(kp: KeyPair): string {
  return kp.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
}

/** Loads the key kept at `file`, creating it (mode 0600) on first use. */
export function loadOrCreateKeyPair(file: string): KeyPair {
  if (existsSync(file)) return keyPairFromPem(readFileSync(file, 'utf8'));
  mkdirSync(path.dirname(file), { recursive: true });
  const kp = generateKeyPair();
  writeFileSync(file, keyPairToPem(kp), { mode: 0o600, flag: 'wx' });
  return kp;
}
