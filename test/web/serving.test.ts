import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { WEB_APP_DIR } from '../../src/web/routes.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #13.1: the origin serves the built app at / beside the API: the page is never cached (a
// new build shows at the next load), its content-hashed assets are cached for a year, and
// only file names under /assets/ are served.
let origin: TestOrigin;
before(async () => {
  origin = await startTestOrigin();
});
after(() => origin?.close());

test('GET / is the app, not cached, under a Content-Security-Policy of its own origin only', async () => {
  const res = await fetch(`${origin.url}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^text\/html/);
  assert.equal(res.headers.get('cache-control'), 'no-cache');
  assert.match(res.headers.get('content-security-policy')!, /default-src 'self'; .*script-src 'self'/);
  const html = await res.text();
  const script = /src="\/assets\/([^"]+\.js)"/.exec(html);
  assert.ok(script, html);
});

test('GET /assets/<hashed name> is cached for a year, immutable; other names are refused', async () => {
  const js = readdirSync(path.join(WEB_APP_DIR, 'assets')).find((f) => f.endsWith('.js'))!;
  const res = await fetch(`${origin.url}/assets/${js}`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type')!, /javascript/);
  assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable');
  await res.arrayBuffer();

  const missing = await origin.call('GET', '/assets/index-nothere.js');
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error.code, 'route_not_found');
  // Not a file name: refused by the route's pattern before any file is looked at.
  for (const name of ['..%2Fpackage.json', '.env', '%2Fetc%2Fpasswd']) {
    const res = await origin.call('GET', `/assets/${name}`);
    assert.equal(res.status, 400, `${name}: ${res.status}`);
    assert.equal(res.body.error.code, 'invalid_request', name);
  }
  // The API keeps its paths: /contents is still JSON.
  const api = await origin.call('GET', '/contents');
  assert.equal(api.status, 200);
  assert.ok(Array.isArray(api.body.items));
});
