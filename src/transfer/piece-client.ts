import type { KeyObject } from 'node:crypto';
import { Pool } from 'undici';
import { AppError } from '../core/errors.ts';
import { signPieceRequest } from './grant-token.ts';

// Fetches pieces from one source under one grant. Keeps a small pool of keep-alive
// connections to the source so piece requests overlap (the latency of one request
// hides behind the transfer of another).

export class PieceClient {
  private readonly pool: Pool;

  constructor(
    readonly sourceUrl: string,
    private readonly grant: { id: string; token: string; contentId: string },
    private readonly receiverKey: KeyObject,
    connections = 8,
  ) {
    this.pool = new Pool(sourceUrl, { connections, keepAliveTimeout: 30_000, headersTimeout: 30_000, bodyTimeout: 30_000 });
  }

  /** The raw bytes the source sent for piece `index`; verifying them is the caller's job. */
  async fetch(index: number, maxBytes: number): Promise<Buffer> {
    const { id, token, contentId } = this.grant;
    const res = await this.pool.request({
      method: 'GET',
      path: `/pieces/${contentId}/${index}`,
      headers: { authorization: `Grant ${token}`, 'cascade-proof': signPieceRequest(this.receiverKey, id, contentId, index, Date.now()) },
    });
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      let code = 'source_error';
      let message = `source answered ${res.statusCode}`;
      try {
        const e = JSON.parse(text).error;
        code = e.code;
        message = e.message;
      } catch {}
      throw new AppError(code, message, res.statusCode);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += chunk.length;
      // A source that sends more than the piece can hold is wrong; stop reading at once.
      if (size > maxBytes) {
        res.body.destroy();
        throw new AppError('piece_oversized', `source sent more than the ${maxBytes} bytes of piece ${index}`, 502);
      }
      chunks.push(chunk);
    }
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
