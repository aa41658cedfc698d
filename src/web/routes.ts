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
// downloads are saved from blob: URLs.
const CSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

export function webRoutes(opts: { dir?: string } = {}): FastifyPluginAsync {
  const dir = opts.dir ?? WEB_APP_DIR;
  return async (app) => {
    await app.register(fastifyStatic, { root: dir, serve: false });

    app.get('/', { config: { access: 'public' }, schema: { summary: 'The web app (#13)', tags: ['web'] } }, async (_req, reply) => {
      reply.header('cache-control', 'no-cache').header('content-security-policy', CSP).header('x-content-type-options', 'nosniff');
      if (!existsSync(path.join(dir, 'index.html'))) return reply.code(503).type('text/html; charset=utf-8').send(NOT_BUILT);
      return reply.sendFile('index.html', dir, { cacheControl: false });
    });

    app.get<{ Params: { '*': string } }>('/assets/*', {
      config: { access: 'public' },
      schema: { summary: 'The web app’s scripts, styles and images (content-hashed names, cached for a year)', tags: ['web'], params: { type: 'object', properties: { '*': { type: 'string', maxLength: 200 } } } },
      handler: async (req, reply) => {
        const name = req.params['*'];
        reply.header('x-content-type-options', 'nosniff');
        // sendFile refuses paths leaving `root`; a missing file is a 404 in the API's error shape.
        return reply.sendFile(name, path.join(dir, 'assets'), { maxAge: 31536000 * 1000, immutable: true });
      },
    });
  };
}
