import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

// S3.4 + S3.6 + S3.8: a Password/Secret program's password is stored hashed (viewers'
// admission checks the hash), yet the settings document and the friends' e-mails on
// confirmation and change must carry it. So it is also kept sealed (AES-256-GCM) under a key
// derived from the origin's private key, which lives in the data directory and never in the
// database: a copy of the database alone reveals no password (nor any stream key: only the
// reservation IDs' SHA-256 is stored).

/** The sealing key for one booking, from the origin's secret (its private key's PKCS#8 bytes). */
export function sealKey(originSecret: Buffer, bookingId: string): Buffer {
  return Buffer.from(hkdfSync('sha256', originSecret, bookingId, 'cascade live password v1', 32));
}

export function sealPassword(password: string, key: Buffer): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([cipher.update(password, 'utf8'), cipher.final()]);
  return ['v1', iv.toString('base64url'), body.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
}

/** The password, or null if `sealed` was not made with this key. */
export function openPassword(sealed: string, key: Buffer): string | null {
  const [v, iv, body, tag] = sealed.split('.');
  if (v !== 'v1' || !iv || !body || !tag) return null;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
  } catch {
    return null;
  }
}
