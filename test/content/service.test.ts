import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { AccountService } from '../../src/accounts/service.ts';
import { ManualClock } from '../../src/core/clock.ts';
import { loadConfig, type Config } from '../../src/core/config.ts';
import { generateKeyPair, sha256Hex } from '../../src/core/crypto.ts';
import { AppError } from '../../src/core/errors.ts';
import { checkManifest } from '../../src/content/manifest.ts';
import { PieceStore } from '../../src/content/piece-store.ts';
import { ContentService } from '../../src/content/service.ts';
import { existingContents } from '../../src/content/queries.ts';
import { readWholePiece } from '../../src/transfer/piece-source.ts';
import type { Db, DbHandle } from '../../src/db/connection.ts';
import { testEngines } from '../helpers/db.ts';

// S1.1 publishing and the catalog, against the service directly, on every engine.

const PIECE = 16 * 1024;

/** Chunks of awkward sizes, so pieces straddle chunk boundaries. */
async function* chunked(bytes: Buffer, sizes = [1000, 40_000, 7, PIECE]) {
  let off = 0;
  for (let i = 0; off < bytes.length; i++) {
    const n = sizes[i % sizes.length];
    yield bytes.subarray(off, off + n);
    off += n;
  }
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);
}

/** Counts `selectFrom` calls, to prove the piece hot path makes no query. */
function countingDb(db: Db) {
  const counter = { selects: 0 };
  const proxy = new Proxy(db, {
    get(target, prop, receiver) {
      if (prop === 'selectFrom') counter.selects++;
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { db: proxy as Db, counter };
}

for (const engine of testEngines()) {
  describe(`ContentService on ${engine.name}`, () => {
    let handle: DbHandle;
    let dataDir: string;
    let clock: ManualClock;
    let service: ContentService;
    let counter: { selects: number };
    let alice: { id: string; username: string };
    let bob: { id: string; username: string };
    const keys = generateKeyPair();
    const config: Config = { ...loadConfig({}), pieceSize: PIECE, maxUploadBytes: 200_000 };

    const stored = () => ({
      pieces: filesUnder(path.join(dataDir, 'pieces')).length,
      staging: readdirSync(path.join(dataDir, 'staging')).length,
    });
    const rowCount = async () => (await handle.db.selectFrom('contents').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n;
    const refusal = async (p: Promise<unknown>, code: string, status: number) => {
      await assert.rejects(p, (err: unknown) => {
        assert.ok(err instanceof AppError, `expected an AppError, got ${err}`);
        assert.equal(err.code, code);
        assert.equal(err.status, status);
        return true;
      });
    };

    before(async () => {
      handle = await engine.open();
      dataDir = mkdtempSync(path.join(os.tmpdir(), 'cascade-content-'));
      clock = new ManualClock(Date.UTC(2026, 2, 1));
      const counting = countingDb(handle.db);
      counter = counting.counter;
      service = new ContentService({ db: counting.db, pieces: new PieceStore(path.join(dataDir, 'pieces')), keys, clock, config });
      const accounts = new AccountService(handle.db, clock);
      alice = await accounts.createUser('alice', 'correct horse battery', ['publisher']);
      bob = await accounts.createUser('bob.films', 'correct horse battery', ['publisher']);
    });
    after(async () => {
      await handle?.close();
      rmSync(dataDir, { recursive: true, force: true });
    });

    test('publish cuts the stream into signed pieces that hash to the file’s slices', async () => {
      const bytes = randomBytes(3 * PIECE + 123);
      const r = await service.publish(alice, { title: 'Sea Shanties', genre: 'Music', price: 250, summary: ' songs ', author: 'Crew' }, chunked(bytes));
      assert.equal(r.pieces, 4);
      assert.equal(r.totalSize, bytes.length);
      assert.deepEqual(checkManifest(r.manifest, r.id, keys.publicKey), { ok: true });
      const b = r.manifest.body;
      assert.equal(b.publisher, 'alice');
      assert.equal(b.summary, 'songs', 'text fields are trimmed');
      assert.equal(b.createdAt, new Date(clock.now()).toISOString());
      assert.deepEqual(b.pieces, [0, 1, 2, 3].map((i) => sha256Hex(bytes.subarray(i * PIECE, (i + 1) * PIECE))));
      const reader = service.pieceReader();
      for (let i = 0; i < 4; i++) assert.deepEqual(await readWholePiece(reader, r.id, i), bytes.subarray(i * PIECE, (i + 1) * PIECE));
      assert.equal(await readWholePiece(reader, r.id, 4), null);
      assert.equal(await readWholePiece(reader, r.id, -1), null);
      assert.equal(await readWholePiece(reader, sha256Hex('nothing'), 0), null);
      assert.equal(await reader.manifest(sha256Hex('nothing')), null);
      assert.deepEqual(await service.getManifest(r.id), r.manifest);
      assert.deepEqual(stored(), { pieces: 4, staging: 0 });
    });

    test('serving pieces makes no database query once the manifest is cached', async () => {
      const r = await service.publish(alice, { title: 'Hot Path', genre: 'test', price: 0 }, Readable.from([randomBytes(5 * PIECE)]));
      const fresh = new ContentService({ db: (service as any).deps.db, pieces: (service as any).deps.pieces, keys, clock, config });
      const reader = fresh.pieceReader();
      const before = counter.selects;
      const all = await Promise.all([0, 1, 2, 3, 4].map((i) => readWholePiece(reader, r.id, i)));
      assert.ok(all.every((p) => p?.length === PIECE));
      for (let round = 0; round < 3; round++) for (let i = 0; i < 5; i++) await readWholePiece(reader, r.id, i);
      assert.equal(counter.selects - before, 1, 'one query loads the manifest for all concurrent and later reads');
    });

    test('re-publishing the same bytes and metadata returns the same content', async () => {
      const bytes = randomBytes(PIECE + 5);
      const meta = { title: 'Twice', genre: 'test', price: 10 };
      const first = await service.publish(alice, meta, chunked(bytes));
      const rows = await rowCount();
      const piecesBefore = stored().pieces;
      clock.advance(60_000); // later, so only the retry detection can make it the same
      const second = await service.publish(alice, meta, chunked(bytes));
      assert.equal(second.id, first.id);
      assert.deepEqual(second.manifest, first.manifest);
      assert.equal(await rowCount(), rows);
      assert.deepEqual(stored(), { pieces: piecesBefore, staging: 0 });
      // Different metadata (or another publisher) is another content, sharing the piece files.
      const third = await service.publish(alice, { ...meta, price: 11 }, chunked(bytes));
      assert.notEqual(third.id, first.id);
      assert.equal(stored().pieces, piecesBefore, 'content-addressed: no new piece files');
    });

    test('refusals leave no row, no piece file and no staging dir', async () => {
      const rows = await rowCount();
      const before = stored();
      await refusal(service.publish(alice, { title: 'Big', genre: 'x', price: 1 }, chunked(randomBytes(config.maxUploadBytes + 1))), 'upload_too_large', 413);
      await refusal(service.publish(alice, { title: 'Empty', genre: 'x', price: 1 }, chunked(Buffer.alloc(0))), 'empty_upload', 400);
      await refusal(service.publish(alice, { title: '  ', genre: 'x', price: 1 }, chunked(randomBytes(10))), 'invalid_title', 400);
      await refusal(service.publish(alice, { title: 't'.repeat(201), genre: 'x', price: 1 }, chunked(randomBytes(10))), 'invalid_title', 400);
      await refusal(service.publish(alice, { title: 'T', genre: '', price: 1 }, chunked(randomBytes(10))), 'invalid_genre', 400);
      await refusal(service.publish(alice, { title: 'T', genre: 'g'.repeat(61), price: 1 }, chunked(randomBytes(10))), 'invalid_genre', 400);
      for (const price of [-1, 1.5, 1e12 + 1, NaN]) {
        await refusal(service.publish(alice, { title: 'T', genre: 'x', price }, chunked(randomBytes(10))), 'invalid_price', 400);
      }
      // A stream that fails half way is not a refusal of ours, but must leave nothing either.
      async function* broken() {
        yield randomBytes(PIECE * 2);
        throw new Error('connection reset');
      }
      await assert.rejects(service.publish(alice, { title: 'Broken', genre: 'x', price: 1 }, broken()), /connection reset/);
      assert.equal(await rowCount(), rows);
      assert.deepEqual(stored(), before);
    });

    test('the largest accepted upload is exactly maxUploadBytes', async () => {
      const r = await service.publish(bob, { title: 'Exactly at the limit', genre: 'edge', price: 0 }, chunked(randomBytes(config.maxUploadBytes)));
      assert.equal(r.totalSize, config.maxUploadBytes);
    });

    test('catalog: get, search by title / genre / publisher, unknown and malformed IDs', async () => {
      const sci = await service.publish(bob, { title: 'Orbit 100% Real_Story', genre: 'SciFi', price: 900, author: 'Vera' }, chunked(randomBytes(100)));
      const item = await service.get(sci.id);
      assert.deepEqual(item, {
        id: sci.id,
        title: 'Orbit 100% Real_Story',
        summary: '',
        author: 'Vera',
        genre: 'SciFi',
        price: 900,
        publisher: 'bob.films',
        totalSize: 100,
        pieces: 1,
        createdAt: new Date(clock.now()).toISOString(),
        thumbnailUrl: null,
      });
      const ids = async (q: Parameters<ContentService['list']>[0]) => (await service.list({ limit: 100, ...q })).items.map((i) => i.id);
      assert.deepEqual(await ids({ q: 'orbit' }), [sci.id], 'title substring, any case');
      assert.deepEqual(await ids({ q: '100%' }), [sci.id], 'LIKE wildcards are taken literally');
      assert.deepEqual(await ids({ q: 'e_l' }), [], '"_" is not a wildcard (it would match "eal")');
      assert.deepEqual(await ids({ q: 'scif' }), [sci.id], 'genre substring');
      assert.deepEqual(await ids({ genre: 'scifi' }), [sci.id], 'genre filter ignores case');
      assert.deepEqual(await ids({ genre: 'sci' }), [], 'genre filter is exact');
      assert.ok((await ids({ q: 'BOB.F' })).includes(sci.id), 'publisher substring');
      const bobs = await ids({ publisher: 'bob.films' });
      assert.ok(bobs.includes(sci.id) && bobs.length === 2);
      assert.ok((await ids({ publisher: 'alice' })).every((id) => id !== sci.id));
      await refusal(service.get(sha256Hex('no such content')), 'unknown_content', 404);
      await refusal(service.getManifest(sha256Hex('no such content')), 'unknown_content', 404);
      await refusal(service.get('not-hex'), 'invalid_content_id', 400);
      const exist = await existingContents(handle.db, [sci.id, sha256Hex('nope'), 'junk', sci.id]);
      assert.deepEqual([...exist], [sci.id]);
    });

    test('paging 25 items by 10: three pages, newest first, none repeated or missed', async () => {
      const published: string[] = [];
      for (let i = 0; i < 25; i++) {
        if (i % 3 === 0) clock.advance(1000); // several items share a timestamp: ties break by ID
        published.push((await service.publish(alice, { title: `Episode ${i}`, genre: 'serial', price: i }, chunked(Buffer.from(`episode ${i}`)))).id);
      }
      const seen: string[] = [];
      const sizes: number[] = [];
      let cursor: string | undefined;
      do {
        const page = await service.list({ genre: 'serial', limit: 10, cursor });
        sizes.push(page.items.length);
        seen.push(...page.items.map((i) => i.id));
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      assert.deepEqual(sizes, [10, 10, 5]);
      assert.equal(new Set(seen).size, 25);
      assert.deepEqual(new Set(seen), new Set(published));
      const all = (await service.list({ genre: 'serial', limit: 100 })).items;
      assert.deepEqual(all.map((i) => i.id), seen, 'pages concatenate to the full list');
      for (let i = 1; i < all.length; i++) assert.ok(all[i - 1].createdAt >= all[i].createdAt, 'newest first');
      await refusal(service.list({ cursor: 'garbage' }), 'invalid_cursor', 400);
      await refusal(service.list({ limit: 0 }), 'invalid_limit', 400);
    });
  });
}
