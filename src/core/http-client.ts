import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { AppError } from './errors.ts';

// A small JSON client for the origin API, used by the CLI, agents and downloaders;
// refusals become AppErrors with the server's code.

export class Api {
  constructor(
    readonly origin: string,
    readonly token?: string,
  ) {}

  async request<T = any>(method: string, route: string, opts: { json?: unknown; body?: any; headers?: Record<string, string>; auth?: boolean } = {}): Promise<T> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.auth !== false && this.token) headers.authorization = `Bearer ${this.token}`;
    let body = opts.body;
    if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    let res: Response;
    try {
      res = await fetch(this.origin + route, { method, headers, body, duplex: body ? 'half' : undefined } as RequestInit);
    } catch (err: any) {
      throw unreachable(this.origin, err);
    }
    return this.answer<T>(method, route, res.status, await res.text());
  }

  /**
   * Streams `body` as application/octet-stream with its Content-Length, so the origin can
   * refuse (no such role, too large) before reading it. Issue 12 #5: the origin may answer
   * while the body is still going out; that answer is what the user is told, so this uses
   * node:http, which hands over the response as soon as it arrives: sending stops there, and
   * a write failing after it (the origin stopped reading) is not a network failure.
   */
  upload<T = any>(route: string, body: AsyncIterable<Uint8Array>, size: number): Promise<T> {
    const url = new URL(this.origin + route);
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'content-length': size };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const source = Readable.from(body, { objectMode: false });
    return new Promise<T>((resolve, reject) => {
      let answered = false;
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { method: 'POST', headers }, (res) => {
        answered = true;
        source.unpipe(req);
        source.destroy();
        readBounded(res, MAX_ANSWER_BYTES).then(
          (text) => {
            req.destroy();
            try {
              resolve(this.answer<T>('POST', route, res.statusCode ?? 0, text));
            } catch (err) {
              reject(err);
            }
          },
          (err) => reject(err instanceof AppError ? err : unreachable(this.origin, err)),
        );
      });
      req.on('error', (err) => {
        if (!answered) reject(unreachable(this.origin, err));
      });
      source.on('error', (err) => {
        req.destroy();
        reject(err);
      });
      source.pipe(req);
    });
  }

  /** A parsed answer body, or the AppError its error body names. */
  private answer<T>(method: string, route: string, status: number, text: string): T {
    let parsed: any = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (status < 200 || status >= 300) {
      const e = parsed?.error;
      throw new AppError(e?.code ?? 'http_error', e?.message ?? `${method} ${route} answered ${status}`, status);
    }
    return parsed as T;
  }

  get<T = any>(route: string) {
    return this.request<T>('GET', route);
  }
  post<T = any>(route: string, json?: unknown) {
    return this.request<T>('POST', route, { json: json ?? {} });
  }
}

/** An upload's answer is a small JSON body; anything longer is not read whole. */
const MAX_ANSWER_BYTES = 1024 * 1024;

function unreachable(origin: string, err: any): AppError {
  return new AppError('origin_unreachable', `Cannot reach ${origin}: ${err?.cause?.code ?? err?.code ?? err?.message ?? err}`, 503);
}

async function readBounded(res: IncomingMessage, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > max) throw new AppError('answer_too_large', `The origin's answer is longer than ${max} bytes.`, 502);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
