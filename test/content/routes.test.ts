import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { sha256Hex } from '../../src/core/crypto.ts';
import { checkManifest } from '../../src/content/manifest.ts';
import { readWholePiece } from '../../src/transfer/piece-source.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// S1.1 end to end: a real origin on loopback, driven through its HTTP API.

const KiB = 1024;
const MiB = 1024 * KiB;
const PIECE = 64 * KiB;
const MAX = 4 * MiB;

async function* chunks(bytes: Buffer, size = 50_000) {
  for (let off = 0; off < bytes.length; off += size) yield bytes.subarray(off, off + size);
}

function pieceFiles(dataDir: string): number {
  const dir = path.join(dataDir, 'pieces');
  if (!existsSync(dir)) return 0;
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;
}

for (const engine of testEngines()) {
  describe(`content API on ${engine.name}`, () => {
    let origin: TestOrigin;
    let publisher: { token: string; username: string };
    let member: { token: string };

    const upload = (query: string, body: unknown, opts: { token?: string; headers?: Record<string, string> } = {}) =>
      origin.call('POST', `/contents?${query}`, {
        token: opts.token ?? publisher.token,
        body,
        headers: { 'content-type': 'application/octet-stream', ...opts.headers },
      });
    const rows = async () => (await origin.db.db.selectFrom('contents').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n;
    const snapshot = async () => ({ rows: await rows(), pieces: pieceFiles(origin.config.dataDir), staging: readdirSync(path.join(origin.config.dataDir, 'staging')) });

    before(async () => {
      origin = await startTestOrigin({ engine, config: { pieceSize: PIECE, maxUploadBytes: MAX } });
      publisher = await origin.userWithRoles(['publisher']);
      member = await origin.userWithRoles(['member']);
    });
    after(async () => {
      await origin?.close();
    });

    test('publish a few MiB: the signed manifest’s pieces hash to the file’s slices', async () => {
      const file = randomBytes(3 * MiB + 12_345);
      const res = await upload('title=Harbour%20Lights&genre=Documentary&price=1500&summary=Boats&author=K.%20Ito', chunks(file));
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const expectedPieces = Math.ceil(file.length / PIECE);
      assert.equal(res.body.title, 'Harbour Lights');
      assert.equal(res.body.pieces, expectedPieces);
      assert.equal(res.body.totalSize, file.length);
      const id: string = res.body.id;

      const { body: originInfo } = await origin.call('GET', '/origin');
      const manifest = await origin.call('GET', `/contents/${id}/manifest`);
      assert.equal(manifest.status, 200);
      assert.deepEqual(manifest.body, res.body.manifest);
      assert.deepEqual(checkManifest(manifest.body, id, originInfo.publicKey), { ok: true });
      const hashes: string[] = manifest.body.body.pieces;
      assert.equal(hashes.length, expectedPieces);
      hashes.forEach((h, i) => assert.equal(h, sha256Hex(file.subarray(i * PIECE, (i + 1) * PIECE)), `piece ${i}`));

      const item = await origin.call('GET', `/contents/${id}`);
      assert.equal(item.status, 200);
      assert.deepEqual(item.body, {
        id,
        title: 'Harbour Lights',
        summary: 'Boats',
        author: 'K. Ito',
        genre: 'Documentary',
        price: 1500,
        publisher: publisher.username,
        totalSize: file.length,
        pieces: expectedPieces,
        createdAt: manifest.body.body.createdAt,
        thumbnailUrl: null,
      });

      // The origin's piece source serves the same bytes.
      const last = expectedPieces - 1;
      assert.deepEqual(await readWholePiece(origin.content.pieceReader(), id, last), file.subarray(last * PIECE));

      // S1.1 idempotency: the same bytes and metadata again is the same content, nothing new stored.
      const before = await snapshot();
      origin.clock.advance(5 * 60_000);
      const again = await upload('title=Harbour%20Lights&genre=Documentary&price=1500&summary=Boats&author=K.%20Ito', file);
      assert.equal(again.status, 201);
      assert.equal(again.body.id, id);
      assert.deepEqual(await snapshot(), before);
    });

    test('refusals carry exact codes and leave no row, piece file or staging dir', async () => {
      const before = await snapshot();
      const ok = 'title=T&genre=G&price=1';
      const cases: Array<[string, Promise<{ status: number; body: any }>, number, string]> = [
        ['oversize with Content-Length', upload(ok, randomBytes(MAX + 1)), 413, 'upload_too_large'],
        ['oversize, chunked', upload(ok, chunks(randomBytes(MAX + 1), 256 * KiB)), 413, 'upload_too_large'],
        ['empty', upload(ok, Buffer.alloc(0)), 400, 'empty_upload'],
        ['missing title', upload('genre=G&price=1', randomBytes(100)), 400, 'invalid_title'],
        ['negative price', upload('title=T&genre=G&price=-5', randomBytes(100)), 400, 'invalid_price'],
        ['blank title', upload('title=%20%20&genre=G&price=1', randomBytes(100)), 400, 'invalid_title'],
        ['JSON body', upload(ok, '{}', { headers: { 'content-type': 'application/json' } }), 415, 'unsupported_media_type'],
        ['member role', upload(ok, randomBytes(100), { token: member.token }), 403, 'forbidden'],
        ['no token', origin.call('POST', `/contents?${ok}`, { body: randomBytes(100), headers: { 'content-type': 'application/octet-stream' } }), 401, 'unauthenticated'],
      ];
      for (const [name, pending, status, code] of cases) {
        const res = await pending;
        assert.equal(res.status, status, `${name}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body?.error?.code, code, name);
        assert.equal(typeof res.body.error.message, 'string');
      }
      assert.deepEqual(await snapshot(), before);
    });

    test('an oversize upload is refused without reading it all', async () => {
      // A body far beyond the limit, produced lazily: the reply must come long before it ends.
      let sent = 0;
      async function* endless() {
        while (sent < 512 * MiB) {
          sent += MiB;
          yield Buffer.alloc(MiB);
        }
      }
      const res = await upload('title=T&genre=G&price=1', endless());
      assert.equal(res.status, 413);
      assert.equal(res.body.error.code, 'upload_too_large');
      assert.ok(sent < 64 * MiB, `sent ${sent / MiB} MiB before the refusal`);
    });

    test('a client that gives up mid-upload leaves nothing behind', async () => {
      const before = await snapshot();
      const abort = new AbortController();
      async function* stalls() {
        yield randomBytes(3 * PIECE);
        await new Promise((r) => setTimeout(r, 100));
        abort.abort();
        yield randomBytes(PIECE);
      }
      const sending = fetch(`${origin.url}/contents?title=T&genre=G&price=1`, {
        method: 'POST',
        headers: { authorization: `Bearer ${publisher.token}`, 'content-type': 'application/octet-stream' },
        body: stalls(),
        duplex: 'half',
        signal: abort.signal,
      } as unknown as RequestInit);
      await assert.rejects(sending, { name: 'AbortError' });
      // The origin notices the reset asynchronously: wait for the staging area to be dropped.
      for (let i = 0; i < 100 && (await snapshot()).staging.length > 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(await snapshot(), before);
    });

    test('catalog: search by title, genre and publisher; page through 25 items by 10', async () => {
      const other = await origin.userWithRoles(['publisher']);
      const ids: string[] = [];
      for (let i = 0; i < 25; i++) {
        if (i % 4 === 0) origin.clock.advance(1000);
        const who = i % 5 === 0 ? other : publisher;
        const res = await upload(`title=Lecture%20${i}&genre=${i % 2 ? 'Physics' : 'Maths'}&price=${i}`, Buffer.from(`lecture ${i}`), { token: who.token });
        assert.equal(res.status, 201);
        ids.push(res.body.id);
      }
      const list = async (q: string) => {
        const res = await origin.call('GET', `/contents?${q}`);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        return res.body as { items: Array<{ id: string; title: string; publisher: string; genre: string }>; nextCursor: string | null };
      };

      assert.deepEqual((await list('q=lecture%2017')).items.map((i) => i.title), ['Lecture 17']);
      assert.equal((await list('genre=physics&limit=100')).items.length, 12);
      assert.equal((await list('q=PHYS&limit=100')).items.length, 12);
      const byOther = await list(`publisher=${other.username}&limit=100`);
      assert.deepEqual(byOther.items.map((i) => i.title).sort(), ['Lecture 0', 'Lecture 10', 'Lecture 15', 'Lecture 20', 'Lecture 5']);
      assert.ok(byOther.items.every((i) => i.publisher === other.username));
      assert.equal((await list(`q=${other.username}&limit=100`)).items.length, 5, 'q matches the publisher name too');

      const seen: string[] = [];
      const sizes: number[] = [];
      let cursor: string | null = null;
      do {
        const page = await list(`q=lecture&limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        sizes.push(page.items.length);
        seen.push(...page.items.map((i) => i.id));
        cursor = page.nextCursor;
      } while (cursor);
      assert.deepEqual(sizes, [10, 10, 5]);
      assert.equal(new Set(seen).size, 25, 'no duplicates');
      assert.deepEqual([...seen].sort(), [...ids].sort(), 'none missed');
      assert.equal(seen[0], ids[24], 'newest first');

      for (const [q, code] of [['limit=0', 'invalid_request'], ['limit=101', 'invalid_request'], ['cursor=bogus', 'invalid_cursor']]) {
        const res = await origin.call('GET', `/contents?${q}`);
        assert.equal(res.status, 400, q);
        assert.equal(res.body.error.code, code, q);
      }
    });

    test('unknown content is 404 unknown_content; a malformed ID is 400 invalid_content_id', async () => {
      const unknown = sha256Hex('never published');
      for (const url of [`/contents/${unknown}`, `/contents/${unknown}/manifest`]) {
        const res = await origin.call('GET', url);
        assert.equal(res.status, 404, url);
        assert.equal(res.body.error.code, 'unknown_content');
      }
      for (const url of ['/contents/xyz', `/contents/${unknown.toUpperCase()}/manifest`]) {
        const res = await origin.call('GET', url);
        assert.equal(res.status, 400, url);
        assert.equal(res.body.error.code, 'invalid_content_id');
      }
    });

    test('the content routes are in the OpenAPI description', async () => {
      const docs = await origin.call('GET', '/docs');
      for (const p of ['/contents', '/contents/{id}', '/contents/{id}/manifest']) assert.ok(docs.body.paths[p], p);
      assert.ok(docs.body.paths['/contents'].post.parameters.some((p: any) => p.name === 'price' && p.required));
    });
  });
}
