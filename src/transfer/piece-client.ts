import { createHash, type KeyObject } from 'node:crypto';
import { Pool } from 'undici';
import { AppError } from '../core/errors.ts';
import { PROOF_WINDOW_MS, signGrantProof } from './grant-token.ts';
import { SERVED_HEADER } from './served-attestation.ts';

// Fetches pieces from one source under one grant. Keeps a small pool of keep-alive
// connections to the source so piece requests overlap (the latency of one request
// hides behind the transfer of another).

export class PieceClient {
  private readonly pool: Pool;
  private signed?: { at: number; proof: string };

  /**
   * `stallMs`: a request that receives no bytes for this long fails (S1.7: a holder
   * that stalls is given up on, and another one is asked).
   */
  constructor(
    readonly sourceUrl: string,
    private grant: { id: string; token: string; contentId: string },
    private readonly receiverKey: KeyObject,
    connections = 8,
    stallMs = 30_000,
    /** How connections are opened; the origin passes its address policy's connector (issue 10 #8). */
    connect?: Pool.Options['connect'],
  ) {
    this.pool = new Pool(sourceUrl, { connections, keepAliveTimeout: 30_000, headersTimeout: stallMs, bodyTimeout: stallMs, ...(connect ? { connect } : {}) });
  }

  /** A new grant for the same source (the previous one expired or was replaced). */
  setGrant(grant: { id: string; token: string }) {
    this.grant = { ...this.grant, ...grant };
    this.signed = undefined;
  }

  /**
   * Fetches piece `index` into `into` (whose length is the piece's expected size) and
   * returns how many bytes the source sent, their SHA-256 (hashed chunk by chunk as
   * they arrive; comparing it with the manifest is the caller's job) and the source's
   * signed statement that it served the piece (`served`, for the receipt). The caller reuses
   * `into` for the next piece: a megabyte allocated per piece is garbage-collection
   * work the receiver can do without.
   */
  fetch(index: number, into: Buffer): Promise<{ bytes: number; sha256: string; served?: string }> {
    const { token, contentId } = this.grant;
    const proof = this.proof();
    return new Promise((resolve, reject) => {
      let status = 0;
      let size = 0;
      let served: string | undefined;
      const hash = createHash('sha256');
      const errorBody: Buffer[] = [];
      let abort: (err: Error) => void = () => {};
      // undici's low-level (dispatch) handler: bytes are copied straight from the socket's chunks
      // into `into`, with no stream or async iterator in between.
      this.pool.dispatch(
        {
          method: 'GET',
          path: `/pieces/${contentId}/${index}`,
          headers: { authorization: `Grant ${token}`, 'cascade-proof': proof },
        },
        {
          onConnect(abortRequest) {
            abort = abortRequest;
          },
          onHeaders(statusCode, rawHeaders) {
            status = statusCode;
            for (let h = 0; h + 1 < rawHeaders.length; h += 2) {
              if (rawHeaders[h].length === SERVED_HEADER.length && rawHeaders[h].toString('latin1').toLowerCase() === SERVED_HEADER) served = rawHeaders[h + 1].toString('latin1');
            }
            return true;
          },
          onData(chunk) {
            if (status !== 200) {
              errorBody.push(chunk);
            } else if (size + chunk.length > into.length) {
              // A source that sends more than the piece can hold is wrong; stop reading at once.
              abort(new AppError('piece_oversized', `source sent more than the ${into.length} bytes of piece ${index}`, 502));
            } else {
              chunk.copy(into, size);
              hash.update(chunk);
              size += chunk.length;
            }
            return true;
          },
          onComplete() {
            if (status === 200) resolve({ bytes: size, sha256: hash.digest('hex'), served });
            else reject(sourceRefusal(status, Buffer.concat(errorBody).toString()));
          },
          onError(err) {
            reject(err);
          },
        },
      );
    });
  }

  /** A proof of being the grant's receiver, re-signed well before sources would call it stale. */
  private proof(): string {
    const now = Date.now();
    if (!this.signed || now - this.signed.at > PROOF_WINDOW_MS / 4) this.signed = { at: now, proof: signGrantProof(this.receiverKey, this.grant.id, now) };
    return this.signed.proof;
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** The source's `{error:{code,message}}` as an AppError (or a generic one if it sent something else). */
function sourceRefusal(status: number, text: string): AppError {
  try {
    const e = JSON.parse(text).error;
    if (typeof e?.code === 'string') return new AppError(e.code, String(e.message), status);
  } catch {}
  return new AppError('source_error', `source answered ${status}`, status);
}
