import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ROLES } from '../../src/accounts/tables.ts';
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
    for (const r of publicRoutes) {
      assert.match(r, /^(GET \/(|health|metrics|docs|origin|contents|contents\/:id|contents\/:id\/manifest)|POST \/(auth\/login|users\/signup|terminals\/challenge|terminals\/login))$/, r);
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
      if (r.access === 'public' || r.access === 'user' || r.access === 'grant') continue;
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

  test('a grant route does not accept an account token instead of a grant', async () => {
    const user = await origin.userWithRoles(['operator']);
    for (const r of origin.app.accessTable.filter((r) => r.access === 'grant')) {
      const res = await origin.call(r.method, fill(r.url), { token: user.token });
      assert.equal(res.status, 401);
      assert.equal(res.body.error.code, 'grant_missing');
    }
  });
});
