import {
  browserClock,
  callApi,
  CascadeError,
  defaultFetch,
  exportPublicKey,
  generateKeys,
  signText,
  type Clock,
  type FetchLike,
} from './wire.ts';

// The browser as a terminal of the signed-in member (S1.2, docs/protocol.md "Terminals",
// "Downloading in a browser"). Like the CLI's device (src/terminals/device.ts) it keeps its
// own Ed25519 key — here made by WebCrypto as non-extractable, so page scripts can use it
// but never read it — registers it once with the member's account session, and logs in by
// challenge and signature for a terminal session. The key, its terminal ID and its device
// credential are kept per origin and member in a KeyStore (IndexedDB in a browser).

/** What the browser keeps per origin and member. CryptoKeys are structured-cloneable: IndexedDB stores them as they are. */
export interface DeviceRecord {
  keys: CryptoKeyPair;
  /** base64url raw public key, as registered. */
  publicKey: string;
  terminalId: string | null;
  credential: string | null;
}

export interface KeyStore {
  get(id: string): Promise<DeviceRecord | undefined>;
  put(id: string, record: DeviceRecord): Promise<void>;
}

/** A KeyStore in memory (tests; a page that must not persist anything). */
export function memoryKeyStore(): KeyStore & { records: Map<string, DeviceRecord> } {
  const records = new Map<string, DeviceRecord>();
  return {
    records,
    async get(id) {
      return records.get(id);
    },
    async put(id, record) {
      records.set(id, record);
    },
  };
}

/** A KeyStore in IndexedDB (database `dbName`, object store `devices`); IndexedDB is per web origin already. */
export function indexedDbKeyStore(dbName = 'cascade-terminal'): KeyStore {
  let opened: Promise<IDBDatabase> | null = null;
  const db = () =>
    (opened ??= new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open(dbName, 1);
      req.onupgradeneeded = () => req.result.createObjectStore('devices');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    }));
  const run = async <T>(mode: IDBTransactionMode, op: (s: IDBObjectStore) => IDBRequest): Promise<T> => {
    const d = await db();
    return new Promise<T>((resolve, reject) => {
      const tx = d.transaction('devices', mode);
      const req = op(tx.objectStore('devices'));
      tx.oncomplete = () => resolve(req.result as T);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  };
  return {
    get: (id) => run<DeviceRecord | undefined>('readonly', (s) => s.get(id)),
    put: async (id, record) => {
      await run('readwrite', (s) => s.put(record, id));
    },
  };
}

export interface TerminalSession {
  terminalId: string;
  /** The terminal session token (24 h): `Authorization: Bearer` on terminal routes. */
  token: string;
  expiresAt: string;
  publicKey: string;
  privateKey: CryptoKey;
  /**
   * The origin's clock minus this browser's, in ms, measured at login from the challenge's
   * expiry (issued for 60 s): request proofs carry the origin's time, which a browser clock
   * set a few minutes wrong would otherwise miss (the window is ±120 s).
   */
  clockOffsetMs: number;
}

export interface TerminalSessionOptions {
  origin: string;
  /** The member's account session (`POST /auth/login`); registering needs it. */
  accountToken: string;
  keyStore: KeyStore;
  /** The terminal's name at registration (default "Web browser"). */
  name?: string;
  fetch?: FetchLike;
  clock?: Clock;
  signal?: AbortSignal;
}

/** How long a challenge lives at the origin (src/terminals/challenges.ts CHALLENGE_TTL_MS). */
const CHALLENGE_TTL_MS = 60_000;

/** The KeyStore entry of a member at an origin. */
export function deviceRecordId(origin: string, userId: string): string {
  return `${origin}|${userId}`;
}

/**
 * A terminal session for this browser and member at `origin`: creates and registers the
 * key the first time, then logs in. If the origin no longer knows the terminal (removed,
 * or the credential no longer verifies), it registers again — with a new key if the old
 * one is still registered there (its credential is lost).
 */
export async function terminalSession(opts: TerminalSessionOptions): Promise<TerminalSession> {
  const f = opts.fetch ?? defaultFetch;
  const clock = opts.clock ?? browserClock;
  const me = await callApi<{ id: string }>(f, opts.origin, 'GET', '/auth/me', { token: opts.accountToken, signal: opts.signal });
  const storeId = deviceRecordId(opts.origin, me.id);
  let record = await opts.keyStore.get(storeId);
  if (!record) {
    const keys = await generateKeys();
    record = { keys, publicKey: await exportPublicKey(keys.publicKey), terminalId: null, credential: null };
    await opts.keyStore.put(storeId, record);
  }
  let registeredNow = false;
  if (!record.terminalId || !record.credential) {
    record = await register(opts, f, storeId, record);
    registeredNow = true;
  }
  try {
    return await login(opts, f, clock, record);
  } catch (err) {
    const stale = err instanceof CascadeError && (err.code === 'unknown_terminal' || err.code === 'invalid_credential');
    if (registeredNow || !stale) throw err;
    record = await register(opts, f, storeId, { ...record, terminalId: null, credential: null });
    return login(opts, f, clock, record);
  }
}

async function register(opts: TerminalSessionOptions, f: FetchLike, storeId: string, record: DeviceRecord): Promise<DeviceRecord> {
  const attempt = async (r: DeviceRecord) => {
    const { nonce } = await callApi<{ nonce: string }>(f, opts.origin, 'POST', '/terminals/registration-challenge', { token: opts.accountToken, json: {}, signal: opts.signal });
    // The origin's nonce signed with the key: proof that this browser holds the key it registers.
    const signature = await signText(r.keys.privateKey, `cascade-register:${r.publicKey}:${nonce}`);
    return callApi<{ terminal: { id: string }; credential: string }>(f, opts.origin, 'POST', '/terminals', {
      token: opts.accountToken,
      json: { publicKey: r.publicKey, nonce, signature, name: (opts.name ?? 'Web browser').slice(0, 80) },
      signal: opts.signal,
    });
  };
  let res: { terminal: { id: string }; credential: string };
  try {
    res = await attempt(record);
  } catch (err) {
    if (!(err instanceof CascadeError && err.code === 'terminal_exists')) throw err;
    // The key is registered but its credential is gone: a new key makes a new terminal.
    const keys = await generateKeys();
    record = { keys, publicKey: await exportPublicKey(keys.publicKey), terminalId: null, credential: null };
    res = await attempt(record);
  }
  const done: DeviceRecord = { ...record, terminalId: res.terminal.id, credential: res.credential };
  await opts.keyStore.put(storeId, done);
  return done;
}

async function login(opts: TerminalSessionOptions, f: FetchLike, clock: Clock, record: DeviceRecord): Promise<TerminalSession> {
  const terminalId = record.terminalId!;
  // Challenge and login need no account: the credential and the signature are the proof.
  const challenge = await callApi<{ nonce: string; expiresAt: string }>(f, opts.origin, 'POST', '/terminals/challenge', { json: { terminalId }, signal: opts.signal });
  const issuedAt = Date.parse(challenge.expiresAt) - CHALLENGE_TTL_MS;
  const clockOffsetMs = Number.isFinite(issuedAt) ? issuedAt - clock.now() : 0;
  const signature = await signText(record.keys.privateKey, `cascade-login:${terminalId}:${challenge.nonce}`);
  const session = await callApi<{ token: string; terminalId: string; expiresAt: string }>(f, opts.origin, 'POST', '/terminals/login', {
    json: { credential: record.credential, nonce: challenge.nonce, signature },
    signal: opts.signal,
  });
  return { terminalId, token: session.token, expiresAt: session.expiresAt, publicKey: record.publicKey, privateKey: record.keys.privateKey, clockOffsetMs };
}
