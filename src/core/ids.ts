import { randomBytes } from 'node:crypto';

/** A random, unguessable identifier with a readable prefix, e.g. `usr_3f9a…`. */
export function newId(prefix: string, bytes = 12): string {
  return `${prefix}_${randomBytes(bytes).toString('base64url')}`;
}

/** A secret for bearer tokens and one-time passwords. */
export function newSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}
