import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { sha256Hex } from '../../src/core/crypto.ts';
import { Api } from '../../src/core/http-client.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { BufferPool } from '../../src/transfer/buffer-pool.ts';
import { download, fileTarget } from '../../src/transfer/downloader.ts';
import { signGrantProof } from '../../src/transfer/grant-token.ts';
import { PieceClient, type FetchedPiece } from '../../src/transfer/piece-client.ts';
import { decodeRanges, MAX_RUN_PIECES, RUN_HEADER } from '../../src/transfer/piece-ranges.ts';
import { receiptFull, RECEIPT_MAX_PIECES, RECEIPT_MIN_PIECES, RECEIPT_SPAN_MS } from '../../src/transfer/receipt-book.ts';
import { SERVED_HEADER, verifyServed } from '../../src/transfer/served-attestation.ts';
import { startTamperProxy } from '../helpers/tamper-proxy.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #19: runs of pieces per request. One request asks for a piece and the ones after it
// (`?count=`); the source sends those it holds, from the first, says how many
// (`cascade-run`) and signs a served statement per piece; the receiver checks and keeps
// each piece as it arrives.

const PIECE = 64 * 1024;
const PIECES = 10;
describe('runs of pieces per request (#19)', () => {
  let origin: TestOrigin;
  let work: string;
  let contentId: string;
  let file: Buffer;
  let device: Awaited<ReturnType<typeof deviceSession>>;
  let api: Api;
  let pool: Pool;

  before(async () => {
    origin = await startTestOrigin({ config: { pieceSize: PIECE } });
    work = mkdtempSync(path.join(os.tmpdir(), 'cascade-runs-'));
    const publisher = await origin.userWithRoles(['publisher']);
    file = randomBytes(PIECE * PIECES - 1000); // the last piece is short
    contentId = (await origin.call('POST', '/contents?title=Runs&genre=test&price=0', { token: publisher.token, body: file, headers: { 'content-type': 'application/octet-stream' } })).body.id;
    device = await deviceSession(new Api(origin.url, (await origin.userWithRoles(['member'])).token), path.join(work, 'home'));
    api = new Api(origin.url, device.token);
    pool = new Pool(origin.url, { connections: 2 });
  });
  after(async () => {
    await pool.destroy();
    await origin.close();
    rmSync(work, { recursive: true, force: true });
  });

  const ask = async (grant: { id: string; token: string }, at: string) => {
    const res = await pool.request({ method: 'GET', path: `/pieces/${contentId}/${at}`, headers: { authorization: `Grant ${grant.token}`, 'cascade-proof': signGrantProof(device.keys.privateKey, grant.id, origin.clock.now()) } });
    return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
  };
  const piece = (i: number) => file.subarray(i * PIECE, Math.min(file.length, (i + 1) * PIECE));

  test('a run: the pieces in order, how many, and a served statement per piece that verifies; each piece noted as served', async () => {
    const grant = await api.post<{ id: string; token: string }>('/grants', { contentId });
    const res = await ask(grant, '2?count=4');
    assert.equal(res.status, 200);
    assert.equal(res.headers[RUN_HEADER], '4');
    assert.equal(Number(res.headers['content-length']), 4 * PIECE);
    assert.ok(res.body.equals(file.subarray(2 * PIECE, 6 * PIECE)));
    const statements = String(res.headers[SERVED_HEADER]).split(',');
    assert.equal(statements.length, 4);
    statements.forEach((s, k) => assert.ok(verifyServed(origin.keys.publicKeyB64, grant.id, 2 + k, s), `statement ${k}`));
    assert.equal(verifyServed(origin.keys.publicKeyB64, grant.id, 3, statements[0]), false, 'each statement names its own piece');
    // The origin's served log gets every piece of the run (written every 200 ms).
    for (let t = 0; ; t++) {
      const row = await origin.db.db.selectFrom('grant_served').select('pieces').where('grant_id', '=', grant.id).executeTakeFirst();
      if (row?.pieces === '2-5') break;
      assert.ok(t < 100, `served log: ${row?.pieces}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  test('a run stops at the end of the content and at the end of what the grant covers; a single piece has no run header', async () => {
    const grant = await api.post<{ id: string; token: string }>('/grants', { contentId });
    const tail = await ask(grant, '8?count=4');
    assert.equal(tail.headers[RUN_HEADER], '2');
    assert.ok(tail.body.equals(Buffer.concat([piece(8), piece(9)])));
    assert.equal(String(tail.headers[SERVED_HEADER]).split(',').length, 2);

    const narrow = await api.post<{ id: string; token: string }>('/grants', { contentId, pieces: '0-2' });
    const cut = await ask(narrow, '1?count=4');
    assert.equal(cut.headers[RUN_HEADER], '2');
    assert.ok(cut.body.equals(Buffer.concat([piece(1), piece(2)])));

    const one = await ask(grant, '5');
    assert.equal(one.headers[RUN_HEADER], undefined);
    assert.ok(one.body.equals(piece(5)));
    assert.equal(String(one.headers[SERVED_HEADER]).split(',').length, 1);
  });

  test(`a count of 0, over ${MAX_RUN_PIECES} or not a number is refused as invalid_request`, async () => {
    const grant = await api.post<{ id: string; token: string }>('/grants', { contentId });
    for (const q of ['0', String(MAX_RUN_PIECES + 1), 'many']) {
      const res = await ask(grant, `0?count=${q}`);
      assert.equal(res.status, 400, q);
      assert.equal(JSON.parse(res.body.toString()).error.code, 'invalid_request');
    }
  });

  test('the client tells each piece as it arrives, hashed; fewer than asked when the source holds fewer', async () => {
    const grant = await api.post<{ id: string; token: string }>('/grants', { contentId });
    const client = new PieceClient({ sourceUrl: origin.url, grant: { ...grant, contentId }, receiverKey: device.keys.privateKey, clock: origin.clock });
    try {
      const told: [number, FetchedPiece][] = [];
      const intos = [6, 7, 8, 9].map((i) => Buffer.alloc(piece(i).length));
      assert.equal(await client.fetchRun(6, intos, (k, p) => told.push([k, p])), 4);
      assert.deepEqual(told.map(([k]) => k), [0, 1, 2, 3]);
      told.forEach(([k, p]) => {
        assert.equal(p.sha256, sha256Hex(piece(6 + k)));
        assert.equal(p.bytes, piece(6 + k).length);
        assert.ok(intos[k].equals(piece(6 + k)));
        assert.ok(verifyServed(origin.keys.publicKeyB64, grant.id, 6 + k, p.served!));
      });
      // Pieces 9, 10, 11 asked for: the content has no 10 and 11.
      const more: number[] = [];
      assert.equal(await client.fetchRun(9, [Buffer.alloc(piece(9).length), Buffer.alloc(PIECE), Buffer.alloc(PIECE)], (k) => more.push(k)), 1);
      assert.deepEqual(more, [0]);
    } finally {
      await client.close();
    }
  });

  test('downloads ask in runs: fewer requests than pieces, every piece verified and receipted once; runPieces 1 asks piece by piece', async () => {
    const proxy = await startTamperProxy(origin.url, (_p, body) => body, { headers: (_p, h) => h });
    try {
      for (const [runPieces, most] of [[4, 3], [1, PIECES]] as const) {
        const before = proxy.seen.length;
        const out = path.join(work, `runs-${runPieces}.bin`);
        const result = await download({ api, originKey: origin.keys.publicKeyB64, device, contentId, files: fileTarget(out), sourceUrlOverride: proxy.url, runPieces, concurrency: 8 });
        assert.ok(readFileSync(out).equals(file));
        assert.equal(result.fetchedPieces, PIECES);
        const asked = proxy.seen.slice(before).filter((p) => p.startsWith('/pieces/'));
        assert.ok(asked.length <= most, `${asked.length} requests for ${PIECES} pieces in runs of ${runPieces}: ${asked.join(' ')}`);
        if (runPieces === 1) assert.ok(asked.every((p) => !p.includes('?count')));
      }
      // Every piece of both downloads receipted exactly once.
      const receipts = await origin.db.db.selectFrom('receipts').select('pieces').where('receiver_id', '=', device.terminalId).where('content_id', '=', contentId).execute();
      const counted = receipts.flatMap((r) => decodeRanges(r.pieces, PIECES)!).sort((a, b) => a - b);
      assert.deepEqual(counted, [...Array(PIECES).keys()].flatMap((i) => [i, i]));
    } finally {
      await proxy.close();
    }
  });
});

test('receipts close after RECEIPT_MIN_PIECES pieces and RECEIPT_SPAN_MS, or at RECEIPT_MAX_PIECES; an explicit batch is exact (#19)', () => {
  assert.equal(receiptFull(RECEIPT_MIN_PIECES - 1, RECEIPT_SPAN_MS * 10), false, 'too few pieces, however long');
  assert.equal(receiptFull(RECEIPT_MIN_PIECES, RECEIPT_SPAN_MS - 1), false, 'enough pieces, too soon');
  assert.equal(receiptFull(RECEIPT_MIN_PIECES, RECEIPT_SPAN_MS), true);
  assert.equal(receiptFull(RECEIPT_MAX_PIECES - 1, 0), false);
  assert.equal(receiptFull(RECEIPT_MAX_PIECES, 0), true, 'a fast transfer still closes a receipt now and then');
  assert.equal(receiptFull(8, 0, 8), true);
  assert.equal(receiptFull(7, RECEIPT_SPAN_MS * 10, 8), false);
});

test('the buffer pool hands back buffers of the asked length, reuses what it was given, and keeps no more than its bound', () => {
  const pool = new BufferPool(3 * 1024 * 1024);
  const a = pool.take(1000, 1024 * 1024);
  assert.equal(a.length, 1000);
  a.fill(7);
  pool.give(a);
  assert.equal(pool.bytes, 1024 * 1024);
  const b = pool.take(5000, 1024 * 1024);
  assert.equal(b.buffer, a.buffer, 'the same memory, reused');
  assert.equal(b.length, 5000);
  assert.equal(pool.bytes, 0);
  const others = [pool.take(10, 1024 * 1024), pool.take(10, 1024 * 1024), pool.take(10, 1024 * 1024), pool.take(10, 1024 * 1024)];
  others.forEach((x) => pool.give(x));
  assert.equal(pool.bytes, 3 * 1024 * 1024, 'the fourth is dropped: the pool is full');
  pool.give(b.subarray(10)); // not from take(): ignored
  assert.equal(pool.bytes, 3 * 1024 * 1024);
  const small = pool.take(100, 64 * 1024);
  assert.equal(small.buffer.byteLength, 64 * 1024, 'another size class, not a megabyte');
});
