import fc from 'fast-check';

// fast-check arbitraries from the JSON schemas of the OpenAPI description (the subset
// Cascade's routes use: type, enum, examples, properties/required, items, min/max,
// minLength/maxLength, pattern, format date-time), and the mutations the fuzz test
// applies to a valid-looking value. No registry package fits: json-schema-fast-check
// needs fast-check 1 and faker 4, so this small generator does the job.

export type Schema = Record<string, any>;

export interface Pools {
  /** IDs and names that exist on the origin for a field of this name, so valid-looking requests reach past "unknown". */
  known(name: string): string[];
  /** The only addresses a generated URL field may hold: the origin must never call out elsewhere. */
  urls: string[];
}

/** The types a schema allows; OpenAPI 3.0 writes `type: ['string', 'null']` as `type: 'string', nullable: true`. */
const typesOf = (s: Schema): string[] => (s.type === undefined ? [] : [...[s.type].flat(), ...(s.nullable ? ['null'] : [])]);

/** A value that satisfies `schema` (or nearly: a known ID may miss a pattern), for a field called `name`. */
export function valueFor(schema: Schema | undefined, pools: Pools, name = ''): fc.Arbitrary<unknown> {
  if (!schema) return fc.jsonValue({ maxDepth: 2 });
  const generic = genericValue(schema, pools, name);
  return schema.examples?.length ? fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...schema.examples) }, { weight: 1, arbitrary: generic }) : generic;
}

function genericValue(schema: Schema, pools: Pools, name: string): fc.Arbitrary<unknown> {
  if (schema.enum) return fc.constantFrom(...schema.enum);
  const types = typesOf(schema);
  if (types.length === 0) return fc.jsonValue({ maxDepth: 2 });
  return fc.oneof(...types.map((t) => forType(t, schema, pools, name)));
}

function forType(type: string, s: Schema, pools: Pools, name: string): fc.Arbitrary<unknown> {
  switch (type) {
    case 'string': {
      if (/url|address/i.test(name)) return fc.constantFrom(...pools.urls);
      const max = Math.min(s.maxLength ?? 40, 40);
      let own: fc.Arbitrary<string>;
      if (s.format === 'date-time') own = fc.date({ min: new Date('2020-01-01Z'), max: new Date('2040-01-01Z'), noInvalidDate: true }).map((d) => d.toISOString());
      else if (s.pattern) own = fc.stringMatching(new RegExp(s.pattern));
      else own = fc.string({ minLength: Math.min(s.minLength ?? 0, max), maxLength: max });
      const known = pools.known(name);
      return known.length ? fc.oneof({ weight: 1, arbitrary: own }, { weight: 2, arbitrary: fc.constantFrom(...known) }) : own;
    }
    case 'integer': {
      const lo = s.minimum ?? -1000;
      const hi = s.maximum ?? 1_000_000;
      const small = fc.integer({ min: Math.max(lo, -1e9), max: Math.min(hi, Math.max(lo, -1e9) + 1000) });
      return fc.oneof({ weight: 3, arbitrary: small }, { weight: 1, arbitrary: fc.constantFrom(lo, hi) });
    }
    case 'number':
      return fc.double({ min: s.minimum ?? -1e6, max: s.maximum ?? 1e6, noNaN: true, noDefaultInfinity: true });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array':
      return fc.array(valueFor(s.items, pools, name), { minLength: s.minItems ?? 0, maxLength: Math.max(s.minItems ?? 0, Math.min(s.maxItems ?? 4, 4)) });
    case 'object': {
      const props: Record<string, Schema> = s.properties ?? {};
      if (Object.keys(props).length === 0) return fc.constant({});
      const fields = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, valueFor(v, pools, k)]));
      // Mostly every field, so that requests get past "select nothing"; else only the required ones and some others.
      const some = fc.record(fields, { requiredKeys: (s.required ?? []).filter((k: string) => k in props) });
      return fc.oneof({ weight: 2, arbitrary: fc.record(fields) }, { weight: 1, arbitrary: some });
    }
    default:
      return fc.constant(null);
  }
}

// ---- mutations ----

/** One place in a request that a mutation can change: a body field (by path), a query or a path parameter. */
export interface Slot {
  part: 'body' | 'query' | 'path';
  /** JSON path inside the body; [name] for query and path parameters. */
  path: (string | number)[];
  schema: Schema | undefined;
}

/** The body's slots: the body itself, every value reached through the schema's properties and items, and the declared properties a present object leaves out. */
export function bodySlots(value: unknown, schema: Schema | undefined, path: (string | number)[] = []): Slot[] {
  const slots: Slot[] = [{ part: 'body', path, schema }];
  if (!schema) return slots;
  if (Array.isArray(value) && schema.items) value.forEach((v, i) => slots.push(...bodySlots(v, schema.items, [...path, i])));
  else if (value && typeof value === 'object' && schema.properties) {
    for (const [k, s] of Object.entries<Schema>(schema.properties)) {
      const v = (value as Record<string, unknown>)[k];
      slots.push(...(v === undefined ? [{ part: 'body' as const, path: [...path, k], schema: s }] : bodySlots(v, s, [...path, k])));
    }
  }
  return slots;
}

/** A JSON number that JSON.stringify cannot write (1e400 parses as Infinity): spliced into the body text. */
export const rawNumber = (text: string) => `\u0001RAW:${text}\u0001`;
/** A value nested `depth` times (arrays or objects), spliced into the body text: JSON.stringify would overflow the stack. */
export const nested = (depth: number, kind: 'array' | 'object') => `\u0001DEEP:${kind}:${depth}\u0001`;
export const spliceRaw = (json: string) =>
  json
    .replace(/"\\u0001RAW:([^"\\]+)\\u0001"/g, '$1')
    .replace(/"\\u0001DEEP:(array|object):(\d+)\\u0001"/g, (_m, kind, depth) =>
      kind === 'array' ? '['.repeat(+depth) + '"leaf"' + ']'.repeat(+depth) : '{"a":'.repeat(+depth) + '"leaf"' + '}'.repeat(+depth),
    );

/** Values of another type than the slot declares; whatever the slot is, each is wrong for it. */
export function wrongTypes(schema: Schema | undefined, text: boolean): unknown[] {
  const types = schema ? typesOf(schema) : [];
  if (types.length === 0 || schema?.enum) return text ? [] : schema?.enum ? [12345, true, { not: 'listed' }] : [];
  if (text) {
    // Query strings and path parameters are text: the wrong ones are texts that do not parse.
    if (types.includes('string')) return [];
    if (types.includes('integer')) return ['abc', '1.5', '1e3', ' 1', '0x10', '', '+1', '1 ', 'NaN', 'Infinity'];
    if (types.includes('number')) return ['abc', '', '0x10', 'Infinity', '1,5'];
    if (types.includes('boolean')) return ['yes', '1', '', 'TRUE'];
    return [];
  }
  const all: [string, unknown][] = [
    ['string', '2'],
    ['string', 'true'],
    ['integer', 7],
    ['number', 1.5],
    ['boolean', true],
    ['null', null],
    ['array', ['x']],
    ['array', [null]],
    ['object', { a: 1 }],
  ];
  return all
    .filter(([t, v]) => !types.includes(t) && !(t === 'integer' && types.includes('number')) && !(t === 'number' && types.includes('integer') && Number.isInteger(v)))
    .map(([, v]) => v);
}

/** Numbers outside the slot's bounds (or outside any column), and non-integers for integers. */
export function outOfRange(schema: Schema | undefined): { value: unknown; refused: boolean }[] {
  const types = schema ? typesOf(schema) : [];
  if (!types.includes('integer') && !types.includes('number')) return [];
  const out: { value: unknown; refused: boolean }[] = [];
  if (schema!.maximum !== undefined) out.push({ value: schema!.maximum + 1, refused: true });
  if (schema!.minimum !== undefined) out.push({ value: schema!.minimum - 1, refused: true });
  // Just past an int4 and an int8 column, past exact JavaScript integers, and the largest doubles.
  for (const v of [2 ** 31, 2 ** 53 + 2, 2 ** 63, 1e308, -1e308]) {
    out.push({ value: v, refused: (schema!.maximum !== undefined && v > schema!.maximum) || (schema!.minimum !== undefined && v < schema!.minimum) });
  }
  out.push({ value: rawNumber('1e400'), refused: true }, { value: rawNumber('-1e400'), refused: true });
  if (types.includes('integer') && !types.includes('number')) out.push({ value: 2.5, refused: true });
  return out;
}

/** Characters a text field must refuse (all but the last two everywhere; tab and newline where line breaks are allowed). */
export const CONTROL = ['\u0000', '\u0001', '\u001b', '\u007f', '\u0085', '\u009f', '\t', '\n'];
/** Not control characters, but awkward: they must never cause a 5xx either. */
export const AWKWARD = ['\ud800', '\udfff', '\u2028', '\ufeff', '💥', "'; drop table users; --", '../../etc/passwd', '%00', '\\'];

export function getAt(value: unknown, path: (string | number)[]): unknown {
  return path.reduce<any>((v, k) => (v == null ? undefined : v[k]), value);
}

/** A copy of `value` with the value at `path` replaced (or removed with `remove`). */
export function setAt(value: unknown, path: (string | number)[], next: unknown, remove = false): unknown {
  if (path.length === 0) return next;
  const copy: any = Array.isArray(value) ? [...value] : { ...(value as object) };
  const [head, ...rest] = path;
  if (rest.length === 0) {
    if (remove) delete copy[head];
    else copy[head] = next;
  } else copy[head] = setAt(copy[head], rest, next, remove);
  return copy;
}
