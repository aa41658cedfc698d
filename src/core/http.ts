import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import type { Logger } from 'pino';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { AppError, errorBody } from './errors.ts';
import { validatorCompiler } from './validation.ts';
import type { Role } from './roles.ts';

// The HTTP frame every Cascade server shares (origin, and later agents and edges):
// one error shape, an access rule declared on every route, metrics and OpenAPI docs.

/**
 * Who may call a route (issue 10 #9: a terminal's session token acts only as that terminal):
 * - 'public': anyone;
 * - 'user': an account session — a password login or an account API token; a terminal's
 *   session token is refused (403 `account_session_required`), though it belongs to an account;
 * - 'user-or-terminal': either; the few account routes a terminal session needs;
 * - 'terminal': a terminal's session token (S1.2);
 * - 'grant': no account; the request must carry an origin-signed grant (S1.6);
 * - a list of roles: an account session holding one of them (never a terminal's token).
 */
export type Access = 'public' | 'user' | 'user-or-terminal' | 'terminal' | 'grant' | Role[];

export interface Principal {
  userId: string;
  username: string;
  roles: Role[];
  /** Set when the token is a terminal's session token. */
  terminalId: string | null;
  /** The account's e-mail address (S3.8), read with the token: one query fewer where mail is queued. */
  email: string | null;
}

/** Resolves a bearer token to whoever holds it, or null if unknown/expired. */
export type TokenResolver = (token: string) => Promise<Principal | null>;

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    metrics: Registry;
    /** Every route with its access rule, for docs and the access test. */
    accessTable: { method: string; url: string; access: Access }[];
  }
}

export interface HttpOptions {
  logger: Logger;
  resolveToken: TokenResolver;
  title: string;
  /** JSON bodies larger than this are refused with `body_too_large`. */
  jsonBodyLimit?: number;
}

export function createHttpApp(opts: HttpOptions): FastifyInstance {
  // pino's Logger and Fastify's base logger type differ only in typing details.
  const loggerInstance = opts.logger as unknown as FastifyBaseLogger;
  const app = Fastify({
    loggerInstance,
    bodyLimit: opts.jsonBodyLimit ?? 1024 * 1024,
    logController: new LogController({ disableRequestLogging: true }),
    // Requests refused before routing (a path that is not valid percent-encoding, an overlong
    // path parameter) get the same error shape as every other refusal.
    frameworkErrors: (err, _req, reply) => {
      const appErr = toAppError(err);
      (reply as FastifyReply).code(appErr.status).send(errorBody(appErr));
    },
    schemaController: { compilersFactory: { buildSerializer: lazySerializers } },
  });
  // Strict JSON bodies, explicitly parsed query strings and path parameters, no control
  // characters in text: src/core/validation.ts.
  app.setValidatorCompiler(validatorCompiler());

  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics });
  app.decorate('metrics', metrics);
  const requests = new Counter({
    name: 'cascade_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status'],
    registers: [metrics],
  });
  const durations = new Histogram({
    name: 'cascade_http_request_seconds',
    help: 'HTTP request duration by route',
    labelNames: ['method', 'route'],
    buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10],
    registers: [metrics],
  });

  app.register(swagger, {
    openapi: {
      info: { title: opts.title, version: '0.1.0' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });

  app.decorateRequest('principal', null);
  const accessTable: { method: string; url: string; access: Access }[] = [];
  app.decorate('accessTable', accessTable);

  // Every route must say who may call it; a route without a rule is a bug, caught at start-up.
  app.addHook('onRoute', (route) => {
    if (route.method === 'HEAD') return;
    const access = route.config?.access;
    if (!access) throw new Error(`route ${route.method} ${route.url} declares no access rule`);
    for (const method of [route.method].flat()) accessTable.push({ method, url: route.url, access });
    route.schema = { ...(route.schema ?? {}) };
    if (access !== 'public' && access !== 'grant') (route.schema as any).security = [{ bearer: [] }];
    (route.schema as any).description = [(route.schema as any).description, `Access: ${describeAccess(access)}.`]
      .filter(Boolean)
      .join(' ');
  });

  app.addHook('onRequest', async (req) => {
    (req as any).startedAt = process.hrtime.bigint();
    const access = req.routeOptions.config?.access;
    if (!access || access === 'public' || access === 'grant') return;
    req.principal = await authenticate(req, opts.resolveToken);
    authorize(access, req.principal);
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    const started = (req as any).startedAt as bigint | undefined;
    if (started) durations.observe({ method: req.method, route }, Number(process.hrtime.bigint() - started) / 1e9);
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody(new AppError('route_not_found', `No route ${req.method} ${req.url}`, 404)));
  });

  app.setErrorHandler((err: any, req, reply) => {
    const appErr = toAppError(err);
    if (appErr.code === 'internal') req.log.error({ err }, 'request failed');
    reply.code(appErr.status).send(errorBody(appErr));
  });

  return app;
}

function describeAccess(access: Access): string {
  if (Array.isArray(access)) return `roles ${access.join(', ')}`;
  return {
    public: 'anyone',
    user: 'a signed-in account (not a terminal session)',
    'user-or-terminal': 'a signed-in account or a terminal session',
    terminal: 'a terminal session',
    grant: 'an origin-signed grant',
  }[access];
}

/** The token of an `Authorization: Bearer …` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = header && /^Bearer\s+(\S+)$/i.exec(header);
  return m ? m[1] : undefined;
}

async function authenticate(req: FastifyRequest, resolve: TokenResolver): Promise<Principal> {
  const token = bearerToken(req.headers.authorization);
  if (!token) throw new AppError('unauthenticated', 'Sign in first: send "Authorization: Bearer <token>".', 401);
  const principal = await resolve(token);
  if (!principal) throw new AppError('invalid_token', 'The token is unknown or has expired; sign in again.', 401);
  return principal;
}

function authorize(access: Exclude<Access, 'public' | 'grant'>, p: Principal) {
  if (access === 'user-or-terminal') return;
  if (access === 'terminal') {
    if (!p.terminalId) throw new AppError('terminal_required', 'This call is for a terminal: sign in with its device credential.', 403);
    return;
  }
  // Everything else acts for the account: its roles, its wallet, its tokens — not a device's business.
  if (p.terminalId) {
    throw new AppError('account_session_required', 'This call needs an account session (cascade login); a terminal’s session token acts only as that terminal.', 403);
  }
  if (access === 'user') return;
  if (!access.some((r) => p.roles.includes(r))) {
    throw new AppError('forbidden', `This needs one of the roles: ${access.join(', ')}.`, 403);
  }
}

export function toAppError(err: any): AppError {
  if (err instanceof AppError) return err;
  if (err?.validation) return validationError(err);
  switch (err?.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new AppError('malformed_json', 'The request body is not valid JSON.', 400);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError('body_too_large', 'The request body is larger than this route accepts.', 413);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError('unsupported_media_type', 'This route does not accept that content type.', 415);
    case 'FST_ERR_BAD_URL':
      return new AppError('invalid_url', 'The request path is not valid percent-encoded UTF-8.', 400);
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new AppError('path_too_long', 'A path parameter is longer than this server accepts (100 characters).', 414);
  }
  if (err instanceof SyntaxError) return new AppError('malformed_json', 'The request body is not valid JSON.', 400);
  if (typeof err?.statusCode === 'number' && err.statusCode < 500) {
    return new AppError('bad_request', err.message ?? 'Bad request', err.statusCode);
  }
  return new AppError('internal', 'Something went wrong on the server; it has been logged.', 500);
}

/** A schema refusal: `invalid_text` for a control character, else `invalid_request`; the message names the field. */
export function validationError(err: Error & { validation?: { keyword?: string }[] }): AppError {
  if (err.validation?.[0]?.keyword === 'controlChars') return new AppError('invalid_text', err.message, 400);
  return new AppError('invalid_request', err.message, 400);
}

/** JSON schema for the documented error body, for route `response` sections. */
export const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: { type: 'object', additionalProperties: true } },
      required: ['code', 'message'],
    },
  },
} as const;

/**
 * Fastify's own response serializers (fast-json-stringify), each built on its route's first
 * answer instead of when the route is added: building them all took a good part of the
 * origin's start-up (#12 point 1). Validators are compiled lazily too (src/core/validation.ts).
 */
function lazySerializers(...factoryArgs: Parameters<ReturnType<typeof SerializerSelector>>) {
  const compile = SerializerSelector()(...factoryArgs);
  return (route: Parameters<typeof compile>[0]) => {
    let serialize: ReturnType<typeof compile> | undefined;
    return (doc: unknown) => (serialize ??= compile(route))(doc);
  };
}
