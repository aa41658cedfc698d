import { randomBytes, randomFillSync } from 'node:crypto';

// Random bytes for IDs and secrets come from a pool refilled 4 KiB at a time: one call into the
// system's generator serves many IDs (a booking takes three), the bytes are as random.
const pool = Buffer.alloc(4096);
let used = pool.length;

function random(bytes: number): Buffer {
  if (bytes > pool.length) return randomBytes(bytes);
  if (used + bytes > pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  used += bytes;
  return pool.subarray(used - bytes, used);
}

/** A random, unguessable identifier with a readable prefix, e.g. `usr_3f9a…`. */
export function newId(prefix: string, bytes = 12): string {
  return `${prefix}_${random(bytes).toString('base64url')}`;
}

/** A secret for bearer tokens and one-time passwords. */
export function newSecret(bytes = 32): string {
  return random(bytes).toString('base64url');
}
