import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// "Observable": health, Prometheus metrics and OpenAPI docs of every route.
let origin: TestOrigin;
before(async () => {
  origin = await startTestOrigin();
});
after(() => origin.close());

test('GET /health reports the engine and the origin key', async () => {
  const res = await origin.call('GET', '/health');
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { status: 'ok', engine: 'pglite', originKey: origin.keys.publicKeyB64 });
});

test('GET /metrics is Prometheus text with request and piece counters', async () => {
  await origin.call('GET', '/health');
  const res = await origin.call('GET', '/metrics');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^text\/plain/);
  assert.match(res.body, /cascade_http_requests_total\{method="GET",route="\/health",status="200"\} \d+/);
  assert.match(res.body, /# TYPE cascade_pieces_served_total counter/);
  assert.match(res.body, /# TYPE cascade_terminal_heartbeats_total counter/);
  assert.match(res.body, /process_cpu_seconds_total/);
});

test('GET /docs is an OpenAPI document naming every route and who may call it', async () => {
  const res = await origin.call('GET', '/docs');
  assert.equal(res.status, 200);
  assert.match(res.body.openapi, /^3\./);
  for (const r of origin.app.accessTable) {
    const p = r.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const op = res.body.paths[p]?.[r.method.toLowerCase()];
    assert.ok(op, `${r.method} ${r.url} is documented`);
    assert.match(op.description, /Access: /, `${r.method} ${r.url} says who may call it`);
  }
});

test('an unknown route gets the error shape', async () => {
  const res = await origin.call('GET', '/nope');
  assert.equal(res.status, 404);
  assert.equal(res.body.error.code, 'route_not_found');
});

test('the web front page is served', async () => {
  const res = await origin.call('GET', '/');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type')!, /text\/html/);
  assert.match(res.body, /<title>Cascade<\/title>/);
});
