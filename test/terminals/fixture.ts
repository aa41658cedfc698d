import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs } from 'kysely';
import { AccountService } from '../../src/accounts/service.ts';
import { AddressPolicy } from '../../src/core/address-policy.ts';
import { ManualClock } from '../../src/core/clock.ts';
import { loadConfig, type Config } from '../../src/core/config.ts';
import { generateKeyPair, signBytes, type KeyPair } from '../../src/core/crypto.ts';
import type { Db, DbHandle } from '../../src/db/connection.ts';
import { loginMessage, registerMessage, TerminalService, type TerminalServiceDeps } from '../../src/terminals/service.ts';
import type { TestEngine } from '../helpers/db.ts';

// A TerminalService on a real database (either engine) with a manual clock, a fresh
// metrics registry and a counter of write statements, without starting an origin.

/** Counts statements that write (insert/update/delete), including raw SQL ones. */
export class WriteCounter implements KyselyPlugin {
  writes = 0;
  transformQuery(args: PluginTransformQueryArgs) {
    const node: any = args.node;
    const kind: string = node.kind;
    if (kind === 'InsertQueryNode' || kind === 'UpdateQueryNode' || kind === 'DeleteQueryNode') this.writes++;
    if (kind === 'RawNode' && /^\s*(insert|update|delete)\b/i.test((node.sqlFragments as string[]).join(''))) this.writes++;
    return args.node;
  }
  async transformResult(args: PluginTransformResultArgs) {
    return args.result;
  }
}

export interface Fixture {
  handle: DbHandle;
  db: Db;
  clock: ManualClock;
  config: Config;
  keys: KeyPair;
  accounts: AccountService;
  metrics: Registry;
  writes: WriteCounter;
  svc: TerminalService;
  userId: string;
  /** Inserts a content row (bypassing ContentService, which this domain does not test). */
  addContent(): Promise<string>;
  /** The registration fields proving `dev` holds its key (a fresh challenge for the fixture's user, signed). */
  proof(dev: KeyPair, publicKey?: string): Promise<{ nonce: string; signature: string }>;
  /** Registers a terminal with a fresh device key and logs it in. */
  newTerminal(name?: string): Promise<{ id: string; keys: KeyPair; credential: string; token: string }>;
  count(table: 'terminals' | 'holdings' | 'api_tokens' | 'terminal_challenges'): Promise<number>;
  close(): Promise<void>;
}

let n = 0;

export async function openFixture(engine: TestEngine, overrides: Partial<TerminalServiceDeps> = {}): Promise<Fixture> {
  const handle = await engine.open();
  const writes = new WriteCounter();
  const db = handle.db.withPlugin(writes);
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const config = { ...loadConfig({}), heartbeatFlushMs: 1000 };
  const keys = generateKeyPair();
  const accounts = new AccountService(handle.db, clock);
  const metrics = new Registry();
  const peers = new AddressPolicy({ mode: 'any' });
  const svc = new TerminalService({ db, keys, clock, config, logger: pino({ level: 'silent' }), accounts, metrics, peers, ...overrides });
  const user = await accounts.createUser(`owner${process.pid}x${++n}`, 'correct horse battery', ['member']);

  const f: Fixture = {
    handle, db, clock, config, keys, accounts, metrics, writes, svc, userId: user.id,
    async addContent() {
      const id = randomBytes(32).toString('hex');
      await handle.db
        .insertInto('contents')
        .values({
          id, title: 't', summary: '', author: '', genre: 'g', price: 0, publisher_id: user.id,
          piece_size: 1024, piece_count: 0, total_size: 0, manifest: {} as any, created_at: new Date(clock.now()),
        })
        .execute();
      return id;
    },
    async proof(dev, publicKey = dev.publicKeyB64) {
      const { nonce } = await svc.registrationChallenge(user.id);
      return { nonce, signature: signBytes(dev.privateKey, registerMessage(publicKey, nonce)) };
    },
    async newTerminal(name = 'box') {
      const dev = generateKeyPair();
      const { terminal, credential } = await svc.register(user.id, { publicKey: dev.publicKeyB64, name, ...(await f.proof(dev)) });
      const { nonce } = await svc.challenge(terminal.id);
      const { token } = await svc.login(credential, nonce, signBytes(dev.privateKey, loginMessage(terminal.id, nonce)));
      return { id: terminal.id, keys: dev, credential, token };
    },
    async count(table) {
      const r = await handle.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      return Number(r.n);
    },
    async close() {
      await svc.stop();
      await handle.close();
    },
  };
  return f;
}

/** A plausible heartbeat; override single fields to make it absurd. */
export function beat(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { uptimeRatio: 0.9, upBps: 10_000_000, downBps: 50_000_000, sendLoadBps: 1_000_000, recvLoadBps: 2_000_000, cpu: 0.25, ...overrides };
}
