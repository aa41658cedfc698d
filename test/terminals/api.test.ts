import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { generateKeyPair, signBytes, type KeyPair } from '../../src/core/crypto.ts';
import { CHALLENGE_TTL_MS } from '../../src/terminals/challenges.ts';
import { loginMessage, registerMessage } from '../../src/terminals/service.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { beat } from './fixture.ts';

// S1.2 / S1.3 through the origin's HTTP API: register → challenge → login →
// heartbeat → holdings → holders, and every refusal with its code.

for (const engine of testEngines()) {
  describe(`terminals API (${engine.name})`, () => {
    let o: TestOrigin;
    let owner: { token: string; userId: string };
    let contentId: string;

    async function registerAndLogin(token: string, extra: Record<string, unknown> = {}) {
      const keys = generateKeyPair();
      const reg = await o.registerTerminal(token, keys, { name: 'living room', region: 'eu', network: 'fiber', ...extra });
      assert.equal(reg.status, 201, JSON.stringify(reg.body));
      const terminalId: string = reg.body.terminal.id;
      const ch = await o.call('POST', '/terminals/challenge', { json: { terminalId } });
      assert.equal(ch.status, 200);
      const login = await o.call('POST', '/terminals/login', {
        json: { credential: reg.body.credential, nonce: ch.body.nonce, signature: signBytes(keys.privateKey, loginMessage(terminalId, ch.body.nonce)) },
      });
      assert.equal(login.status, 200, JSON.stringify(login.body));
      assert.equal(login.body.terminalId, terminalId);
      return { terminalId, keys, credential: reg.body.credential as string, session: login.body.token as string };
    }

    async function publish(): Promise<string> {
      const pub = await o.userWithRoles(['publisher']);
      const res = await o.content.publish({ id: pub.userId, username: pub.username }, { title: 'Film', genre: 'drama', price: 100 }, Readable.from([randomBytes(5000)]));
      return res.id;
    }

    const expectError = (res: { status: number; body: any }, status: number, code: string) => {
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.equal(res.body?.error?.code, code, JSON.stringify(res.body));
      assert.equal(typeof res.body.error.message, 'string');
    };

    before(async () => {
      // One holder has a made-up address; the spot check of claims is tested in test/agent/peers.test.ts.
      o = await startTestOrigin({ engine, config: { holdingsSpotCheck: false } });
      owner = await o.userWithRoles(['member']);
      contentId = await publish();
    });
    after(() => o.close());

    test('register → challenge → login → heartbeat → holdings → holders shows the state', async () => {
      const t = await registerAndLogin(owner.token, { serveUrl: 'http://127.0.0.1:9999' });
      const me = await o.call('GET', '/auth/me', { token: t.session });
      assert.equal(me.body.terminalId, t.terminalId);

      const hb = await o.call('POST', '/terminals/heartbeat', { token: t.session, json: beat({ cpu: 0.42 }) });
      assert.equal(hb.status, 204, JSON.stringify(hb.body));
      const hold = await o.call('PUT', '/terminals/holdings', { token: t.session, json: { contentIds: [contentId] } });
      assert.equal(hold.status, 200, JSON.stringify(hold.body));
      assert.deepEqual(hold.body, { holdings: 1 });

      const list = await o.call('GET', `/contents/${contentId}/holders`, { token: owner.token });
      assert.equal(list.status, 200);
      const h = list.body.holders.find((x: any) => x.terminalId === t.terminalId);
      assert.ok(h, 'the terminal is listed');
      assert.deepEqual(
        { name: h.name, region: h.region, network: h.network, serveUrl: h.serveUrl, online: h.online, state: h.state },
        { name: 'living room', region: 'eu', network: 'fiber', serveUrl: 'http://127.0.0.1:9999', online: true, state: { ...beat({ cpu: 0.42 }), at: o.clock.now() } },
      );

      // Flushed to the table, and offline once the clock passes the limit.
      assert.ok((await o.terminals.flush()) >= 1);
      o.clock.advance(o.terminals.offlineAfterMs + 1);
      const later = await o.call('GET', `/contents/${contentId}/holders`, { token: owner.token });
      const h2 = later.body.holders.find((x: any) => x.terminalId === t.terminalId);
      assert.equal(h2.online, false);
      assert.equal(h2.state.cpu, 0.42);
    });

    test('GET /terminals/:id: the owner and operators see it, others get 403 forbidden', async () => {
      const t = await registerAndLogin(owner.token);
      const mine = await o.call('GET', `/terminals/${t.terminalId}`, { token: owner.token });
      assert.equal(mine.status, 200);
      assert.equal(mine.body.publicKey, t.keys.publicKeyB64);
      assert.equal((await o.call('GET', `/terminals/${t.terminalId}`, { token: t.session })).status, 200, 'the terminal itself');
      const sibling = await registerAndLogin(owner.token);
      expectError(await o.call('GET', `/terminals/${t.terminalId}`, { token: sibling.session }), 403, 'forbidden'); // issue 10 #9: not its owner's other terminals
      const op = await o.userWithRoles(['operator']);
      assert.equal((await o.call('GET', `/terminals/${t.terminalId}`, { token: op.token })).status, 200);
      const stranger = await o.userWithRoles(['member']);
      expectError(await o.call('GET', `/terminals/${t.terminalId}`, { token: stranger.token }), 403, 'forbidden');
      expectError(await o.call('GET', '/terminals/trm_nope', { token: owner.token }), 404, 'unknown_terminal');
      expectError(await o.call('GET', `/terminals/${t.terminalId}`), 401, 'unauthenticated');
    });

    test('registration refusals: invalid key, duplicate key, no sign-in, malformed JSON', async () => {
      const count = async () => Number((await o.db.db.selectFrom('terminals').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
      const before = await count();
      expectError(await o.registerTerminal(owner.token, generateKeyPair(), { publicKey: 'abc', name: 'x' }), 400, 'invalid_public_key');
      const keys = generateKeyPair();
      assert.equal((await o.registerTerminal(owner.token, keys, { name: 'x' })).status, 201);
      expectError(await o.registerTerminal(owner.token, keys, { name: 'y' }), 409, 'terminal_exists');
      expectError(await o.call('POST', '/terminals', { json: { publicKey: generateKeyPair().publicKeyB64, name: 'x', nonce: 'n', signature: 's' } }), 401, 'unauthenticated');
      expectError(await o.call('POST', '/terminals/registration-challenge', { json: {} }), 401, 'unauthenticated');
      expectError(
        await o.call('POST', '/terminals', { token: owner.token, body: '{"publicKey": ', headers: { 'content-type': 'application/json' } }),
        400,
        'malformed_json',
      );
      expectError(await o.call('POST', '/terminals', { token: owner.token, json: { name: 'x' } }), 400, 'invalid_request');
      assert.equal(await count(), before + 1);
    });

    test('registration proves possession of the key (issue 10 #9): no proof, a nonce of another account, a replayed or expired nonce, a wrong signature — nothing stored', async () => {
      const count = async () => Number((await o.db.db.selectFrom('terminals').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
      const before = await count();
      const victim = generateKeyPair(); // someone else's device key: its public half is no secret
      const challenge = async (token = owner.token) => (await o.call('POST', '/terminals/registration-challenge', { token, json: {} })).body.nonce as string;
      const register = (nonce: string, signature: string, token = owner.token) =>
        o.call('POST', '/terminals', { token, json: { publicKey: victim.publicKeyB64, name: 'squatter', nonce, signature } });
      const attacker = generateKeyPair();

      // The old way, a public key alone, is refused by the schema.
      expectError(await o.call('POST', '/terminals', { token: owner.token, json: { publicKey: victim.publicKeyB64, name: 'x' } }), 400, 'invalid_request');
      // A signature by another key than the one registered.
      let nonce = await challenge();
      expectError(await register(nonce, signBytes(attacker.privateKey, registerMessage(victim.publicKeyB64, nonce))), 400, 'bad_signature');
      // A signature over something else (a login statement), then garbage.
      nonce = await challenge();
      expectError(await register(nonce, signBytes(victim.privateKey, loginMessage('trm_x', nonce))), 400, 'bad_signature');
      nonce = await challenge();
      expectError(await register(nonce, 'not-a-signature'), 400, 'bad_signature');
      // A nonce never issued, one issued to another account, one already used, one expired.
      expectError(await register('never-issued', signBytes(victim.privateKey, registerMessage(victim.publicKeyB64, 'never-issued'))), 400, 'invalid_challenge');
      const other = await o.userWithRoles(['member']);
      nonce = await challenge(other.token);
      expectError(await register(nonce, signBytes(victim.privateKey, registerMessage(victim.publicKeyB64, nonce))), 400, 'invalid_challenge');
      nonce = await challenge();
      expectError(await register(nonce, 'not-a-signature'), 400, 'bad_signature');
      expectError(await register(nonce, signBytes(victim.privateKey, registerMessage(victim.publicKeyB64, nonce))), 400, 'invalid_challenge'); // burnt by the failure
      nonce = await challenge();
      o.clock.advance(CHALLENGE_TTL_MS);
      expectError(await register(nonce, signBytes(victim.privateKey, registerMessage(victim.publicKeyB64, nonce))), 400, 'invalid_challenge');
      assert.equal(await count(), before, 'no terminal stored');

      // The holder of the key registers it, once: the same signed nonce again is a replay.
      nonce = await challenge();
      const signature = signBytes(victim.privateKey, registerMessage(victim.publicKeyB64, nonce));
      assert.equal((await register(nonce, signature)).status, 201);
      expectError(await register(nonce, signature), 400, 'invalid_challenge');
      assert.equal(await count(), before + 1);
    });

    test('login refusals over HTTP: forged credential, replayed nonce, expired nonce, wrong signature', async () => {
      const t = await registerAndLogin(owner.token);
      const challenge = async () => (await o.call('POST', '/terminals/challenge', { json: { terminalId: t.terminalId } })).body.nonce as string;
      const sign = (k: KeyPair, nonce: string) => signBytes(k.privateKey, loginMessage(t.terminalId, nonce));
      const login = (credential: string, nonce: string, signature: string) => o.call('POST', '/terminals/login', { json: { credential, nonce, signature } });

      const [body] = t.credential.split('.');
      const forged = `${body}.${signBytes(generateKeyPair().privateKey, body!)}`;
      let n = await challenge();
      expectError(await login(forged, n, sign(t.keys, n)), 401, 'invalid_credential');

      n = await challenge();
      assert.equal((await login(t.credential, n, sign(t.keys, n))).status, 200);
      expectError(await login(t.credential, n, sign(t.keys, n)), 401, 'invalid_challenge');

      n = await challenge();
      o.clock.advance(60_001);
      expectError(await login(t.credential, n, sign(t.keys, n)), 401, 'invalid_challenge');

      n = await challenge();
      expectError(await login(t.credential, n, sign(generateKeyPair(), n)), 401, 'bad_signature');
      expectError(await login(t.credential, n, sign(t.keys, n)), 401, 'invalid_challenge');

      expectError(await o.call('POST', '/terminals/challenge', { json: { terminalId: 'trm_nope' } }), 404, 'unknown_terminal');
      expectError(await o.call('POST', '/terminals/login', { body: 'nope{', headers: { 'content-type': 'application/json' } }), 400, 'malformed_json');
    });

    test('heartbeat refusals: a user token is 403 terminal_required; absurd or malformed beats are 400 and not recorded', async () => {
      const t = await registerAndLogin(owner.token);
      expectError(await o.call('POST', '/terminals/heartbeat', { token: owner.token, json: beat() }), 403, 'terminal_required');
      expectError(await o.call('POST', '/terminals/heartbeat', { json: beat() }), 401, 'unauthenticated');
      const bad = [beat({ cpu: -0.1 }), beat({ uptimeRatio: 3 }), beat({ upBps: 1e13 }), beat({ upBps: 100, sendLoadBps: 200 }), beat({ cpu: 'busy' }), beat({ cpu: undefined }), { ...beat(), extra: 1 }, beat({ slots: 2, slotsBusy: 3 }), beat({ slots: 2 })];
      for (const json of bad) expectError(await o.call('POST', '/terminals/heartbeat', { token: t.session, json }), 400, 'invalid_heartbeat');
      expectError(
        await o.call('POST', '/terminals/heartbeat', { token: t.session, body: '{"cpu":', headers: { 'content-type': 'application/json' } }),
        400,
        'malformed_json',
      );
      await o.terminals.flush();
      const row = await o.db.db.selectFrom('terminals').select('last_state').where('id', '=', t.terminalId).executeTakeFirstOrThrow();
      assert.equal(row.last_state, null);
    });

    test('holdings refusals: user token, unknown content, malformed ID, bad mode; nothing recorded', async () => {
      const t = await registerAndLogin(owner.token);
      const held = async () => (await o.db.db.selectFrom('holdings').select('content_id').where('terminal_id', '=', t.terminalId).execute()).length;
      expectError(await o.call('PUT', '/terminals/holdings', { token: owner.token, json: { contentIds: [contentId] } }), 403, 'terminal_required');
      expectError(await o.call('PUT', '/terminals/holdings', { token: t.session, json: { contentIds: [contentId, randomBytes(32).toString('hex')] } }), 404, 'unknown_content');
      expectError(await o.call('PUT', '/terminals/holdings', { token: t.session, json: { contentIds: ['xyz'] } }), 400, 'invalid_content_id');
      expectError(await o.call('PUT', '/terminals/holdings', { token: t.session, json: { contentIds: [contentId], mode: 'merge' } }), 400, 'invalid_request');
      assert.equal(await held(), 0);
      assert.deepEqual((await o.call('PUT', '/terminals/holdings', { token: t.session, json: { contentIds: [contentId], mode: 'add' } })).body, { holdings: 1 });
    });

    test('holders refusals: unknown content 404, malformed ID 400, no sign-in 401', async () => {
      expectError(await o.call('GET', `/contents/${randomBytes(32).toString('hex')}/holders`, { token: owner.token }), 404, 'unknown_content');
      expectError(await o.call('GET', '/contents/nope/holders', { token: owner.token }), 400, 'invalid_content_id');
      expectError(await o.call('GET', `/contents/${contentId}/holders`), 401, 'unauthenticated');
    });

    test('metrics and OpenAPI docs include the terminal routes', async () => {
      const metrics = await o.call('GET', '/metrics');
      assert.match(metrics.body, /cascade_terminal_heartbeats_total\{outcome="accepted"\} [1-9]/);
      assert.match(metrics.body, /cascade_terminal_heartbeat_flush_rows_bucket/);
      const docs = await o.call('GET', '/docs');
      for (const p of ['/terminals', '/terminals/challenge', '/terminals/login', '/terminals/heartbeat', '/terminals/holdings', '/terminals/{id}', '/contents/{id}/holders']) {
        assert.ok(docs.body.paths[p], `documented: ${p}`);
      }
    });
  });
}
