import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ROLES } from '../../src/accounts/tables.ts';
import { generateKeyPair, signBytes } from '../../src/core/crypto.ts';
import { loginMessage } from '../../src/terminals/challenges.ts';
import { snapshotTables } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// "Every route declares who may call it": walk the whole route table, call each
// route without a token and with a token of the wrong kind, and expect a refusal
// with the documented error shape. A new route is covered the day it is added.

describe('access rules on every route', () => {
  let origin: TestOrigin;
  before(async () => {
    origin = await startTestOrigin();
  });
  after(() => origin.close());

  const fill = (url: string) => url.replace(/:contentId|:id/g, 'a'.repeat(64)).replace(/:index/g, '0').replace(/:[a-zA-Z]+/g, 'x');

  test('the table is complete and rules are sane', () => {
    const table = origin.app.accessTable;
    assert.ok(table.length >= 20, `only ${table.length} routes`);
    const publicRoutes = table.filter((r) => r.access === 'public').map((r) => `${r.method} ${r.url}`);
    // Public routes are a short, reviewed list; anything new here needs a reason.
    // assets/:file: the web app's scripts and styles (#13), the same for everyone; a content's
    // thumbnail and comments are catalog data like the content itself (S1.1, S1.4). The origin's
    // clock (S3.10), the channels and the viewers' guide (S3.11) are for everyone; a calendar
    // feed's address is its own secret. A program's audience figures and signed segment log are
    // public like its page; its playlist and segments check a viewer session (?s=) themselves,
    // and leaving needs only that session (#15). A channel's filler (its shop window between
    // programs) and what it carries now are public like the channel (S3.14).
    for (const r of publicRoutes) {
      assert.match(r, /^(GET \/(|health|metrics|docs|origin|time|contents|contents\/:id|contents\/:id\/manifest|contents\/:id\/thumbnail|contents\/:id\/comments|assets\/:file|live\/channels|live\/channels\/:id|live\/channels\/:id\/(filler|filler.m3u8|filler\/:version\/:name|now)|live\/today|live\/guide|live\/programs\/:id|live\/programs\/:id\/(audience|manifest|index.m3u8|segments\/:name)|live\/feeds\/:file)|POST \/(auth\/login|users\/signup|terminals\/challenge|terminals\/login|live\/programs\/:id\/leave))$/, r);
    }
  });

  test('without a token every protected route refuses with 401', async () => {
    for (const r of origin.app.accessTable.filter((r) => r.access !== 'public')) {
      const res = await origin.call(r.method, fill(r.url), r.method === 'GET' ? {} : { json: {} });
      assert.equal(res.status, 401, `${r.method} ${r.url}`);
      assert.equal(res.body.error.code, r.access === 'grant' ? 'grant_missing' : 'unauthenticated', `${r.method} ${r.url}`);
      assert.equal(typeof res.body.error.message, 'string');
    }
  });

  test('a token of the wrong kind or role is refused with 403', async () => {
    const bogus = await origin.call('GET', '/auth/me', { token: 'cst_not-a-real-token' });
    assert.equal(bogus.status, 401);
    assert.equal(bogus.body.error.code, 'invalid_token');

    let checked = 0;
    for (const r of origin.app.accessTable) {
      if (r.access === 'public' || r.access === 'user' || r.access === 'user-or-terminal' || r.access === 'grant') continue;
      // A plain account token where a terminal session is needed; every other role where roles are listed.
      const wrongRoles = r.access === 'terminal' ? ['member', 'publisher', 'operator'] : ROLES.filter((x) => !(r.access as string[]).includes(x));
      if (wrongRoles.length === 0) continue;
      const user = await origin.userWithRoles(wrongRoles);
      const res = await origin.call(r.method, fill(r.url), { token: user.token, ...(r.method === 'GET' ? {} : { json: {} }) });
      assert.equal(res.status, 403, `${r.method} ${r.url}`);
      assert.equal(res.body.error.code, r.access === 'terminal' ? 'terminal_required' : 'forbidden', `${r.method} ${r.url}`);
      checked++;
    }
    assert.ok(checked >= 5, `only ${checked} routes have a wrong role to try`);
  });

  /** The codes with which the access rules refuse (anything else is the route's own answer). */
  const ACCESS_CODES = ['unauthenticated', 'invalid_token', 'forbidden', 'terminal_required', 'account_session_required', 'grant_missing'];

  /** Status and error code of a call, without waiting for a body that never ends (the order stream). */
  async function probe(method: string, url: string, token: string, json?: unknown): Promise<{ status: number; code?: string }> {
    const res = await fetch(origin.url + url, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(json === undefined ? {} : { 'content-type': 'application/json' }) },
      body: json === undefined ? undefined : JSON.stringify(json),
    });
    if (!res.headers.get('content-type')?.includes('application/json')) {
      await res.body?.cancel();
      return { status: res.status };
    }
    const body: any = await res.json().catch(() => null);
    return { status: res.status, code: body?.error?.code };
  }

  test('a terminal session token reaches only the terminal routes and a reviewed few account routes; the rest answer 403 and change nothing (issue 10 #9)', async () => {
    // Its owner holds every role: only the kind of token can be what refuses.
    const owner = await origin.userWithRoles([...ROLES]);
    const keys = generateKeyPair();
    const reg = await origin.registerTerminal(owner.token, keys, { name: 'walker' });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    const terminalId: string = reg.body.terminal.id;
    const { nonce } = (await origin.call('POST', '/terminals/challenge', { json: { terminalId } })).body;
    const login = await origin.call('POST', '/terminals/login', { json: { credential: reg.body.credential, nonce, signature: signBytes(keys.privateKey, loginMessage(terminalId, nonce)) } });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    const token: string = login.body.token;
    const victim = await origin.userWithRoles(['member']);

    const table = origin.app.accessTable;
    const shared = table.filter((r) => r.access === 'user-or-terminal').map((r) => `${r.method} ${r.url}`);
    // Account routes a terminal may reach are a short, reviewed list; anything new here needs a reason.
    assert.deepEqual(shared.sort(), ['GET /auth/me', 'GET /terminals/:id', 'POST /auth/logout']);

    // Bodies that would change something were the token accepted.
    const bodies: Record<string, unknown> = {
      'POST /auth/tokens': { label: 'minted by a terminal', expiresInDays: 3650 },
      'POST /users': { username: 'minted-by-terminal', password: 'correct horse battery', roles: ['operator'] },
      'PUT /users/:id/roles': { roles: ['operator'] },
      'POST /terminals': { publicKey: generateKeyPair().publicKeyB64, name: 'second', nonce: 'x', signature: 'x' },
    };
    const urlOf = (r: { method: string; url: string }) => (r.url === '/users/:id/roles' || r.url === '/users/:id' ? r.url.replace(':id', victim.userId) : fill(r.url));

    const before = await snapshotTables(origin.db.db);
    let refused = 0;
    for (const r of table) {
      if (r.access === 'public' || r.access === 'terminal' || r.access === 'user-or-terminal') continue;
      const key = `${r.method} ${r.url}`;
      const res = await probe(r.method, urlOf(r), token, r.method === 'GET' ? undefined : (bodies[key] ?? {}));
      if (r.access === 'grant') {
        assert.deepEqual(res, { status: 401, code: 'grant_missing' }, key);
      } else {
        assert.deepEqual(res, { status: 403, code: 'account_session_required' }, key);
        refused++;
      }
    }
    assert.ok(refused >= 10, `only ${refused} account routes refused`);
    assert.deepEqual(await snapshotTables(origin.db.db), before, 'no row anywhere changed');
    assert.deepEqual((await origin.accounts.getUser(victim.userId)).roles, ['member']);

    // What a terminal needs, it reaches: whatever the route answers, it is not an access refusal.
    for (const r of table.filter((r) => r.access === 'terminal' || r.access === 'user-or-terminal')) {
      if (r.url === '/auth/logout') continue; // last: it ends the session
      const res = await probe(r.method, r.url === '/terminals/:id' ? `/terminals/${terminalId}` : fill(r.url), token, r.method === 'GET' ? undefined : {});
      assert.ok(!ACCESS_CODES.includes(res.code ?? ''), `${r.method} ${r.url}: ${res.status} ${res.code}`);
    }
    assert.equal((await probe('GET', '/auth/me', token)).status, 200);
    assert.equal((await probe('POST', '/auth/logout', token, {})).status, 204, 'a terminal may end its own session');
    assert.deepEqual(await probe('GET', '/auth/me', token), { status: 401, code: 'invalid_token' });
  });

  test('a grant route does not accept an account token instead of a grant', async () => {
    const user = await origin.userWithRoles(['operator']);
    for (const r of origin.app.accessTable.filter((r) => r.access === 'grant')) {
      const res = await origin.call(r.method, fill(r.url), { token: user.token });
      assert.equal(res.status, 401);
      assert.equal(res.body.error.code, 'grant_missing');
    }
  });
});
