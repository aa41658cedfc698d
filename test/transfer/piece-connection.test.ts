import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { ConnectionPool, HEAD_MAX, type AnswerSink } from '../../src/transfer/piece-connection.ts';

// #19: piece answers are read by our own HTTP/1.1 connection, straight into the piece buffers.
// The "source" here is a raw TCP server, so each test sends exactly the bytes (and the splits
// between writes) it needs.

let server: net.Server;
let url: URL;
let connections = 0;
/** What the server does with each request head it reads (the socket, and how many requests it saw on that socket). */
let onRequest: (socket: net.Socket, nth: number) => void;

before(async () => {
  server = net.createServer((socket) => {
    connections++;
    let nth = 0;
    let seen = '';
    socket.on('data', (d) => {
      seen += d.toString('latin1');
      while (seen.includes('\r\n\r\n')) {
        seen = seen.slice(seen.indexOf('\r\n\r\n') + 4);
        onRequest(socket, ++nth);
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = new URL(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
});
after(() => new Promise<void>((r) => server.close(() => r())));

/** A sink that collects the body into buffers of `sizes` (like a run of pieces); `status` and `headers` once the head is in. */
function collect(sizes: number[]) {
  const bufs = sizes.map((n) => Buffer.alloc(n));
  let k = 0;
  let size = 0;
  const got = { status: 0, headers: new Map<string, string>(), length: undefined as number | undefined, bytes: 0, spaces: 0, body: () => Buffer.concat(bufs).subarray(0, got.bytes) };
  const sink: AnswerSink = {
    head(status, headers, length) {
      Object.assign(got, { status, headers, length });
    },
    space() {
      got.spaces++;
      if (k >= bufs.length) throw new Error('no room');
      return bufs[k].subarray(size);
    },
    filled(n) {
      size += n;
      got.bytes += n;
      if (size === bufs[k].length) (k++, (size = 0));
    },
  };
  return { sink, got };
}

const pool = (o: { connections?: number; stallMs?: number } = {}) => new ConnectionPool({ url, connections: o.connections ?? 2, stallMs: o.stallMs ?? 5000 });

test('a body of known length lands in the buffers whole, however the source splits its writes (head too)', async () => {
  const body = randomBytes(300_000);
  const head = `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nCascade-Served: a,b\r\n\r\n`;
  onRequest = (socket) => {
    // The head in three writes, the last one with the body's first bytes; then the body in uneven parts.
    const parts = [Buffer.from(head.slice(0, 10)), Buffer.from(head.slice(10, head.length - 1)), Buffer.concat([Buffer.from(head.slice(-1)), body.subarray(0, 7)])];
    for (let at = 7; at < body.length; at += 70_001) parts.push(body.subarray(at, at + 70_001));
    const next = () => {
      const part = parts.shift();
      if (part) socket.write(part, () => setImmediate(next));
    };
    next();
  };
  const p = pool();
  try {
    const { sink, got } = collect([100_000, 100_000, 100_000]);
    await p.get('/x', { a: 'b' }, sink);
    assert.equal(got.status, 200);
    assert.equal(got.length, body.length);
    assert.equal(got.headers.get('cascade-served'), 'a,b', 'header names in lower case');
    assert.ok(got.body().equals(body));
  } finally {
    await p.close();
  }
});

test('a kept-alive connection is reused; a request the source hangs up on unanswered, on a reused connection, is sent again on a new one', async () => {
  connections = 0;
  let requests = 0;
  onRequest = (socket, nth) => {
    // The third request on a connection finds it closed by the source (as a source closes idle ones).
    if (nth === 3) return void socket.destroy();
    requests++;
    socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  };
  const p = pool({ connections: 1 });
  try {
    for (let i = 0; i < 4; i++) {
      const { sink, got } = collect([2]);
      await p.get('/x', {}, sink);
      assert.equal(got.body().toString(), 'ok');
    }
    assert.equal(connections, 2, 'the first connection served two requests, then its replacement two');
    assert.equal(requests, 4);
    // On a new connection the same failure is the source's answer, not a stale connection: not sent again.
    onRequest = (socket) => socket.destroy();
    const fresh = pool({ connections: 1 });
    try {
      await assert.rejects(fresh.get('/x', {}, collect([2]).sink), (e: any) => e.code === 'connection_closed' && e.answered === false);
    } finally {
      await fresh.close();
    }
  } finally {
    await p.close();
  }
});

test('a source that says nothing for stallMs fails the request with source_stalled, once (not sent again on a reused connection)', async () => {
  let requests = 0;
  onRequest = (socket) => {
    // The first request is answered; the second never is.
    if (++requests === 1) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  };
  const p = pool({ stallMs: 200, connections: 1 });
  try {
    await p.get('/x', {}, collect([2]).sink);
    await assert.rejects(p.get('/x', {}, collect([10]).sink), (e: any) => e.code === 'source_stalled' && /200 ms/.test(e.message));
    assert.equal(requests, 2, 'the stalled request was not sent again');
  } finally {
    await Promise.all([p.close(), p.close()]); // closing twice waits for the same
  }
});

test('a head over HEAD_MAX fails with source_error without being read further', async () => {
  onRequest = (socket) => socket.write(`HTTP/1.1 200 OK\r\nx-big: ${'x'.repeat(HEAD_MAX)}\r\n\r\n`);
  const p = pool();
  try {
    await assert.rejects(p.get('/x', {}, collect([10]).sink), (e: any) => e.code === 'source_error' && /head is over/.test(e.message));
  } finally {
    await p.close();
  }
});

test('interim 1xx heads are skipped; chunked and close-delimited bodies are read too', async () => {
  const body = randomBytes(5000);
  onRequest = (socket) => socket.write(`HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n${(1000).toString(16)}\r\n`, () => {
    socket.write(Buffer.concat([body.subarray(0, 1000), Buffer.from(`\r\n${(4000).toString(16)};ext=1\r\n`), body.subarray(1000), Buffer.from('\r\n0\r\n\r\n')]));
  });
  const p = pool();
  try {
    let c = collect([2500, 2500]);
    await p.get('/x', {}, c.sink);
    assert.equal(c.got.status, 200);
    assert.ok(c.got.body().equals(body));
    connections = 0;
    onRequest = (socket) => socket.end(Buffer.concat([Buffer.from('HTTP/1.0 200 OK\r\n\r\n'), body]));
    c = collect([5000]);
    await p.get('/x', {}, c.sink);
    assert.ok(c.got.body().equals(body));
  } finally {
    await p.close();
  }
});

test('bytes beyond the answer fail the request; the next request gets a new connection', async () => {
  connections = 0;
  onRequest = (socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA');
  const p = pool({ connections: 1 });
  try {
    await assert.rejects(p.get('/x', {}, collect([2]).sink), (e: any) => e.code === 'source_error' && /after its answer/.test(e.message));
    onRequest = (socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    const { sink, got } = collect([2]);
    await p.get('/x', {}, sink);
    assert.equal(got.body().toString(), 'ok');
    assert.equal(connections, 2);
  } finally {
    await p.close();
  }
});

test('an error thrown by the sink fails the request and closes the connection', async () => {
  connections = 0;
  onRequest = (socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n0123456789abcdefghij');
  const p = pool({ connections: 1 });
  try {
    // Room for 10 bytes only: the sink refuses the 11th.
    await assert.rejects(p.get('/x', {}, collect([10]).sink), /no room/);
    const { sink, got } = collect([20]);
    await p.get('/x', {}, sink);
    assert.equal(got.body().toString(), '0123456789abcdefghij');
    assert.equal(connections, 2);
  } finally {
    await p.close();
  }
});

test('requests beyond the connections wait for a free one; an abort stops a request in flight or waiting, with its reason', async () => {
  connections = 0;
  const held: net.Socket[] = [];
  onRequest = (socket) => held.push(socket); // answered by hand below
  const p = pool({ connections: 1 });
  try {
    const first = collect([2]);
    const firstDone = p.get('/1', {}, first.sink);
    const waiting = new AbortController();
    const second = p.get('/2', {}, collect([2]).sink, waiting.signal);
    const third = collect([2]);
    const thirdDone = p.get('/3', {}, third.sink);
    while (held.length < 1) await new Promise((r) => setImmediate(r));
    waiting.abort(new Error('not needed any more'));
    await assert.rejects(second, /not needed any more/);
    held[0].write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n01');
    await firstDone;
    while (held.length < 2) await new Promise((r) => setImmediate(r));
    assert.equal(connections, 1, 'the third request waited for the first one\'s connection');
    // Aborting a request in flight closes its connection (HTTP/1.1 cannot cancel an answer).
    const inFlight = new AbortController();
    const fourth = p.get('/4', {}, collect([10]).sink, inFlight.signal);
    held[1].write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n03');
    await thirdDone;
    assert.equal(third.got.body().toString(), '03');
    while (held.length < 3) await new Promise((r) => setImmediate(r));
    held[2].write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234');
    await new Promise((r) => setTimeout(r, 20));
    inFlight.abort(new Error('lost the race'));
    await assert.rejects(fourth, /lost the race/);
  } finally {
    await p.close();
  }
});

test('an https: source: the answer comes through TLS, checked against the CA given; an unknown certificate is refused', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cascade-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    const cert = readFileSync(path.join(dir, 'cert.pem'));
    const body = randomBytes(200_000);
    const secure = https.createServer({ key: readFileSync(path.join(dir, 'key.pem')), cert }, (_req, res) => res.writeHead(200, { 'content-length': body.length }).end(body));
    await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
    const secureUrl = new URL(`https://localhost:${(secure.address() as net.AddressInfo).port}`);
    try {
      const p = new ConnectionPool({ url: secureUrl, connections: 1, stallMs: 5000, ca: cert });
      try {
        for (let i = 0; i < 2; i++) {
          const { sink, got } = collect([100_000, 100_000]);
          await p.get('/x', {}, sink);
          assert.ok(got.body().equals(body));
        }
      } finally {
        await p.close();
      }
      const untrusting = new ConnectionPool({ url: secureUrl, connections: 1, stallMs: 5000 });
      try {
        await assert.rejects(untrusting.get('/x', {}, collect([10]).sink), (e: any) => /certificate/i.test(e.message));
      } finally {
        await untrusting.close();
      }
    } finally {
      secure.closeAllConnections();
      await new Promise<void>((r) => secure.close(() => r()));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an abort while the connection is still opening fails the request with its reason (nothing left unhandled)', async () => {
  onRequest = (socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  // The address takes a while to resolve (the origin checks it with its policy first).
  const p = new ConnectionPool({ url, connections: 1, stallMs: 5000, resolve: (host) => new Promise((r) => setTimeout(() => r(host), 50)) });
  try {
    const stop = new AbortController();
    const failed = p.get('/x', {}, collect([2]).sink, stop.signal).then(() => null, (e: Error) => e);
    await new Promise((r) => setTimeout(r, 10));
    stop.abort(new Error('changed my mind'));
    await new Promise((r) => setTimeout(r, 100)); // an unhandled rejection inside would fail this test here
    assert.match(String((await failed)?.message), /changed my mind/);
    const { sink, got } = collect([2]);
    await p.get('/x', {}, sink);
    assert.equal(got.body().toString(), 'ok');
  } finally {
    await p.close();
  }
});
