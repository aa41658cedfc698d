import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair, signBytes } from '../../src/core/crypto.ts';
import { AppError } from '../../src/core/errors.ts';
import { decodeToken, encodeToken } from '../../src/core/signed-token.ts';
import { CHALLENGE_TTL_MS } from '../../src/terminals/challenges.ts';
import { loginMessage, SESSION_TTL_MS, type DeviceCredential } from '../../src/terminals/service.ts';
import { testEngines } from '../helpers/db.ts';
import { openFixture, type Fixture } from './fixture.ts';

// S1.2: registration with the device's own key, device credentials, challenge login.

async function refused(p: Promise<unknown>, status: number, code: string) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof AppError, `expected an AppError, got ${err}`);
    assert.equal(err.code, code);
    assert.equal(err.status, status);
    return true;
  });
}

for (const engine of testEngines()) {
  describe(`terminal registration and login (${engine.name})`, () => {
    let f: Fixture;
    before(async () => {
      f = await openFixture(engine);
    });
    after(() => f.close());

    test('register stores the terminal and returns an origin-signed device credential', async () => {
      const dev = generateKeyPair();
      const { terminal, credential } = await f.svc.register(f.userId, { publicKey: dev.publicKeyB64, name: ' kitchen ', region: 'eu-west', network: 'AS3320', serveUrl: 'http://10.0.0.5:7000/', ...(await f.proof(dev)) });
      assert.match(terminal.id, /^trm_/);
      assert.deepEqual(
        { userId: terminal.userId, name: terminal.name, publicKey: terminal.publicKey, region: terminal.region, network: terminal.network, serveUrl: terminal.serveUrl },
        { userId: f.userId, name: 'kitchen', publicKey: dev.publicKeyB64, region: 'eu-west', network: 'AS3320', serveUrl: 'http://10.0.0.5:7000' },
      );
      const decoded = decodeToken<DeviceCredential>(credential, f.keys.publicKey, 'device');
      assert.ok(decoded.ok);
      assert.deepEqual(decoded.payload, { typ: 'device', terminalId: terminal.id, userId: f.userId, publicKey: dev.publicKeyB64, issuedAt: f.clock.now() });
      assert.deepEqual(await f.svc.get(terminal.id), terminal);
    });

    test('get: unknown terminal is 404 unknown_terminal', async () => {
      await refused(f.svc.get('trm_nope'), 404, 'unknown_terminal');
    });

    test('an invalid public key is refused with 400 invalid_public_key and nothing stored', async () => {
      const before = await f.count('terminals');
      const x25519Like = Buffer.alloc(33, 7).toString('base64url'); // 33 bytes: not a raw Ed25519 key
      for (const publicKey of ['', 'abc', x25519Like, generateKeyPair().publicKeyB64 + '=', 'not base64url!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!']) {
        await refused(f.svc.register(f.userId, { publicKey, name: 'x', ...(await f.proof(generateKeyPair(), publicKey)) }), 400, 'invalid_public_key');
      }
      assert.equal(await f.count('terminals'), before);
    });

    test('a key that is already registered is refused with 409 terminal_exists', async () => {
      const dev = generateKeyPair();
      await f.svc.register(f.userId, { publicKey: dev.publicKeyB64, name: 'first', ...(await f.proof(dev)) });
      const before = await f.count('terminals');
      await refused(f.svc.register(f.userId, { publicKey: dev.publicKeyB64, name: 'second', ...(await f.proof(dev)) }), 409, 'terminal_exists');
      assert.equal(await f.count('terminals'), before);
    });

    test('bad name or serve URL is refused and nothing stored', async () => {
      const before = await f.count('terminals');
      const dev = generateKeyPair();
      await refused(f.svc.register(f.userId, { publicKey: dev.publicKeyB64, name: '  ', ...(await f.proof(dev)) }), 400, 'invalid_name');
      await refused(f.svc.register(f.userId, { publicKey: dev.publicKeyB64, name: 'x', serveUrl: 'ftp://a', ...(await f.proof(dev)) }), 400, 'invalid_serve_url');
      assert.equal(await f.count('terminals'), before);
    });

    test('challenge → sign → login issues a 24 h terminal session token', async () => {
      const t = await f.newTerminal();
      const p = await f.accounts.resolveToken(t.token);
      assert.equal(p?.userId, f.userId);
      assert.equal(p?.terminalId, t.id);
      f.clock.advance(SESSION_TTL_MS - 1);
      assert.ok(await f.accounts.resolveToken(t.token), 'still valid just before 24 h');
      f.clock.advance(1);
      assert.equal(await f.accounts.resolveToken(t.token), null, 'expired at 24 h');
    });

    test('challenge for an unknown terminal is 404 unknown_terminal', async () => {
      await refused(f.svc.challenge('trm_nope'), 404, 'unknown_terminal');
    });

    describe('login refusals leave no token behind', () => {
      let t: Awaited<ReturnType<Fixture['newTerminal']>>;
      let tokensBefore: number;
      before(async () => {
        t = await f.newTerminal();
      });
      const sign = (nonce: string) => signBytes(t.keys.privateKey, loginMessage(t.id, nonce));
      async function attempt(credential: string, nonce: string, signature: string, status: number, code: string) {
        tokensBefore = await f.count('api_tokens');
        await refused(f.svc.login(credential, nonce, signature), status, code);
        assert.equal(await f.count('api_tokens'), tokensBefore);
      }

      test('a credential signed by another key is 401 invalid_credential', async () => {
        const forger = generateKeyPair();
        const forged = encodeToken({ typ: 'device', terminalId: t.id, userId: f.userId, publicKey: t.keys.publicKeyB64, issuedAt: 0 }, forger.privateKey);
        const { nonce } = await f.svc.challenge(t.id);
        await attempt(forged, nonce, sign(nonce), 401, 'invalid_credential');
      });

      test('a tampered credential, garbage, or another token type is 401 invalid_credential', async () => {
        const [body, sig] = t.credential.split('.');
        const payload = JSON.parse(Buffer.from(body!, 'base64url').toString());
        const tampered = Buffer.from(JSON.stringify({ ...payload, userId: 'usr_other' })).toString('base64url') + '.' + sig;
        const wrongType = encodeToken({ ...payload, typ: 'grant' }, f.keys.privateKey);
        for (const cred of [tampered, 'garbage', '', wrongType]) {
          const { nonce } = await f.svc.challenge(t.id);
          await attempt(cred, nonce, sign(nonce), 401, 'invalid_credential');
        }
      });

      test('a credential naming a terminal that does not exist is 401 invalid_credential', async () => {
        const ghost = encodeToken({ typ: 'device', terminalId: 'trm_ghost', userId: f.userId, publicKey: t.keys.publicKeyB64, issuedAt: 0 }, f.keys.privateKey);
        const { nonce } = await f.svc.challenge(t.id);
        await attempt(ghost, nonce, sign(nonce), 401, 'invalid_credential');
      });

      test('a replayed nonce is 401 invalid_challenge', async () => {
        const { nonce } = await f.svc.challenge(t.id);
        await f.svc.login(t.credential, nonce, sign(nonce));
        await attempt(t.credential, nonce, sign(nonce), 401, 'invalid_challenge');
      });

      test('an unknown nonce is 401 invalid_challenge', async () => {
        await attempt(t.credential, 'never-issued', sign('never-issued'), 401, 'invalid_challenge');
      });

      test('an expired nonce is 401 invalid_challenge (60 s on the injected clock)', async () => {
        const fresh = await f.svc.challenge(t.id);
        f.clock.advance(CHALLENGE_TTL_MS - 1);
        await f.svc.login(t.credential, fresh.nonce, sign(fresh.nonce)); // still live 1 ms before expiry
        const { nonce } = await f.svc.challenge(t.id);
        f.clock.advance(CHALLENGE_TTL_MS);
        await attempt(t.credential, nonce, sign(nonce), 401, 'invalid_challenge');
      });

      test('a nonce issued to another terminal is 401 invalid_challenge', async () => {
        const other = await f.newTerminal('other');
        const { nonce } = await f.svc.challenge(other.id);
        await attempt(t.credential, nonce, sign(nonce), 401, 'invalid_challenge');
      });

      test('a wrong signature is 401 bad_signature, and the failed attempt burns the nonce', async () => {
        const { nonce } = await f.svc.challenge(t.id);
        const stranger = generateKeyPair();
        await attempt(t.credential, nonce, signBytes(stranger.privateKey, loginMessage(t.id, nonce)), 401, 'bad_signature');
        await attempt(t.credential, nonce, sign(nonce), 401, 'invalid_challenge');
      });

      test('a signature over another message is 401 bad_signature', async () => {
        const { nonce } = await f.svc.challenge(t.id);
        await attempt(t.credential, nonce, signBytes(t.keys.privateKey, nonce), 401, 'bad_signature');
        const second = await f.svc.challenge(t.id);
        await attempt(t.credential, second.nonce, 'not-a-signature', 401, 'bad_signature');
      });

      test('a failed login with a bad credential also burns the nonce', async () => {
        const { nonce } = await f.svc.challenge(t.id);
        await attempt('garbage', nonce, sign(nonce), 401, 'invalid_credential');
        await attempt(t.credential, nonce, sign(nonce), 401, 'invalid_challenge');
      });
    });
  });
}
