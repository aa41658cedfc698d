import http from 'node:http';

// A real HTTP proxy in front of a source that can rewrite responses: the "source
// that serves wrong bytes" and the "tampered manifest" of the refusal tests.

export interface TamperProxy {
  url: string;
  /** Requests that reached the proxy, by path. */
  seen: string[];
  close(): Promise<void>;
}

export async function startTamperProxy(target: string, rewrite: (path: string, body: Buffer) => Buffer): Promise<TamperProxy> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.url!);
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const upstream = await fetch(target + req.url, {
        method: req.method,
        headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'host' && k !== 'content-length')) as Record<string, string>,
        body: chunks.length ? Buffer.concat(chunks) : undefined,
      });
      const body = rewrite(req.url!, Buffer.from(await upstream.arrayBuffer()));
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/octet-stream', 'content-length': body.length });
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
