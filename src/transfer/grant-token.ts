import type { KeyObject } from 'node:crypto';
import { signBytes, verifyBytes } from '../core/crypto.ts';
import { decodeToken, encodeToken } from '../core/signed-token.ts';
import { rangeSet } from './piece-ranges.ts';

// A grant (ARCHITECTURE.md "One idea underneath everything") is the origin's signed
// permission for one receiver to fetch given pieces of one content from one source
// until an expiry. Sources check it offline with the origin's public key; the
// receiver proves it is the named receiver by signing each request with its own key.

/** The origin's source ID in grants, receipts and reports. */
export const ORIGIN_SOURCE_ID = 'origin';

export interface GrantPayload {
  typ: 'grant';
  id: string;
  content: string;
  receiver: string;
  /** The receiver's Ed25519 public key, so sources can check request proofs offline. */
  receiverKey: string;
  source: string;
  /** Piece ranges, e.g. "0-511". */
  pieces: string;
  /** Expiry, ms since epoch. */
  exp: number;
}

export function signGrant(payload: Omit<GrantPayload, 'typ'>, originKey: KeyObject): string {
  return encodeToken<GrantPayload>({ typ: 'grant', ...payload }, originKey);
}

/**
 * The text a receiver signs to show it is the grant's receiver. It names the grant
 * (which names content, pieces and source) and a time, not a piece: one signature
 * serves all the receiver's requests under that grant for a while, so a receiver
 * signs about twice a minute rather than once per piece.
 */
function proofText(grantId: string, ts: number): string {
  return `cascade-piece:${grantId}:${ts}`;
}

export function signGrantProof(receiverKey: KeyObject, grantId: string, now: number): string {
  return `${now}.${signBytes(receiverKey, proofText(grantId, now))}`;
}

/** How far a request proof's timestamp may be from the source's clock. */
export const PROOF_WINDOW_MS = 120_000;

export type GrantRefusal =
  | 'grant_missing'
  | 'grant_invalid'
  | 'grant_expired'
  | 'grant_wrong_source'
  | 'grant_wrong_content'
  | 'grant_wrong_receiver'
  | 'proof_stale'
  | 'piece_not_granted';

export const REFUSAL_MESSAGES: Record<GrantRefusal, [number, string]> = {
  grant_missing: [401, 'Pieces are served only against a grant: send "Authorization: Grant <token>".'],
  grant_invalid: [401, 'The grant is malformed or not signed by the origin.'],
  grant_expired: [401, 'The grant has expired; ask the origin for a new one.'],
  grant_wrong_source: [403, 'The grant is for another source.'],
  grant_wrong_content: [403, 'The grant is for another content.'],
  grant_wrong_receiver: [403, 'The request is not signed by the receiver the grant names.'],
  proof_stale: [401, 'The request proof is timed more than 2 minutes from this source\'s clock (its time is in details.sourceTime): sign on that time, or set this terminal\'s clock right.'],
  piece_not_granted: [403, 'The grant does not cover this piece.'],
};

export interface PieceRequestCheck {
  grantToken: string | undefined;
  proof: string | undefined;
  sourceId: string;
  contentId: string;
  /** The piece asked for; null for requests about the content as a whole (which pieces a source has). */
  index: number | null;
  now: number;
  /**
   * True if the grant's receiver already proved itself on the connection this request
   * came on: a keep-alive connection is one peer, so one verified proof per grant and
   * connection is enough (Ed25519 verification costs more than serving a piece from cache).
   */
  provenOnConnection?: (grantId: string) => boolean;
}

/**
 * Verifies a grant and the receiver's proof for one piece request. Verified grants
 * are cached (signature checks cost more than the rest of a piece request).
 */
export class GrantVerifier {
  private readonly cache = new Map<string, { payload: GrantPayload; has: (i: number) => boolean }>();
  constructor(private readonly originKey: KeyObject | string) {}

  check(req: PieceRequestCheck): { ok: true; grant: GrantPayload; covers: (index: number) => boolean } | { ok: false; refusal: GrantRefusal } {
    if (!req.grantToken) return { ok: false, refusal: 'grant_missing' };
    let entry = this.cache.get(req.grantToken);
    if (!entry) {
      const decoded = decodeToken<GrantPayload>(req.grantToken, this.originKey, 'grant');
      if (!decoded.ok || !isGrantShape(decoded.payload)) return { ok: false, refusal: 'grant_invalid' };
      entry = { payload: decoded.payload, has: rangeSet(decoded.payload.pieces) };
      if (this.cache.size >= 5000) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(req.grantToken, entry);
    }
    const g = entry.payload;
    if (g.exp <= req.now) return { ok: false, refusal: 'grant_expired' };
    if (g.source !== req.sourceId) return { ok: false, refusal: 'grant_wrong_source' };
    if (g.content !== req.contentId) return { ok: false, refusal: 'grant_wrong_content' };
    if (!req.provenOnConnection?.(g.id)) {
      const proof = this.proofCheck(g, req);
      if (proof !== 'valid') return { ok: false, refusal: proof === 'stale' ? 'proof_stale' : 'grant_wrong_receiver' };
    }
    if (req.index !== null && !entry.has(req.index)) return { ok: false, refusal: 'piece_not_granted' };
    return { ok: true, grant: g, covers: entry.has };
  }

  /**
   * `stale` only for a proof the grant's receiver did sign, at a time too far from ours: a
   * receiver whose clock is off is told so (and can sign on our time), not taken for a thief.
   */
  private proofCheck(g: GrantPayload, req: PieceRequestCheck): 'valid' | 'stale' | 'wrong' {
    const m = req.proof && /^(\d{1,15})\.([A-Za-z0-9_-]+)$/.exec(req.proof);
    if (!m) return 'wrong';
    const ts = Number(m[1]);
    if (!verifyBytes(g.receiverKey, proofText(g.id, ts), m[2])) return 'wrong';
    return Math.abs(ts - req.now) > PROOF_WINDOW_MS ? 'stale' : 'valid';
  }
}

function isGrantShape(p: any): p is GrantPayload {
  return (
    typeof p.id === 'string' &&
    typeof p.content === 'string' &&
    typeof p.receiver === 'string' &&
    typeof p.receiverKey === 'string' &&
    typeof p.source === 'string' &&
    typeof p.pieces === 'string' &&
    /^[0-9,-]+$/.test(p.pieces) &&
    Number.isFinite(p.exp)
  );
}
