import { createHmac } from 'node:crypto';
import FFT from 'fft.js';
import sharp from 'sharp';
import type { Accept, Found, NotFound, PatternKey, SoftBits } from './carrier.ts';

// S2.3 image carrier: a blind spread-spectrum mark in the DCT mid-band of 8×8 luma blocks.
//
// Embedding. The image is cut into 8×8 blocks from its top-left corner; 16×16 blocks make a
// tile (128×128 pixels) that repeats over the whole image, so a crop only moves the tile's phase
// and a resize only changes its period. Every (block of the tile, mid-band coefficient) pair is a
// slot; a keyed permutation makes 15 % of the slots a pilot (a known ±1 pattern, for
// synchronisation) and deals the rest round-robin to the bits, each slot with a keyed ±1 chip:
// the slot's coefficient gets gain × chip × (bit ? +1 : −1) (the pilot: gain × chip). The gain is
// perceptual (stronger in textured blocks, weaker in flat ones), then scaled as a whole to a
// target PSNR. The same luma change is added to R, G and B, so chroma is untouched. The
// embedder then reads its own mark back after simulated JPEG 50 and halving and moves energy to
// the bits the host weakens (informed embedding; the total stays at the target PSNR).
//
// Detection. For each candidate scale, the luma (locally normalised so that textured areas do not
// drown the rest) is resampled to the embedding's scale and folded modulo the tile: every copy
// of the tile adds up. A phase correlation of the fold with the pilot (one 2-D FFT) finds the
// tile phase (block-grid offset and tile shift together); at the few strongest peaks, the
// spectrally whitened fold's blocks are projected on the band and each bit's slots correlated
// with their chips: the soft bits handed to `accept`, as z-scores (comparable across
// hypotheses). Scale 1 first, then the downscales a copy most likely went through, then the
// scales the tile's period shows in the image's autocorrelation (any resize from 0.35 to 1.3).

const B = 8; // DCT block
const TB = 16; // blocks per tile side
const P = B * TB; // tile side in pixels
/** Mid-band coefficients (u vertical, v horizontal; both ≤ 3, which softBits relies on): low enough to survive JPEG 50 and a halving
 * (u, v ≤ 3 are at most 3/16 cycle per pixel: still under Nyquist after a 50 % downscale). */
const BAND: Array<[number, number]> = [
  [0, 1], [1, 0], [0, 2], [1, 1], [2, 0], [0, 3], [1, 2], [2, 1], [3, 0],
];
const K = BAND.length;
const BAND_U = Int32Array.from(BAND, ([u]) => u);
const BAND_V = Int32Array.from(BAND, ([, v]) => v);
const SLOTS = TB * TB * K;
const PILOT_SHARE = 0.15;
/** Suspect size ÷ original size, in the order tried. */
const SCALES = [1, 0.5, 0.75, 0.9, 0.8, 2 / 3, 0.6];
const PEAKS_PER_SCALE = 2;
const TARGET_PSNR = 40.3;
const MIN_PSNR = 40.05;
const BOOST_ROUNDS = 10;
const BOOST_NEG = 1.5;
const BOOST_POS = 1.25;
const SHRINK = 0.9;
const BOOST_MARGIN = 0.3;
const MIN_SIDE = 32;
const GMIN = 0.5;
const GMAX = 4;

/** Orthonormal 8-point DCT-II matrix: M[k*8+n]. */
const M = new Float64Array(64);
for (let k = 0; k < B; k++) for (let n = 0; n < B; n++) M[k * B + n] = (k === 0 ? Math.sqrt(1 / B) : Math.sqrt(2 / B)) * Math.cos(((2 * n + 1) * k * Math.PI) / (2 * B));
/** The band's basis images, 64 values each (row-major y, x). */
const BASIS = BAND.map(([u, v]) => {
  const b = new Float64Array(64);
  for (let y = 0; y < B; y++) for (let x = 0; x < B; x++) b[y * B + x] = M[u * B + y] * M[v * B + x];
  return b;
});

export function isImage(bytes: Buffer): 'png' | 'jpeg' | null {
  if (bytes.length >= 8 && bytes.readUInt32BE(0) === 0x89504e47 && bytes.readUInt32BE(4) === 0x0d0a1a0a) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return null;
}

interface Pattern {
  /** Per slot: the bit it carries, or −1 for the pilot. */
  bitOf: Int16Array;
  chip: Int8Array;
  /** The pilot's pixel pattern over one tile, its 2-D spectrum (interleaved complex, conjugated). */
  pilotSpectrum: Float64Array;
}

const patterns = new Map<string, Pattern>();

/** The keyed slot layout for `nBits` (deterministic in key and nBits; cached). */
function pattern(key: PatternKey, nBits: number): Pattern {
  const id = `${key.toString('hex')}/${nBits}`;
  const cached = patterns.get(id);
  if (cached) return cached;
  const rand = keyedStream(key, `cascade image mark v1 ${nBits}`);
  const order = new Int32Array(SLOTS);
  for (let i = 0; i < SLOTS; i++) order[i] = i;
  for (let i = SLOTS - 1; i > 0; i--) {
    const j = rand() % (i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  const pilots = nBits > 0 ? Math.round(SLOTS * PILOT_SHARE) : SLOTS;
  const bitOf = new Int16Array(SLOTS);
  order.forEach((slot, i) => (bitOf[slot] = i < pilots ? -1 : (i - pilots) % nBits));
  const chip = new Int8Array(SLOTS);
  for (let i = 0; i < SLOTS; i++) chip[i] = rand() & 1 ? 1 : -1;
  // The pilot as pixels over one tile, for the FFT correlation.
  const tile = new Float64Array(P * P);
  for (let slot = 0; slot < SLOTS; slot++) {
    if (bitOf[slot] !== -1) continue;
    const blk = Math.floor(slot / K);
    const k = slot % K;
    const bx = (blk % TB) * B;
    const by = Math.floor(blk / TB) * B;
    const basis = BASIS[k];
    for (let y = 0; y < B; y++) for (let x = 0; x < B; x++) tile[(by + y) * P + bx + x] += chip[slot] * basis[y * B + x];
  }
  const spec = fft2(tile);
  for (let i = 1; i < spec.length; i += 2) spec[i] = -spec[i];
  const p = { bitOf, chip, pilotSpectrum: spec };
  patterns.set(id, p);
  return p;
}

/** HMAC-SHA-256 in counter mode, as 32-bit words. */
function keyedStream(key: PatternKey, label: string): () => number {
  let counter = 0;
  let block = Buffer.alloc(0);
  let pos = 0;
  return () => {
    if (pos >= block.length) {
      block = createHmac('sha256', key).update(`${label}/${counter++}`).digest();
      pos = 0;
    }
    const v = block.readUInt32BE(pos);
    pos += 4;
    return v;
  };
}

// ---- decoding -------------------------------------------------------------------------------

interface Raw {
  data: Buffer;
  width: number;
  height: number;
  channels: number;
}

async function decode(bytes: Buffer): Promise<Raw> {
  const { data, info } = await sharp(bytes, { failOn: 'none' }).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

/** Luma (BT.601 weights, in the coded values: adding d to R, G and B adds exactly d). */
function luma(raw: Raw): Float32Array {
  const { data, width, height, channels } = raw;
  const out = new Float32Array(width * height);
  if (channels >= 3) for (let i = 0, j = 0; i < out.length; i++, j += channels) out[i] = 0.299 * data[j] + 0.587 * data[j + 1] + 0.114 * data[j + 2];
  else for (let i = 0, j = 0; i < out.length; i++, j += channels) out[i] = data[j];
  return out;
}

// ---- embedding ------------------------------------------------------------------------------

export async function embedImage(bytes: Buffer, bits: Uint8Array, key: PatternKey): Promise<{ bytes: Buffer; format: 'png' | 'jpeg'; psnrDb: number }> {
  const format = isImage(bytes);
  if (!format) throw new Error('not a PNG or JPEG image');
  if (bits.length === 0 || bits.length > SLOTS / 2) throw new Error(`cannot carry ${bits.length} bits`);
  const raw = await decode(bytes);
  const { width, height, channels } = raw;
  if (width < B || height < B) throw new Error(`too small to mark (${width}×${height})`);
  const colour = channels >= 3 ? 3 : 1; // channels before alpha
  const y = luma(raw);
  const pat = pattern(key, bits.length);
  const rawOpts = { raw: { width, height, channels: channels as 1 | 2 | 3 | 4 } };
  const apply = (delta: Float32Array, gain: number) => {
    const out = Buffer.from(raw.data);
    for (let i = 0, j = 0; i < delta.length; i++, j += channels) {
      const d = delta[i] * gain;
      for (let c = 0; c < colour; c++) out[j + c] = Math.max(0, Math.min(255, Math.round(raw.data[j + c] + d)));
    }
    return out;
  };
  const psnrOf = (data: Buffer) => {
    let se = 0;
    for (let i = 0, j = 0; i < y.length; i++, j += channels) for (let c = 0; c < colour; c++) se += (data[j + c] - raw.data[j + c]) ** 2;
    return se === 0 ? Infinity : 10 * Math.log10((255 * 255 * y.length * colour) / se);
  };
  // Clipping at 0 and 255 takes some of the mark away: a second pass scales it back up to the
  // target PSNR.
  const calibrated = (delta: Float32Array) => {
    let gain = 1;
    let out = apply(delta, gain);
    for (let pass = 0; pass < 2; pass++) {
      const psnr = psnrOf(out);
      if (Math.abs(psnr - TARGET_PSNR) < 0.05) break;
      gain *= Math.pow(10, Math.max(-0.5, Math.min(0.5, (psnr - TARGET_PSNR) / 20)));
      out = apply(delta, gain);
    }
    return { out, gain };
  };
  // Informed embedding: mark, simulate what a copy commonly goes through (JPEG 50, a halving),
  // read the bits back at the known synchronisation, and give the bits the host weakens more of
  // the energy (the total stays at the target PSNR). A bit whose host correlation opposes it is
  // the spread-spectrum mark's usual failure; this spends the budget where it is needed.
  const amp = new Float64Array(bits.length).fill(1);
  let delta = markDelta(y, width, height, bits, pat, amp);
  let { out, gain } = calibrated(delta);
  let best = { out, gain, delta, worst: -Infinity };
  for (let round = 0; ; round++) {
    const img = () => sharp(out, rawOpts);
    const attacked: Array<{ raw: Raw; scale: number }> = [{ raw: { data: out, width, height, channels }, scale: 1 }];
    attacked.push({ raw: await decode(await img().jpeg({ quality: 50 }).toBuffer()), scale: 1 });
    if (width >= 4 * MIN_SIDE && height >= 4 * MIN_SIDE) {
      const half = img().resize(Math.round(width / 2), Math.round(height / 2));
      attacked.push({ raw: await decode(await half.png({ compressionLevel: 0 }).toBuffer()), scale: 0.5 });
    }
    const margin = new Float64Array(bits.length).fill(Infinity);
    for (const a of attacked) {
      const norm = normalise(luma(a.raw), a.raw.width, a.raw.height);
      if (!norm) continue;
      const soft = softBits(analyse(foldTile(norm, a.raw.width, a.raw.height, a.scale), pat).white, 0, 0, pat, bits.length);
      let mean = 0;
      for (const v of soft) mean += Math.abs(v);
      mean /= soft.length;
      soft.forEach((v, b) => (margin[b] = Math.min(margin[b], (bits[b] ? v : -v) / (mean || 1))));
    }
    // Rounds can trade one bit's weakness for another's: keep the round whose weakest bit is strongest.
    const worst = Math.min(...margin);
    if (worst > best.worst) best = { out, gain, delta, worst };
    if (worst >= BOOST_MARGIN || round === BOOST_ROUNDS) break;
    margin.forEach((m, b) => {
      if (m < BOOST_MARGIN) amp[b] = Math.min(8, amp[b] * (m < 0 ? BOOST_NEG : BOOST_POS));
      else if (m > BOOST_MARGIN * 3) amp[b] = Math.max(0.5, amp[b] * SHRINK);
    });
    delta = markDelta(y, width, height, bits, pat, amp);
    ({ out, gain } = calibrated(delta));
  }
  ({ out, gain, delta } = best);
  if (format === 'png') return { bytes: await sharp(out, rawOpts).png({ compressionLevel: 6 }).toBuffer(), format, psnrDb: psnrOf(out) };
  // JPEG's own loss (quality 95) adds to the mark's: lower the mark until the written copy keeps MIN_PSNR.
  for (let round = 0; ; round++) {
    const written = await sharp(out, rawOpts).jpeg({ quality: 95, chromaSubsampling: '4:4:4' }).toBuffer();
    const psnrDb = psnrOf((await decode(written)).data);
    if (psnrDb >= MIN_PSNR || round === 6) return { bytes: written, format, psnrDb };
    gain *= Math.pow(10, (psnrDb - MIN_PSNR - 0.1) / 20);
    out = apply(delta, gain);
  }
}

/** The luma change that carries `bits`, scaled to TARGET_PSNR (before rounding and clipping). */
function markDelta(y: Float32Array, width: number, height: number, bits: Uint8Array, pat: Pattern, amp: Float64Array): Float32Array {
  const delta = new Float32Array(width * height);
  const bw = Math.floor(width / B);
  const bh = Math.floor(height / B);
  if (bw === 0 || bh === 0) return delta;
  // Perceptual gain: a block's standard deviation against the median block's.
  const sd = new Float64Array(bw * bh);
  for (let by = 0; by < bh; by++)
    for (let bx = 0; bx < bw; bx++) {
      let s = 0;
      let s2 = 0;
      for (let yy = 0; yy < B; yy++)
        for (let xx = 0; xx < B; xx++) {
          const v = y[(by * B + yy) * width + bx * B + xx];
          s += v;
          s2 += v * v;
        }
      sd[by * bw + bx] = Math.sqrt(Math.max(0, s2 / 64 - (s / 64) ** 2));
    }
  const median = Float64Array.from(sd).sort()[sd.length >> 1];
  let energy = 0;
  const coef = new Float64Array(K);
  // The pilot keeps its share of the energy however the bits are boosted.
  let pilotAmp = 0;
  for (const a of amp) pilotAmp += a * a;
  pilotAmp = Math.sqrt(pilotAmp / amp.length);
  for (let by = 0; by < bh; by++)
    for (let bx = 0; bx < bw; bx++) {
      const gain = Math.min(GMAX, Math.max(GMIN, (sd[by * bw + bx] + 2) / (median + 2)));
      const slot0 = ((by % TB) * TB + (bx % TB)) * K;
      for (let k = 0; k < K; k++) {
        const bit = pat.bitOf[slot0 + k];
        coef[k] = gain * pat.chip[slot0 + k] * (bit === -1 ? pilotAmp : bits[bit] ? amp[bit] : -amp[bit]);
      }
      for (let yy = 0; yy < B; yy++)
        for (let xx = 0; xx < B; xx++) {
          let d = 0;
          for (let k = 0; k < K; k++) d += coef[k] * BASIS[k][yy * B + xx];
          delta[(by * B + yy) * width + bx * B + xx] = d;
          energy += d * d;
        }
    }
  const mse = (255 * 255) / Math.pow(10, TARGET_PSNR / 10) - 1 / 12; // rounding adds 1/12
  const scale = energy > 0 ? Math.sqrt((mse * width * height) / energy) : 0;
  for (let i = 0; i < delta.length; i++) delta[i] *= scale;
  return delta;
}

// ---- detection ------------------------------------------------------------------------------

export async function detectImage<T>(bytes: Buffer, key: PatternKey, nBits: number, accept: Accept<T>): Promise<Found<T> | NotFound> {
  if (!isImage(bytes)) return { best: null, hypotheses: 0, reason: 'not a PNG or JPEG image' };
  if (!(nBits > 0 && nBits <= SLOTS)) return { best: null, hypotheses: 0, reason: `cannot carry ${nBits} bits` };
  let raw: Raw;
  try {
    raw = await decode(bytes);
  } catch (err) {
    return { best: null, hypotheses: 0, reason: `undecodable image: ${(err as Error).message}` };
  }
  const { width, height } = raw;
  if (width < MIN_SIDE || height < MIN_SIDE) return { best: null, hypotheses: 0, reason: `too small (${width}×${height})` };
  const pat = pattern(key, nBits);
  const norm = normalise(luma(raw), width, height);
  if (!norm) return { best: null, hypotheses: 0, reason: 'no texture at all (a flat image)' };
  let hypotheses = 0;
  let best: SoftBits | null = null;
  let bestStrength = -1;
  // The fixed candidates first (cheap, and the usual resizes), then the tile periods the image's
  // autocorrelation shows (any other scale), computed only when the fixed ones all failed.
  const scales = (function* () {
    yield* SCALES;
    for (const r of periodScales(norm, width, height)) if (SCALES.every((c) => Math.abs(c - r) > 0.01 * c)) yield r;
  })();
  for (const scale of scales) {
    const w = Math.floor(width / scale);
    const h = Math.floor(height / scale);
    if (w < MIN_SIDE || h < MIN_SIDE) continue;
    const { peaks, white } = analyse(foldTile(norm, width, height, scale), pat);
    for (const peak of peaks) {
      hypotheses++;
      const soft = softBits(white, peak.dx, peak.dy, pat, nBits);
      let strength = 0;
      for (const s of soft) strength += Math.abs(s);
      strength /= nBits;
      if (strength > bestStrength) {
        bestStrength = strength;
        best = soft;
      }
      const result = accept(soft);
      if (result !== null) return { result, soft, where: `scale ${round3(scale)}, offset (${peak.dx % B},${peak.dy % B}), tile shift (${Math.floor(peak.dx / B)},${Math.floor(peak.dy / B)}), pilot z ${peak.z.toFixed(1)}`, hypotheses };
    }
  }
  return { best, hypotheses, reason: hypotheses ? 'no hypothesis accepted' : 'no scale fits the image' };
}

/** Scale estimates from the mark's period: the tile repeats every P × scale pixels, so the
 * rows' and columns' autocorrelations (summed) peak at that lag. The two strongest local maxima
 * between the lags of scales 0.35 and 1.3, refined to a fraction of a pixel. */
function periodScales(img: Float32Array, width: number, height: number): number[] {
  const minLag = Math.round(P * 0.35);
  const maxLag = Math.min(Math.round(P * 1.3), Math.floor(Math.max(width, height) / 2));
  if (maxLag <= minLag + 2) return [];
  const acc = new Float64Array(maxLag + 2);
  const lines = (count: number, length: number, at: (line: number, i: number) => number) => {
    if (length / 2 < minLag) return;
    let n = 1;
    while (n < 2 * length) n <<= 1;
    const f = fftOf(n);
    const input = new Float64Array(n);
    const spec = f.createComplexArray() as number[];
    const back = f.createComplexArray() as number[];
    // The lines' power spectra add up: one inverse transform gives the summed autocorrelation.
    const power = new Float64Array(2 * n);
    for (let line = 0; line < count; line++) {
      for (let i = 0; i < length; i++) input[i] = at(line, i);
      f.realTransform(spec, input);
      f.completeSpectrum(spec);
      for (let k = 0; k < n; k++) power[2 * k] += spec[2 * k] ** 2 + spec[2 * k + 1] ** 2;
    }
    f.inverseTransform(back, power);
    const top = Math.min(maxLag + 1, length - 1);
    for (let lag = minLag - 1; lag <= top; lag++) acc[lag] += back[2 * lag] / (length - lag) / count;
  };
  lines(height, width, (y, x) => img[y * width + x]);
  lines(width, height, (x, y) => img[y * width + x]);
  const peaks: Array<{ lag: number; v: number }> = [];
  for (let lag = minLag; lag <= maxLag; lag++)
    if (acc[lag] > 0 && acc[lag] > acc[lag - 1] && acc[lag] >= acc[lag + 1]) {
      const d = acc[lag - 1] - 2 * acc[lag] + acc[lag + 1];
      const off = d < 0 ? (0.5 * (acc[lag - 1] - acc[lag + 1])) / d : 0;
      peaks.push({ lag: lag + off, v: acc[lag] });
    }
  return peaks
    .sort((a, b) => b.v - a.v)
    .slice(0, 2)
    .map((p) => p.lag / P);
}

const ffts = new Map<number, FFT>();
const fftOf = (n: number) => ffts.get(n) ?? (ffts.set(n, new FFT(n)), ffts.get(n)!);

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** Luma minus its local mean, over its local deviation (a 17×17 window; integral images).
 * Null when the image is flat everywhere. */
function normalise(y: Float32Array, width: number, height: number): Float32Array | null {
  const R = 8;
  const W1 = width + 1;
  const s = new Float64Array(W1 * (height + 1));
  const s2 = new Float64Array(W1 * (height + 1));
  for (let yy = 0; yy < height; yy++) {
    let r = 0;
    let r2 = 0;
    for (let x = 0; x < width; x++) {
      const v = y[yy * width + x];
      r += v;
      r2 += v * v;
      s[(yy + 1) * W1 + x + 1] = s[yy * W1 + x + 1] + r;
      s2[(yy + 1) * W1 + x + 1] = s2[yy * W1 + x + 1] + r2;
    }
  }
  const out = new Float32Array(width * height);
  let any = false;
  for (let yy = 0; yy < height; yy++) {
    const y0 = Math.max(0, yy - R);
    const y1 = Math.min(height, yy + R + 1);
    for (let x = 0; x < width; x++) {
      const x0 = Math.max(0, x - R);
      const x1 = Math.min(width, x + R + 1);
      const n = (y1 - y0) * (x1 - x0);
      const sum = s[y1 * W1 + x1] - s[y0 * W1 + x1] - s[y1 * W1 + x0] + s[y0 * W1 + x0];
      const sum2 = s2[y1 * W1 + x1] - s2[y0 * W1 + x1] - s2[y1 * W1 + x0] + s2[y0 * W1 + x0];
      const mean = sum / n;
      const sd = Math.sqrt(Math.max(0, sum2 / n - mean * mean));
      const v = (y[yy * width + x] - mean) / (sd + 3);
      out[yy * width + x] = v;
      if (v !== 0) any = true;
    }
  }
  return any ? out : null;
}

/** Resamples `img` (a copy at `scale` of the original) back to the original's scale (bilinear)
 * and adds it up modulo the tile. */
function foldTile(img: Float32Array, width: number, height: number, scale: number): Float64Array {
  const fold = new Float64Array(P * P);
  const w = Math.floor(width / scale);
  const h = Math.floor(height / scale);
  if (scale === 1) {
    for (let y = 0; y < h; y++) {
      const row = (y % P) * P;
      for (let x = 0; x < w; x++) fold[row + (x % P)] += img[y * width + x];
    }
    return fold;
  }
  for (let y = 0; y < h; y++) {
    const sy = Math.min(height - 1, Math.max(0, (y + 0.5) * scale - 0.5));
    const y0 = Math.min(height - 2, Math.floor(sy));
    const fy = sy - y0;
    const row = (y % P) * P;
    for (let x = 0; x < w; x++) {
      const sx = Math.min(width - 1, Math.max(0, (x + 0.5) * scale - 0.5));
      const x0 = Math.min(width - 2, Math.floor(sx));
      const fx = sx - x0;
      const i = y0 * width + x0;
      const top = img[i] + fx * (img[i + 1] - img[i]);
      const bottom = img[i + width] + fx * (img[i + width + 1] - img[i + width]);
      fold[row + (x % P)] += top + fy * (bottom - top);
    }
  }
  return fold;
}

/** One spectrum of the fold serves both the synchronisation and the bits. The strongest cyclic
 * shifts of the pilot in the fold (phase correlation: the fold's spectrum normalised to unit
 * magnitude), strongest first; and the fold whitened (|X|^-1/2: the host's strong low
 * frequencies no longer drown the mark's coefficients). */
function analyse(fold: Float64Array, pat: Pattern): { peaks: Array<{ dx: number; dy: number; z: number }>; white: Float64Array } {
  const spec = fft2(fold);
  const sync = new Float64Array(spec.length);
  const ps = pat.pilotSpectrum;
  for (let i = 0; i < spec.length; i += 2) {
    const re = spec[i];
    const im = spec[i + 1];
    const mag2 = re * re + im * im + 1e-18;
    const inv = 1 / Math.sqrt(mag2);
    sync[i] = (re * ps[i] - im * ps[i + 1]) * inv;
    sync[i + 1] = (re * ps[i + 1] + im * ps[i]) * inv;
    const invSqrt = Math.sqrt(inv);
    spec[i] = re * invSqrt;
    spec[i + 1] = im * invSqrt;
  }
  const corr = ifft2Real(sync);
  const white = ifft2Real(spec);
  let mean = 0;
  let sq = 0;
  for (let i = 0; i < corr.length; i++) {
    mean += corr[i];
    sq += corr[i] * corr[i];
  }
  mean /= corr.length;
  const sd = Math.sqrt(Math.max(0, sq / corr.length - mean * mean)) || 1;
  // The CANDIDATES largest values in one pass (kept sorted, largest first) …
  const CANDIDATES = 64;
  const top: number[] = [];
  let floor = -Infinity;
  for (let i = 0; i < corr.length; i++) {
    const v = corr[i];
    if (v <= floor) continue;
    let j = top.length;
    while (j > 0 && corr[top[j - 1]] < v) j--;
    top.splice(j, 0, i);
    if (top.length > CANDIDATES) top.pop();
    if (top.length === CANDIDATES) floor = corr[top[CANDIDATES - 1]];
  }
  // … then a peak's neighbours are dropped: the same hypothesis, slightly off.
  const peaks: Array<{ dx: number; dy: number; z: number }> = [];
  for (const i of top) {
    const dx = i % P;
    const dy = Math.floor(i / P);
    const near = (a: number, b: number) => Math.min((a - b + P) % P, (b - a + P) % P) <= 2;
    if (peaks.some((p) => near(p.dx, dx) && near(p.dy, dy))) continue;
    peaks.push({ dx, dy, z: (corr[i] - mean) / sd });
    if (peaks.length === PEAKS_PER_SCALE) break;
  }
  return { peaks, white };
}

/** Each bit's correlation: the fold's blocks from tile origin (dx, dy), against the bit's chips, as a z-score. */
function softBits(fold: Float64Array, dx: number, dy: number, pat: Pattern, nBits: number): SoftBits {
  // The fold rolled so that the tile starts at (0, 0): blocks are then plain 8×8 squares.
  const rolled = new Float64Array(P * P);
  for (let y = 0; y < P; y++) {
    const src = ((y + dy) % P) * P;
    rolled.set(fold.subarray(src + dx, src + P), y * P);
    rolled.set(fold.subarray(src, src + dx), y * P + P - dx);
  }
  const soft = new Float64Array(nBits);
  const chips = new Float64Array(nBits);
  const rows = new Float64Array(B * 4); // each row of a block projected on M[0..3]
  for (let blk = 0; blk < TB * TB; blk++) {
    const o = Math.floor(blk / TB) * B * P + (blk % TB) * B;
    for (let y = 0; y < B; y++)
      for (let v = 0; v < 4; v++) {
        let c = 0;
        for (let x = 0; x < B; x++) c += M[v * B + x] * rolled[o + y * P + x];
        rows[y * 4 + v] = c;
      }
    for (let k = 0; k < K; k++) {
      const slot = blk * K + k;
      const bit = pat.bitOf[slot];
      if (bit < 0) continue;
      const u = BAND_U[k] * B;
      const v = BAND_V[k];
      let c = 0;
      for (let y = 0; y < B; y++) c += M[u + y] * rows[y * 4 + v];
      soft[bit] += pat.chip[slot] * c;
      chips[bit]++;
    }
  }
  // As z-scores: on noise, a slot's projection has the fold's variance (the basis is orthonormal).
  let sq = 0;
  for (let i = 0; i < fold.length; i++) sq += fold[i] * fold[i];
  const rms = Math.sqrt(sq / fold.length) || 1;
  for (let b = 0; b < nBits; b++) soft[b] /= rms * Math.sqrt(chips[b] || 1);
  return soft;
}

// ---- 2-D FFT over one tile ------------------------------------------------------------------

const fft = new FFT(P);

// The inputs and outputs are real: two rows go through one complex FFT, and only half of the
// columns are transformed (the other half is their complex conjugate).

/** Forward 2-D FFT of a real P×P array: interleaved complex, row-major. */
function fft2(real: Float64Array): Float64Array {
  const out = new Float64Array(2 * P * P);
  const rowIn = fft.createComplexArray() as number[];
  const z = fft.createComplexArray() as number[];
  for (let y = 0; y < P; y += 2) {
    for (let x = 0; x < P; x++) {
      rowIn[2 * x] = real[y * P + x];
      rowIn[2 * x + 1] = real[(y + 1) * P + x];
    }
    fft.transform(z, rowIn);
    const a = 2 * y * P;
    const b = 2 * (y + 1) * P;
    for (let k = 0; k < P; k++) {
      const n = (P - k) % P;
      const zr = z[2 * k];
      const zi = z[2 * k + 1];
      const nr = z[2 * n];
      const ni = -z[2 * n + 1];
      out[a + 2 * k] = (zr + nr) / 2;
      out[a + 2 * k + 1] = (zi + ni) / 2;
      out[b + 2 * k] = (zi - ni) / 2;
      out[b + 2 * k + 1] = -(zr - nr) / 2;
    }
  }
  columns(out, false);
  // The columns past P/2 from the first half: X[ky][kx] = conj X[−ky][−kx].
  for (let ky = 0; ky < P; ky++)
    for (let kx = P / 2 + 1; kx < P; kx++) {
      const src = 2 * (((P - ky) % P) * P + (P - kx));
      out[2 * (ky * P + kx)] = out[src];
      out[2 * (ky * P + kx) + 1] = -out[src + 1];
    }
  return out;
}

/** The inverse 2-D FFT of a Hermitian spectrum (so real): the spectrum is overwritten. */
function ifft2Real(spec: Float64Array): Float64Array {
  columns(spec, true);
  const out = new Float64Array(P * P);
  const rowIn = fft.createComplexArray() as number[];
  const rowOut = fft.createComplexArray() as number[];
  for (let y = 0; y < P; y += 2) {
    // Each row's spectrum is Hermitian too: columns past P/2 are conjugates.
    const a = 2 * y * P;
    const b = 2 * (y + 1) * P;
    for (let k = 0; k < P; k++) {
      const kk = k <= P / 2 ? k : P - k;
      const sg = k <= P / 2 ? 1 : -1;
      const ar = spec[a + 2 * kk];
      const ai = sg * spec[a + 2 * kk + 1];
      const br = spec[b + 2 * kk];
      const bi = sg * spec[b + 2 * kk + 1];
      rowIn[2 * k] = ar - bi;
      rowIn[2 * k + 1] = ai + br;
    }
    fft.inverseTransform(rowOut, rowIn);
    for (let x = 0; x < P; x++) {
      out[y * P + x] = rowOut[2 * x];
      out[(y + 1) * P + x] = rowOut[2 * x + 1];
    }
  }
  return out;
}

/** Column transforms of columns 0 … P/2 (the rest follow by symmetry). */
function columns(data: Float64Array, inverse: boolean) {
  const colIn = fft.createComplexArray() as number[];
  const colOut = fft.createComplexArray() as number[];
  for (let x = 0; x <= P / 2; x++) {
    for (let y = 0; y < P; y++) {
      colIn[2 * y] = data[2 * (y * P + x)];
      colIn[2 * y + 1] = data[2 * (y * P + x) + 1];
    }
    if (inverse) fft.inverseTransform(colOut, colIn);
    else fft.transform(colOut, colIn);
    for (let y = 0; y < P; y++) {
      data[2 * (y * P + x)] = colOut[2 * y];
      data[2 * (y * P + x) + 1] = colOut[2 * y + 1];
    }
  }
}
