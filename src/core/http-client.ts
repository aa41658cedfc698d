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
      throw new AppError('origin_unreachable', `Cannot reach ${this.origin}: ${err?.cause?.code ?? err?.message ?? err}`, 503);
    }
    const text = await res.text();
    let parsed: any = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!res.ok) {
      const e = parsed?.error;
      throw new AppError(e?.code ?? 'http_error', e?.message ?? `${method} ${route} answered ${res.status}`, res.status);
    }
    return parsed as T;
  }

  /**
   * Streams `body` as application/octet-stream. With `size` the request carries a
   * Content-Length, so the origin can refuse an oversize upload before any byte is sent.
   */
  upload<T = any>(route: string, body: AsyncIterable<Uint8Array>, size?: number) {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (size !== undefined) headers['content-length'] = String(size);
    return this.request<T>('POST', route, { body, headers });
  }

  get<T = any>(route: string) {
    return this.request<T>('GET', route);
  }
  post<T = any>(route: string, json?: unknown) {
    return this.request<T>('POST', route, { json: json ?? {} });
  }
}
