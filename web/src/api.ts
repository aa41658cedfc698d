import { session, signOutExpired } from './session.ts';

// The one way the web app talks to the origin: the same public API as the CLI (#13.1).
// Errors come back as ApiError carrying the API's code and its sentence (`error.message`),
// and the field it names where the API names one ("body/price must be …").

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    /** The API's `error.details` (e.g. `field`, `slotMinutes`, `used`), when it gives any. */
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
  /** The form field a page tied this refusal to (placeRefusal in refusals.ts). */
  placedField: string | null = null;
  /** The request field the refusal concerns: as a page placed it, or as the API's message names it (`body/title must …` -> `title`). */
  get field(): string | null {
    if (this.placedField) return this.placedField;
    const m = /^(?:body|querystring|params)\/([A-Za-z0-9_]+)/.exec(this.message);
    return m ? m[1] : null;
  }
}

export interface RequestOptions {
  /** Send no bearer token (sign-in, sign-up, public reads). */
  anonymous?: boolean;
  /** A token other than the account session (the browser's terminal session). */
  token?: string;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** A body sent as is (a Blob for uploads) instead of JSON. */
  rawBody?: BodyInit;
}

export async function api<T = any>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<T> {
  const { res, token } = await send(method, path, body, opts);
  if (!res.ok) throw await refusal(res, token);
  return parse(await res.text()) as T;
}

/**
 * GET `path` as api() does (token, refusals thrown as ApiError), answering the Response with its
 * body unread: a stream of server-sent events read as it comes (the broadcaster's live status).
 */
export async function apiStream(path: string, opts: RequestOptions = {}): Promise<Response> {
  const { res, token } = await send('GET', path, undefined, { ...opts, headers: { accept: 'text/event-stream', ...opts.headers } });
  if (!res.ok) throw await refusal(res, token);
  return res;
}

async function send(method: string, path: string, body: unknown, opts: RequestOptions): Promise<{ res: Response; token: string | undefined }> {
  const headers: Record<string, string> = { ...opts.headers };
  const token = opts.token ?? (opts.anonymous ? undefined : session.value?.token);
  if (token) headers.authorization = `Bearer ${token}`;
  let payload: BodyInit | undefined = opts.rawBody;
  if (body !== undefined && payload === undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  try {
    return { res: await fetch(path, { method, headers, body: payload, signal: opts.signal }), token };
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError('network_error', 'The origin cannot be reached; check your connection and try again.', 0);
  }
}

function parse(text: string): any {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The API's refusal in `res` as an ApiError. */
async function refusal(res: Response, token: string | undefined): Promise<ApiError> {
  const e = parse(await res.text())?.error;
  const err = new ApiError(e?.code ?? `http_${res.status}`, e?.message ?? `The origin answered ${res.status}.`, res.status, e?.details && typeof e.details === 'object' ? e.details : {});
  // An account session that expired or was revoked: sign in again and come back (#13 "Bad input").
  if (res.status === 401 && token && token === session.value?.token && (err.code === 'invalid_token' || err.code === 'unauthenticated')) signOutExpired();
  return err;
}

/** Query string from an object, leaving out empty values. */
export function qs(params: Record<string, string | number | boolean | null | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}
