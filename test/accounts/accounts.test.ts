import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { hashPassword, verifyPassword } from '../../src/accounts/passwords.ts';
import { TOKEN_CACHE_MS } from '../../src/accounts/service.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

test('passwords are hashed with scrypt, salted, and verified', async () => {
  const a = await hashPassword('correct horse battery');
  const b = await hashPassword('correct horse battery');
  assert.match(a, /^scrypt\$32768\$8\$1\$/);
  assert.notEqual(a, b, 'salted');
  assert.equal(await verifyPassword('correct horse battery', a), true);
  assert.equal(await verifyPassword('correct horse batterY', a), false);
  assert.equal(await verifyPassword('x', 'md5$abc'), false);
});

for (const engine of testEngines()) {
  describe(`accounts on ${engine.name}`, () => {
    let origin: TestOrigin;
    before(async () => {
      origin = await startTestOrigin({ engine });
    });
    after(() => origin.close());

    test('first start creates an operator whose one-time credentials are in a 0600 file', async () => {
      const file = origin.operatorCredentialsFile!;
      assert.equal(path.dirname(file), origin.config.dataDir);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      const text = readFileSync(file, 'utf8');
      const password = /password=(.*)/.exec(text)![1];
      const login = await origin.call('POST', '/auth/login', { json: { username: 'operator', password } });
      assert.equal(login.status, 200);
      assert.deepEqual(login.body.user.roles, ['operator']);
      // A second bootstrap on the same database does nothing.
      assert.equal(await origin.accounts.bootstrapOperator(origin.config.dataDir), null);
    });

    test('signup, login, me, extra tokens and logout', async () => {
      const signup = await origin.call('POST', '/users/signup', { json: { username: 'alice', password: 'alice-password-1' } });
      assert.equal(signup.status, 201);
      assert.deepEqual(signup.body.roles, ['member']);
      const login = await origin.call('POST', '/auth/login', { json: { username: 'alice', password: 'alice-password-1' } });
      const token = login.body.token;
      const me = await origin.call('GET', '/auth/me', { token });
      assert.equal(me.body.username, 'alice');
      const extra = await origin.call('POST', '/auth/tokens', { token, json: { label: 'agent', expiresInDays: 1 } });
      assert.equal((await origin.call('GET', '/auth/me', { token: extra.body.token })).status, 200);
      assert.equal((await origin.call('POST', '/auth/logout', { token })).status, 204);
      const after = await origin.call('GET', '/auth/me', { token });
      assert.equal(after.status, 401);
      assert.equal(after.body.error.code, 'invalid_token');
    });

    test(`#19: tokens resolved a moment ago (kept ${TOKEN_CACHE_MS} ms) still see every change to roles, passwords and expiry at once`, async () => {
      const operator = await origin.userWithRoles(['operator']);
      const user = await origin.userWithRoles(['member']);
      const password = 'correct horse battery'; // userWithRoles's
      const other = (await origin.call('POST', '/auth/login', { json: { username: user.username, password } })).body.token;
      const users = () => origin.call('GET', '/users?limit=1', { token: user.token });
      assert.equal((await users()).status, 403); // resolved: now remembered
      assert.equal((await origin.call('PUT', `/users/${user.userId}/roles`, { token: operator.token, json: { roles: ['member', 'operator'] } })).status, 200);
      assert.equal((await users()).status, 200, 'a role given counts at once');
      assert.equal((await origin.call('PUT', `/users/${user.userId}/roles`, { token: operator.token, json: { roles: ['member'] } })).status, 200);
      assert.equal((await users()).status, 403, 'a role taken away counts at once');
      assert.equal((await origin.call('GET', '/auth/me', { token: other })).status, 200);
      const changed = await origin.call('PUT', '/auth/password', { token: user.token, json: { currentPassword: password, newPassword: 'another-password-2' } });
      assert.equal(changed.status, 204, JSON.stringify(changed.body));
      assert.equal((await origin.call('GET', '/auth/me', { token: other })).status, 401, 'the other session is signed out at once');
      assert.equal((await origin.call('GET', '/auth/me', { token: user.token })).status, 200, 'the session that changed it stays');
      const expiring = (await origin.call('POST', '/auth/tokens', { token: user.token, json: { label: 'agent', expiresInDays: 1 } })).body.token;
      assert.equal((await origin.call('GET', '/auth/me', { token: expiring })).status, 200);
      origin.clock.advance(86_400_000);
      assert.equal((await origin.call('GET', '/auth/me', { token: expiring })).status, 401, 'an expiry counts at once');
    });

    test('POST /auth/tokens: the expiry runs on the injected clock, not the wall clock (issue 10 #9)', async () => {
      // Years away from the wall clock: an expiry computed from Date.now() would be long past here.
      const far = await startTestOrigin({ engine, now: Date.UTC(2041, 6, 1, 3, 0, 0) });
      try {
        const user = await far.userWithRoles(['member']);
        const res = await far.call('POST', '/auth/tokens', { token: user.token, json: { label: 'agent', expiresInDays: 2 } });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.equal(res.body.expiresAt, new Date(Date.UTC(2041, 6, 3, 3, 0, 0)).toISOString());
        far.clock.advance(2 * 86_400_000 - 1);
        assert.equal((await far.call('GET', '/auth/me', { token: res.body.token })).status, 200, 'live until the last millisecond');
        far.clock.advance(1);
        assert.equal((await far.call('GET', '/auth/me', { token: res.body.token })).body.error.code, 'invalid_token', 'expired after 2 days of the clock');
        const forever = await far.call('POST', '/auth/tokens', { token: user.token, json: { label: 'no expiry' } });
        assert.equal(forever.body.expiresAt, null);
      } finally {
        await far.close();
      }
    });

    test('refusals: wrong password, taken name, weak password, bad role — nothing created', async () => {
      const count = async () => Number((await origin.db.db.selectFrom('users').select(origin.db.db.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
      const before = await count();
      const wrong = await origin.call('POST', '/auth/login', { json: { username: 'alice', password: 'not-her-password' } });
      assert.equal(wrong.status, 401);
      assert.equal(wrong.body.error.code, 'bad_credentials');
      const nobody = await origin.call('POST', '/auth/login', { json: { username: 'nobody', password: 'whatever-password' } });
      assert.equal(nobody.body.error.code, 'bad_credentials', 'unknown names look the same as wrong passwords');
      const cases: [unknown, number, string][] = [
        [{ username: 'alice', password: 'another-password' }, 409, 'username_taken'],
        [{ username: 'bob', password: 'short' }, 400, 'weak_password'],
        [{ username: 'B O B', password: 'long-enough-password' }, 400, 'invalid_username'],
        [{ username: 'bob' }, 400, 'invalid_request'],
      ];
      for (const [json, status, code] of cases) {
        const res = await origin.call('POST', '/users/signup', { json });
        assert.equal(res.status, status, code);
        assert.equal(res.body.error.code, code);
      }
      const op = await origin.userWithRoles(['operator']);
      const badRole = await origin.call('POST', '/users', { token: op.token, json: { username: 'carol', password: 'long-enough-password', roles: ['king'] } });
      assert.equal(badRole.status, 400);
      assert.equal(badRole.body.error.code, 'invalid_request');
      assert.equal(await count(), before + 1, 'only the operator made for this test was added');
    });

    test('an operator creates accounts with roles and changes them', async () => {
      const op = await origin.userWithRoles(['operator']);
      const res = await origin.call('POST', '/users', { token: op.token, json: { username: 'pub', password: 'publisher-password', roles: ['publisher', 'premium'] } });
      assert.equal(res.status, 201);
      assert.deepEqual(res.body.roles, ['publisher', 'premium']);
      const changed = await origin.call('PUT', `/users/${res.body.id}/roles`, { token: op.token, json: { roles: ['store'] } });
      assert.deepEqual(changed.body.roles, ['store']);
    });

    test('GET /users: operators list accounts in name order, a page at a time, or find one by name (issue 12 #2)', async () => {
      const op = await origin.userWithRoles(['operator']);
      for (const name of ['list-a', 'list-b', 'list-c']) await origin.accounts.createUser(name, 'long-enough-password', ['member']);
      const first = await origin.call('GET', '/users?limit=2&after=list-', { token: op.token });
      assert.equal(first.status, 200);
      assert.deepEqual(first.body.items.map((u: any) => u.username), ['list-a', 'list-b']);
      assert.equal(first.body.nextCursor, 'list-b');
      assert.equal(first.body.items[0].password_hash, undefined, 'no hash leaves the origin');
      const next = await origin.call('GET', `/users?limit=1&after=${first.body.nextCursor}`, { token: op.token });
      assert.deepEqual(next.body.items.map((u: any) => u.username), ['list-c']);
      const one = await origin.call('GET', '/users?username=list-b', { token: op.token });
      assert.deepEqual(one.body.items.map((u: any) => u.username), ['list-b']);
      const bad = await origin.call('GET', '/users?limit=201', { token: op.token });
      assert.equal(bad.body.error.code, 'invalid_request');
      const member = await origin.userWithRoles(['publisher', 'store']);
      const refused = await origin.call('GET', '/users', { token: member.token });
      assert.deepEqual([refused.status, refused.body.error.code], [403, 'forbidden']);
    });

    test('PUT /auth/password changes one\'s own password; refusals change nothing (issue 12 #2)', async () => {
      const made = await origin.accounts.createUser('pw-owner', 'old-long-password', ['member']);
      const { token } = await origin.accounts.login('pw-owner', 'old-long-password');
      const other = (await origin.accounts.login('pw-owner', 'old-long-password')).token; // another browser, or a thief's
      const before = await snapshotTables(origin.db.db);
      const cases: [unknown, number, string][] = [
        [{ currentPassword: 'not-the-password', newPassword: 'new-long-password' }, 401, 'bad_credentials'],
        [{ currentPassword: 'old-long-password', newPassword: 'short' }, 400, 'weak_password'],
        [{ currentPassword: 'old-long-password' }, 400, 'invalid_request'],
        [{ currentPassword: 'old-long-password', newPassword: 'new-long-password', extra: 1 }, 400, 'invalid_request'],
      ];
      for (const [json, status, code] of cases) {
        const res = await origin.call('PUT', '/auth/password', { token, json });
        assert.deepEqual([res.status, res.body.error.code], [status, code], JSON.stringify(json));
      }
      assert.deepEqual(await snapshotTables(origin.db.db), before, 'nothing changed');
      const ok = await origin.call('PUT', '/auth/password', { token, json: { currentPassword: 'old-long-password', newPassword: 'new-long-password' } });
      assert.equal(ok.status, 204);
      assert.equal((await origin.call('POST', '/auth/login', { json: { username: 'pw-owner', password: 'old-long-password' } })).status, 401);
      assert.equal((await origin.call('POST', '/auth/login', { json: { username: 'pw-owner', password: 'new-long-password' } })).status, 200);
      assert.equal((await origin.call('GET', '/auth/me', { token })).body.id, made.id, 'the session that changed it stays');
      assert.equal((await origin.call('GET', '/auth/me', { token: other })).body.error.code, 'invalid_token', 'every other session is signed out');
    });

    test('PUT /users/:id/password: an operator resets another account\'s password; refusals change nothing (issue 12 #2)', async () => {
      const op = await origin.userWithRoles(['operator']);
      const victim = await origin.accounts.createUser('pw-victim', 'victim-long-password', ['member']);
      const victimSession = (await origin.accounts.login('pw-victim', 'victim-long-password')).token;
      const stranger = await origin.userWithRoles(['publisher', 'store', 'premium', 'member']);
      const before = await snapshotTables(origin.db.db);
      const cases: [string | undefined, string, unknown, number, string][] = [
        [stranger.token, victim.id, { password: 'taken-over-password' }, 403, 'forbidden'],
        [undefined, victim.id, { password: 'taken-over-password' }, 401, 'unauthenticated'],
        [op.token, 'usr_nobody', { password: 'reset-long-password' }, 404, 'unknown_user'],
        [op.token, victim.id, { password: 'short' }, 400, 'weak_password'],
        [op.token, victim.id, {}, 400, 'invalid_request'],
      ];
      for (const [token, id, json, status, code] of cases) {
        const res = await origin.call('PUT', `/users/${id}/password`, { token, json });
        assert.deepEqual([res.status, res.body.error.code], [status, code], `${code}: ${JSON.stringify(json)}`);
      }
      assert.deepEqual(await snapshotTables(origin.db.db), before, 'nothing changed');
      const ok = await origin.call('PUT', `/users/${victim.id}/password`, { token: op.token, json: { password: 'reset-long-password' } });
      assert.equal(ok.status, 204);
      assert.equal((await origin.call('POST', '/auth/login', { json: { username: 'pw-victim', password: 'reset-long-password' } })).status, 200);
      assert.equal((await origin.call('GET', '/auth/me', { token: victimSession })).body.error.code, 'invalid_token', "the account's sessions are signed out");
    });

    test('expired tokens are refused (injected clock)', async () => {
      const user = await origin.userWithRoles(['member']);
      const token = await origin.accounts.issueToken(user.userId, null, 'short', new Date(origin.clock.now() + 1000));
      assert.equal((await origin.call('GET', '/auth/me', { token })).status, 200);
      origin.clock.advance(1001);
      const res = await origin.call('GET', '/auth/me', { token });
      assert.equal(res.status, 401);
      assert.equal(res.body.error.code, 'invalid_token');
    });
  });
}
