import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { Api } from '../../src/core/http-client.ts';
import type { AppError } from '../../src/core/errors.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { signGrantProof } from '../../src/transfer/grant-token.ts';
import { chunkBytes } from '../../src/transfer/piece-server.ts';
import { STARVED_MS, TRICKLE_BYTES } from '../../src/transfer/token-bucket.ts';
import { SERVED_HEADER } from '../../src/transfer/served-attestation.ts';
import { UploadSlots } from '../../src/transfer/upload-slots.ts';
import { ManualClock } from '../../src/core/clock.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #10.4/#10.7: a capped source answers at once and sends a piece as its tokens allow,
// chunk by chunk; upload slots and their bounded queue decide who is served, who
// waits and who is turned away.

/** Waits (real time, bounded) until `f` holds. */
async function until(f: () => boolean, what: string, ms = 3000) {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('a capped source streams a piece as its tokens allow (#10.4)', () => {
  const PIECE = 256 * 1024;
  const RATE = 64_000; // ORIGIN_UP_RATE: a quarter second of burst (16 000 bytes), chunks of RATE/8 = 8000 bytes
  let origin: TestOrigin;
  let work: string;
  let contentId: string;
  let file: Buffer;
  let device: Awaited<ReturnType<typeof deviceSession>>;
  let other: Awaited<ReturnType<typeof deviceSession>>;

  before(async () => {
    origin = await startTestOrigin({ config: { pieceSize: PIECE, originUpRate: RATE } });
    work = mkdtempSync(path.join(os.tmpdir(), 'cascade-stream-'));
    const publisher = await origin.userWithRoles(['publisher']);
    file = randomBytes(PIECE);
    contentId = (await origin.call('POST', '/contents?title=Slow&genre=test&price=0', { token: publisher.token, body: file, headers: { 'content-type': 'application/octet-stream' } })).body.id;
    device = await deviceSession(new Api(origin.url, (await origin.userWithRoles(['member'])).token), path.join(work, 'home'));
    other = await deviceSession(new Api(origin.url, (await origin.userWithRoles(['member'])).token), path.join(work, 'other'));
  });
  after(async () => {
    await origin.close();
    rmSync(work, { recursive: true, force: true });
  });

  test('headers at once, then the burst, then one chunk per slice of time the clock moves, the older request first (#19)', async () => {
    assert.equal(chunkBytes(RATE), 8000);
    const grant = await new Api(origin.url, device.token).post<{ id: string; token: string }>('/grants', { contentId });
    const headers = { authorization: `Grant ${grant.token}`, 'cascade-proof': signGrantProof(device.keys.privateKey, grant.id, origin.clock.now()) };
    // Headers must come without the clock moving (before #10.4 they waited for a whole piece of tokens).
    const client = new Pool(origin.url, { headersTimeout: 2000, connections: 2 });
    /** A piece request whose bytes are counted as they arrive. */
    const start = async () => {
      const res = await client.request({ method: 'GET', path: `/pieces/${contentId}/0`, headers });
      assert.equal(res.statusCode, 200);
      assert.equal(typeof res.headers[SERVED_HEADER], 'string');
      assert.equal(Number(res.headers['content-length']), PIECE);
      const r = { received: 0, parts: [] as Buffer[], ended: new Promise((done) => res.body.once('end', done)) };
      res.body.on('data', (c: Buffer) => (r.parts.push(c), (r.received += c.length)));
      return r;
    };
    const quiet = () => new Promise((r) => setTimeout(r, 100));
    try {
      const a = await start();
      await until(() => a.received === 16_000, 'the burst: two chunks');
      // The bucket is empty now: b's headers still come at once, its bytes only after a's (the same
      // receiver's second request in service, and the younger: token-bucket.ts), but for a trickle once it waited STARVED_MS.
      const b = await start();
      await quiet();
      assert.deepEqual([a.received, b.received], [16_000, 0], 'nothing more while the clock stands still');
      origin.clock.advance(124);
      await quiet();
      assert.deepEqual([a.received, b.received], [16_000, 0], 'the next 8000 bytes need 125 ms of tokens');
      origin.clock.advance(1);
      await until(() => a.received === 24_000, "a's third chunk");
      for (let waited = 250; waited < STARVED_MS; waited += 125) {
        origin.clock.advance(125);
        await until(() => a.received === 24_000 + ((waited - 125) / 125) * 8000, `a's chunk after ${waited} ms`);
        assert.equal(b.received, 0, `b waits behind a (${waited} ms)`);
      }
      origin.clock.advance(125);
      await until(() => b.received === TRICKLE_BYTES, 'b, silent for STARVED_MS, gets a trickle before a (not a chunk: token-bucket.ts)');
      assert.equal(a.received, 72_000);
      for (let step = 0; a.received < PIECE || b.received < PIECE; step++) {
        assert.ok(step < 1000, 'the rest arrives as the clock moves');
        origin.clock.advance(125);
        await new Promise((r) => setTimeout(r, 2));
      }
      await Promise.all([a.ended, b.ended]);
      assert.ok(Buffer.concat(a.parts).equals(file) && Buffer.concat(b.parts).equals(file), 'the bytes are the piece');
    } finally {
      await client.destroy(); // not close(): that would wait for answers a broken source never finishes
    }
  });

  test("#19: a receiver's second request waits behind another receiver's first, however older", async () => {
    const client = new Pool(origin.url, { headersTimeout: 2000, connections: 4 });
    /** A piece request of `who`, whose bytes are counted as they arrive. */
    const start = async (who: typeof device, signal?: AbortSignal) => {
      const grant = await new Api(origin.url, who.token).post<{ id: string; token: string }>('/grants', { contentId });
      const headers = { authorization: `Grant ${grant.token}`, 'cascade-proof': signGrantProof(who.keys.privateKey, grant.id, origin.clock.now()) };
      const res = await client.request({ method: 'GET', path: `/pieces/${contentId}/0`, headers, signal });
      assert.equal(res.statusCode, 200);
      const r = { received: 0 };
      res.body.on('data', (c: Buffer) => void (r.received += c.length));
      res.body.on('error', () => {});
      return r;
    };
    const quiet = () => new Promise((r) => setTimeout(r, 100));
    // Connections the source saw close (a hang-up is seen there first).
    let closed = 0;
    const onConnection = (socket: import('node:net').Socket) => socket.once('close', () => closed++);
    origin.app.server.on('connection', onConnection);
    try {
      origin.clock.advance(1000); // the bucket refills to its burst
      const hangUp = new AbortController();
      const a = await start(device, hangUp.signal);
      await until(() => a.received === 16_000, 'the burst');
      const second = await start(device); // the same receiver's second request in service
      await quiet();
      const first = await start(other); // another receiver's first, asked later
      await quiet();
      hangUp.abort();
      await until(() => closed > 0, 'the source seeing the hang-up');
      await quiet();
      // The hung-up request's waiting chunk left the line and spent nothing: the other receiver's
      // first chunk comes after its own 125 ms of tokens, not after the dropped chunk's too.
      origin.clock.advance(125);
      await until(() => first.received === 8000, "the other receiver's first chunk, 125 ms after the hang-up");
      assert.equal(second.received, 0, "the same receiver's second request waits");
    } finally {
      origin.app.server.off('connection', onConnection);
      await client.destroy();
    }
  });
});

describe('upload slots (#10.7)', () => {
  const settle = () => new Promise<void>((r) => setImmediate(r));

  test('slots are given at once, then waits in arrival order up to the queue, then source_busy', async () => {
    const slots = new UploadSlots(2, 2);
    const stay = new AbortController().signal;
    const a = await slots.enter(stay);
    const b = await slots.enter(stay);
    assert.ok(a && b);
    const order: string[] = [];
    const c = slots.enter(stay).then((r) => (order.push('c'), r));
    const d = slots.enter(stay).then((r) => (order.push('d'), r));
    await settle();
    assert.deepEqual(slots.load, { serving: 2, waiting: 2 });
    await assert.rejects(slots.enter(stay), (e: AppError) => e.code === 'source_busy' && e.status === 503);
    assert.deepEqual(slots.load, { serving: 2, waiting: 2 }, 'a refusal changes nothing');
    b!();
    b!(); // a second release of the same slot frees nothing more
    await settle();
    assert.deepEqual(order, ['c']);
    assert.deepEqual(slots.load, { serving: 2, waiting: 1 });
    a!();
    await settle();
    assert.deepEqual(order, ['c', 'd']);
    (await c)!();
    (await d)!();
    assert.deepEqual(slots.load, { serving: 0, waiting: 0 });
  });

  test('a requester that hangs up while waiting leaves the queue, and its place is free', async () => {
    const slots = new UploadSlots(1, 1);
    const stay = new AbortController().signal;
    const held = (await slots.enter(stay))!;
    const leaving = new AbortController();
    const gone = slots.enter(leaving.signal);
    await settle();
    leaving.abort();
    assert.equal(await gone, null);
    assert.deepEqual(slots.load, { serving: 1, waiting: 0 });
    const next = slots.enter(stay); // would be source_busy if the one that left still counted
    held();
    assert.ok(await next);
    assert.deepEqual(slots.load, { serving: 1, waiting: 0 });
  });

  test('averageBusy: slots in use, weighted by time, since the previous call (S1.5, for heartbeats)', async () => {
    const clock = new ManualClock(0);
    const slots = new UploadSlots(4, 0, () => clock.now());
    const stay = new AbortController().signal;
    assert.equal(slots.averageBusy(), 0, 'no time gone by: the number in use now');
    const a = (await slots.enter(stay))!;
    clock.advance(1000); // 1 slot for 1 s
    const b = (await slots.enter(stay))!;
    const c = (await slots.enter(stay))!;
    const d = (await slots.enter(stay))!;
    clock.advance(3000); // 4 slots for 3 s
    assert.equal(slots.averageBusy(), (1 * 1000 + 4 * 3000) / 4000);
    clock.advance(2000); // all 4 still busy: a new window sees them full
    assert.equal(slots.averageBusy(), 4);
    for (const r of [a, b, c]) r();
    clock.advance(1000);
    d();
    clock.advance(1000);
    assert.equal(slots.averageBusy(), 0.5);
    // a slot handed from a release to a waiting request stays busy throughout
    const q = new UploadSlots(1, 1, () => clock.now());
    const first = (await q.enter(stay))!;
    const waiting = q.enter(stay);
    clock.advance(500);
    first();
    const second = (await waiting)!;
    clock.advance(500);
    assert.equal(q.averageBusy(), 1);
    second();
  });
});
