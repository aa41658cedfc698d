import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ManualClock } from '../../src/core/clock.ts';
import { signBytes, type KeyPair } from '../../src/core/crypto.ts';
import { registerMessage } from '../../src/terminals/challenges.ts';
import { loadConfig, type Config } from '../../src/core/config.ts';
import { startOrigin, type Origin, type OriginOptions } from '../../src/server.ts';
import { walletAccount } from '../../src/ledger/accounts.ts';
import { PLATFORM_PROMOTIONS } from '../../src/ledger/wallets.ts';
import type { TestEngine } from './db.ts';
import { TEST_SCRYPT_N } from './processes.ts';
import { testEngines } from './db.ts';

export interface TestOrigin extends Origin {
  clock: ManualClock;
  /** Signs in as a fresh account with these roles; returns its token and id. */
  userWithRoles(roles: string[], username?: string): Promise<{ token: string; userId: string; username: string }>;
  /** Stops the origin's server, keeping its database and data directory (an outage). */
  stop(): Promise<void>;
  /** Starts it again on the same address, database, data directory and clock; returns the new instance. */
  restart(): Promise<Origin>;
  /** Credits a user's wallet from the promotions account (transfer `id`), opening the wallet if needed. */
  fund(userId: string, amount: number, id: string): Promise<void>;
  /**
   * `POST /terminals` for the device holding `keys`, as the real device does: a registration
   * challenge for the account, signed with the device key (issue 10 #9). `fields` go in the body.
   */
  registerTerminal(token: string, keys: KeyPair, fields: Record<string, unknown>): Promise<{ status: number; body: any; headers: Headers }>;
  /**
   * Moves the manual clock up to the machine's time if it has fallen behind (never back). Edges and
   * agents run on the machine's clock (proofs, grant lifetimes as they see them): after minutes of
   * real work (ffmpeg, a browser) with this clock standing still, their piece requests are first
   * refused as `proof_stale` (then re-signed on the origin's time) and, past a grant's life apart,
   * would see fresh grants as expired.
   */
  catchUpWithMachine(): void;
  /** fetch() against the origin with an optional bearer token. */
  call(method: string, url: string, opts?: { token?: string; json?: unknown; body?: any; headers?: Record<string, string> }): Promise<{ status: number; body: any; headers: Headers }>;
}

let userCounter = 0;

/** An origin on a random loopback port, with a temporary data directory and a manual clock. */
export async function startTestOrigin(
  opts: { engine?: TestEngine; config?: Partial<Config>; /** the clock's start, ms (default: now) */ now?: number; resolveHost?: OriginOptions['resolveHost'] } = {},
): Promise<TestOrigin> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'cascade-origin-'));
  const engine = opts.engine ?? testEngines()[0];
  const db = await engine.open();
  const clock = new ManualClock(opts.now ?? Date.now());
  // Every wallet starts with ample sign-up credit, so tests about other things can download priced
  // content; ledger tests set signupCredit: 0 and pay their own way.
  // Agents in tests serve on loopback, which the default PEER_ADDRESSES (private) refuses: tests
  // that check the address policy itself set `peerAddresses` explicitly.
  const config = { ...loadConfig({}), port: 0, rtmpPort: 0, dataDir, logLevel: 'silent', signupCredit: 1_000_000_000, peerAddresses: 'any' as const, passwordScryptN: TEST_SCRYPT_N, ...opts.config };
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const origin = await startOrigin({ config, clock, db, logger, resolveHost: opts.resolveHost });
  let live: Origin | null = origin;
  const call: TestOrigin['call'] = async (method, url, o = {}) => {
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    let body = o.body;
    if (o.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(o.json);
    }
    let res: Response;
    try {
      res = await fetch(origin.url + url, { method, headers, body, duplex: 'half' } as RequestInit);
    } catch (err) {
      // After restart() the client may still pick a kept-alive socket the old server closed: the
      // request never reached a server, so sending it again (once, bodies that can be re-read) is safe.
      const code = (err as { cause?: { code?: string } }).cause?.code;
      if (code !== 'UND_ERR_SOCKET' && code !== 'ECONNRESET') throw err;
      if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) throw err;
      res = await fetch(origin.url + url, { method, headers, body, duplex: 'half' } as RequestInit);
    }
    const text = await res.text();
    let parsed: any = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {}
    return { status: res.status, body: parsed, headers: res.headers };
  };
  return {
    ...origin,
    clock,
    call,
    catchUpWithMachine() {
      clock.set(Math.max(clock.now(), Date.now()));
    },
    async userWithRoles(roles, username) {
      const name = username ?? `user${process.pid}x${++userCounter}`;
      const user = await origin.accounts.createUser(name, 'correct horse battery', roles as any);
      const token = await origin.accounts.issueToken(user.id, null, 'test', null);
      return { token, userId: user.id, username: name };
    },
    async registerTerminal(token, keys, fields) {
      const challenge = await call('POST', '/terminals/registration-challenge', { token, json: {} });
      if (challenge.status !== 200) return challenge;
      const { nonce } = challenge.body;
      const signature = signBytes(keys.privateKey, registerMessage(keys.publicKeyB64, nonce));
      return call('POST', '/terminals', { token, json: { publicKey: keys.publicKeyB64, nonce, signature, ...fields } });
    },
    async fund(userId, amount, id) {
      await origin.ledger.ensureAccount(PLATFORM_PROMOTIONS);
      await origin.wallets.open(userId);
      const [r] = await origin.ledger.apply([{ id, debit: PLATFORM_PROMOTIONS.id, credit: walletAccount(userId).id, amount, reason: 'topup' }]);
      if (r.status !== 'created') throw new Error(`funding ${userId} failed: ${r.code ?? r.status}`);
    },
    async stop() {
      await live?.close();
      live = null;
    },
    async restart() {
      await live?.close();
      live = await startOrigin({ config: { ...config, port: Number(new URL(origin.url).port) }, clock, db, logger, resolveHost: opts.resolveHost });
      return live;
    },
    async close() {
      await live?.close();
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
