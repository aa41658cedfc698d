import { createCipheriv, createHmac } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import FFT from 'fft.js';
import wavefile from 'wavefile';
import { run } from '../live/media-tools.ts';
import type { Accept, Found, NotFound, PatternKey, SoftBits } from './carrier.ts';

// S2.3: the audio carrier. A blind spread-spectrum mark in the short-time spectrum of WAV PCM.
// The time–frequency plane is cut into tiles (BLOCK_S seconds × BAND_HZ Hz between BAND_LO and
// BAND_HI); every tile's magnitude is scaled by 1 + α·chip, chip = ±1 from the key, times the
// sign of the bit the key assigns the tile (or +1 for the pilot tiles that give synchronisation).
// Tiles are defined in seconds and hertz, not samples and bins, so resampling moves nothing.
// The pattern repeats every PERIOD_BLOCKS blocks (16.65 s: one whole payload), so any stretch of
// 16.65 s holds every tile once and longer clips average repetitions. A relative (multiplicative)
// change follows the local spectrum; under the clip's SNR budget the loudest tiles get a smaller
// relative change than quieter ones (strengths()).
//
// Detection (mono mix): log energy of each tile (bands summed over the STFT frames whose centre
// falls in the block), whitened (minus its neighbours in time, minus the block's mean over bands)
// so the host's loudness changes, a codec's or a resampler's gain and the stationary spectrum
// cancel; each band in units of its own spread, blocks with onsets weighed down, outliers erased.
// The pilot's correlation over every time offset (block phase × block shift within the period)
// ranks the synchronisation hypotheses (an MP3 encoder's delay and a cut start are offsets like
// any other); the best few are decoded (each bit's tiles correlated with their chips, each band
// weighed by its pilot correlation) and handed to the caller's validator, best first.

const BLOCK_S = 0.05;
/** 16.65 s: one payload; not a multiple of 2 s, so a loop or a bar-aligned host does not repeat in step with it. */
const PERIOD_BLOCKS = 333;
const BAND_LO = 500;
const BAND_HI = 6500;
const BANDS = 24;
const BAND_HZ = (BAND_HI - BAND_LO) / BANDS;
/** Share of the tiles given to the pilot (synchronisation only). */
const PILOT_SHARE = 1 / 8;
/** The mark's energy: this SNR on the whole clip (the goal is ≥ 25 dB after quantisation). */
const TARGET_SNR_DB = 25.3;
/** Largest relative change of a tile's magnitude (±25 %, about ±2 dB; see strengths()). */
const ALPHA_MAX = 0.25;
/** Block phases tried per block (the offset search's fine step is BLOCK_S / PHASES). */
const PHASES = 8;
/** How many of the best-ranked synchronisation hypotheses are decoded and offered. */
const MAX_HYPOTHESES = 12;
/** Neighbouring blocks on each side whose mean log energy is subtracted (whitening). */
const WHITEN_RADIUS = 2;
const MIN_SECONDS = 2;
const MAX_SECONDS = 120;
/** Tiles 20 dB under their block's loudest band read as that floor (a codec's noise there says nothing). */
const REL_FLOOR = 0.01;
/** Whitened tile values beyond this many times their band's median magnitude are erased (set to 0). */
const ERASE_BEYOND = 3;

export interface Pcm {
  sampleRate: number;
  channels: Float32Array[];
}

// --- keyed pattern -------------------------------------------------------------------------

interface Pattern {
  /** Per tile (block × BANDS + band) of one period: -1 = pilot, else the bit's index. */
  role: Int16Array;
  chip: Int8Array;
  /** Pilot tiles of each block of the period, as (band, chip) pairs. */
  pilot: Array<Array<[number, number]>>;
}

function keystream(key: PatternKey, label: string, bytes: number): Buffer {
  const k = createHmac('sha256', key).update(`cascade/marks/audio/v1/${label}`).digest();
  const c = createCipheriv('aes-256-ctr', k, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(bytes)), c.final()]);
}

function pattern(key: PatternKey, nBits: number): Pattern {
  const tiles = PERIOD_BLOCKS * BANDS;
  const perm = new Int32Array(tiles);
  for (let i = 0; i < tiles; i++) perm[i] = i;
  const r = keystream(key, 'perm', tiles * 4);
  for (let i = tiles - 1; i > 0; i--) {
    const j = r.readUInt32LE(i * 4) % (i + 1);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  const nPilot = Math.round(tiles * PILOT_SHARE);
  const role = new Int16Array(tiles);
  for (let i = 0; i < tiles; i++) role[perm[i]] = i < nPilot || nBits <= 0 ? -1 : (i - nPilot) % nBits;
  const c = keystream(key, 'chip', tiles);
  const chip = new Int8Array(tiles);
  for (let i = 0; i < tiles; i++) chip[i] = c[i] & 1 ? 1 : -1;
  const pilot: Array<Array<[number, number]>> = [];
  for (let b = 0; b < PERIOD_BLOCKS; b++) {
    const list: Array<[number, number]> = [];
    for (let k = 0; k < BANDS; k++) if (role[b * BANDS + k] < 0) list.push([k, chip[b * BANDS + k]]);
    pilot.push(list);
  }
  return { role, chip, pilot };
}

// --- spectra -------------------------------------------------------------------------------

/** About 23 ms frames at any rate (1024 samples at 44.1 and 48 kHz). */
const frameSize = (sr: number) => 2 ** Math.max(8, Math.min(14, Math.round(Math.log2(sr * 0.0232))));

/** sqrt of a periodic Hann window: analysis × synthesis sums to 1 at 50 % overlap. */
function sqrtHann(n: number): Float64Array {
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) w[i] = Math.sqrt(0.5 - 0.5 * Math.cos((2 * Math.PI * i) / n));
  return w;
}

/** First bin of each band and one past the last band's end, at this rate and frame size. */
function bandEdges(sr: number, n: number): Int32Array {
  const e = new Int32Array(BANDS + 1);
  for (let k = 0; k <= BANDS; k++) e[k] = Math.min(n / 2, Math.ceil(((BAND_LO + k * BAND_HZ) * n) / sr));
  return e;
}

/** Fills `frame` with `x` from `start` on, windowed by `w` (zeros outside `x`); answers the frame's energy. */
function windowFrame(frame: Float64Array, x: ArrayLike<number>, start: number, w: Float64Array): number {
  let energy = 0;
  for (let i = 0; i < frame.length; i++) {
    const j = start + i;
    const v = j >= 0 && j < x.length ? x[j] * w[i] : 0;
    frame[i] = v;
    energy += v * v;
  }
  return energy;
}

// --- WAV I/O -------------------------------------------------------------------------------

export function isWav(bytes: Buffer): boolean {
  return bytes.length >= 12 && (bytes.toString('latin1', 0, 4) === 'RIFF' || bytes.toString('latin1', 0, 4) === 'RF64') && bytes.toString('latin1', 8, 12) === 'WAVE';
}

interface WavIn {
  wav: InstanceType<typeof wavefile.WaveFile>;
  kind: SampleKind;
  sampleRate: number;
  channels: Float64Array[];
}

type SampleKind = 'u8' | 's16' | 's24' | 's32' | 'f32' | 'f64';

/** wavefile parses the chunks; the samples are (un)packed here, wavefile's own is slow (~1 s for 30 s of stereo). */
function sampleKind(depth: string): SampleKind {
  const kinds: Record<string, SampleKind> = { '8': 'u8', '16': 's16', '24': 's24', '32': 's32', '32f': 'f32', '64': 'f64' };
  const k = kinds[depth];
  if (!k) throw new Error(`unsupported WAV sample format (bit depth ${depth})`);
  return k;
}

const BYTES: Record<SampleKind, number> = { u8: 1, s16: 2, s24: 3, s32: 4, f32: 4, f64: 8 };

function unpack(data: Uint8Array, kind: SampleKind, nch: number): Float64Array[] {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const size = BYTES[kind];
  const frames = Math.floor(buf.length / (size * nch));
  const out = Array.from({ length: nch }, () => new Float64Array(frames));
  for (let i = 0, o = 0; i < frames; i++) {
    for (let c = 0; c < nch; c++, o += size) {
      let v: number;
      if (kind === 's16') v = buf.readInt16LE(o) / 32768;
      else if (kind === 's24') v = buf.readIntLE(o, 3) / 8388608;
      else if (kind === 'f32') v = buf.readFloatLE(o);
      else if (kind === 's32') v = buf.readInt32LE(o) / 2147483648;
      else if (kind === 'u8') v = (buf[o] - 128) / 128;
      else v = buf.readDoubleLE(o);
      out[c][i] = Number.isFinite(v) ? v : 0;
    }
  }
  return out;
}

function pack(channels: Float64Array[], kind: SampleKind): Buffer {
  const size = BYTES[kind];
  const nch = channels.length;
  const frames = channels[0]?.length ?? 0;
  const buf = Buffer.alloc(frames * nch * size);
  const int = (v: number, full: number) => Math.max(-full, Math.min(full - 1, Math.round(v * full)));
  for (let i = 0, o = 0; i < frames; i++) {
    for (let c = 0; c < nch; c++, o += size) {
      const v = Math.max(-1, Math.min(1, channels[c][i]));
      if (kind === 's16') buf.writeInt16LE(int(v, 32768), o);
      else if (kind === 's24') buf.writeIntLE(int(v, 8388608), o, 3);
      else if (kind === 'f32') buf.writeFloatLE(v, o);
      else if (kind === 's32') buf.writeInt32LE(int(v, 2147483648), o);
      else if (kind === 'u8') buf[o] = int(v, 128) + 128;
      else buf.writeDoubleLE(v, o);
    }
  }
  return buf;
}

function parseWav(bytes: Buffer): WavIn {
  if (!isWav(bytes)) throw new Error('not a WAV file');
  const wav = new wavefile.WaveFile();
  wav.fromBuffer(bytes, true);
  const fmt = wav.fmt as { numChannels: number; sampleRate: number };
  if (!(fmt.numChannels >= 1) || !(fmt.sampleRate > 0)) throw new Error('WAV without channels or sample rate');
  // wavefile reads WAVE_FORMAT_EXTENSIBLE float (ffmpeg's pcm_f32le) as 32-bit integers: its subformat says float.
  const f = wav.fmt as { audioFormat: number; subformat?: number[] };
  const float = f.audioFormat === 65534 && f.subformat?.[0] === 3;
  const kind = sampleKind(float && wav.bitDepth === '32' ? '32f' : wav.bitDepth);
  const data = (wav.data as { samples: Uint8Array }).samples;
  return { wav, kind, sampleRate: fmt.sampleRate, channels: unpack(data, kind, fmt.numChannels) };
}

/** WAV PCM (8/16/24/32-bit integer, 32/64-bit float) → samples in ±1, one array per channel. */
export function readWav(bytes: Buffer): Pcm {
  const w = parseWav(bytes);
  return { sampleRate: w.sampleRate, channels: w.channels.map((c) => Float32Array.from(c)) };
}

/** The input file with its samples replaced: every other chunk and the exact format kept. */
function rewriteWav(input: WavIn, channels: Float64Array[]): Buffer {
  (input.wav.data as { samples: Uint8Array }).samples = pack(channels, input.kind);
  return Buffer.from(input.wav.toBuffer());
}

/** Any audio file ffmpeg reads (MP3, AAC, …) → PCM (for traces of re-encoded copies). */
export async function decodeAudio(file: string, ffmpeg = '/usr/bin/ffmpeg'): Promise<Pcm> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cascade-decode-'));
  try {
    const out = path.join(dir, 'pcm.wav');
    const r = await run(ffmpeg, ['-nostdin', '-v', 'error', '-i', file, '-vn', '-map', '0:a:0', '-c:a', 'pcm_f32le', '-f', 'wav', out], 300_000);
    if (!r.ok) throw new Error(`ffmpeg could not decode ${file}: ${r.stderr.trim().slice(-400)}`);
    return readWav(await readFile(out));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// --- embedding -----------------------------------------------------------------------------

/** Each tile's sign (chip × bit sign, +chip for the pilot) for one period. */
function tileSigns(p: Pattern, bits: Uint8Array): Int8Array {
  const s = new Int8Array(p.role.length);
  for (let i = 0; i < s.length; i++) s[i] = p.role[i] < 0 ? p.chip[i] : bits[p.role[i]] ? p.chip[i] : -p.chip[i];
  return s;
}

/** The mark: Σ over 50 %-overlapped frames of w·IFFT(gain·FFT(w·x)), gain = ±α of the frame's tile (absolute block × band). */
function markOf(x: Float64Array, sr: number, gains: Float64Array): Float64Array {
  const n = frameSize(sr);
  const hop = n / 2;
  const fft = new FFT(n);
  const w = sqrtHann(n);
  const edges = bandEdges(sr, n);
  const frame = new Float64Array(n);
  const spec = fft.createComplexArray() as number[];
  const mod = fft.createComplexArray() as number[];
  const back = fft.createComplexArray() as number[];
  const out = new Float64Array(x.length);
  // Frame m covers [m·hop − n/2, m·hop + n/2): its centre m·hop/sr decides its block.
  const frames = Math.ceil(x.length / hop) + 1;
  for (let m = 0; m < frames; m++) {
    const start = m * hop - n / 2;
    if (windowFrame(frame, x, start, w) === 0) continue;
    fft.realTransform(spec, frame);
    fft.completeSpectrum(spec);
    mod.fill(0);
    const block = Math.floor((m * hop) / sr / BLOCK_S);
    for (let k = 0; k < BANDS; k++) {
      const g = gains[block * BANDS + k] ?? 0;
      for (let b = edges[k]; b < edges[k + 1]; b++) {
        mod[2 * b] = g * spec[2 * b];
        mod[2 * b + 1] = g * spec[2 * b + 1];
        const c = n - b;
        mod[2 * c] = g * spec[2 * c];
        mod[2 * c + 1] = g * spec[2 * c + 1];
      }
    }
    fft.inverseTransform(back, mod);
    for (let i = 0; i < n; i++) {
      const j = start + i;
      if (j >= 0 && j < x.length) out[j] += back[2 * i] * w[i];
    }
  }
  return out;
}

const snr = (a: Float64Array[], b: Float64Array[]) => {
  let s = 0;
  let e = 0;
  for (let c = 0; c < a.length; c++) {
    for (let i = 0; i < a[c].length; i++) {
      s += a[c][i] * a[c][i];
      e += (b[c][i] - a[c][i]) ** 2;
    }
  }
  return e === 0 ? Infinity : 10 * Math.log10(s / e);
};

/**
 * Marks a WAV file with `bits` under `key`; the output keeps the input's rate, channels and
 * sample format. snrDb: original against what is written (quantisation included).
 */
export async function embedWav(bytes: Buffer, bits: Uint8Array, key: PatternKey): Promise<{ bytes: Buffer; snrDb: number }> {
  if (bits.length < 1 || bits.length > 4096) throw new Error(`cannot embed ${bits.length} bits`);
  const input = parseWav(bytes);
  const sr = input.sampleRate;
  const signs = tileSigns(pattern(key, bits.length), bits);
  const { energy, total } = tileEnergies(input.channels, sr);
  const alpha = strengths(energy, total * 10 ** (-TARGET_SNR_DB / 10));
  const gains = new Float64Array(alpha.length);
  for (let t = 0; t < gains.length; t++) {
    const block = Math.floor(t / BANDS) % PERIOD_BLOCKS;
    gains[t] = alpha[t] * signs[block * BANDS + (t % BANDS)];
  }
  const marks = input.channels.map((c) => markOf(c, sr, gains));
  let host = 0;
  let mark = 0;
  for (let c = 0; c < marks.length; c++) {
    for (let i = 0; i < marks[c].length; i++) {
      host += input.channels[c][i] ** 2;
      mark += marks[c][i] ** 2;
    }
  }
  // The strengths were planned on the frames' energies; this lands the SNR on its target exactly.
  const fix = mark > 0 ? Math.min(1.25, Math.sqrt((host / mark) * 10 ** (-TARGET_SNR_DB / 10))) : 0;
  const marked = input.channels.map((c, ci) => {
    const o = new Float64Array(c.length);
    for (let i = 0; i < c.length; i++) o[i] = c[i] + fix * marks[ci][i];
    return o;
  });
  const out = rewriteWav(input, marked);
  return { bytes: out, snrDb: snr(input.channels, parseWav(out).channels) };
}

/** Energy of every tile of the clip (block from the start × band, all channels) and of all bins, on the embedding grid. */
function tileEnergies(channels: Float64Array[], sr: number): { energy: Float64Array; total: number } {
  const n = frameSize(sr);
  const hop = n / 2;
  const fft = new FFT(n);
  const w = sqrtHann(n);
  const edges = bandEdges(sr, n);
  const length = channels[0]?.length ?? 0;
  const frames = Math.ceil(length / hop) + 1;
  const blocks = Math.floor(((frames - 1) * hop) / sr / BLOCK_S) + 1;
  const energy = new Float64Array(blocks * BANDS);
  const frame = new Float64Array(n);
  const spec = fft.createComplexArray() as number[];
  let total = 0;
  for (const x of channels) {
    for (let m = 0; m < frames; m++) {
      windowFrame(frame, x, m * hop - n / 2, w);
      fft.realTransform(spec, frame);
      for (let b = 0; b <= n / 2; b++) total += (b === 0 || b === n / 2 ? 1 : 2) * (spec[2 * b] ** 2 + spec[2 * b + 1] ** 2);
      const block = Math.floor((m * hop) / sr / BLOCK_S);
      for (let k = 0; k < BANDS; k++) {
        let e = 0;
        for (let b = edges[k]; b < edges[k + 1]; b++) e += spec[2 * b] ** 2 + spec[2 * b + 1] ** 2;
        energy[block * BANDS + k] += 2 * e;
      }
    }
  }
  return { energy, total };
}

/**
 * Each tile's relative strength α: min(ALPHA_MAX, λ/√E), λ such that the mark's energy
 * Σ α²·E meets the budget. Under an SNR budget a quiet tile buys as much detection as a loud one
 * for far less energy, so loud tiles (a chord's fundamentals) get a smaller relative change and
 * quieter ones up to ALPHA_MAX (about ±1.9 dB, under the louder tiles' masking).
 */
function strengths(energy: Float64Array, budget: number): Float64Array {
  const cost = (lambda: number) => {
    let c = 0;
    for (const e of energy) c += Math.min(ALPHA_MAX * ALPHA_MAX * e, lambda * lambda);
    return c;
  };
  let lo = 0;
  let top = 0;
  for (const e of energy) top = Math.max(top, e);
  let hi = Math.sqrt(top) * ALPHA_MAX;
  if (cost(hi) <= budget) lo = hi;
  else {
    for (let i = 0; i < 60; i++) {
      const mid = (lo + hi) / 2;
      if (cost(mid) > budget) hi = mid;
      else lo = mid;
    }
  }
  return Float64Array.from(energy, (e) => (e > 0 ? Math.min(ALPHA_MAX, lo / Math.sqrt(e)) : 0));
}

// --- detection -----------------------------------------------------------------------------

/** Band energies of the mono mix: frames (hop n/4, centred at m·hop) × BANDS. */
function bandEnergies(pcm: Pcm, length: number): { energy: Float64Array; frames: number; hopS: number } {
  const sr = pcm.sampleRate;
  const n = frameSize(sr);
  // Quarter-frame hop (finer than embedding's half): smoother tile energies, finer offsets.
  const hop = n / 4;
  const fft = new FFT(n);
  const w = sqrtHann(n);
  const edges = bandEdges(sr, n);
  const mono = new Float64Array(length);
  for (const ch of pcm.channels) {
    for (let i = 0; i < length; i++) {
      const v = ch[i];
      if (Number.isFinite(v)) mono[i] += v;
    }
  }
  const frames = Math.ceil(length / hop) + 1;
  const energy = new Float64Array(frames * BANDS);
  const frame = new Float64Array(n);
  const spec = fft.createComplexArray() as number[];
  for (let m = 0; m < frames; m++) {
    windowFrame(frame, mono, m * hop - n / 2, w);
    fft.realTransform(spec, frame);
    for (let k = 0; k < BANDS; k++) {
      let e = 0;
      for (let b = edges[k]; b < edges[k + 1]; b++) e += spec[2 * b] * spec[2 * b] + spec[2 * b + 1] * spec[2 * b + 1];
      energy[m * BANDS + k] = e;
    }
  }
  return { energy, frames, hopS: hop / sr };
}

/**
 * Whitened tile log energies for block phase `delta` seconds: block b holds the frames whose
 * centre t satisfies floor((t + delta) / BLOCK_S) = b + 1 (block 0 and the last, partial, are dropped).
 */
function tiles(e: { energy: Float64Array; frames: number; hopS: number }, delta: number, floor: number): { w: Float64Array; blocks: number } {
  const total = Math.floor(((e.frames - 1) * e.hopS + delta) / BLOCK_S) + 1;
  const blocks = Math.max(0, total - 2);
  const sum = new Float64Array(blocks * BANDS);
  const count = new Int32Array(blocks);
  for (let m = 0; m < e.frames; m++) {
    const b = Math.floor((m * e.hopS + delta) / BLOCK_S) - 1;
    if (b < 0 || b >= blocks) continue;
    count[b]++;
    for (let k = 0; k < BANDS; k++) sum[b * BANDS + k] += e.energy[m * BANDS + k];
  }
  const log = new Float64Array(blocks * BANDS);
  for (let b = 0; b < blocks; b++) {
    let top = 0;
    for (let k = 0; k < BANDS; k++) top = Math.max(top, sum[b * BANDS + k]);
    const f = floor * Math.max(1, count[b]) + REL_FLOOR * top;
    for (let k = 0; k < BANDS; k++) log[b * BANDS + k] = Math.log(sum[b * BANDS + k] + f);
  }
  const w = new Float64Array(blocks * BANDS);
  for (let k = 0; k < BANDS; k++) {
    for (let b = 0; b < blocks; b++) {
      let s = 0;
      let n = 0;
      for (let d = -WHITEN_RADIUS; d <= WHITEN_RADIUS; d++) {
        const bb = b + d;
        if (d === 0 || bb < 0 || bb >= blocks) continue;
        s += log[bb * BANDS + k];
        n++;
      }
      w[b * BANDS + k] = n > 0 ? log[b * BANDS + k] - s / n : 0;
    }
  }
  for (let b = 0; b < blocks; b++) {
    let s = 0;
    for (let k = 0; k < BANDS; k++) s += w[b * BANDS + k];
    for (let k = 0; k < BANDS; k++) w[b * BANDS + k] -= s / BANDS;
  }
  // Each band in units of its own spread (median |w|): a quiet, steady band is as useful as a
  // loud one; how much each band counts is then decided by its pilot (softBits).
  const mags = new Float64Array(blocks);
  for (let k = 0; k < BANDS && blocks > 0; k++) {
    for (let b = 0; b < blocks; b++) mags[b] = Math.abs(w[b * BANDS + k]);
    mags.sort();
    const scale = mags[blocks >> 1] || 1;
    for (let b = 0; b < blocks; b++) w[b * BANDS + k] /= scale;
  }
  // Per block: an onset or a chord change lifts every band of its blocks, so those blocks count
  // for less; a tile still far off its neighbours after that is erased, not clipped (with a
  // tonal host, the same chord changes recur at the same tiles in every period).
  const rowScale = new Float64Array(blocks);
  const row = new Float64Array(BANDS);
  for (let b = 0; b < blocks; b++) {
    for (let k = 0; k < BANDS; k++) row[k] = Math.abs(w[b * BANDS + k]);
    row.sort();
    rowScale[b] = row[BANDS >> 1];
  }
  const ref = Float64Array.from(rowScale).sort()[blocks >> 1] || 1;
  for (let b = 0; b < blocks; b++) {
    const f = rowScale[b] > ref ? ref / rowScale[b] : 1;
    for (let k = 0; k < BANDS; k++) {
      const v = w[b * BANDS + k] * f;
      w[b * BANDS + k] = Math.abs(v) > ERASE_BEYOND ? 0 : v;
    }
  }
  return { w, blocks };
}

function softBits(w: Float64Array, blocks: number, shift: number, p: Pattern, nBits: number): SoftBits {
  // Each band's weight is its pilot correlation under this hypothesis (an estimate of the mark's
  // strength there, in units of the band's noise): bands where the host beats or a codec
  // dropped the mark count for little, clean ones for much (maximal-ratio combining).
  const pil = new Float64Array(BANDS);
  const pn = new Int32Array(BANDS);
  for (let b = 0; b < blocks; b++) {
    const pb = (b + shift) % PERIOD_BLOCKS;
    for (const [k, c] of p.pilot[pb]) {
      pil[k] += c * w[b * BANDS + k];
      pn[k]++;
    }
  }
  const weight = new Float64Array(BANDS);
  for (let k = 0; k < BANDS; k++) weight[k] = Math.max(0, pn[k] > 0 ? pil[k] / pn[k] : 0);
  let soft = decode(w, blocks, shift, p, nBits, weight);
  for (let pass = 0; pass < DD_PASSES; pass++) {
    const acc = Float64Array.from(pil);
    const n = Int32Array.from(pn);
    for (let b = 0; b < blocks; b++) {
      const pb = (b + shift) % PERIOD_BLOCKS;
      for (let k = 0; k < BANDS; k++) {
        const t = pb * BANDS + k;
        const bit = p.role[t];
        if (bit < 0) continue;
        acc[k] += (soft[bit] > 0 ? 1 : -1) * p.chip[t] * w[b * BANDS + k];
        n[k]++;
      }
    }
    for (let k = 0; k < BANDS; k++) weight[k] = Math.max(0, n[k] > 0 ? acc[k] / n[k] : 0);
    soft = decode(w, blocks, shift, p, nBits, weight);
  }
  return soft;
}

/**
 * Passes re-estimating the band weights from every tile, each read with its bit's decision
 * (decision-directed: 8 times the pilot's tiles, so steadier weights). One pass: on the tonal
 * test clip the mean |soft| rises by about 0.2; on noise hypotheses it rises too (≈ 0.9 → 1.0),
 * which the payload layer's check has to bear, as it does any soft bits.
 */
const DD_PASSES = 1;

function decode(w: Float64Array, blocks: number, shift: number, p: Pattern, nBits: number, weight: Float64Array): SoftBits {
  const sum = new Float64Array(nBits);
  const var_ = new Float64Array(nBits);
  for (let b = 0; b < blocks; b++) {
    const pb = (b + shift) % PERIOD_BLOCKS;
    for (let k = 0; k < BANDS; k++) {
      const t = pb * BANDS + k;
      const bit = p.role[t];
      if (bit < 0) continue;
      const v = w[b * BANDS + k];
      sum[bit] += weight[k] * p.chip[t] * v;
      var_[bit] += weight[k] * weight[k] * v * v;
    }
  }
  // Scaled as z-scores (the correlation over its own spread), so |soft| reads as reliability.
  const soft = new Float64Array(nBits);
  for (let i = 0; i < nBits; i++) soft[i] = var_[i] > 0 ? sum[i] / Math.sqrt(var_[i]) : 0;
  return soft;
}

const meanAbs = (s: SoftBits) => s.reduce((a, v) => a + Math.abs(v), 0) / Math.max(1, s.length);

/**
 * Looks for the mark in PCM audio (any rate, any channels: they are mixed to mono). Each
 * synchronisation hypothesis, best pilot correlation first, is decoded to `nBits` soft bits and
 * handed to `accept`; the first accepted is returned. Never throws on odd input.
 */
export async function detectAudio<T>(pcm: { sampleRate: number; channels: Float32Array[] }, key: PatternKey, nBits: number, accept: Accept<T>): Promise<Found<T> | NotFound> {
  const none = (reason: string, best: SoftBits | null = null, hypotheses = 0): NotFound => ({ best, hypotheses, reason });
  const sr = pcm?.sampleRate;
  if (!Number.isFinite(sr) || sr < 8000 || sr > 768_000) return none(`unsupported sample rate ${sr}`);
  if (!Array.isArray(pcm.channels) || pcm.channels.length === 0) return none('no audio channels');
  if (!Number.isInteger(nBits) || nBits < 1 || nBits > 4096) return none(`cannot read ${nBits} bits`);
  // Beyond MAX_SECONDS more repetitions add little and cost time and memory: the start is read.
  const length = Math.min(MAX_SECONDS * sr, ...pcm.channels.map((c) => c?.length ?? 0));
  if (length < MIN_SECONDS * sr) return none(`too short: ${(length / sr).toFixed(2)} s (at least ${MIN_SECONDS} s needed, ${(PERIOD_BLOCKS * BLOCK_S).toFixed(2)} s for a whole payload)`);
  if (sr / 2 <= BAND_HI) return none(`sample rate ${sr} Hz too low for the mark's band (up to ${BAND_HI} Hz)`);

  const e = bandEnergies(pcm, length);
  let mean = 0;
  for (let i = 0; i < e.energy.length; i++) mean += e.energy[i];
  mean /= e.energy.length;
  if (!(mean > 1e-12)) return none('silent in the mark\'s band');
  // Tiles far below the clip's level (silence between notes, empty bands) read as the floor:
  // a codec's noise there says nothing.
  const floor = mean * 1e-3;

  const p = pattern(key, nBits);
  const perPhase: Array<{ w: Float64Array; blocks: number }> = [];
  const ranked: Array<{ phase: number; shift: number; score: number }> = [];
  for (let ph = 0; ph < PHASES; ph++) {
    const t = tiles(e, (ph * BLOCK_S) / PHASES, floor);
    perPhase.push(t);
    for (let s = 0; s < PERIOD_BLOCKS; s++) {
      let score = 0;
      for (let b = 0; b < t.blocks; b++) {
        for (const [k, c] of p.pilot[(b + s) % PERIOD_BLOCKS]) score += c * t.w[b * BANDS + k];
      }
      ranked.push({ phase: ph, shift: s, score });
    }
  }
  ranked.sort((a, b) => b.score - a.score);

  let best: SoftBits | null = null;
  let tried = 0;
  for (const h of ranked.slice(0, MAX_HYPOTHESES)) {
    const t = perPhase[h.phase];
    const soft = softBits(t.w, t.blocks, h.shift, p, nBits);
    tried++;
    if (!best || meanAbs(soft) > meanAbs(best)) best = soft;
    const result = accept(soft);
    if (result !== null) {
      // The clip's first sample sits this far into the marked timeline (modulo one period).
      const period = PERIOD_BLOCKS * BLOCK_S;
      const offset = (((((h.shift - 1) * BLOCK_S + (h.phase * BLOCK_S) / PHASES) % period) + period) % period).toFixed(3);
      return { result, soft, where: `offset ${offset} s (block shift ${h.shift}, phase ${h.phase}/${PHASES})`, hypotheses: tried };
    }
  }
  return none(`no hypothesis accepted (best pilot correlation ${ranked[0]?.score.toFixed(2) ?? 'none'})`, best, tried);
}
