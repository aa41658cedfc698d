import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ManualClock } from '../../src/core/clock.ts';
import { generateKeyPair, sha256Hex } from '../../src/core/crypto.ts';
import type { AppError } from '../../src/core/errors.ts';
import { PROOF_WINDOW_MS } from '../../src/transfer/grant-token.ts';
import { randomBytes } from 'node:crypto';
import { MAX_ERROR_BODY, PieceClient, type FetchedPiece } from '../../src/transfer/piece-client.ts';
import { RUN_HEADER } from '../../src/transfer/piece-ranges.ts';

// #10.7: what a source answers cannot grow the receiver's memory, nor put its text into
// our errors beyond a short excerpt; #11.1: proof timestamps come from the injected clock.
// The "source" is a plain HTTP server on loopback that answers what each test needs.

const receiver = generateKeyPair();
let server: http.Server;
let url: string;
let answer: (req: http.IncomingMessage, res: http.ServerResponse) => void;

before(async () => {
  server = http.createServer((req, res) => answer(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));

const client = (clock = new ManualClock()) =>
  new PieceClient({ sourceUrl: url, grant: { id: 'gr_1', token: 'token', contentId: 'c'.repeat(64) }, receiverKey: receiver.privateKey, clock, connections: 1, stallMs: 5000 });

test('an error body beyond 4 KiB is cut off: the request is aborted, not read to the end', async () => {
  const total = 64 * 1024 * 1024;
  let written = 0;
  const closed = new Promise<void>((resolve) => {
    answer = (_req, res) => {
      res.writeHead(403, { 'content-type': 'application/json', 'content-length': total });
      res.on('close', resolve);
      // Stream 64 MiB of "error" as fast as the receiver reads it.
      const chunk = Buffer.alloc(64 * 1024, 'x');
      const pump = () => {
        while (written < total && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
      };
      pump();
    };
  });
  const c = client();
  try {
    await assert.rejects(c.fetch(0, Buffer.alloc(1024)), (e: AppError) => {
      assert.equal(e.code, 'source_error');
      assert.equal(e.status, 403);
      assert.match(e.message, new RegExp(`over ${MAX_ERROR_BODY} bytes`));
      return true;
    });
    await closed;
    assert.ok(written < total / 4, `the source got to write ${written} bytes before the receiver hung up`);
  } finally {
    await c.close();
  }
});

test("a source's refusal keeps its code and only a short excerpt of its message", async () => {
  const cases: [unknown, string, (message: string) => void][] = [
    [{ error: { code: 'piece_unavailable', message: 'x'.repeat(3000) } }, 'piece_unavailable', (m) => assert.equal(m, 'x'.repeat(200))],
    [{ error: { code: 'Not A Code <script>', message: 'hi' } }, 'source_error', (m) => assert.equal(m, 'source answered 404')],
    ['plain text, not JSON', 'source_error', (m) => assert.equal(m, 'source answered 404')],
  ];
  for (const [body, code, check] of cases) {
    answer = (_req, res) => res.writeHead(404, { 'content-type': 'application/json' }).end(typeof body === 'string' ? body : JSON.stringify(body));
    const c = client();
    try {
      await assert.rejects(c.fetch(0, Buffer.alloc(1024)), (e: AppError) => {
        assert.equal(e.code, code);
        check(e.message);
        return true;
      });
    } finally {
      await c.close();
    }
  }
});

test('proofs carry the injected clock’s time, and are signed afresh once a quarter of the proof window has passed', async () => {
  const proofs: string[] = [];
  answer = (req, res) => {
    proofs.push(String(req.headers['cascade-proof']));
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.alloc(16));
  };
  const clock = new ManualClock(Date.UTC(2028, 1, 29, 23, 59, 30));
  const c = client(clock);
  try {
    await c.fetch(0, Buffer.alloc(16));
    clock.advance(PROOF_WINDOW_MS / 4);
    await c.fetch(1, Buffer.alloc(16)); // still fresh: the same proof
    clock.advance(1);
    await c.fetch(2, Buffer.alloc(16));
  } finally {
    await c.close();
  }
  const times = proofs.map((p) => Number(p.split('.')[0]));
  assert.deepEqual(times, [Date.UTC(2028, 1, 29, 23, 59, 30), Date.UTC(2028, 1, 29, 23, 59, 30), Date.UTC(2028, 1, 29, 23, 59, 30) + PROOF_WINDOW_MS / 4 + 1]);
});

test('a source whose clock is 10 minutes ahead refuses the proof as stale with its time; the client signs on that time and asks once more (later requests too)', async () => {
  const sourceNow = () => clock.now() + 10 * 60_000;
  const clock = new ManualClock(Date.UTC(2027, 0, 4, 2, 0));
  const times: number[] = [];
  answer = (req, res) => {
    const ts = Number(String(req.headers['cascade-proof']).split('.')[0]);
    times.push(ts);
    if (Math.abs(ts - sourceNow()) > PROOF_WINDOW_MS) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'proof_stale', message: 'stale', details: { sourceTime: sourceNow() } } }));
    } else res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.alloc(16));
  };
  const c = client(clock);
  try {
    assert.equal((await c.fetch(0, Buffer.alloc(16))).bytes, 16);
    clock.advance(PROOF_WINDOW_MS); // re-signed, still on the source's time
    assert.equal((await c.fetch(1, Buffer.alloc(16))).bytes, 16);
  } finally {
    await c.close();
  }
  const t0 = Date.UTC(2027, 0, 4, 2, 0);
  assert.deepEqual(times, [t0, t0 + 10 * 60_000, t0 + PROOF_WINDOW_MS + 10 * 60_000]);
});

test('a stale-proof refusal without a believable source time is passed on, not retried', async () => {
  for (const details of [undefined, { sourceTime: 'soon' }, { sourceTime: Date.UTC(2040, 0, 1) }]) {
    let requests = 0;
    answer = (_req, res) => {
      requests++;
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'proof_stale', message: 'stale', ...(details ? { details } : {}) } }));
    };
    const c = client(new ManualClock(Date.UTC(2027, 0, 4, 2, 0)));
    try {
      await assert.rejects(c.fetch(0, Buffer.alloc(16)), (e: AppError) => e.code === 'proof_stale' && e.status === 401);
    } finally {
      await c.close();
    }
    assert.equal(requests, 1, JSON.stringify(details));
  }
});

describe('runs of pieces (#19)', () => {
  const parts = [randomBytes(1000), randomBytes(1000), randomBytes(600)];

  test('without a run header, the length says how many pieces came (a proxy may drop the header)', async () => {
    answer = (req, res) => {
      assert.match(req.url!, /\?count=3$/);
      res.writeHead(200, { 'content-length': 2000 }).end(Buffer.concat(parts.slice(0, 2)));
    };
    const c = client();
    try {
      const told: FetchedPiece[] = [];
      assert.equal(await c.fetchRun(0, parts.map((p) => Buffer.alloc(p.length)), (_k, p) => told.push(p)), 2);
      assert.deepEqual(told.map((p) => p.sha256), [sha256Hex(parts[0]), sha256Hex(parts[1])]);
      assert.equal(told[0].served, undefined, 'no statement: the caller refuses to keep it');
    } finally {
      await c.close();
    }
  });

  test('a source sending more than the run it announced is cut off with piece_oversized; one announcing more than asked, source_error', async () => {
    answer = (_req, res) => res.writeHead(200, { [RUN_HEADER]: '1', 'content-length': 1500 }).end(randomBytes(1500));
    const c = client();
    try {
      // The length says more than the run holds: refused before a byte of the body is read.
      const told: number[] = [];
      await assert.rejects(c.fetchRun(0, parts.map((p) => Buffer.alloc(p.length)), (k) => told.push(k)), (e: AppError) => e.code === 'piece_oversized');
      assert.equal(told.length, 0, 'nothing told: the answer was refused from its head');
      // Without a length (chunked), the excess is found as it arrives, after the first piece was told.
      answer = (_req, res) => {
        res.writeHead(200, { [RUN_HEADER]: '1' });
        res.write(parts[0]);
        res.end(randomBytes(500));
      };
      await assert.rejects(c.fetchRun(0, parts.map((p) => Buffer.alloc(p.length)), (k) => told.push(k)), (e: AppError) => e.code === 'piece_oversized');
      assert.deepEqual(told, [0], 'the first piece was told before the excess arrived');
      answer = (_req, res) => res.writeHead(200, { [RUN_HEADER]: '4', 'content-length': 10 }).end(randomBytes(10));
      await assert.rejects(c.fetchRun(0, parts.map((p) => Buffer.alloc(p.length)), () => {}), (e: AppError) => e.code === 'source_error' && /4 pieces of the 3/.test(e.message));
    } finally {
      await c.close();
    }
  });

  test('a run cut short: the piece in progress is told with the bytes it got, the ones after are not told', async () => {
    answer = (_req, res) => res.writeHead(200, { [RUN_HEADER]: '3', 'content-length': 2600 }).end(Buffer.concat([parts[0], parts[1].subarray(0, 400)]));
    const c = client();
    try {
      const told: [number, number][] = [];
      // The connection ends before content-length: the client fails the request, after telling what it had.
      await assert.rejects(c.fetchRun(0, parts.map((p) => Buffer.alloc(p.length)), (k, p) => told.push([k, p.bytes])));
      assert.deepEqual(told, [[0, 1000]]);
    } finally {
      await c.close();
    }
  });
});
