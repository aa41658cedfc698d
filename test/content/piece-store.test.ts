import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sha256Hex } from '../../src/core/crypto.ts';
import { PieceStore } from '../../src/content/piece-store.ts';

function tempStore() {
  const root = mkdtempSync(path.join(os.tmpdir(), 'cascade-pieces-'));
  const store = new PieceStore(path.join(root, 'pieces'));
  return { root, store, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Every file under `dir`, recursively (relative paths). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

describe('PieceStore', () => {
  test('commit moves staged pieces into content-addressed paths and removes the staging dir', async () => {
    const { root, store, cleanup } = tempStore();
    try {
      const a = Buffer.from('piece a');
      const b = Buffer.from('piece b');
      const staging = store.createStaging();
      await staging.write(sha256Hex(a), a);
      await staging.write(sha256Hex(b), b);
      await staging.write(sha256Hex(a), a); // a repeated piece is staged once
      assert.equal(staging.size, 2);
      assert.equal(await store.has(sha256Hex(a)), false, 'nothing is visible before commit');
      assert.equal(await store.read(sha256Hex(a)), null);

      await staging.commit();
      assert.equal(await store.has(sha256Hex(a)), true);
      assert.deepEqual(await store.read(sha256Hex(b)), b);
      assert.deepEqual(await store.read(sha256Hex(b), b.length), b);
      assert.ok(existsSync(path.join(root, 'pieces', sha256Hex(a).slice(0, 2), sha256Hex(a))));
      assert.deepEqual(readdirSync(path.join(root, 'staging')), []);
    } finally {
      cleanup();
    }
  });

  test('abort leaves nothing in the store and no staging dir', async () => {
    const { root, store, cleanup } = tempStore();
    try {
      const staging = store.createStaging();
      const bytes = Buffer.alloc(1000, 7);
      await staging.write(sha256Hex(bytes), bytes);
      assert.equal(readdirSync(path.join(root, 'staging')).length, 1, 'the piece is staged');
      await staging.abort();
      assert.equal(await store.has(sha256Hex(bytes)), false);
      assert.deepEqual(filesUnder(path.join(root, 'pieces')), []);
      assert.deepEqual(readdirSync(path.join(root, 'staging')), []);
      await assert.rejects(staging.write(sha256Hex(bytes), bytes), /committed or aborted/);
    } finally {
      cleanup();
    }
  });

  test('committing a piece the store already holds skips it', async () => {
    const { root, store, cleanup } = tempStore();
    try {
      const bytes = Buffer.from('shared piece');
      const first = store.createStaging();
      await first.write(sha256Hex(bytes), bytes);
      await first.commit();
      const second = store.createStaging();
      await second.write(sha256Hex(bytes), bytes);
      await second.commit();
      assert.deepEqual(filesUnder(path.join(root, 'pieces')), [path.join(sha256Hex(bytes).slice(0, 2), sha256Hex(bytes))]);
      assert.deepEqual(readdirSync(path.join(root, 'staging')), []);
    } finally {
      cleanup();
    }
  });

  test('read returns null for a missing piece or a file of the wrong length', async () => {
    const { store, cleanup } = tempStore();
    try {
      const bytes = Buffer.from('0123456789');
      const staging = store.createStaging();
      await staging.write(sha256Hex(bytes), bytes);
      await staging.commit();
      assert.equal(await store.read(sha256Hex('absent')), null);
      assert.equal(await store.read(sha256Hex(bytes), 9), null, 'longer than the manifest says');
      assert.equal(await store.read(sha256Hex(bytes), 11), null, 'shorter than the manifest says');
      assert.throws(() => store.pathOf('../../etc/passwd'), /not a SHA-256/);
    } finally {
      cleanup();
    }
  });

  test('construction removes staging dirs left by a dead process, keeps live ones', async () => {
    const { root, store, cleanup } = tempStore();
    try {
      const live = store.createStaging();
      await live.write(sha256Hex('x'), Buffer.from('x'));
      const staging = path.join(root, 'staging');
      const deadPid = path.join(staging, '999999999-deadbeef-1-0000');
      const reusedPid = path.join(staging, `${process.pid}-notaliveinstance-1-0000`);
      for (const d of [deadPid, reusedPid]) {
        mkdirSync(d);
        writeFileSync(path.join(d, sha256Hex('y')), 'y');
      }
      new PieceStore(path.join(root, 'pieces'));
      assert.deepEqual(readdirSync(staging), [path.basename(live.dir)]);
      await live.abort();
    } finally {
      cleanup();
    }
  });
});
