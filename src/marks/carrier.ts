// S2.3: what every carrier (image, audio, video) shares. A carrier is pure signal processing: it
// embeds a given bit string under a keyed pattern and, when detecting, hands each
// synchronisation hypothesis's soft bits to the payload layer's validator (Reed–Solomon and a
// keyed check, payload.ts), stopping at the first one accepted. The caller decides what counts as
// found, so false positives are bounded by the payload's check, not by a carrier's threshold.

/** 32 secret bytes from which every keyed pattern is derived (the origin's pattern key). */
export type PatternKey = Buffer;

/** Soft bits of one hypothesis: value > 0 reads as 1, < 0 as 0; |value| is reliability (any scale). */
export type SoftBits = Float64Array;

/** The payload layer's verdict on one hypothesis: non-null = accepted (stop searching). */
export type Accept<T> = (soft: SoftBits) => T | null;

export interface Found<T> {
  result: T;
  soft: SoftBits;
  /** Human-readable synchronisation the detector settled on, e.g. "scale 2, offset (3,5)". */
  where: string;
  /** How many hypotheses were tried, this one included. */
  hypotheses: number;
}

export interface NotFound {
  /** The best hypothesis's soft bits (the largest mean |soft|), for error counts. */
  best: SoftBits | null;
  hypotheses: number;
  reason: string;
}

export const isFound = <T>(d: Found<T> | NotFound): d is Found<T> => 'result' in d;

/** Bits carried by images and audio (the long codeword) and by video (one bit per segment). */
export const IMAGE_AUDIO_BITS = 128;
export const VIDEO_BITS = 64;
