import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Api } from '../core/http-client.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { loadOrCreateKeyPair, signBytes, type KeyPair } from '../core/crypto.ts';
import { AppError } from '../core/errors.ts';
import { loginMessage, registerMessage } from './challenges.ts';

// The device side of S1.2, used by the CLI and the agent. The device keeps its own
// Ed25519 key (never sent anywhere) in <home>/device.key, and per origin its device
// credential and current session token in <home>/device.json (both mode 0600).

export interface DeviceSession {
  terminalId: string;
  token: string;
  keys: KeyPair;
  credential: string;
}

interface OriginEntry {
  terminalId: string;
  credential: string;
  /** The key the credential was issued for; a replaced device.key means a new terminal. */
  publicKey: string;
  session?: { token: string; expiresAt: string };
}

interface DeviceFile {
  origins: Record<string, OriginEntry>;
}

/** A session token is reused until this close to its expiry, so it does not lapse mid-call. */
const SESSION_MARGIN_MS = 5 * 60_000;

export function loadOrCreateDeviceKey(home: string): KeyPair {
  return loadOrCreateKeyPair(path.join(home, 'device.key'));
}

const deviceFile = (home: string) => path.join(home, 'device.json');

function readDeviceFile(home: string): DeviceFile {
  const file = deviceFile(home);
  if (!existsSync(file)) return { origins: {} };
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<DeviceFile>;
  return { origins: parsed.origins ?? {} };
}

function writeDeviceFile(home: string, data: DeviceFile): void {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  // Write then rename, so an interrupted write never loses the credential.
  const tmp = `${deviceFile(home)}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, deviceFile(home));
}

/**
 * A terminal session for this device at `api.origin`: registers the device (with the
 * account token in `api`) the first time, then logs in by challenge and signature, and
 * caches the session token until shortly before it expires.
 */
export async function deviceSession(
  api: Api,
  home: string,
  opts: { name?: string; region?: string; network?: string; serveUrl?: string; clock?: Clock; fresh?: boolean; keys?: KeyPair } = {},
): Promise<DeviceSession> {
  const clock = opts.clock ?? systemClock;
  // A running agent passes the keys it loaded at start: reading and parsing the key file on every
  // heartbeat was ~1 % of an agent's CPU in the swarm benchmark (#19).
  const keys = opts.keys ?? loadOrCreateDeviceKey(home);
  const data = readDeviceFile(home);
  let entry: OriginEntry | undefined = data.origins[api.origin];
  if (entry && entry.publicKey !== keys.publicKeyB64) entry = undefined;

  const s = entry?.session;
  if (entry && s && !opts.fresh && Date.parse(s.expiresAt) - SESSION_MARGIN_MS > clock.now()) {
    return { terminalId: entry.terminalId, token: s.token, keys, credential: entry.credential };
  }

  let registeredNow = false;
  if (!entry) {
    entry = await register(api, home, keys, opts);
    registeredNow = true;
  }
  let session: { token: string; terminalId: string; expiresAt: string };
  try {
    session = await login(api, entry, keys);
  } catch (err) {
    // The origin no longer accepts this credential (new origin key, terminal removed):
    // register afresh once; a second refusal is real.
    const stale = err instanceof AppError && (err.code === 'invalid_credential' || err.code === 'unknown_terminal');
    if (registeredNow || !stale) throw err;
    entry = await register(api, home, keys, opts);
    session = await login(api, entry, keys);
  }
  entry.session = { token: session.token, expiresAt: session.expiresAt };
  data.origins[api.origin] = entry;
  writeDeviceFile(home, data);
  return { terminalId: entry.terminalId, token: session.token, keys, credential: entry.credential };
}

async function register(api: Api, home: string, keys: KeyPair, opts: { name?: string; region?: string; network?: string; serveUrl?: string }): Promise<OriginEntry> {
  if (!api.token) throw new AppError('not_signed_in', 'Sign in first (cascade login) to register this device as a terminal.', 401);
  try {
    // The origin's nonce, signed with the device key: proof that this device holds the key it registers.
    const { nonce } = await api.post<{ nonce: string }>('/terminals/registration-challenge');
    const res = await api.post<{ terminal: { id: string }; credential: string }>('/terminals', {
      publicKey: keys.publicKeyB64,
      nonce,
      signature: signBytes(keys.privateKey, registerMessage(keys.publicKeyB64, nonce)),
      name: opts.name ?? os.hostname().slice(0, 80),
      ...(opts.region ? { region: opts.region } : {}),
      ...(opts.network ? { network: opts.network } : {}),
      ...(opts.serveUrl ? { serveUrl: opts.serveUrl } : {}),
    });
    return { terminalId: res.terminal.id, credential: res.credential, publicKey: keys.publicKeyB64 };
  } catch (err) {
    if (err instanceof AppError && err.code === 'terminal_exists') {
      throw new AppError(
        'device_credential_lost',
        `This device key is registered at ${api.origin} but its credential is missing from ${deviceFile(home)}. ` +
          `Restore that file, or remove ${path.join(home, 'device.key')} to register as a new terminal.`,
        409,
      );
    }
    throw err;
  }
}

async function login(api: Api, entry: OriginEntry, keys: KeyPair) {
  // Challenge and login are public: the credential and the signature are the proof.
  const anon = new Api(api.origin);
  const { nonce } = await anon.post<{ nonce: string }>('/terminals/challenge', { terminalId: entry.terminalId });
  const signature = signBytes(keys.privateKey, loginMessage(entry.terminalId, nonce));
  return anon.post<{ token: string; terminalId: string; expiresAt: string }>('/terminals/login', { credential: entry.credential, nonce, signature });
}
