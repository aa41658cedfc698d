import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { OpenFiles } from '../../src/content/open-files.ts';

/** Descriptors this process holds on files under `dir` (others come and go with the test runner). */
const openFdsUnder = (dir: string) =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir);
    } catch {
      return false; // closed meanwhile
    }
  }).length;

test('kept-open files: reads are right, at most `max` stay open, and eviction waits for readers', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cascade-of-'));
  try {
    const files = Array.from({ length: 20 }, (_, i) => {
      const f = path.join(dir, `f${i}`);
      writeFileSync(f, Buffer.alloc(1000 + i, i));
      return f;
    });
    const cache = new OpenFiles(4);
    const openFds = () => openFdsUnder(dir);
    assert.equal(openFds(), 0);
    // Many concurrent reads across more files than the cache holds.
    const results = await Promise.all(
      [...Array(200).keys()].map(async (k) => {
        const i = k % 20;
        const buf = Buffer.alloc(2000);
        const n = await cache.read(files[i], buf);
        return n === 1000 + i && buf.subarray(0, n).every((b) => b === i);
      }),
    );
    assert.ok(results.every(Boolean), 'every read returned its own file’s bytes');
    // Evicted descriptors are closed asynchronously (fs.close): give those closes a moment.
    for (let i = 0; i < 100 && openFds() > 4; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(openFds() <= 4, `${openFds()} descriptors still open`);
    assert.equal(await cache.read(path.join(dir, 'missing'), Buffer.alloc(10)), null);
    cache.closeAll();
    for (let i = 0; i < 100 && openFds() > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(openFds(), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
