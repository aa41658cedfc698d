// What the browser's terminal (device.ts) and its downloads (download.ts) share: the
// origin's JSON API, errors with the API's code, Ed25519 and SHA-256 through WebCrypto,
// base64url and piece ranges. Browser APIs only (fetch, crypto.subtle, TextEncoder,
// btoa/atob), so the same code runs in a page (Vite) and in Node 20 tests (tsx).

/** An error with the API's `{ code, message }` (or the library's own code, e.g. `piece_corrupt`). */
export class CascadeError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** HTTP status the origin answered with; 0 when the error is the library's own. */
    readonly status = 0,
  ) {
    super(message);
    this.name = 'CascadeError';
  }
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** Milliseconds since the epoch, as the browser sees them (tests pass the origin's manual clock). */
export interface Clock {
  now(): number;
}

/** The browser's own clock: only a default, never read when a caller passes a clock. */
export const browserClock: Clock = { now: () => Date.now() };

/** `window.fetch` called unbound throws "Illegal invocation" in browsers: keep it bound. */
export const defaultFetch: FetchLike = (input, init) => globalThis.fetch(input, init);

const enc = new TextEncoder();

export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return enc.encode(text) as Uint8Array<ArrayBuffer>;
}

export function toBase64Url(bytes: ArrayBuffer | Uint8Array): string {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let bin = '';
  for (let i = 0; i < u8.length; i++) bin += String.fromCharCode(u8[i]);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Decodes base64url; null for anything that is not. */
export function fromBase64Url(text: string): Uint8Array<ArrayBuffer> | null {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function toHex(bytes: ArrayBuffer): string {
  const u8 = new Uint8Array(bytes);
  let out = '';
  for (let i = 0; i < u8.length; i++) out += u8[i].toString(16).padStart(2, '0');
  return out;
}

export async function sha256Hex(data: Uint8Array<ArrayBuffer> | string): Promise<string> {
  return toHex(await crypto.subtle.digest('SHA-256', typeof data === 'string' ? utf8(data) : data));
}

const ED25519 = { name: 'Ed25519' } as const;

/** A base64url raw Ed25519 public key (43 characters), as the origin sends keys. */
export async function importPublicKey(b64: string): Promise<CryptoKey> {
  const raw = /^[A-Za-z0-9_-]{43}$/.test(b64) ? fromBase64Url(b64) : null;
  if (!raw || raw.length !== 32) throw new CascadeError('invalid_public_key', 'Not an Ed25519 public key (43 base64url characters).');
  return crypto.subtle.importKey('raw', raw, ED25519, true, ['verify']);
}

export async function exportPublicKey(key: CryptoKey): Promise<string> {
  return toBase64Url(await crypto.subtle.exportKey('raw', key));
}

/** A new Ed25519 key pair whose private key cannot be exported (only kept, e.g. in IndexedDB, and used). */
export async function generateKeys(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(ED25519, false, ['sign', 'verify'])) as CryptoKeyPair;
}

/** The base64url Ed25519 signature of `text` (UTF-8), as every Cascade signature. */
export async function signText(privateKey: CryptoKey, text: string): Promise<string> {
  return toBase64Url(await crypto.subtle.sign(ED25519, privateKey, utf8(text)));
}

/** Verifies a base64url Ed25519 signature; false for anything malformed. */
export async function verifySignature(publicKey: CryptoKey, data: Uint8Array<ArrayBuffer> | string, signatureB64: string): Promise<boolean> {
  const sig = typeof signatureB64 === 'string' && signatureB64.length <= 200 ? fromBase64Url(signatureB64) : null;
  if (!sig || sig.length !== 64) return false;
  try {
    return await crypto.subtle.verify(ED25519, publicKey, sig, typeof data === 'string' ? utf8(data) : data);
  } catch {
    return false;
  }
}

/** Piece sets as compact ranges, "0-9,12,20-31" (src/transfer/piece-ranges.ts encodeRanges). */
export function encodeRanges(indices: Iterable<number>): string {
  const sorted = [...new Set(indices)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** Error bodies are read up to this many bytes (a source must not grow our memory). */
export const MAX_ERROR_BODY = 4096;
const CODE = /^[a-z][a-z0-9_]{0,63}$/;

/**
 * Reads at most `limit` bytes of a response body as text (the rest is cancelled), so an
 * error answer cannot make the page hold more than that.
 */
export async function readLimited(res: Response, limit: number): Promise<string | null> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        return null;
      }
      chunks.push(value);
    }
  } catch {
    return null;
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(all);
}

/** The `{ error: { code, message } }` of a refusal as a CascadeError (a well-formed code, 200 characters of message). */
export async function refusal(res: Response, limit = MAX_ERROR_BODY): Promise<CascadeError> {
  const text = await readLimited(res, limit);
  if (text === null) return new CascadeError('source_error', `The server answered ${res.status} with an error body over ${limit} bytes.`, res.status);
  try {
    const e = JSON.parse(text)?.error;
    if (typeof e?.code === 'string' && CODE.test(e.code)) return new CascadeError(e.code, String(e.message ?? '').slice(0, 200), res.status);
  } catch {}
  return new CascadeError('http_error', `The server answered ${res.status}.`, res.status);
}

/** An aborted signal's reason as the library's `aborted` error. */
export function abortedError(): CascadeError {
  return new CascadeError('aborted', 'The download was stopped.');
}

/** One JSON call to the origin's API; a refusal throws a CascadeError with the API's code and message. */
export async function callApi<T>(
  fetchFn: FetchLike,
  origin: string,
  method: 'GET' | 'POST',
  path: string,
  opts: { token?: string; json?: unknown; signal?: AbortSignal } = {},
): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.json !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetchFn(origin + path, { method, headers, body: opts.json === undefined ? undefined : JSON.stringify(opts.json), signal: opts.signal });
  } catch (err) {
    if (opts.signal?.aborted) throw abortedError();
    throw new CascadeError('origin_unreachable', `The origin could not be reached (${(err as Error)?.message ?? err}).`);
  }
  if (!res.ok) throw await refusal(res, 64 * 1024);
  try {
    return (await res.json()) as T;
  } catch {
    throw new CascadeError('bad_response', `The origin answered ${method} ${path} with something that is not JSON.`, res.status);
  }
}

/** Waits `ms` of real time (retry pauses), or less if `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
