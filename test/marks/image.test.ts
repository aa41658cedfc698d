import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { isFound, type Found, type NotFound, type SoftBits } from '../../src/marks/carrier.ts';
import { detectImage, embedImage, isImage } from '../../src/marks/image.ts';
import { requireFfmpeg } from '../helpers/ffmpeg.ts';
import { testImages, type TestImage } from './material-image.ts';

// S2.3 image carrier: a blind mark of 128 bits in PNG and JPEG images; PSNR ≥ 40 dB; zero raw
// bit errors after JPEG 50, a 50 % downscale and a 10 % off-centre crop (each alone); detection
// that searches scale and grid, stops at the first hypothesis the validator accepts, and fails
// cleanly (never throws) on odd inputs.

requireFfmpeg();

const work = mkdtempSync(path.join(os.tmpdir(), 'cascade-image-mark-'));
after(() => rmSync(work, { recursive: true, force: true }));

const key = createHash('sha256').update('image carrier test key').digest();
const otherKey = createHash('sha256').update('another origin').digest();
/** 128 bits, keyed by name so that every image carries a different codeword. */
const bitsFor = (name: string) => {
  const h = Buffer.concat([0, 1].map((i) => createHash('sha256').update(`${name}/${i}`).digest())).subarray(0, 16);
  return Uint8Array.from({ length: 128 }, (_, i) => (h[i >> 3] >> (i & 7)) & 1);
};
const errors = (soft: SoftBits | null, bits: Uint8Array) => (soft ? soft.reduce((n, v, i) => n + (Number(v > 0) !== bits[i] ? 1 : 0), 0) : bits.length);
/** The payload layer stand-in: accepts exactly the embedded codeword. */
const exact = (bits: Uint8Array) => (soft: SoftBits) => (errors(soft, bits) === 0 ? 'match' : null);

// Binary 1-pixel noise (cellauto's cells are single black or white pixels) has more mid-band
// energy than a 40 dB mark can outweigh, and half of every change clips at 0 or 255: measured
// 60+ raw errors even unattacked. It stays in the PSNR and false-positive tests and is tracked
// as a known limit below; the robustness goals are tested on the other four.
const BEYOND = new Set(['cellauto']);

interface Marked {
  img: TestImage;
  original: Buffer;
  bits: Uint8Array;
  bytes: Buffer;
  psnrDb: number;
}
let images: TestImage[] = [];
const marked: Marked[] = [];

before(async () => {
  images = testImages(path.join(work, 'material'));
  for (const img of images) {
    const original = readFileSync(img.path);
    const bits = bitsFor(img.name);
    const out = await embedImage(original, bits, key);
    marked.push({ img, original, bits, ...out });
  }
});

const markable = () => marked.filter((m) => !BEYOND.has(m.img.name));

async function attackThenDetect(m: Marked, attack: (b: Buffer, w: number, h: number) => Promise<Buffer>) {
  const suspect = await attack(m.bytes, m.img.width, m.img.height);
  const found = await detectImage(suspect, key, 128, exact(m.bits));
  const best = isFound(found) ? found.soft : (found as NotFound).best;
  return { found, errs: errors(best, m.bits) };
}

const jpeg50 = (b: Buffer) => sharp(b).jpeg({ quality: 50 }).toBuffer();
const half = (b: Buffer, w: number, h: number) => sharp(b).resize(Math.round(w / 2), Math.round(h / 2)).png().toBuffer();
// Keep 90 % of width and height, from 7 % left and 3 % down: a shift that is no multiple of 8.
const crop = (b: Buffer, w: number, h: number) =>
  sharp(b).extract({ left: Math.round(w * 0.07), top: Math.round(h * 0.03), width: Math.round(w * 0.9), height: Math.round(h * 0.9) }).png().toBuffer();

test('isImage knows PNG and JPEG by their magic bytes', () => {
  assert.equal(isImage(readFileSync(images.find((i) => i.format === 'png')!.path)), 'png');
  assert.equal(isImage(readFileSync(images.find((i) => i.format === 'jpeg')!.path)), 'jpeg');
  assert.equal(isImage(Buffer.from('GIF89a')), null);
  assert.equal(isImage(Buffer.alloc(0)), null);
});

test('a marked image keeps its format and size, at 40 dB PSNR or more', async (t) => {
  for (const m of marked) {
    const meta = await sharp(m.bytes).metadata();
    assert.equal(isImage(m.bytes), m.img.format, m.img.name);
    assert.deepEqual([meta.width, meta.height], [m.img.width, m.img.height], m.img.name);
    assert.ok(m.psnrDb >= 40, `${m.img.name}: ${m.psnrDb.toFixed(2)} dB`);
    // The PSNR reported is the one of what is written, against the decoded input.
    const a = await sharp(m.original).raw().toBuffer();
    const b = await sharp(m.bytes).raw().toBuffer();
    let se = 0;
    for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2;
    assert.ok(Math.abs(10 * Math.log10((255 * 255 * a.length) / se) - m.psnrDb) < 0.01, m.img.name);
    t.diagnostic(`${m.img.name} ${m.img.width}×${m.img.height} ${m.img.format}: PSNR ${m.psnrDb.toFixed(2)} dB`);
  }
});

test('round trip: the validator accepts the embedded bits; one that never accepts gets the best soft bits', async (t) => {
  for (const m of markable()) {
    const found = await detectImage(m.bytes, key, 128, exact(m.bits));
    assert.ok(isFound(found), m.img.name);
    assert.equal((found as Found<string>).result, 'match');
    assert.equal(errors(found.soft, m.bits), 0);
    const none = await detectImage(m.bytes, key, 128, () => null);
    assert.ok(!isFound(none));
    assert.equal(errors(none.best, m.bits), 0, m.img.name);
    assert.ok(none.hypotheses > found.hypotheses, 'a refusing validator sees every hypothesis');
    t.diagnostic(`${m.img.name}: ${found.where}, ${found.hypotheses} hypothesis(es)`);
  }
});

for (const [name, attack, where] of [
  ['JPEG quality 50', jpeg50, /^scale 1,/],
  ['a 50 % downscale', half, /^scale 0\.5,/],
  ['a 10 % off-centre crop', crop, /^scale 1,/],
] as const) {
  test(`zero raw bit errors after ${name}`, async (t) => {
    for (const m of markable()) {
      const { found, errs } = await attackThenDetect(m, attack);
      t.diagnostic(`${m.img.name}: ${errs} raw bit errors${isFound(found) ? `, ${found.where}` : ''}`);
      assert.ok(isFound(found), `${m.img.name}: not found (${errs} errors in the best hypothesis)`);
      assert.match(found.where, where);
    }
  });
}

test('the crop is found at its offset: grid (3,2) and tile shift', async () => {
  const m = markable().find((x) => x.img.name === 'mandelbrot')!;
  const { found } = await attackThenDetect(m, crop);
  // 640×480 cropped from (45, 14): the tile origin is at (128 − 45, 128 − 14) in the crop.
  assert.ok(isFound(found));
  assert.match(found.where, /^scale 1, offset \(3,2\), tile shift \(10,14\), pilot z /);
});

test('a resize to 70 % or 120 % (no fixed candidate): the scale comes from the tile period', async (t) => {
  for (const m of markable().filter((x) => ['mandelbrot', 'testsrc2'].includes(x.img.name))) {
    for (const r of [0.7, 1.2]) {
      const { found, errs } = await attackThenDetect(m, (b, w, h) => sharp(b).resize(Math.round(w * r), Math.round(h * r)).png().toBuffer());
      t.diagnostic(`${m.img.name} × ${r}: ${errs} raw bit errors${isFound(found) ? `, ${found.where}` : ''}`);
      assert.ok(isFound(found), `${m.img.name} × ${r}: ${errs} errors`);
      assert.ok(Math.abs(Number(/^scale ([\d.]+)/.exec(found.where)![1]) - r) < 0.01, found.where);
    }
  }
});

test('a 50 % downscale then JPEG 75 (aimed at, not required): the best hypothesis is close', async (t) => {
  for (const m of markable()) {
    const { errs } = await attackThenDetect(m, async (b, w, h) => sharp(b).resize(Math.round(w / 2), Math.round(h / 2)).jpeg({ quality: 75 }).toBuffer());
    t.diagnostic(`${m.img.name}: ${errs} raw bit errors`);
    assert.ok(errs < 20, `${m.img.name}: ${errs}`);
  }
});

test('an alpha channel is kept, and the mark read through it', async () => {
  const m = marked.find((x) => x.img.name === 'mandelbrot')!;
  // Opaque in a disc, transparent outside, half-transparent in a ring.
  const alpha = Buffer.alloc(640 * 480);
  for (let y = 0; y < 480; y++) for (let x = 0; x < 640; x++) alpha[y * 640 + x] = Math.hypot(x - 320, y - 240) < 200 ? 255 : Math.hypot(x - 320, y - 240) < 230 ? 128 : 0;
  const rgba = await sharp(m.original).joinChannel(alpha, { raw: { width: 640, height: 480, channels: 1 } }).png().toBuffer();
  const out = await embedImage(rgba, m.bits, key);
  const [a, b] = await Promise.all([rgba, out.bytes].map((x) => sharp(x).raw().toBuffer({ resolveWithObject: true })));
  assert.equal(b.info.channels, 4);
  for (let i = 3; i < a.data.length; i += 4) if (a.data[i] !== b.data[i]) assert.fail(`alpha changed at pixel ${(i - 3) / 4}`);
  assert.ok(out.psnrDb >= 40);
  assert.ok(isFound(await detectImage(out.bytes, key, 128, exact(m.bits))));
});

test('unmarked images are not accepted, nor is a marked one under another key', async () => {
  for (const m of marked) {
    const unmarked = await detectImage(m.original, key, 128, exact(m.bits));
    assert.ok(!isFound(unmarked), m.img.name);
    assert.ok(errors(unmarked.best, m.bits) > 30, `${m.img.name}: unmarked best has ${errors(unmarked.best, m.bits)} errors`);
    const wrong = await detectImage(m.bytes, otherKey, 128, exact(m.bits));
    assert.ok(!isFound(wrong), m.img.name);
  }
});

test('odd inputs fail cleanly with a reason, never throw', async () => {
  const grey = (w: number, h: number, channels: 3 | 4 = 3) => sharp({ create: { width: w, height: h, channels, background: { r: 128, g: 128, b: 128, alpha: 1 } } }).png().toBuffer();
  const cases: Array<[string, Buffer]> = [
    ['1×1', await grey(1, 1)],
    ['16×16', await grey(16, 16)],
    ['grey 300×200', await grey(300, 200)],
    ['grey with alpha', await grey(200, 100, 4)],
    ['a thin strip', await sharp(readFileSync(images[0].path)).extract({ left: 0, top: 0, width: 640, height: 20 }).png().toBuffer()],
    ['a PNG header and nothing', Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(64, 1)])],
    ['a truncated JPEG', readFileSync(images.find((i) => i.format === 'jpeg')!.path).subarray(0, 300)],
    ['text', Buffer.from('not an image')],
  ];
  for (const [name, bytes] of cases) {
    const r = await detectImage(bytes, key, 128, () => 'yes');
    assert.ok(!isFound(r) || name === 'a truncated JPEG', name); // a truncated JPEG may decode (grey bottom), and this validator takes anything
    if (!isFound(r)) assert.ok(r.reason.length > 0, name);
  }
  await assert.rejects(embedImage(Buffer.from('not an image'), bitsFor('x'), key));
});

test('detection time: a 640×480 image under 1 s, a 128×128 one under 45 ms of CPU', async (t) => {
  const m = marked.find((x) => x.img.name === 'mandelbrot')!;
  const small = await sharp(m.original).extract({ left: 200, top: 100, width: 128, height: 128 }).png().toBuffer();
  for (let i = 0; i < 3; i++) await detectImage(small, key, 128, () => null); // warm up
  let start = performance.now();
  await detectImage(m.original, key, 128, () => null); // every hypothesis: the worst case
  const bigMs = performance.now() - start;
  // CPU time (this process, libvips' threads included), the best of three batches of ten: the
  // two-core machine runs other test files alongside, and wall time measures them too.
  let smallCpu = Infinity;
  let smallWall = Infinity;
  for (let batch = 0; batch < 3; batch++) {
    const cpu = process.cpuUsage();
    start = performance.now();
    for (let i = 0; i < 10; i++) await detectImage(small, key, 128, () => null);
    smallWall = Math.min(smallWall, (performance.now() - start) / 10);
    const c = process.cpuUsage(cpu);
    smallCpu = Math.min(smallCpu, (c.user + c.system) / 1000 / 10);
  }
  t.diagnostic(`640×480 unmarked: ${bigMs.toFixed(0)} ms; 128×128 unmarked: ${smallCpu.toFixed(1)} ms CPU, ${smallWall.toFixed(1)} ms wall`);
  assert.ok(bigMs < 1000, `640×480: ${bigMs.toFixed(0)} ms`);
  // 12–30 ms measured (docs/marks.md); CPU time still grows when other test files share the cores
  // (caches, libvips' threads): 30.3 ms once in CI. The bound catches a regression, not the load.
  assert.ok(smallCpu < 45, `128×128: ${smallCpu.toFixed(1)} ms CPU`);
});

test('binary 1-pixel noise (cellauto) cannot carry a 40 dB mark: it is not found, and says so (a known limit, docs/marks.md)', async () => {
  const m = marked.find((x) => x.img.name === 'cellauto')!;
  const d = await detectImage(m.bytes, key, 128, exact(m.bits));
  assert.ok(!isFound(d), 'if this now finds the mark, the limit is gone: move cellauto into the robustness tests');
  assert.ok(errors(d.best, m.bits) > 20, `raw bit errors ${errors(d.best, m.bits)}`);
});
