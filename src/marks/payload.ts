import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { IMAGE_AUDIO_BITS, VIDEO_BITS, type PatternKey, type SoftBits } from './carrier.ts';

// S2.3: the payload a mark carries — ETSI TS 104 002's indirect mode: not the user's name but a
// compact delivery serial the origin resolves (edge_deliveries.serial → user, edge, content),
// with a keyed check so that only the origin can mint a valid one (an edge cannot frame another
// user's serial) and a Reed–Solomon code (GF(256), @zxing/library) so that a few damaged bytes do
// not lose it.
//
//   long code (images, audio; 128 bits): serial u32 (keyed permutation) | origin tag u16 | check u16, + 8 parity bytes
//   short code (video, one bit per segment; 64 bits): serial u32 (keyed permutation) | check u16, + 2 parity bytes
//
// The origin signs the data bytes into the ticket an edge serves by (`wm`, hex, both codes); the
// edge adds the parity and whitens the bits with a keystream of the pattern key (so every
// codeword looks random to the carriers: no long runs, balanced bits). Reading goes back: soft
// bits → hard → unwhiten → RS decode → check → serial. A false match needs RS to land on a
// codeword whose check matches: the probability is reported with every trace (falseMatch()).

export type CodeKind = 'long' | 'short';

const SPEC = {
  long: { bits: IMAGE_AUDIO_BITS, data: 8, parity: 8 },
  short: { bits: VIDEO_BITS, data: 6, parity: 2 },
} as const;

/** What the origin keeps to mint and read payloads (keys.ts derives them from the origin's key). */
export interface PayloadSecrets {
  /** HMAC key of the check (never leaves the origin). */
  check: Buffer;
  /** The pattern key the carriers use (edges get it to embed). */
  pattern: PatternKey;
  /** 16 bits of the origin's ID (originIdOf): which origin minted a long payload. */
  originTag: number;
}

const MAX_SERIAL = 0xffff_ffff;
// Reed–Solomon over GF(256), loaded on first use: an origin that only mints ticket marks (no
// codewords, no traces) does not hold the library's ~20 MB (#19 memory).
let zxing: typeof import('@zxing/library') | undefined;
const rs = () => (zxing ??= createRequire(import.meta.url)('@zxing/library') as typeof import('@zxing/library'));
const field = () => rs().GenericGF.QR_CODE_FIELD_256;

function checkOf(kind: CodeKind, key: Buffer, serial: number, originTag: number): number {
  const msg = Buffer.alloc(7);
  msg.write(kind === 'long' ? 'L' : 'S', 0, 'latin1');
  msg.writeUInt32BE(serial, 1);
  msg.writeUInt16BE(originTag, 5);
  return createHmac('sha256', key).update(msg).digest().readUInt16BE(0);
}

/**
 * The serial as carried: a keyed 32-bit permutation (a 4-round Feistel network on 16-bit halves)
 * so that consecutive serials differ in about half their bits — otherwise every small serial would
 * start with the same zero bytes, and the first segments of every user's video would be the same
 * variants. Only the origin (the check key) can map it back.
 */
function feistel(key: Buffer, v: number, inverse: boolean): number {
  let l = v >>> 16;
  let r = v & 0xffff;
  const f = (round: number, half: number) => createHmac('sha256', key).update(Buffer.from([round, half >> 8, half & 0xff])).digest().readUInt16BE(0);
  if (!inverse) {
    for (let round = 0; round < 4; round++) [l, r] = [r, l ^ f(round, r)];
  } else {
    for (let round = 3; round >= 0; round--) [l, r] = [r ^ f(round, l), l];
  }
  return ((l << 16) | r) >>> 0;
}

/** The data bytes of one delivery's payload (the origin mints them; edges never can). */
export function payloadData(kind: CodeKind, secrets: PayloadSecrets, serial: number): Buffer {
  if (!Number.isSafeInteger(serial) || serial < 1 || serial > MAX_SERIAL) throw new RangeError(`serial ${serial} does not fit a mark's 32 bits`);
  const b = Buffer.alloc(SPEC[kind].data);
  b.writeUInt32BE(feistel(secrets.check, serial, false), 0);
  if (kind === 'long') {
    b.writeUInt16BE(secrets.originTag, 4);
    b.writeUInt16BE(checkOf(kind, secrets.check, serial, secrets.originTag), 6);
  } else {
    b.writeUInt16BE(checkOf(kind, secrets.check, serial, secrets.originTag), 4);
  }
  return b;
}

/** What a ticket carries: both codes' data bytes, hex (28 characters). */
export const ticketMark = (secrets: PayloadSecrets, serial: number): string =>
  payloadData('long', secrets, serial).toString('hex') + payloadData('short', secrets, serial).toString('hex');

/** The ticket's `wm` split back into the two codes' data bytes; null when it is not one. */
export function parseTicketMark(wm: unknown): { long: Buffer; short: Buffer } | null {
  if (typeof wm !== 'string' || !/^[0-9a-f]{28}$/.test(wm)) return null;
  const b = Buffer.from(wm, 'hex');
  return { long: b.subarray(0, 8), short: b.subarray(8) };
}

/** A keyed keystream of `n` bits (0/1) that whitens a code's bits. */
function keystream(pattern: PatternKey, kind: CodeKind, n: number): Uint8Array {
  const out = new Uint8Array(n);
  const bytes = createHmac('sha256', pattern).update(`cascade-mark-whitening:${kind}`).digest();
  for (let i = 0; i < n; i++) out[i] = (bytes[i >> 3] >> (7 - (i & 7))) & 1;
  return out;
}

/** The bits a carrier embeds for `data` (payloadData's bytes): RS parity added, whitened. */
export function codewordBits(kind: CodeKind, pattern: PatternKey, data: Buffer): Uint8Array {
  const spec = SPEC[kind];
  if (data.length !== spec.data) throw new RangeError(`a ${kind} payload has ${spec.data} data bytes, not ${data.length}`);
  const word = new Int32Array(spec.data + spec.parity);
  for (let i = 0; i < spec.data; i++) word[i] = data[i];
  new (rs().ReedSolomonEncoder)(field()).encode(word, spec.parity);
  const ks = keystream(pattern, kind, spec.bits);
  const bits = new Uint8Array(spec.bits);
  for (let i = 0; i < spec.bits; i++) bits[i] = ((word[i >> 3] >> (7 - (i & 7))) & 1) ^ ks[i];
  return bits;
}

export interface ReadPayload {
  kind: CodeKind;
  serial: number;
  /** The origin tag the payload names (long code; the short code's check is keyed by it). */
  originTag: number;
  /** Hard decisions that differ from the corrected codeword. */
  bitErrors: number;
  bits: number;
}

/**
 * Reads soft bits as a payload of this origin: null when they do not decode, the check fails or
 * the long code names another origin. The carriers' `accept` (carrier.ts).
 */
export function readPayload(kind: CodeKind, secrets: PayloadSecrets, soft: SoftBits): ReadPayload | null {
  const spec = SPEC[kind];
  if (soft.length !== spec.bits) return null;
  const ks = keystream(secrets.pattern, kind, spec.bits);
  const hard = new Uint8Array(spec.bits);
  const word = new Int32Array(spec.data + spec.parity);
  for (let i = 0; i < spec.bits; i++) {
    hard[i] = (soft[i] > 0 ? 1 : 0) ^ ks[i];
    word[i >> 3] |= hard[i] << (7 - (i & 7));
  }
  try {
    new (rs().ReedSolomonDecoder)(field()).decode(word, spec.parity);
  } catch {
    return null;
  }
  const data = Buffer.from(Array.from(word.subarray(0, spec.data)));
  const serial = feistel(secrets.check, data.readUInt32BE(0), true);
  if (serial < 1) return null;
  const tag = kind === 'long' ? data.readUInt16BE(4) : secrets.originTag;
  if (tag !== secrets.originTag) return null;
  const check = kind === 'long' ? data.readUInt16BE(6) : data.readUInt16BE(4);
  if (check !== checkOf(kind, secrets.check, serial, tag)) return null;
  let bitErrors = 0;
  for (let i = 0; i < spec.bits; i++) if (hard[i] !== ((word[i >> 3] >> (7 - (i & 7))) & 1)) bitErrors++;
  return { kind, serial, originTag: tag, bitErrors, bits: spec.bits };
}

/** log2 of the binomial ball: how many n-bit words lie within e bits of one word. */
function log2Ball(n: number, e: number): number {
  let sum = 0;
  let c = 1;
  for (let i = 0; i <= e; i++) {
    sum += c;
    c = (c * (n - i)) / (i + 1);
  }
  return Math.log2(sum);
}

/**
 * The chance that an unmarked input would have produced a match this good: `hypotheses` tries,
 * each a random word landing within `bitErrors` of one of the 2^32 valid codewords (the serial is
 * the only free field; tag and check are fixed by it). Reported as the trace's confidence.
 */
export function falseMatch(kind: CodeKind, bitErrors: number, hypotheses: number): number {
  const n = SPEC[kind].bits;
  const log2p = Math.log2(Math.max(1, hypotheses)) + 32 + log2Ball(n, bitErrors) - n;
  return Math.min(1, 2 ** log2p);
}

export const codeBits = (kind: CodeKind) => SPEC[kind].bits;
