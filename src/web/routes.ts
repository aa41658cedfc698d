import { existsSync } from 'node:fs';
import path from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';

// The web app (#13.1): built by `npm run build` (web/ -> dist/webapp) and served here at /,
// beside the API it calls. The page itself is never cached (a new build shows at the next
// load); its scripts and styles have content hashes in their names, so they are cached for
// a year and never revalidated.

/** dist/webapp, from src/web (tsx) and from dist/web (the compiled build) alike. */
export const WEB_APP_DIR = path.resolve(import.meta.dirname, '../../dist/webapp');

const NOT_BUILT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Cascade</title></head>
<body><main><h1>Cascade</h1><p>The web app is not built. Run <code>npm run build</code> (npm install runs it too), then reload.
The API answers as usual; its reference is at <a href="/docs">/docs</a>.</p></main></body></html>`;

// Only the origin's own scripts, styles and API; thumbnails are same-origin images and
// downloads are saved from blob: URLs; the live player (hls.js) feeds the video a MediaSource
// through a blob: URL. Home and store edges (#17, S2.5/S2.6) serve rented videos and ordered
// packages from their own addresses: the page may fetch from (and play media of) the edges
// registered when it was loaded (`edgeOrigins`), no other address.
const csp = (edges: string[]) => {
  const extra = edges.length ? ` ${edges.join(' ')}` : '';
  return `default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:${extra}; style-src 'self'; script-src 'self'; connect-src 'self'${extra}; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'`;
};

/** `http(s)://host[:port]` of a serve URL; null when it is not one (nothing unchecked goes into the policy). */
export function cspOrigin(url: string): string | null {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : null;
  } catch {
    return null;
  }
}

export function webRoutes(opts: { dir?: string; /** Serve URLs of the home and store edges. */ edgeOrigins?: () => Promise<string[]> } = {}): FastifyPluginAsync {
  const dir = opts.dir ?? WEB_APP_DIR;
  return async (app) => {
    await app.register(fastifyStatic, { root: dir, serve: false });

    app.get('/', { config: { access: 'public' }, schema: { summary: 'The web app (#13)', tags: ['web'] } }, async (_req, reply) => {
      const edges = opts.edgeOrigins ? [...new Set((await opts.edgeOrigins()).map(cspOrigin).filter((x): x is string => !!x))].sort() : [];
      reply.header('cache-control', 'no-cache').header('content-security-policy', csp(edges)).header('x-content-type-options', 'nosniff');
      if (!existsSync(path.join(dir, 'index.html'))) return reply.code(503).type('text/html; charset=utf-8').send(NOT_BUILT);
      return reply.sendFile('index.html', dir, { cacheControl: false });
    });

    // Vite writes the assets flat (`assets/index-<hash>.js`): a file name, never a path.
    app.get<{ Params: { file: string } }>('/assets/:file', {
      config: { access: 'public' },
      schema: {
        summary: 'The web app’s scripts, styles and images (content-hashed names, cached for a year)',
        tags: ['web'],
        params: { type: 'object', required: ['file'], properties: { file: { type: 'string', pattern: '^[A-Za-z0-9_-][A-Za-z0-9._-]*$', maxLength: 100 } } },
      },
      handler: async (req, reply) => {
        reply.header('x-content-type-options', 'nosniff');
        // A missing file is a 404 in the API's error shape (the not-found handler).
        return reply.sendFile(req.params.file, path.join(dir, 'assets'), { maxAge: 31536000 * 1000, immutable: true });
      },
    });
  };
}
