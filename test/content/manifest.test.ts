import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair, sha256Hex } from '../../src/core/crypto.ts';
import { canonicalBody, checkManifest, contentIdOf, pieceLength, pieceOffset, signManifest, type ManifestBody } from '../../src/content/manifest.ts';

function body(overrides: Partial<ManifestBody> = {}): ManifestBody {
  return {
    v: 1,
    title: 'Night Train',
    summary: 'a film',
    author: 'A. Author',
    genre: 'drama',
    price: 1200,
    publisher: 'studio',
    pieceSize: 4,
    totalSize: 10,
    pieces: [sha256Hex('aaaa'), sha256Hex('bbbb'), sha256Hex('cc')],
    createdAt: '2026-01-01T00:00:00.000Z',
    ...overrides,
  };
}

describe('manifest (S1.1, S1.6)', () => {
  const origin = generateKeyPair();

  test('the content ID is the SHA-256 of the canonical body, independent of key order', () => {
    const b = body();
    const { id } = signManifest(b, origin.privateKey);
    assert.equal(id, sha256Hex(canonicalBody(b)));
    assert.equal(id, contentIdOf(b));
    const reordered = Object.fromEntries(Object.entries(b).reverse()) as unknown as ManifestBody;
    assert.equal(contentIdOf(reordered), id);
    assert.notEqual(contentIdOf(body({ price: 1201 })), id);
  });

  test('a signed manifest checks against its ID and the origin key', () => {
    const { id, manifest } = signManifest(body(), origin.privateKey);
    assert.deepEqual(checkManifest(manifest, id, origin.publicKey), { ok: true });
    assert.deepEqual(checkManifest(manifest, id, origin.publicKeyB64), { ok: true }, 'also with the base64url public key');
  });

  test('a tampered title is rejected', () => {
    const { id, manifest } = signManifest(body(), origin.privateKey);
    const tampered = { ...manifest, body: { ...manifest.body, title: 'Night Train (uncut)' } };
    const r = checkManifest(tampered, id, origin.publicKey);
    assert.equal(r.ok, false);
    // Even with the ID recomputed from the tampered body, the signature no longer fits.
    const r2 = checkManifest(tampered, contentIdOf(tampered.body), origin.publicKey);
    assert.deepEqual(r2, { ok: false, reason: 'manifest signature is not the origin’s' });
  });

  test('a manifest signed by another key is rejected', () => {
    const mallory = generateKeyPair();
    const { id, manifest } = signManifest(body(), mallory.privateKey);
    assert.deepEqual(checkManifest(manifest, id, origin.publicKey), { ok: false, reason: 'manifest signature is not the origin’s' });
  });

  test('a piece count that does not fit the total size is rejected', () => {
    const { id, manifest } = signManifest(body({ totalSize: 13 }), origin.privateKey);
    assert.deepEqual(checkManifest(manifest, id, origin.publicKey), { ok: false, reason: 'piece count does not match total size' });
  });

  test('piece lengths and offsets: full pieces then a short last one', () => {
    const b = body();
    assert.deepEqual([0, 1, 2].map((i) => pieceLength(b, i)), [4, 4, 2]);
    assert.deepEqual([0, 1, 2].map((i) => pieceOffset(b, i)), [0, 4, 8]);
    assert.throws(() => pieceLength(b, 3), RangeError);
  });
});
