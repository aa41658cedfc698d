import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { AddressPolicy, AddressRefused, type PeerAddressMode } from '../../src/core/address-policy.ts';
import { peerConnector } from '../../src/core/peer-connect.ts';

// Issue 10 #8: the origin is not a proxy into private networks. Every address class,
// every spelling of an address, the origin's own address and names that resolve to a
// forbidden address, under each PEER_ADDRESSES value — checked when an address is
// registered (checkUrl) and when the origin connects (peerConnector).

/** Names the tests resolve themselves (the system resolver answers `localhost` for real). */
const NAMES: Record<string, string[]> = {
  'metadata-alias.test': ['169.254.169.254'],
  'lan.test': ['192.168.1.20'],
  'public.test': ['93.184.216.34'],
  'mixed.test': ['93.184.216.34', '10.0.0.1'],
  'loop.test': ['127.0.0.1'],
};
const resolve = async (host: string) => {
  if (host in NAMES) return NAMES[host];
  if (host === 'localhost') return ['127.0.0.1', '::1'];
  throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
};
const policy = (mode: PeerAddressMode, extra: Partial<ConstructorParameters<typeof AddressPolicy>[0]> = {}) =>
  new AddressPolicy({ mode, resolve, localAddresses: () => ['127.0.0.1', '::1', '192.168.7.7'], ...extra });

/** The class a refusal names, or 'allowed'. */
async function verdict(p: AddressPolicy, url: string): Promise<string> {
  try {
    await p.checkUrl(url, 'serveUrl');
    return 'allowed';
  } catch (err) {
    assert.ok(err instanceof AddressRefused, `${url}: ${err}`);
    assert.equal(err.code, 'address_not_allowed');
    assert.equal(err.status, 400);
    assert.match(err.message, /is not allowed: .+\./, 'says why');
    return String(err.details?.class);
  }
}

// [url, expected under public, private, any]
const CASES: [string, string, string, string][] = [
  // public unicast: allowed everywhere
  ['http://93.184.216.34/', 'allowed', 'allowed', 'allowed'],
  ['https://[2606:4700:4700::1111]:8443/x', 'allowed', 'allowed', 'allowed'],
  ['http://public.test:7000', 'allowed', 'allowed', 'allowed'],
  // private ranges: the operator decides
  ['http://10.1.2.3:7000', 'private', 'allowed', 'allowed'],
  ['http://172.16.5.4:7000', 'private', 'allowed', 'allowed'],
  ['http://192.168.1.10:7000', 'private', 'allowed', 'allowed'],
  ['http://100.64.0.1:7000', 'private', 'allowed', 'allowed'],
  ['http://[fc00::1]:7000', 'private', 'allowed', 'allowed'],
  ['http://[fd12:3456::1]:7000', 'private', 'allowed', 'allowed'],
  ['http://lan.test:7000', 'private', 'allowed', 'allowed'],
  // loopback and this machine: only `any`
  ['http://127.0.0.1:7000', 'loopback', 'loopback', 'allowed'],
  ['http://127.5.6.7:7000', 'loopback', 'loopback', 'allowed'],
  ['http://[::1]:7000', 'loopback', 'loopback', 'allowed'],
  ['http://localhost:7000', 'loopback', 'loopback', 'allowed'],
  ['http://LOCALHOST.:7000', 'loopback', 'loopback', 'allowed'],
  ['http://loop.test:7000', 'loopback', 'loopback', 'allowed'],
  ['http://192.168.7.7:7000', 'own-machine', 'own-machine', 'allowed'],
  // other spellings of 127.0.0.1: decimal, hex, octal, short, IPv4-mapped and -compatible IPv6
  ['http://2130706433:7000', 'loopback', 'loopback', 'allowed'],
  ['http://0x7f000001:7000', 'loopback', 'loopback', 'allowed'],
  ['http://0177.0.0.1:7000', 'loopback', 'loopback', 'allowed'],
  ['http://0x7f.1:7000', 'loopback', 'loopback', 'allowed'],
  ['http://127.1:7000', 'loopback', 'loopback', 'allowed'],
  ['http://[::ffff:127.0.0.1]:7000', 'loopback', 'loopback', 'allowed'],
  ['http://[::ffff:7f00:1]:7000', 'loopback', 'loopback', 'allowed'],
  ['http://[0:0:0:0:0:ffff:7f00:0001]:7000', 'loopback', 'loopback', 'allowed'],
  ['http://[::127.0.0.1]:7000', 'loopback', 'loopback', 'allowed'],
  ['http://[::ffff:10.0.0.1]:7000', 'private', 'allowed', 'allowed'],
  // never, whatever the mode: link-local, metadata, unspecified, multicast, broadcast
  ['http://169.254.1.1/', 'link-local', 'link-local', 'link-local'],
  ['http://[fe80::1]/', 'link-local', 'link-local', 'link-local'],
  ['http://169.254.169.254/latest/meta-data/', 'metadata', 'metadata', 'metadata'],
  ['http://2852039166/', 'metadata', 'metadata', 'metadata'],
  ['http://0xa9.0xfe.0xa9.0xfe/', 'metadata', 'metadata', 'metadata'],
  ['http://[::ffff:169.254.169.254]/', 'metadata', 'metadata', 'metadata'],
  ['http://[64:ff9b::a9fe:a9fe]/', 'metadata', 'metadata', 'metadata'],
  ['http://[fd00:ec2::254]/', 'metadata', 'metadata', 'metadata'],
  ['http://100.100.100.200/', 'metadata', 'metadata', 'metadata'],
  ['http://168.63.129.16/', 'metadata', 'metadata', 'metadata'],
  ['http://metadata.google.internal/computeMetadata/v1/', 'metadata', 'metadata', 'metadata'],
  ['http://Metadata.Google.Internal./', 'metadata', 'metadata', 'metadata'],
  ['http://metadata-alias.test/', 'metadata', 'metadata', 'metadata'],
  ['http://0.0.0.0:7000', 'unspecified', 'unspecified', 'unspecified'],
  ['http://0:7000', 'unspecified', 'unspecified', 'unspecified'],
  ['http://[::]:7000', 'unspecified', 'unspecified', 'unspecified'],
  ['http://224.0.0.1:7000', 'multicast', 'multicast', 'multicast'],
  ['http://[ff02::1]:7000', 'multicast', 'multicast', 'multicast'],
  ['http://255.255.255.255:7000', 'broadcast', 'broadcast', 'broadcast'],
  // a name with one forbidden address among allowed ones is refused whole
  ['http://mixed.test:7000', 'private', 'allowed', 'allowed'],
];

describe('address policy when an address is registered', () => {
  for (const [i, mode] of (['public', 'private', 'any'] as const).entries()) {
    test(`PEER_ADDRESSES=${mode}: every range and spelling`, async () => {
      const p = policy(mode);
      for (const c of CASES) assert.equal(await verdict(p, c[0]), c[i + 1], `${c[0]} under ${mode}`);
    });
  }

  test('the origin’s own listening address is refused in every mode, other ports of the host are not (under any)', async () => {
    for (const mode of ['public', 'private', 'any'] as const) {
      const p = policy(mode);
      await p.listeningAt('127.0.0.1', 8080);
      assert.equal(await verdict(p, 'http://127.0.0.1:8080'), 'origin');
      assert.equal(await verdict(p, 'http://localhost:8080/pieces'), 'origin');
      assert.equal(await verdict(p, 'http://[::ffff:127.0.0.1]:8080'), 'origin');
    }
    const any = policy('any');
    await any.listeningAt('127.0.0.1', 8080);
    assert.equal(await verdict(any, 'http://127.0.0.1:8081'), 'allowed');
    assert.equal(await verdict(any, 'http://127.0.0.2:8080'), 'allowed', 'the origin listens on 127.0.0.1 only');
    // Listening on every address: each of this machine's addresses at that port is the origin.
    const all = policy('any');
    await all.listeningAt('0.0.0.0', 80);
    assert.equal(await verdict(all, 'http://127.0.0.2/'), 'origin');
    assert.equal(await verdict(all, 'http://192.168.7.7/'), 'origin');
    assert.equal(await verdict(all, 'http://192.168.7.8/'), 'allowed');
  });

  test('a name that does not resolve now is accepted at registration (it is checked at every call)', async () => {
    assert.equal(await verdict(policy('public'), 'http://nowhere.test:7000'), 'allowed');
  });

  test('the refusal names the address, the name it came from and the setting that decides', async () => {
    await assert.rejects(policy('private').checkUrl('http://loop.test:7000', 'serveUrl'), (err: AddressRefused) => {
      assert.match(err.message, /loop\.test resolves to 127\.0\.0\.1, which is a loopback address/);
      assert.match(err.message, /PEER_ADDRESSES=private.*PEER_ADDRESSES=any/);
      assert.deepEqual(err.details, { address: '127.0.0.1', class: 'loopback' });
      return true;
    });
  });
});

describe('address policy when the origin connects', () => {
  let server: Server;
  let port: number;
  let hits = 0;
  before(async () => {
    server = createServer((_req, res) => {
      hits++;
      res.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  /** A request through the policy's connector: 'ok', or the class of the refusal. */
  async function call(p: AddressPolicy, url: string): Promise<string> {
    const agent = new Agent({ connect: peerConnector(p) });
    try {
      const res = await request(url, { dispatcher: agent });
      return await res.body.text();
    } catch (err) {
      assert.ok(err instanceof AddressRefused, String(err));
      return String(err.details?.class);
    } finally {
      await agent.close();
    }
  }

  test('a forbidden address is never connected to; an allowed one is, at the checked address', async () => {
    const before = hits;
    assert.equal(await call(policy('private'), `http://127.0.0.1:${port}/`), 'loopback');
    assert.equal(await call(policy('private'), `http://[::ffff:127.0.0.1]:${port}/`), 'loopback');
    assert.equal(await call(policy('private'), `http://2130706433:${port}/`), 'loopback');
    assert.equal(hits, before, 'nothing reached the server');
    assert.equal(await call(policy('any'), `http://127.0.0.1:${port}/`), 'ok');
    // The test's own name, resolved by the policy and connected to at that address.
    assert.equal(await call(policy('any'), `http://loop.test:${port}/`), 'ok');
    assert.equal(hits, before + 2);
  });

  test('a name that resolved to an allowed address at registration and to a forbidden one now is refused at the call', async () => {
    let answer = ['10.0.0.7'];
    const p = policy('private', { resolve: async () => answer });
    await p.checkUrl(`http://rebind.test:${port}/`, 'serveUrl'); // registered while it pointed at the LAN
    answer = ['127.0.0.1']; // … and now points at the origin's machine
    const before = hits;
    assert.equal(await call(p, `http://rebind.test:${port}/`), 'loopback');
    answer = ['169.254.169.254'];
    assert.equal(await call(p, `http://rebind.test:${port}/`), 'metadata');
    assert.equal(hits, before);
  });

  test('the origin’s own listening address is refused at the call too', async () => {
    const p = policy('any');
    await p.listeningAt('127.0.0.1', port);
    const before = hits;
    assert.equal(await call(p, `http://127.0.0.1:${port}/`), 'origin');
    assert.equal(await call(p, `http://localhost:${port}/`), 'origin');
    assert.equal(hits, before);
  });
});
