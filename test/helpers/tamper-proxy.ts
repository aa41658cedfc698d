import http from 'node:http';

// A real HTTP proxy in front of a source that can rewrite responses: the "source
// that serves wrong bytes", the "tampered manifest" and the "forged served statement"
// of the refusal tests.

export interface TamperProxy {
  url: string;
  /** Requests that reached the proxy, by path. */
  seen: string[];
  close(): Promise<void>;
}

export interface TamperOptions {
  /**
   * Forward the upstream response headers through this rewrite. Without it only
   * content-type is forwarded (a source that signs nothing).
   */
  headers?: (path: string, headers: Record<string, string>, request: http.IncomingHttpHeaders) => Record<string, string>;
}

/** Headers that belong to one hop, or that the proxy sets itself. */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'content-type']);

/** `target` may be a function: the proxy can start before the source it fronts (a source that advertises the proxy's address). */
export async function startTamperProxy(target: string | (() => string), rewrite: (path: string, body: Buffer) => Buffer, opts: TamperOptions = {}): Promise<TamperProxy> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.url!);
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      try {
        const upstream = await fetch((typeof target === 'string' ? target : target()) + req.url, {
          method: req.method,
          headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'host' && k !== 'content-length')) as Record<string, string>,
          body: chunks.length ? Buffer.concat(chunks) : undefined,
        });
        const body = rewrite(req.url!, Buffer.from(await upstream.arrayBuffer()));
        const passed = opts.headers ? opts.headers(req.url!, Object.fromEntries([...upstream.headers].filter(([k]) => !HOP_HEADERS.has(k))), req.headers) : {};
        res.writeHead(upstream.status, { ...passed, 'content-type': upstream.headers.get('content-type') ?? 'application/octet-stream', 'content-length': body.length });
        res.end(body);
      } catch {
        res.destroy(); // the source went away: so does the answer
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
