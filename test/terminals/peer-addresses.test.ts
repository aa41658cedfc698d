import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { generateKeyPair, signBytes } from '../../src/core/crypto.ts';
import { loginMessage } from '../../src/terminals/challenges.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { windowsAround } from '../helpers/windows.ts';

// Issue 10 #8 through the origin's HTTP API: the addresses terminals register for the
// origin to call (serveUrl at registration and PUT /terminals/address, the push address)
// are refused with 400 address_not_allowed and nothing stored; at call time (holdings
// spot check, pushed order) a name that now resolves to a forbidden address is refused
// before any byte reaches it; and the origin never repeats what a terminal answered.

/** A server on the origin's own machine, standing for anything the origin must not be made to call. */
async function countingServer(answer: (res: import('node:http').ServerResponse) => void = (res) => res.end('ok')) {
  let hits = 0;
  const server: Server = createServer((_req, res) => {
    hits++;
    answer(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    hits: () => hits,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const MIN = 60_000;

for (const engine of testEngines()) {
  describe(`peer addresses under PEER_ADDRESSES=private (${engine.name})`, () => {
    let o: TestOrigin;
    let user: { token: string; userId: string };
    let contentId: string;
    let local: Awaited<ReturnType<typeof countingServer>>;
    /** What names resolve to now, as the origin's resolver sees them. */
    const dns: Record<string, string[]> = { 'loop.test': ['127.0.0.1'], 'lan.test': ['10.0.0.9'], 'push.test': ['10.0.0.8'] };
    const W = Math.round(Date.now() / MIN) * MIN;
    const { win } = windowsAround(W);

    before(async () => {
      local = await countingServer();
      o = await startTestOrigin({
        engine,
        now: W - 2 * MIN,
        config: { peerAddresses: 'private', scheduleTickMs: 3_600_000 },
        resolveHost: async (host) => {
          if (dns[host]) return dns[host];
          throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
        },
      });
      user = await o.userWithRoles(['member', 'publisher']);
      contentId = (await o.content.publish({ id: user.userId, username: 'pub' }, { title: 'News', genre: 'news', price: 0 }, Readable.from([randomBytes(4000)]))).id;
    });
    after(async () => {
      await o.close();
      await local.close();
    });

    async function session(fields: Record<string, unknown> = {}) {
      const keys = generateKeyPair();
      const reg = await o.registerTerminal(user.token, keys, { name: 'box', ...fields });
      assert.equal(reg.status, 201, JSON.stringify(reg.body));
      const id: string = reg.body.terminal.id;
      const { nonce } = (await o.call('POST', '/terminals/challenge', { json: { terminalId: id } })).body;
      const login = await o.call('POST', '/terminals/login', { json: { credential: reg.body.credential, nonce, signature: signBytes(keys.privateKey, loginMessage(id, nonce)) } });
      return { id, token: login.body.token as string };
    }

    const expectRefused = (res: { status: number; body: any }, what: string) => {
      assert.equal(res.status, 400, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'address_not_allowed', what);
      assert.match(res.body.error.message, /is not allowed: /, what);
    };

    const forbidden = () => [
      `http://127.0.0.1:${local.port}`, // loopback: the origin's machine
      'http://[::1]:7000',
      `http://loop.test:${local.port}`, // a name that resolves to loopback
      `http://2130706433:${local.port}`, // 127.0.0.1, decimal
      `http://[::ffff:127.0.0.1]:${local.port}`, // 127.0.0.1, IPv4-mapped IPv6
      'http://169.254.10.10/', // link-local
      'http://169.254.169.254/latest/meta-data/', // cloud metadata
      'http://metadata.google.internal/',
      'http://[fd00:ec2::254]/',
      'http://0.0.0.0:7000',
      'http://224.0.0.1:7000',
      'http://255.255.255.255:7000',
      o.url, // the origin itself
    ];

    test('registration: POST /terminals with a forbidden serveUrl is refused and no terminal stored', async () => {
      const count = async () => (await o.db.db.selectFrom('terminals').select('id').execute()).length;
      const before = await count();
      for (const serveUrl of forbidden()) expectRefused(await o.registerTerminal(user.token, generateKeyPair(), { name: 'x', serveUrl }), serveUrl);
      assert.equal(await count(), before);
      assert.equal((await o.registerTerminal(user.token, generateKeyPair(), { name: 'lan', serveUrl: 'http://lan.test:7000' })).status, 201, 'a private-range address is allowed');
    });

    test('PUT /terminals/address and PUT /schedules/push-address refuse them and keep what was there', async () => {
      const t = await session({ serveUrl: 'http://10.0.0.5:7000' });
      const pushed = await o.call('PUT', '/schedules/push-address', { token: t.token, json: { url: 'http://10.0.0.5:7001/orders' } });
      assert.equal(pushed.status, 200, JSON.stringify(pushed.body));
      for (const url of forbidden()) {
        expectRefused(await o.call('PUT', '/terminals/address', { token: t.token, json: { serveUrl: url } }), `address ${url}`);
        expectRefused(await o.call('PUT', '/schedules/push-address', { token: t.token, json: { url } }), `push ${url}`);
      }
      const row = await o.db.db.selectFrom('terminals').select('serve_url').where('id', '=', t.id).executeTakeFirstOrThrow();
      assert.equal(row.serve_url, 'http://10.0.0.5:7000');
      assert.equal((await o.terminals.get(t.id)).serveUrl, 'http://10.0.0.5:7000');
      const push = await o.db.db.selectFrom('schedule_push_addresses').select('url').where('terminal_id', '=', t.id).executeTakeFirstOrThrow();
      assert.equal(push.url, 'http://10.0.0.5:7001/orders');
      assert.equal(local.hits(), 0, 'nothing called the origin machine’s server');
    });

    test('spot check: a serveUrl whose name now resolves to the origin’s machine is refused at the call — no request, no holding', async () => {
      dns['rebind.test'] = ['10.0.0.10'];
      const t = await session({ serveUrl: `http://rebind.test:${local.port}` }); // accepted: it pointed at the LAN
      dns['rebind.test'] = ['127.0.0.1']; // … and now at the origin's machine
      const res = await o.call('PUT', '/terminals/holdings', { token: t.token, json: { contentIds: [contentId] } });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'holding_unproven');
      assert.match(res.body.error.message, /rebind\.test resolves to 127\.0\.0\.1, which is a loopback address/);
      assert.equal(local.hits(), 0, 'no request reached it');
      assert.equal((await o.db.db.selectFrom('holdings').select('content_id').where('terminal_id', '=', t.id).execute()).length, 0);
      dns['rebind.test'] = ['169.254.169.254'];
      const meta = await o.call('PUT', `/terminals/holdings/${contentId}/pieces`, { token: t.token, json: { pieces: '0' } });
      assert.equal(meta.body.error.code, 'holding_unproven');
      assert.match(meta.body.error.message, /cloud metadata/);
      assert.equal(local.hits(), 0);
    });

    test('push: an address whose name now resolves to the origin’s machine is refused at the call; the delivery fails with address_not_allowed', async () => {
      const t = await session();
      const set = await o.call('PUT', '/schedules/push-address', { token: t.token, json: { url: `http://push.test:${local.port}/orders` } });
      assert.equal(set.status, 200, JSON.stringify(set.body));
      dns['push.test'] = ['127.0.0.1'];
      await o.schedules.requests.create(t.id, { select: { contentId }, windows: [win(W - MIN, W + MIN)] });
      o.clock.set(W - MIN);
      await o.scheduler!.tick(); // the window opens: the order is admitted and pushed
      let record;
      for (let i = 0; i < 100 && !record; i++) {
        await new Promise((r) => setTimeout(r, 20));
        await o.scheduler!.tick(); // the failed push is applied at the next step
        record = (await o.schedules.deliveries.history(t.id, { contentId })).entries.find((e) => e.outcome === 'failed');
      }
      assert.equal(record?.reason, 'address_not_allowed');
      assert.equal(local.hits(), 0, 'no order reached it');
    });
  });

  describe(`peer addresses under PEER_ADDRESSES=any (${engine.name})`, () => {
    let o: TestOrigin;
    let user: { token: string; userId: string };
    let contentId: string;
    before(async () => {
      o = await startTestOrigin({ engine, config: { peerAddresses: 'any' } });
      user = await o.userWithRoles(['member', 'publisher']);
      contentId = (await o.content.publish({ id: user.userId, username: 'pub' }, { title: 'News', genre: 'news', price: 0 }, Readable.from([randomBytes(4000)]))).id;
    });
    after(() => o.close());

    test('loopback is allowed; the origin itself, link-local and metadata are not', async () => {
      assert.equal((await o.registerTerminal(user.token, generateKeyPair(), { name: 'local', serveUrl: 'http://127.0.0.1:7000' })).status, 201);
      for (const serveUrl of [o.url, o.url.replace('127.0.0.1', 'localhost'), 'http://169.254.169.254/', 'http://[fe80::1]:7000']) {
        const res = await o.registerTerminal(user.token, generateKeyPair(), { name: 'x', serveUrl });
        assert.equal(res.status, 400, serveUrl);
        assert.equal(res.body.error.code, 'address_not_allowed', serveUrl);
      }
    });

    test('a spot check refusal says what status the terminal answered, never what it said', async () => {
      const secret = 'SECRET-FROM-THE-TERMINAL';
      const liar = await countingServer((res) => {
        res.statusCode = 500;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ error: { code: 'address_not_allowed', message: secret } }));
      });
      try {
        const keys = generateKeyPair();
        const reg = await o.registerTerminal(user.token, keys, { name: 'liar', serveUrl: `http://127.0.0.1:${liar.port}` });
        const id: string = reg.body.terminal.id;
        const { nonce } = (await o.call('POST', '/terminals/challenge', { json: { terminalId: id } })).body;
        const token = (await o.call('POST', '/terminals/login', { json: { credential: reg.body.credential, nonce, signature: signBytes(keys.privateKey, loginMessage(id, nonce)) } })).body.token;
        const res = await o.call('PUT', '/terminals/holdings', { token, json: { contentIds: [contentId] } });
        assert.equal(res.status, 400);
        assert.equal(res.body.error.code, 'holding_unproven');
        assert.match(res.body.error.message, /answered HTTP 500/);
        assert.ok(!JSON.stringify(res.body).includes(secret), res.body.error.message);
        assert.ok(liar.hits() >= 1);
      } finally {
        await liar.close();
      }
    });
  });
}
