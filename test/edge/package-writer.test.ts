import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { hashFile, isoFiles, readmeText, removeWork, sanitiseFileName, writePackage, zipFiles, CHUNK, type PackageFormat } from '../../src/edge/store/package-writer.ts';

// S2.6 (#17 point 3): the store server's packages, made with the real xorriso and yazl and read
// back byte for byte (xorriso's own extraction for the ISO, yauzl for the zip).

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const mark = { serial: 4242, contentId: 'c'.repeat(64) };
const dir = mkdtempSync(path.join(os.tmpdir(), 'cascade-package-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function dataFile(name: string, bytes: number): { file: string; data: Buffer } {
  const data = randomBytes(bytes);
  const file = path.join(dir, name);
  writeFileSync(file, data);
  return { file, data };
}

/** The content's file, extracted with xorriso's own reader (osirrox), independent of isoFiles(). */
function extractIso(iso: string, name: string): Buffer {
  const to = path.join(dir, `x-${name}-${randomBytes(3).toString('hex')}`);
  execFileSync('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', `/${name}`, to], { stdio: 'pipe' });
  try {
    return readFileSync(to);
  } finally {
    rmSync(to, { force: true });
  }
}

describe('sanitiseFileName', () => {
  test('keeps safe names, drops what discs and file systems choke on', () => {
    assert.equal(sanitiseFileName('Holiday film.mp4'), 'Holiday_film.mp4');
    assert.equal(sanitiseFileName('Été à Zürich: «Teil 2»/3?.webm'), 'Ete_a_Zurich_Teil_23.webm');
    assert.equal(sanitiseFileName('../../etc/passwd'), 'etcpasswd');
    assert.equal(sanitiseFileName('.hidden'), 'hidden');
    assert.equal(sanitiseFileName('日本語'), 'content');
    assert.equal(sanitiseFileName('README.txt'), 'content');
    assert.equal(sanitiseFileName('CON\u0000NUL\r\n'), 'CONNUL');
    const long = sanitiseFileName(`${'a'.repeat(100)}.mkv`);
    assert.equal(long.length, 60);
    assert.ok(long.endsWith('.mkv'));
  });
});

for (const format of ['iso', 'zip'] as PackageFormat[]) {
  describe(`${format} package`, () => {
    test('holds the receiver’s copy byte for byte and the README, with an odd title', async () => {
      const { file, data } = dataFile(`odd-${format}`, 3 * CHUNK + 12345);
      const workDir = path.join(dir, `work-odd-${format}`);
      const title = 'Ça va? «Live» recording: 2026/12/01 * final';
      const res = await writePackage({ format, dataPath: file, contentId: mark.contentId, title, serial: mark.serial, workDir });
      assert.equal(res.fileName, 'Ca_va_Live_recording_20261201_final');
      assert.equal(res.markedBytes, data.length);
      assert.equal(res.markedSha256, sha(data));
      assert.deepEqual(await hashFile(res.path), { bytes: res.bytes, sha256: res.sha256 });

      const readme = readmeText({ title, contentId: mark.contentId, serial: mark.serial, fileName: res.fileName });
      assert.match(readme, /Delivery serial: 4242/);
      if (format === 'iso') {
        assert.ok(extractIso(res.path, res.fileName).equals(data), 'xorriso extracts the copy’s bytes');
        assert.equal(extractIso(res.path, 'README.txt').toString('utf8'), readme);
        const info = spawnSync('xorriso', ['-indev', res.path, '-pvd_info'], { encoding: 'utf8' });
        const listing = info.stdout + info.stderr;
        assert.match(listing, /CASCADE_4242/, 'volume ID names the serial');
      } else {
        const files = await zipFiles(res.path);
        assert.deepEqual([...files.keys()].sort(), ['README.txt', res.fileName].sort());
        assert.equal(files.get(res.fileName)!.sha256, sha(data));
        assert.equal(files.get('README.txt')!.sha256, sha(readme));
      }
      await removeWork(workDir);
      assert.ok(!existsSync(workDir));
    });

    test('an empty content makes a package with an empty file', async () => {
      const { file } = dataFile(`empty-${format}`, 0);
      const res = await writePackage({ format, dataPath: file, contentId: mark.contentId, title: 'Empty', serial: 7, workDir: path.join(dir, `work-empty-${format}`) });
      assert.equal(res.markedBytes, 0);
      const files = format === 'iso' ? await isoFiles('xorriso', res.path) : await zipFiles(res.path);
      assert.equal(files.get('Empty')?.bytes, 0);
    });

    test('a 20 MB content is streamed: memory stays far below its size', async () => {
      const size = 20 * 1024 * 1024;
      const { file } = dataFile(`big-${format}`, size);
      const expected = await hashFile(file);
      // Live memory (after a collection) sampled while packaging: what the writer holds, not garbage.
      const live = () => {
        gc();
        const m = process.memoryUsage();
        return m.heapUsed + m.arrayBuffers;
      };
      let peak = 0;
      const baseline = live();
      const sample = setInterval(() => (peak = Math.max(peak, live() - baseline)), 10);
      let res;
      try {
        res = await writePackage({ format, dataPath: file, contentId: mark.contentId, title: 'Big one.bin', serial: 9, workDir: path.join(dir, `work-big-${format}`) });
      } finally {
        clearInterval(sample);
      }
      assert.equal(res.markedSha256, expected.sha256);
      const inside = format === 'iso' ? await isoFiles('xorriso', res.path) : await zipFiles(res.path);
      assert.deepEqual(inside.get('Big_one.bin'), { bytes: size, sha256: expected.sha256 });
      assert.ok(peak < 12 * 1024 * 1024, `memory grew by ${(peak / 1048576).toFixed(1)} MiB while packaging 20 MiB`);
      rmSync(file);
      await removeWork(path.join(dir, `work-big-${format}`));
    });
  });
}

test('a package that does not hold the marked copy is refused (package_mismatch)', async () => {
  // An xorriso that packs something else than the working copy (a disk fault, a swapped file).
  const wrapper = path.join(dir, 'tampering-xorriso');
  writeFileSync(wrapper, `#!/bin/sh\nif [ "$1" = "-as" ]; then for last; do :; done; for f in "$last"/*; do [ "$(basename "$f")" = README.txt ] || printf tampered > "$f"; done; fi\nexec xorriso "$@"\n`, { mode: 0o755 });
  const { file } = dataFile('tampered', 5000);
  await assert.rejects(
    writePackage({ format: 'iso', dataPath: file, contentId: mark.contentId, title: 'x', serial: 1, workDir: path.join(dir, 'work-tampered'), xorriso: wrapper }),
    (e: any) => e.code === 'package_mismatch' && /expected 5000 bytes/.test(e.message),
  );
});

test('without xorriso the ISO is refused with packager_missing', async () => {
  const { file } = dataFile('missing-xorriso', 1000);
  await assert.rejects(
    writePackage({ format: 'iso', dataPath: file, contentId: mark.contentId, title: 'x', serial: 1, workDir: path.join(dir, 'work-missing'), xorriso: '/nonexistent/xorriso' }),
    (e: any) => e.code === 'packager_missing',
  );
});
