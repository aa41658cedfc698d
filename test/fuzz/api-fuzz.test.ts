import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { sql } from 'kysely';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { testEngines } from '../helpers/db.ts';
import { documentedCodes } from '../helpers/error-codes.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import {
  AWKWARD, bodySlots, CONTROL, getAt, nested, outOfRange, setAt, spliceRaw, valueFor, wrongTypes,
  type Pools, type Schema, type Slot,
} from './schema-arbitrary.ts';

// "What every part must also do" (clear refusals, nothing left behind), issue 11 point 3:
// every route and method of the OpenAPI description (GET /docs) gets valid-looking
// requests generated from its schemas, and the same with one mutation each (wrong
// types, out-of-range numbers, huge texts, control characters, deep nesting, missing
// and extra fields, malformed bodies, wrong content types, no token), over real HTTP,
// signed in as a member, an operator/publisher/store and a terminal as each route needs.
// Every answer is a 2xx or a 4xx with the documented error shape and a code from
// docs/errors.md; a refused request changes no row of any table and no piece file; a
// mutation the schema must refuse is never accepted; and afterwards the ledger
// conserves and every open hold belongs to a transfer still running.
// Fixed seed, bounded count, per engine: 4 valid-looking requests and two boundary sweeps
// per operation, then FUZZ_RUNS (default 300) random ones.

const SEED = 11_003;
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const SAMPLES_PER_OPERATION = 4;
const NOW = Date.UTC(2030, 4, 6, 10, 0, 0);
/** Nothing listens here: the only address a generated URL field may name (the origin must never call elsewhere). */
const DEAD_URL = 'http://127.0.0.1:9/';

type As = 'anon' | 'member' | 'staff' | 'terminal' | 'throwaway';

interface Route {
  method: string;
  /** OpenAPI path, e.g. /contents/{id}. */
  template: string;
  access: unknown;
  pathParams: { name: string; schema: Schema }[];
  query: { name: string; schema: Schema; required: boolean }[];
  headers: { name: string; schema: Schema }[];
  body: Schema | undefined;
  /** The body is a file's bytes (POST /contents), not JSON. */
  rawBody: boolean;
}

interface Req {
  route: Route;
  pathParams: Record<string, string>;
  /** Raw path segments (not encoded again): bad percent-encoding and the like. */
  rawPath?: Record<string, string>;
  query: [string, string][];
  headers: Record<string, string>;
  body?: { type: string; text: string | Buffer };
  as: As;
  /** Why this request must be refused (a mutation the schema rules out), or null. */
  mustRefuse: string | null;
  mutation: string;
}

/** A request as text, to reproduce a failure by hand. */
const show = (r: Req, status?: number) =>
  `${r.route.method} ${urlOf(r)} as ${r.as} [${r.mutation}]${r.body ? ` body(${r.body.type})=${String(r.body.text).slice(0, 200)}` : ''}${status ? ` → ${status}` : ''}`.replace(/x{20,}/g, (x) => `x×${x.length}`);

/** encodeURIComponent, except that a lone surrogate goes out as the (invalid UTF-8) bytes of its code unit. */
const encodeSegment = (s: string) =>
  s.replace(/[\s\S]/gu, (ch) => (ch.length === 1 && ch >= '\ud800' && ch <= '\udfff' ? `%ED%${(0xa0 + ((ch.charCodeAt(0) >> 6) & 0x1f)).toString(16).toUpperCase()}%80` : encodeURIComponent(ch)));

function urlOf(r: Req): string {
  let p = r.route.template.replace(/\{(\w+)\}/g, (_m, name) => r.rawPath?.[name] ?? encodeSegment(r.pathParams[name]));
  if (r.query.length) p += `?${new URLSearchParams(r.query)}`;
  return p;
}

/** The routes of the OpenAPI description, with the access rule each declares. */
function routesOf(doc: any, o: TestOrigin): Route[] {
  const routes: Route[] = [];
  for (const [template, ops] of Object.entries<any>(doc.paths)) {
    for (const [method, op] of Object.entries<any>(ops)) {
      const url = template.replace(/\{(\w+)\}/g, ':$1');
      const access = o.app.accessTable.find((a) => a.method === method.toUpperCase() && a.url === url)?.access;
      const params: any[] = op.parameters ?? [];
      routes.push({
        method: method.toUpperCase(),
        template,
        access,
        pathParams: params.filter((p) => p.in === 'path').map((p) => ({ name: p.name, schema: p.schema })),
        query: params.filter((p) => p.in === 'query').map((p) => ({ name: p.name, schema: p.schema, required: !!p.required })),
        headers: params.filter((p) => p.in === 'header').map((p) => ({ name: p.name, schema: p.schema })),
        body: op.requestBody?.content?.['application/json']?.schema,
        // The publish route takes the file's bytes; its schema describes only the query string.
        rawBody: method === 'post' && (template === '/contents' || template === '/marks/trace'),
      });
    }
  }
  return routes;
}

function signInAs(access: unknown, template: string): As {
  if (template === '/auth/logout') return 'throwaway'; // it revokes the token it is sent with
  if (access === 'public' || access === 'grant' || access === undefined) return 'anon';
  if (access === 'terminal') return 'terminal';
  if (access === 'user') return 'member';
  return 'staff';
}

const asText = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

/** A valid-looking request for `route`: every required parameter, some optional ones, a body from its schema. */
function validRequest(route: Route, world: World): fc.Arbitrary<Req> {
  const pools = world.poolsFor(route.template);
  const pathArb = fc.record(Object.fromEntries(route.pathParams.map((p) => [p.name, valueFor(p.schema, pools, p.name).map(asText)])));
  const queryArb = fc.tuple(
    ...route.query.map((q) =>
      q.required ? valueFor(q.schema, pools, q.name).map((v) => [[q.name, asText(v)]]) : fc.option(valueFor(q.schema, pools, q.name).map((v) => [[q.name, asText(v)]]), { nil: [] }),
    ),
  );
  const headerArb = fc.record(Object.fromEntries(route.headers.map((h) => [h.name, valueFor(h.schema, pools, h.name).map(asText)])), { requiredKeys: [] });
  const bodyArb: fc.Arbitrary<Req['body']> = route.rawBody
    ? fc.uint8Array({ minLength: 1, maxLength: 3000 }).map((b) => ({ type: 'application/octet-stream', text: Buffer.from(b) }))
    : route.body
      ? valueFor(route.body, pools).map((v) => ({ type: 'application/json', text: JSON.stringify(v) }))
      : fc.constant(undefined);
  return fc.record({ pathParams: pathArb, query: queryArb, headers: headerArb, body: bodyArb }).map(({ pathParams, query, headers, body }) => ({
    route,
    pathParams: pathParams as Record<string, string>,
    query: (query as [string, string][][]).flat(),
    headers: headers as Record<string, string>,
    body,
    as: signInAs(route.access, route.template),
    mustRefuse: null,
    mutation: 'none',
  }));
}

const MUTATIONS = [
  'none', 'none', 'none', 'none', 'none', 'none', 'none', 'wrongType', 'wrongType', 'outOfRange', 'outOfRange', 'hugeText', 'control', 'control', 'awkward',
  'deep', 'missing', 'extra', 'bodyShape', 'malformed', 'contentType', 'tooLarge', 'noAuth', 'badPath', 'repeatQuery',
] as const;
type Mutation = (typeof MUTATIONS)[number];

/** The request's slots: body fields (only when the body is JSON), query and path parameters. */
function slotsOf(r: Req): Slot[] {
  const slots: Slot[] = [];
  if (r.body && r.body.type === 'application/json' && r.route.body) slots.push(...bodySlots(JSON.parse(String(r.body.text)), r.route.body));
  for (const q of r.route.query) slots.push({ part: 'query', path: [q.name], schema: q.schema });
  for (const p of r.route.pathParams) slots.push({ part: 'path', path: [p.name], schema: p.schema });
  return slots;
}

/** `r` with one slot set to `value` (undefined: removed). */
function withSlot(r: Req, slot: Slot, value: unknown, remove = false): Req {
  const name = String(slot.path[0]);
  if (slot.part === 'path') return { ...r, pathParams: { ...r.pathParams, [name]: asText(value) } };
  if (slot.part === 'query') {
    const rest = r.query.filter(([k]) => k !== name);
    return { ...r, query: remove ? rest : [...rest, [name, asText(value)]] };
  }
  const body = setAt(JSON.parse(String(r.body!.text)), slot.path, value, remove);
  return { ...r, body: { type: 'application/json', text: spliceRaw(JSON.stringify(body)) } };
}

const allowsLineBreaks = (s: Schema | undefined) => s?.controlChars === 'allowLineBreaks';
const typed = (s: Schema | undefined) => !!s && (s.type !== undefined || s.enum !== undefined);
const pick = <T>(list: readonly T[], n: number): T | undefined => (list.length ? list[n % list.length] : undefined);

/** Applies mutation `m` (choices by `a`, `b`) to a valid-looking request; says whether the result must be refused. */
function mutate(r: Req, m: Mutation, a: number, b: number): Req {
  const out = (next: Req, mustRefuse: string | null): Req => ({ ...next, mutation: m, mustRefuse });
  const slots = slotsOf(r);
  const hasJsonBody = !!r.route.body && !r.route.rawBody;
  const takesBody = r.route.method !== 'GET' && r.route.method !== 'HEAD'; // fetch sends no body with these
  switch (m) {
    case 'none':
      return out(r, null);
    case 'wrongType': {
      const candidates = slots.filter((s) => typed(s.schema) && wrongTypes(s.schema, s.part !== 'body').length);
      const slot = pick(candidates, a);
      if (!slot) return out(r, null);
      const value = pick(wrongTypes(slot.schema, slot.part !== 'body'), b);
      return out(withSlot(r, slot, value), `${slot.part} ${slot.path.join('.')} = ${JSON.stringify(value)} is the wrong type`);
    }
    case 'outOfRange': {
      const candidates = slots.filter((s) => outOfRange(s.schema).length);
      const slot = pick(candidates, a);
      if (!slot) return out(r, null);
      const { value, refused } = pick(outOfRange(slot.schema), b)!;
      const text = slot.part !== 'body';
      const v = text && typeof value === 'string' ? value.replace(/\u0001RAW:|\u0001/g, '') : value;
      return out(withSlot(r, slot, v), refused ? `${slot.part} ${slot.path.join('.')} = ${String(v)} is out of range` : null);
    }
    case 'hugeText': {
      const candidates = slots.filter((s) => [s.schema?.type].flat().includes('string') && !s.schema?.enum);
      const slot = pick(candidates, a);
      if (!slot) return out(r, null);
      const len = slot.part === 'body' ? 300_000 : 6000;
      const max = slot.schema?.maxLength;
      return out(withSlot(r, slot, 'x'.repeat(len)), max !== undefined && len > max ? `${slot.path.join('.')} is longer than ${max}` : null);
    }
    case 'control':
    case 'awkward': {
      const candidates = slots.filter((s) => !s.schema?.enum && ([s.schema?.type].flat().includes('string') || !typed(s.schema)) && s.path.length > 0);
      const slot = pick(candidates, a);
      if (!slot) return out(r, null);
      const ch = pick(m === 'control' ? CONTROL : AWKWARD, b)!;
      const current = getAt(slot.part === 'body' ? JSON.parse(String(r.body!.text)) : {}, slot.path);
      const base = typeof current === 'string' && current.length ? current : 'ab';
      const value = base.slice(0, 1) + ch + base.slice(1);
      const refused = m === 'control' && !(allowsLineBreaks(slot.schema) && (ch === '\t' || ch === '\n'));
      return out(withSlot(r, slot, value), refused ? `${slot.part} ${slot.path.join('.')} holds U+${ch.charCodeAt(0).toString(16).padStart(4, '0')}` : null);
    }
    case 'deep': {
      if (!hasJsonBody) return out(r, null);
      const slot = pick(slots.filter((s) => s.part === 'body'), a)!;
      const value = nested(b % 2 ? 20_000 : 50, b % 3 ? 'array' : 'object');
      return out(withSlot(r, slot, value), typed(slot.schema) && !['array', 'object'].some((t) => [slot.schema!.type].flat().includes(t)) ? 'deeply nested value for a scalar' : null);
    }
    case 'missing': {
      const required: Slot[] = [];
      for (const s of slots) {
        if (s.part === 'query' && r.route.query.find((q) => q.name === s.path[0])?.required) required.push(s);
        const parentPath = s.path.slice(0, -1);
        const parent = s.part === 'body' && s.path.length ? slots.find((p) => p.part === 'body' && p.path.join('.') === parentPath.join('.')) : undefined;
        if (parent?.schema?.required?.includes(s.path[s.path.length - 1])) required.push(s);
      }
      const slot = pick(required, a);
      if (!slot) return out(r, null);
      return out(withSlot(r, slot, undefined, true), `required ${slot.path.join('.')} is missing`);
    }
    case 'extra': {
      if (b % 2 === 0 || !hasJsonBody) {
        const closed = r.route.query.length > 0; // every query schema here is closed (additionalProperties: false)
        return out({ ...r, query: [...r.query, ['zzExtra', '1']] }, closed ? 'an unknown query parameter' : null);
      }
      const objects = slots.filter((s) => s.part === 'body' && s.schema?.type === 'object');
      const slot = pick(objects, a);
      if (!slot) return out(r, null);
      const current = getAt(JSON.parse(String(r.body!.text)), slot.path);
      if (!current || typeof current !== 'object') return out(r, null);
      return out(withSlot(r, slot, { ...current, zzExtra: 1 }), slot.schema!.additionalProperties === false ? `an unknown field in ${slot.path.join('.') || 'the body'}` : null);
    }
    case 'bodyShape': {
      if (!hasJsonBody) return out(r, null);
      const shapes = ['null', '[]', '"text"', '42', 'true', '{}'];
      const text = pick(shapes, a)!;
      const refused = text !== '{}' || (r.route.body!.required ?? []).length > 0;
      return out({ ...r, body: { type: 'application/json', text } }, refused ? `body ${text}` : null);
    }
    case 'malformed': {
      if (!takesBody) return out(r, null);
      const texts = ['{"a":', '', '\u0000', '{"a":1,}', "{'a':1}", '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}', '[1,2', 'nul'];
      const text = pick(texts, a)!;
      return out({ ...r, body: { type: 'application/json', text } }, hasJsonBody || text !== '' ? `malformed body ${JSON.stringify(text)}` : null);
    }
    case 'contentType': {
      if (!takesBody) return out(r, null);
      const types = ['text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'multipart/form-data; boundary=x'];
      const type = pick(types, a)!;
      const text = r.body ? r.body.text : 'a=1';
      return out({ ...r, body: { type, text } }, hasJsonBody || r.route.rawBody ? `content type ${type}` : null);
    }
    case 'tooLarge': {
      if (r.route.rawBody || !takesBody) return out(r, null);
      const text = JSON.stringify({ pad: 'x'.repeat(1024 * 1024 + 10) });
      return out({ ...r, body: { type: 'application/json', text } }, hasJsonBody ? 'a body over 1 MiB' : null);
    }
    case 'noAuth':
      return out({ ...r, as: 'anon' }, r.as !== 'anon' ? 'no token' : null);
    case 'badPath': {
      const p = pick(r.route.pathParams, a);
      if (!p) return out(r, null);
      const raw = pick(['%', '%ZZ', '%00', '%C0%AF', '..%2F..%2Fetc', '%E2%82', 'a%2Fb', '%F0%9F%92%A5'], b)!;
      return out({ ...r, rawPath: { [p.name]: raw } }, null);
    }
    case 'repeatQuery': {
      const q = pick(r.query, a);
      if (!q) return out(r, null);
      const numeric = ['integer', 'number', 'boolean'].some((t) => [r.route.query.find((x) => x.name === q[0])?.schema.type].flat().includes(t));
      return out({ ...r, query: [...r.query, q] }, numeric ? `${q[0]} given twice` : null);
    }
  }
}

/** `r` without its optional query parameters and top-level body fields. */
function requiredOnly(r: Req): Req {
  const query = r.query.filter(([k]) => r.route.query.find((q) => q.name === k)?.required);
  if (!r.body || r.body.type !== 'application/json' || !r.route.body) return { ...r, query };
  const value = JSON.parse(String(r.body.text));
  if (!value || typeof value !== 'object' || Array.isArray(value)) return { ...r, query };
  const required: string[] = r.route.body.required ?? [];
  const kept = Object.fromEntries(Object.entries(value).filter(([k]) => required.includes(k)));
  return { ...r, query, body: { type: 'application/json', text: JSON.stringify(kept) } };
}

/**
 * The systematic part: one request's boundaries — each numeric field past each bound,
 * each text field holding a NUL, each typed field given two wrong types. Applied to a
 * request the origin accepted, so that rare combinations (an existing content *and*
 * piecesDone past int4) are certain to be tried.
 */
function boundaries(base: Req): Req[] {
  const out = new Map<string, Req>();
  for (const [m, values] of [['outOfRange', 12], ['control', 1], ['wrongType', 2]] as const) {
    for (let a = 0; a < 40; a++) {
      for (let b = 0; b < values; b++) {
        const r = mutate(base, m, a, b);
        out.set(`${r.mustRefuse} ${show(r)}`, r);
      }
    }
  }
  return [...out.values()];
}

// ---- the origin's state: what a refused request must leave as it was ----

async function tableNames(o: TestOrigin): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select table_name as name from information_schema.tables
    where table_schema = current_schema() and table_type = 'BASE TABLE' and table_name not like 'kysely_%'
    order by table_name`.execute(o.db.db);
  return rows.map((r) => r.name);
}

/** A digest of every table's rows, and the list of piece files with their sizes. */
async function snapshot(o: TestOrigin, tables: string[]): Promise<Map<string, string>> {
  const parts = tables.map((t) => sql`select ${t} as name, md5(coalesce(string_agg(x::text, '|' order by x::text), '')) as digest from ${sql.table(t)} x`);
  const { rows } = await sql<{ name: string; digest: string }>`${sql.join(parts, sql` union all `)}`.execute(o.db.db);
  const state = new Map(rows.map((r) => [r.name, r.digest]));
  state.set('files: pieces', listFiles(path.join(o.config.dataDir, 'pieces')).join('\n'));
  return state;
}

function listFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.sort().flatMap((name) => {
    const p = path.join(dir, name);
    const st = statSync(p);
    return st.isDirectory() ? listFiles(p).map((f) => `${name}/${f}`) : [`${name} ${st.size}`];
  });
}

const changed = (a: Map<string, string>, b: Map<string, string>) => [...a.keys()].filter((k) => a.get(k) !== b.get(k));

// ---- the world the requests run in ----

interface World {
  /** Every ID and name that exists. */
  known: string[];
  /** What exists, by field name; path parameters called `id` by the route they are in. */
  poolsFor(template: string): Pools;
  tokens: Record<Exclude<As, 'anon' | 'throwaway'>, string>;
  throwaway(): Promise<string>;
}

async function setUp(o: TestOrigin): Promise<World> {
  const staff = await o.userWithRoles(['operator', 'publisher', 'store', 'member']);
  const member = await o.userWithRoles(['member']);
  const other = await o.userWithRoles(['member', 'publisher']);
  const publish = async (title: string, price: number) => {
    const res = await o.call('POST', `/contents?title=${title}&genre=news&price=${price}`, {
      token: staff.token,
      body: randomBytes(40_000),
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body.id as string;
  };
  const free = await publish('Free', 0);
  const priced = await publish('Priced', 5000);
  const terminal = async (userId: string, token: string, name: string) => {
    const reg = await o.registerTerminal(token, generateKeyPair(), { name });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    const id = reg.body.terminal.id as string;
    return { id, token: await o.accounts.issueToken(userId, id, 'fuzz terminal session', null) };
  };
  const mine = await terminal(member.userId, member.token, 'fuzz-box');
  const theirs = await terminal(other.userId, other.token, 'other-box');
  const call = (method: string, url: string, token: string, json?: unknown) => o.call(method, url, { token, json });
  const voucher = await call('POST', '/vouchers', staff.token, { amount: 500, count: 1 });
  assert.equal(voucher.status, 201, JSON.stringify(voucher.body));
  const grant = await call('POST', '/grants', mine.token, { contentId: free });
  assert.equal(grant.status, 200, JSON.stringify(grant.body));
  const schedule = await call('POST', '/schedules', mine.token, { select: { genre: 'news' }, windows: [{ days: 'weekdays', start: '01:00', end: '05:00', timeZone: 'UTC' }] });
  assert.equal(schedule.status, 201, JSON.stringify(schedule.body));
  const offer = await call('POST', '/grants/auto', mine.token, { contentId: priced });
  assert.equal(offer.status, 200, JSON.stringify(offer.body));
  // The staff account is left out of the pools: a request that changed its roles would lock the operator routes.
  const contents = [free, priced];
  const terminals = [mine.id, theirs.id];
  const users = [member.userId, other.userId];
  const byName: Record<string, string[]> = {
    contentId: contents,
    contentIds: contents,
    terminalId: terminals,
    receiver: terminals,
    sourceId: terminals,
    exclude: terminals,
    user: [member.userId, member.userId, other.userId],
    publisherId: users,
    publisher: [member.username, other.username],
    username: [member.username, 'fuzz_new_1', 'fuzz_new_2', 'fuzz_new_3', 'fuzz_new_4'],
    password: ['correct horse battery'],
    publicKey: [generateKeyPair().publicKeyB64, generateKeyPair().publicKeyB64, generateKeyPair().publicKeyB64],
    pieces: ['0', '0-1', '0-2'],
    have: ['0', '0-1'],
    source: ['origin'],
    genre: ['news'],
    code: [voucher.body.vouchers[0].code],
    authorization: [`Grant ${grant.body.token}`],
    grants: [grant.body.id],
    transferId: [offer.body.transferId],
  };
  const byRoute: [RegExp, string[]][] = [
    [/^\/(contents|have|pieces)\//, contents],
    [/^\/terminals\//, terminals],
    [/^\/(users|publishers)\//, users],
    [/^\/schedules\//, [schedule.body.id]],
    [/^\/transfers\//, [offer.body.transferId]],
  ];
  const everything = [...new Set([...Object.values(byName).flat(), schedule.body.id, 'news'])];
  const urls = [DEAD_URL, 'http://127.0.0.1:9/push', 'not a url', 'ftp://127.0.0.1/'];
  return {
    known: everything,
    poolsFor: (template) => ({
      urls,
      known: (name) => byName[name] ?? (name === 'id' || name === 'contentId' ? byRoute.find(([re]) => re.test(template))?.[1] : undefined) ?? everything,
    }),
    tokens: { member: member.token, staff: staff.token, terminal: mine.token },
    throwaway: () => o.accounts.issueToken(member.userId, null, 'fuzz throwaway', null),
  };
}

async function send(o: TestOrigin, r: Req, token: string | undefined): Promise<{ status: number; body: any; type: string }> {
  const headers: Record<string, string> = { ...r.headers };
  if (token) headers.authorization = `Bearer ${token}`;
  if (r.body) headers['content-type'] = r.body.type;
  const res = await fetch(o.url + urlOf(r), { method: r.route.method, headers, body: r.body?.text as BodyInit | undefined, signal: AbortSignal.timeout(20_000) });
  const type = res.headers.get('content-type') ?? '';
  // The order stream stays open: its head is the answer.
  if (type.startsWith('text/event-stream')) {
    await res.body?.cancel();
    return { status: res.status, body: null, type };
  }
  const text = await res.text();
  let body: any = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {}
  return { status: res.status, body, type };
}

for (const engine of testEngines()) {
  describe(`API fuzz from the OpenAPI description (${engine.name})`, () => {
    let o: TestOrigin;
    let world: World;
    let routes: Route[];

    before(async () => {
      // Background work only on request: no flush, sweep, monitor or scheduler tick between two requests.
      const hour = 3_600_000;
      o = await startTestOrigin({ engine, now: NOW, config: { heartbeatFlushMs: hour, settleIntervalMs: hour, scheduleTickMs: hour, transferDeadMs: hour, pieceSize: 16_384 } });
      world = await setUp(o);
      routes = routesOf((await o.call('GET', '/docs')).body, o);
    });
    after(async () => {
      await o?.close();
    });

    test('every number, text and list a request carries has a bound (so a column or a buffer can hold it)', () => {
      const unbounded: string[] = [];
      const walk = (s: Schema | undefined, where: string) => {
        if (!s) return;
        const types = [s.type].flat();
        if ((types.includes('integer') || types.includes('number')) && (s.minimum === undefined || s.maximum === undefined)) unbounded.push(`${where}: a number without minimum and maximum`);
        const boundedPattern = typeof s.pattern === 'string' && /\{\d+(,\d+)?\}\$$/.test(s.pattern);
        if (types.includes('string') && s.maxLength === undefined && !s.enum && !boundedPattern && s.format !== 'date-time') unbounded.push(`${where}: a text without maxLength`);
        if (types.includes('array') && s.maxItems === undefined) unbounded.push(`${where}: a list without maxItems`);
        for (const [k, v] of Object.entries<Schema>(s.properties ?? {})) walk(v, `${where}.${k}`);
        if (s.items) walk(s.items, `${where}[]`);
      };
      for (const r of routes) {
        const op = `${r.method} ${r.template}`;
        walk(r.body, `${op} body`);
        for (const p of [...r.pathParams, ...r.query, ...r.headers]) walk(p.schema, `${op} ${p.name}`);
      }
      assert.deepEqual(unbounded, []);
    });

    test(`a boundary sweep and ${RUNS} random requests: no 5xx, documented refusals, nothing left behind (seed ${SEED})`, async (t) => {
      assert.ok(routes.length >= 50, `the OpenAPI description lists ${routes.length} operations`);
      for (const r of routes) assert.ok(r.access, `${r.method} ${r.template} has an access rule`);
      const isDocumented = documentedCodes();
      const tables = await tableNames(o);
      const problems: string[] = [];
      const byStatus = new Map<number, number>();
      const routesAccepted = new Set<string>();
      /** Per operation, the codes it refused valid-looking requests with: what keeps the fuzz from going deeper. */
      const refusedValid = new Map<string, Map<string, number>>();
      let state = await snapshot(o, tables);

      /** Sends one request and checks the answer and what it left behind; true if accepted. */
      async function exercise(r: Req): Promise<boolean> {
        let token: string | undefined;
        if (r.as === 'throwaway') {
          token = await world.throwaway(); // before the snapshot: issuing it is not the request's doing
          state = await snapshot(o, tables);
        } else if (r.as !== 'anon') token = world.tokens[r.as];
        let res;
        try {
          res = await send(o, r, token);
        } catch (err) {
          problems.push(`${show(r)}: no answer (${(err as Error).message})`);
          return false;
        }
        byStatus.set(res.status, (byStatus.get(res.status) ?? 0) + 1);
        if (process.env.FUZZ_TRACE && show(r).includes(process.env.FUZZ_TRACE)) t.diagnostic(`${show(r, res.status)} ${JSON.stringify(res.body?.error ?? '')}`);
        const next = await snapshot(o, tables);
        const before = state;
        state = next;
        if (res.status >= 500) {
          problems.push(`${show(r, res.status)}: ${JSON.stringify(res.body).slice(0, 300).replace(/x{20,}/g, (x) => `x×${x.length}`)}`);
          return false;
        }
        if (res.status >= 400) {
          const e = res.body?.error;
          if (!e || typeof e.code !== 'string' || typeof e.message !== 'string' || !e.message) problems.push(`${show(r, res.status)}: not the documented error shape: ${JSON.stringify(res.body).slice(0, 200).replace(/x{20,}/g, (x) => `x×${x.length}`)}`);
          else if (!isDocumented(e.code)) problems.push(`${show(r, res.status)}: code ${e.code} is not in docs/errors.md`);
          if (r.mutation === 'none') {
            const key = `${r.route.method} ${r.route.template}`;
            const codes = refusedValid.get(key) ?? new Map<string, number>();
            codes.set(e?.code, (codes.get(e?.code) ?? 0) + 1);
            refusedValid.set(key, codes);
          }
          const moved = changed(before, next);
          if (moved.length) problems.push(`${show(r, res.status)} (${e?.code}): the refusal changed ${moved.join(', ')}`);
          return false;
        }
        routesAccepted.add(`${r.route.method} ${r.route.template}`);
        if (r.mustRefuse) problems.push(`${show(r, res.status)}: accepted although ${r.mustRefuse}`);
        return true;
      }

      // 1. Each operation: a few valid-looking requests; the fullest accepted one (else the fullest) is the base of
      // 2. its boundary sweep. 3. Random requests, each with one random mutation or none.
      for (const route of routes) {
        const samples = fc.sample(validRequest(route, world), { seed: SEED, numRuns: SAMPLES_PER_OPERATION });
        const accepted: Req[] = [];
        for (const r of samples) if (await exercise(r)) accepted.push(r);
        // The fullest, and the same cut to its required fields: optional fields can steer a
        // handler away from the code that writes (a transferId: no new transfer row).
        const pool = accepted.length ? accepted : samples;
        const fullest = pool.reduce((best, r) => (show(r).length > show(best).length ? r : best));
        for (const r of boundaries(fullest)) await exercise(r);
        const bare = requiredOnly(fullest);
        if (show(bare) !== show(fullest) && (await exercise(bare))) for (const r of boundaries(bare)) await exercise(r);
      }
      const random = fc.sample(
        fc.constantFrom(...routes).chain((route) => fc.tuple(validRequest(route, world), fc.constantFrom(...MUTATIONS), fc.nat(), fc.nat())),
        { seed: SEED, numRuns: RUNS },
      );
      for (const [valid, m, a, b] of random) await exercise(mutate(valid, m, a, b));

      t.diagnostic(`answers by status: ${JSON.stringify(Object.fromEntries([...byStatus].sort()))}`);
      const never = routes.map((r) => `${r.method} ${r.template}`).filter((k) => !routesAccepted.has(k));
      t.diagnostic(`operations that accepted at least one request: ${routesAccepted.size} of ${routes.length}`);
      for (const k of never) t.diagnostic(`never accepted: ${k}, valid-looking requests refused with ${JSON.stringify(Object.fromEntries(refusedValid.get(k) ?? []))}`);
      assert.deepEqual(problems.slice(0, 40), [], `${problems.length} problems`);

      // Afterwards: the ledger conserves, and every open hold is the reservation of a purchase with a running transfer.
      const conservation = await o.ledger.checkConservation();
      assert.ok(conservation.ok, JSON.stringify(conservation));
      const { rows: orphans } = await sql<{ id: string }>`
        select p.id from ledger_transfers p
        where p.kind = 'pending' and not exists (select 1 from ledger_transfers r where r.pending_id = p.id)
          and not exists (
            select 1 from ledger_purchases h
            join terminals tm on tm.user_id = h.user_id
            join transfers t on t.receiver_id = tm.id and t.content_id = h.content_id
            where h.hold_id = p.id and h.hold_amount > 0 and t.state in ('active', 'stalled'))
          and not exists (select 1 from edge_deliveries d where d.hold_id = p.id and d.state = 'open')`.execute(o.db.db);
      assert.deepEqual(orphans, [], 'holds that belong to no running transfer and no open edge delivery (S2.4)');
    });
  });
}
