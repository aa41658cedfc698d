import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeProfile } from '../../src/cli/profile.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { runCli } from '../helpers/processes.ts';

// S3.8: a member's e-mail address and web page. Each member sets or clears their own
// (PUT /me/contact, `cascade user contact`); /auth/me shows them; other domains read them
// through AccountService.contact. A bad value is refused with its code and changes nothing.

for (const engine of testEngines()) {
  describe(`members' contact details on ${engine.name}`, () => {
    let origin: TestOrigin;
    before(async () => {
      origin = await startTestOrigin({ engine });
    });
    after(() => origin?.close());

    test('a member sets, changes and clears their e-mail address and web page', async () => {
      const dana = await origin.userWithRoles(['member']);
      const me = await origin.call('GET', '/auth/me', { token: dana.token });
      assert.equal(me.body.email, null);
      assert.equal(me.body.webPage, null);
      assert.deepEqual(await origin.accounts.contact(dana.userId), { username: dana.username, email: null, webPage: null });

      const set = await origin.call('PUT', '/me/contact', { token: dana.token, json: { email: ' Dana.K+live@Example.ORG ', webPage: 'https://dana.example.org/about' } });
      assert.equal(set.status, 200, JSON.stringify(set.body));
      assert.equal(set.body.email, 'Dana.K+live@example.org', 'trimmed, the domain lower-cased');
      assert.equal(set.body.webPage, 'https://dana.example.org/about');
      assert.equal(set.body.id, dana.userId);
      const after = await origin.call('GET', '/auth/me', { token: dana.token });
      assert.deepEqual([after.body.email, after.body.webPage], ['Dana.K+live@example.org', 'https://dana.example.org/about']);

      // A field left out stays; null clears.
      const cleared = await origin.call('PUT', '/me/contact', { token: dana.token, json: { webPage: null } });
      assert.deepEqual([cleared.body.email, cleared.body.webPage], ['Dana.K+live@example.org', null]);
      assert.deepEqual(await origin.accounts.contact(dana.userId), { username: dana.username, email: 'Dana.K+live@example.org', webPage: null });
      const same = await origin.call('PUT', '/me/contact', { token: dana.token, json: {} });
      assert.equal(same.status, 200);
      assert.equal(same.body.email, 'Dana.K+live@example.org');

      // Another member's details are theirs alone.
      const eli = await origin.userWithRoles(['member']);
      assert.equal((await origin.call('GET', '/auth/me', { token: eli.token })).body.email, null);
      await assert.rejects(origin.accounts.contact('usr_nobody'), (err: { code?: string }) => err.code === 'unknown_user');
    });

    test('a bad e-mail address or web page is refused with its code and changes nothing', async () => {
      const dana = await origin.userWithRoles(['member']);
      await origin.call('PUT', '/me/contact', { token: dana.token, json: { email: 'dana@example.org', webPage: 'http://dana.example.org' } });
      const before = await snapshotTables(origin.db.db);
      const refusals: [Record<string, unknown>, number, string][] = [
        [{ email: 'no-at-sign' }, 400, 'invalid_email'],
        [{ email: 'dana@localhost' }, 400, 'invalid_email'],
        [{ email: 'da na@example.org' }, 400, 'invalid_email'],
        [{ email: 'dana@exa_mple.org' }, 400, 'invalid_email'],
        [{ email: `${'d'.repeat(64)}@${'e'.repeat(63)}.${'x'.repeat(63)}.${'y'.repeat(63)}.org` }, 400, 'invalid_email'], // 261 characters
        [{ email: '' }, 400, 'invalid_email'],
        [{ email: 'dana@example.org', webPage: 'ftp://dana.example.org' }, 400, 'invalid_web_page'],
        [{ webPage: 'javascript:alert(1)' }, 400, 'invalid_web_page'],
        [{ webPage: 'dana.example.org' }, 400, 'invalid_web_page'],
        [{ webPage: 'https://user:secret@dana.example.org/' }, 400, 'invalid_web_page'],
        [{ webPage: `https://dana.example.org/${'a'.repeat(300)}` }, 400, 'invalid_web_page'],
        [{ email: 'dana\n@example.org' }, 400, 'invalid_text'],
        [{ phone: '123' }, 400, 'invalid_request'],
        [{ email: 42 }, 400, 'invalid_request'],
      ];
      for (const [json, status, code] of refusals) {
        const res = await origin.call('PUT', '/me/contact', { token: dana.token, json });
        assert.deepEqual([res.status, res.body?.error?.code], [status, code], JSON.stringify(json).slice(0, 80));
      }
      assert.deepEqual(await snapshotTables(origin.db.db), before, 'nothing changed');
      assert.equal((await origin.call('PUT', '/me/contact', { json: { email: 'x@example.org' } })).status, 401);
    });
  });
}

describe('cascade user contact', () => {
  let origin: TestOrigin;
  let home: string;
  before(async () => {
    origin = await startTestOrigin();
    home = mkdtempSync(path.join(os.tmpdir(), 'cascade-contact-'));
  });
  after(async () => {
    await origin?.close();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  test('shows, sets and clears your contact details; a bad address is refused with its code', async () => {
    const dana = await origin.userWithRoles(['member']);
    const previous = process.env.CASCADE_HOME;
    process.env.CASCADE_HOME = home;
    try {
      writeProfile({ origin: origin.url, token: dana.token, username: dana.username, originKey: origin.keys.publicKeyB64 });
    } finally {
      if (previous === undefined) delete process.env.CASCADE_HOME;
      else process.env.CASCADE_HOME = previous;
    }
    const set = await runCli(['--json', 'user', 'contact', '--email', 'dana@example.org', '--web-page', 'https://dana.example.org'], { home });
    assert.equal(set.code, 0, set.stderr);
    assert.deepEqual(JSON.parse(set.stdout), { username: dana.username, email: 'dana@example.org', webPage: 'https://dana.example.org' });

    const [bad, cleared] = [
      await runCli(['--json', 'user', 'contact', '--email', 'not-an-address'], { home }),
      await runCli(['user', 'contact', '--clear-web-page'], { home }),
    ];
    assert.equal(bad.code, 1);
    assert.equal(JSON.parse(bad.stdout).error.code, 'invalid_email');
    assert.equal(cleared.code, 0, cleared.stderr);
    assert.match(cleared.stdout, /e-mail\s+dana@example\.org/);
    assert.match(cleared.stdout, /web page\s+\(none\)/);
    const shown = await runCli(['--json', 'user', 'contact'], { home });
    assert.deepEqual(JSON.parse(shown.stdout), { username: dana.username, email: 'dana@example.org', webPage: null });
  });
});
