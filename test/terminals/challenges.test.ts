import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { sql } from 'kysely';
import { ManualClock } from '../../src/core/clock.ts';
import { generateKeyPair, signBytes } from '../../src/core/crypto.ts';
import { openDatabase, type DbHandle } from '../../src/db/connection.ts';
import { startOrigin, type Origin } from '../../src/server.ts';
import { ChallengeStore, loginMessage, registerMessage } from '../../src/terminals/challenges.ts';
import { testEngines, type TestEngine } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// Issue 10 #9: login and registration challenges live in the database (terminal_challenges):
// single use, expiring on the injected clock, bounded — and accepted by every origin
// process sharing the database, whichever issued them.

/** A second handle on the same database as `h` (PostgreSQL: another pool on the same schema). */
async function secondHandle(engine: TestEngine, h: DbHandle): Promise<{ handle: DbHandle; close(): Promise<void> }> {
  if (engine.name === 'pglite') return { handle: h, close: async () => {} }; // one embedded database per process
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(h.db);
  const handle = await openDatabase({ databaseUrl: process.env.DATABASE_URL, schema: rows[0].schema, migrate: false });
  return { handle, close: () => handle.close() };
}

for (const engine of testEngines()) {
  describe(`challenge store (${engine.name})`, () => {
    let h: DbHandle;
    const clock = new ManualClock(Date.UTC(2031, 2, 4, 5, 6, 7));
    before(async () => {
      h = await engine.open();
    });
    after(() => h.close());
    const live = async () => Number((await h.db.selectFrom('terminal_challenges').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);

    test('single use, bound to its purpose and subject; a failed take burns it too', async () => {
      const store = new ChallengeStore(h.db, clock);
      const { nonce } = await store.issue('login', 'trm_a');
      assert.equal(await store.take(nonce, 'login', 'trm_a'), true);
      assert.equal(await store.take(nonce, 'login', 'trm_a'), false, 'used');
      for (const [purpose, subject] of [['login', 'trm_b'], ['register', 'trm_a']] as const) {
        const n = (await store.issue('login', 'trm_a')).nonce;
        assert.equal(await store.take(n, purpose, subject), false, `${purpose} ${subject}`);
        assert.equal(await store.take(n, 'login', 'trm_a'), false, 'burnt by the failed take');
      }
      assert.equal(await store.take('never-issued', 'login', 'trm_a'), false);
    });

    test('expires on the injected clock: live 1 ms before its expiry, dead at it', async () => {
      const store = new ChallengeStore(h.db, clock, 100, 1000);
      const early = await store.issue('register', 'usr_x');
      const late = await store.issue('register', 'usr_x');
      assert.equal(early.expiresAt, clock.now() + 1000);
      clock.advance(999);
      assert.equal(await store.take(early.nonce, 'register', 'usr_x'), true);
      clock.advance(1);
      assert.equal(await store.take(late.nonce, 'register', 'usr_x'), false);
    });

    test('bounded: a new challenge evicts the expired ones and those issued `max` challenges ago', async () => {
      await h.db.deleteFrom('terminal_challenges').execute();
      const store = new ChallengeStore(h.db, clock, 3, 1000);
      const expired = await store.issue('login', 't');
      clock.advance(1000);
      const issued = [];
      for (let i = 0; i < 5; i++) issued.push((await store.issue('login', 't')).nonce);
      assert.equal(await live(), 3, 'never more than max live');
      assert.equal(await store.take(expired.nonce, 'login', 't'), false);
      assert.equal(await store.take(issued[0], 'login', 't'), false, 'oldest evicted');
      assert.equal(await store.take(issued[1], 'login', 't'), false, 'oldest evicted');
      for (const n of issued.slice(2)) assert.equal(await store.take(n, 'login', 't'), true, 'the newest stay');
      assert.equal(await live(), 0);
    });
  });

  describe(`two origin processes sharing one database (${engine.name})`, () => {
    let a: TestOrigin;
    let b: Origin;
    let second: Awaited<ReturnType<typeof secondHandle>>;
    before(async () => {
      a = await startTestOrigin({ engine });
      second = await secondHandle(engine, a.db);
      // Same database and origin key (its data directory), another port, no scheduler: a second process of one deployment.
      b = await startOrigin({ config: { ...a.config, port: 0, scheduler: false }, clock: a.clock, db: second.handle, logger: pino({ level: 'silent' }) });
    });
    after(async () => {
      await b.close();
      await second.close();
      await a.close();
    });

    const post = async (origin: string, url: string, json: unknown, token?: string) => {
      const res = await fetch(origin + url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(json),
      });
      return { status: res.status, body: (await res.json()) as any };
    };

    test('a challenge issued by one process is accepted once by the other: registration and login', async () => {
      const user = await a.userWithRoles(['member']);
      const keys = generateKeyPair();

      const reg = await post(a.url, '/terminals/registration-challenge', {}, user.token);
      const registration = { publicKey: keys.publicKeyB64, name: 'roaming', nonce: reg.body.nonce, signature: signBytes(keys.privateKey, registerMessage(keys.publicKeyB64, reg.body.nonce)) };
      const registered = await post(b.url, '/terminals', registration, user.token);
      assert.equal(registered.status, 201, JSON.stringify(registered.body));
      const terminalId: string = registered.body.terminal.id;

      const ch = await post(b.url, '/terminals/challenge', { terminalId });
      const login = { credential: registered.body.credential, nonce: ch.body.nonce, signature: signBytes(keys.privateKey, loginMessage(terminalId, ch.body.nonce)) };
      const session = await post(a.url, '/terminals/login', login);
      assert.equal(session.status, 200, JSON.stringify(session.body));
      assert.equal(session.body.terminalId, terminalId);

      // Single use across processes: the same signed nonce at either process is a replay.
      const tokens = await a.db.db.selectFrom('api_tokens').select('token_hash').execute();
      for (const url of [a.url, b.url]) {
        const replay = await post(url, '/terminals/login', login);
        assert.equal(replay.status, 401);
        assert.equal(replay.body.error.code, 'invalid_challenge');
      }
      assert.equal((await a.db.db.selectFrom('api_tokens').select('token_hash').execute()).length, tokens.length, 'no session issued by a replay');
      const again = await post(a.url, '/terminals', registration, user.token);
      assert.equal(again.body.error.code, 'invalid_challenge');
    });
  });
}
