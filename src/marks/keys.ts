import { createHash, createHmac } from 'node:crypto';
import type { KeyPair } from '../core/crypto.ts';
import type { PayloadSecrets } from './payload.ts';

// S2.3: an origin's mark secrets come from its signing key (so every process of one origin —
// they share the key — mints and reads the same marks, and nothing new must be stored or backed
// up). The check key never leaves the origin; the pattern key goes to the origin's edges.

/** An origin's ID in marks: the first 16 hex digits of the SHA-256 of its public key (base64url). */
export function originIdOf(originKey: string): string {
  return createHash('sha256').update(originKey).digest('hex').slice(0, 16);
}

const derived = new WeakMap<KeyPair, PayloadSecrets>();

export function markSecrets(keys: KeyPair): PayloadSecrets {
  const known = derived.get(keys);
  if (known) return known;
  const root = createHmac('sha256', keys.privateKey.export({ format: 'der', type: 'pkcs8' })).update('cascade marks v1').digest();
  const secrets = {
    check: createHmac('sha256', root).update('check').digest(),
    pattern: createHmac('sha256', root).update('pattern').digest(),
    originTag: parseInt(originIdOf(keys.publicKeyB64).slice(0, 4), 16),
  };
  derived.set(keys, secrets);
  return secrets;
}

/** The origin tag an edge computes from the origin's public key (to check a key it was given). */
export const originTagOf = (originKey: string) => parseInt(originIdOf(originKey).slice(0, 4), 16);
