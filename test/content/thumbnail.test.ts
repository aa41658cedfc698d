import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { crc32, deflateSync } from 'node:zlib';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { runCli } from '../helpers/processes.ts';

// S1.1 thumbnails (#13): the publisher of a content uploads a PNG, JPEG, WebP or GIF of at
// most 256 KiB and 4096×4096, its type read from the bytes; anyone fetches it with an ETag
// and a day's caching; the catalog names it. Every refusal leaves everything as it was.

/** A real PNG of `w`×`h` grey pixels; `pad` extra bytes in a private ancillary chunk. */
export function png(w: number, h: number, pad = 0): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  const rows = Buffer.alloc(Math.min(h, 64) * (w + 1), 0x80);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    ...(pad ? [chunk('paDd', randomBytes(pad))] : []),
    chunk('IDAT', deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A minimal GIF header of `w`×`h` (image-size reads only the header). */
const gif = (w: number, h: number) => {
  const b = Buffer.alloc(13);
  b.write('GIF89a', 0, 'latin1');
  b.writeUInt16LE(w, 6);
  b.writeUInt16LE(h, 8);
  return Buffer.concat([b, Buffer.from([0x3b])]);
};

for (const engine of testEngines()) {
  describe(`S1.1 thumbnails (${engine.name})`, () => {
    let o: TestOrigin;
    let pub: { token: string; userId: string };
    let other: { token: string; userId: string };
    let contentId: string;

    before(async () => {
      o = await startTestOrigin({ engine, config: { pieceSize: 16_384 } });
      pub = await o.userWithRoles(['publisher']);
      other = await o.userWithRoles(['publisher']);
      const res = await o.call('POST', '/contents?title=Pictured&genre=art&price=5', { token: pub.token, body: randomBytes(5000), headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      contentId = res.body.id;
    });
    after(async () => {
      await o?.close();
    });

    const put = (body: any, type: string, token = pub.token, id = contentId) => o.call('PUT', `/contents/${id}/thumbnail`, { token, body, headers: { 'content-type': type } });

    async function refused(run: () => Promise<{ status: number; body: any }>, status: number, code: string) {
      const before = await snapshotTables(o.db.db);
      const res = await run();
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.equal(res.body.error.code, code, res.body.error.message);
      assert.deepEqual(await snapshotTables(o.db.db), before, `${code}: nothing changed`);
      return res;
    }

    test('S1.1 no thumbnail yet: thumbnailUrl null, GET answers thumbnail_not_found', async () => {
      assert.equal((await o.call('GET', `/contents/${contentId}`)).body.thumbnailUrl, null);
      const res = await o.call('GET', `/contents/${contentId}/thumbnail`);
      assert.equal(res.status, 404);
      assert.equal(res.body.error.code, 'thumbnail_not_found');
    });

    test('S1.1 refusals: wrong type, type not matching the bytes, too large (declared or streamed), too wide, not the publisher', async () => {
      await refused(() => put(Buffer.from('not an image at all'), 'image/png'), 400, 'invalid_image');
      await refused(() => put(png(8, 8), 'image/jpeg'), 400, 'invalid_image'); // PNG bytes, JPEG declared
      await refused(() => put(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'), 'image/svg+xml'), 400, 'invalid_image');
      await refused(() => put(png(5000, 10), 'image/png'), 400, 'invalid_image');
      await refused(() => put(png(8, 8), 'application/octet-stream'), 400, 'invalid_image');
      await refused(() => put(Buffer.alloc(0), 'image/png'), 400, 'invalid_image');
      const big = png(16, 16, 300 * 1024);
      await refused(() => put(big, 'image/png'), 413, 'image_too_large');
      // Without a declared length (chunked), the parser's limit refuses it the same way.
      await refused(() => o.call('PUT', `/contents/${contentId}/thumbnail`, { token: pub.token, body: Readable.from([big.subarray(0, 200_000), big.subarray(200_000)]), headers: { 'content-type': 'image/png' } }), 413, 'image_too_large');
      await refused(() => put(png(8, 8), 'image/png', other.token), 403, 'not_your_content');
      const member = await o.userWithRoles(['member']);
      await refused(() => put(png(8, 8), 'image/png', member.token), 403, 'forbidden');
      await refused(() => put(png(8, 8), 'image/png', pub.token, 'a'.repeat(64)), 404, 'unknown_content');
    });

    test('S1.1 a valid PNG: stored, named in the catalog, served with ETag and a day of caching; replaced by a GIF', async () => {
      const image = png(64, 48);
      const res = await put(image, 'image/png');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.match(res.body.thumbnailUrl, new RegExp(`^/contents/${contentId}/thumbnail\\?v=[A-Za-z0-9_-]{16}$`));
      assert.equal((await o.call('GET', `/contents/${contentId}`)).body.thumbnailUrl, res.body.thumbnailUrl);
      const listed = (await o.call('GET', '/contents?q=Pictured')).body.items.find((i: any) => i.id === contentId);
      assert.equal(listed.thumbnailUrl, res.body.thumbnailUrl);

      const got = await fetch(o.url + res.body.thumbnailUrl);
      assert.equal(got.status, 200);
      assert.equal(got.headers.get('content-type'), 'image/png');
      assert.equal(got.headers.get('cache-control'), 'public, max-age=86400');
      assert.equal(got.headers.get('x-content-type-options'), 'nosniff');
      const etag = got.headers.get('etag')!;
      assert.match(etag, /^"[A-Za-z0-9_-]+"$/);
      assert.ok(Buffer.from(await got.arrayBuffer()).equals(image));
      const again = await fetch(o.url + `/contents/${contentId}/thumbnail`, { headers: { 'if-none-match': etag } });
      assert.equal(again.status, 304);
      assert.equal(again.headers.get('etag'), etag);

      const second = await put(gif(10, 10), 'image/gif');
      assert.equal(second.status, 200);
      assert.notEqual(second.body.thumbnailUrl, res.body.thumbnailUrl, 'a new image, a new URL');
      const now = await fetch(o.url + `/contents/${contentId}/thumbnail`, { headers: { 'if-none-match': etag } });
      assert.equal(now.status, 200, 'the old ETag no longer matches');
      assert.equal(now.headers.get('content-type'), 'image/gif');
    });
  });
}

describe('S1.1 cascade publish --thumbnail', () => {
  let o: TestOrigin;
  let home: string;
  before(async () => {
    o = await startTestOrigin({ config: { pieceSize: 16_384 } });
    await o.userWithRoles(['publisher'], 'thumbnail_cli_pub');
    home = mkdtempSync(path.join(os.tmpdir(), 'cascade-thumb-'));
    const login = await runCli(['--origin', o.url, 'login', '--username', 'thumbnail_cli_pub', '--password', 'correct horse battery'], { home });
    assert.equal(login.code, 0, login.stderr);
    writeFileSync(path.join(home, 'film.bin'), randomBytes(3000));
    writeFileSync(path.join(home, 'cover.png'), png(32, 32));
    writeFileSync(path.join(home, 'cover.txt'), 'not an image');
    writeFileSync(path.join(home, 'huge.png'), png(16, 16, 300 * 1024));
  });
  after(async () => {
    await o?.close();
    rmSync(home, { recursive: true, force: true });
  });

  test('S1.1 publishes, then uploads the thumbnail; the catalog names it', async () => {
    const r = await runCli(['--json', 'publish', path.join(home, 'film.bin'), '--title', 'With cover', '--genre', 'film', '--price', '1', '--thumbnail', path.join(home, 'cover.png')], { home });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim());
    assert.match(out.thumbnailUrl, /^\/contents\/[0-9a-f]{64}\/thumbnail\?v=/);
    assert.equal((await o.call('GET', `/contents/${out.id}`)).body.thumbnailUrl, out.thumbnailUrl);
    const img = await fetch(o.url + out.thumbnailUrl);
    assert.equal(img.headers.get('content-type'), 'image/png');
  });

  test('S1.1 a bad or too large image is refused before anything is published', async () => {
    const before = await snapshotTables(o.db.db);
    for (const [file, code] of [['cover.txt', 'invalid_image'], ['huge.png', 'image_too_large']]) {
      const r = await runCli(['publish', path.join(home, 'film.bin'), '--title', `Bad ${file}`, '--genre', 'film', '--price', '1', '--thumbnail', path.join(home, file)], { home });
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, new RegExp(`\\(${code}\\)`), r.stderr);
      assert.match(r.stderr, /Nothing was published/);
    }
    assert.deepEqual(await snapshotTables(o.db.db), before, 'nothing published');
  });
});
