import type { FastifyPluginAsync } from 'fastify';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { drainBriefly } from '../core/drain.ts';
import { AppError } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import type { PayloadSecrets } from './payload.ts';
import type { TraceService } from './trace.ts';

// S2.7 and S2.3 over HTTP: POST /marks/trace (a suspect file as the body, streamed to a
// temporary file under its own bound, then detected and resolved) and GET /marks/key (an edge
// fetches the pattern key it embeds with).

export interface MarkRoutesDeps {
  traces: TraceService;
  secrets: PayloadSecrets;
  originId: string;
  /** Largest suspect file read (TRACE_MAX_BYTES). */
  maxBytes: number;
  /** Where uploads wait for detection (deleted after). */
  tmpDir: string;
  /** The edge a terminal session is, if it is one (only edges get the pattern key). */
  edgeOf(terminalId: string): Promise<{ id: string; kind: string } | null>;
}

const tooLarge = (max: number) => new AppError('trace_too_large', `A file to check is at most ${Math.floor(max / 1024 / 1024)} MiB (TRACE_MAX_BYTES).`, 413);

export function markRoutes(deps: MarkRoutesDeps): FastifyPluginAsync {
  return async (app) => {
    // Registered inside this plugin: only this route takes raw bodies of any type here.
    app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

    app.post('/marks/trace', {
      config: { access: 'user' },
      schema: {
        summary: 'Check a copy (S2.7): is it genuine, and — for operators and the content’s publisher — whose copy it is (user, edge, origin) with a confidence figure. The file is the body (any Content-Type).',
        tags: ['marks'],
        response: { 400: errorSchema, 401: errorSchema, 413: errorSchema, 503: errorSchema },
      },
      onRequest: async (req) => {
        const declared = Number(req.headers['content-length']);
        if (Number.isFinite(declared) && declared > deps.maxBytes) throw tooLarge(deps.maxBytes);
      },
      onResponse: async (req) => {
        if (!req.raw.complete) drainBriefly(req.raw);
      },
      handler: async (req) => {
        const body = req.body === undefined ? req.raw : req.body;
        if (!(body instanceof Readable)) throw new AppError('trace_empty', 'Send the file to check as the request body.', 400);
        await mkdir(deps.tmpDir, { recursive: true });
        const dir = await mkdtemp(path.join(deps.tmpDir, 'trace-'));
        try {
          const file = path.join(dir, 'suspect');
          const bytes = await saveBounded(body, file, deps.maxBytes);
          if (bytes === 0) throw new AppError('trace_empty', 'Send the file to check as the request body.', 400);
          return await deps.traces.trace(file, req.principal!);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
    });

    app.get('/marks/key', {
      config: { access: 'terminal' },
      schema: { summary: 'The pattern key an edge embeds marks with (S2.3); edges only', tags: ['marks'], response: { 403: errorSchema } },
      handler: async (req, reply) => {
        const edge = await deps.edgeOf(req.principal!.terminalId!);
        if (!edge) throw new AppError('not_an_edge', 'Only a registered edge gets the mark key (start it with `cascade edge`).', 403);
        reply.header('cache-control', 'no-store');
        return { originId: deps.originId, originTag: deps.secrets.originTag, patternKey: deps.secrets.pattern.toString('base64') };
      },
    });
  };
}

/**
 * The body into `file`, at most `max` bytes. Past the bound the file is dropped and the refusal
 * answered at once; the body is left to the route's onResponse, which reads on and discards a
 * bounded amount (drainBriefly) so that the client reads the answer instead of a reset.
 */
function saveBounded(body: Readable, file: string, max: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const out = createWriteStream(file);
    let bytes = 0;
    let done = false;
    const fail = (err: Error) => {
      if (done) return;
      done = true;
      body.off('data', count);
      body.unpipe(out);
      out.destroy();
      reject(err instanceof AppError ? err : new AppError('upload_interrupted', 'The file ended before all of its bytes arrived; nothing was checked.', 400));
    };
    const count = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > max) fail(tooLarge(max));
    };
    body.on('data', count);
    body.once('error', fail);
    body.once('aborted', () => fail(new Error('aborted')));
    out.once('error', fail);
    out.once('finish', () => {
      if (done) return;
      done = true;
      resolve(bytes);
    });
    body.pipe(out);
  });
}
