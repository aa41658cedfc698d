import { Ajv, type ErrorObject, type SchemaValidateFunction, type ValidateFunction } from 'ajv';
import formatsModule from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

// How every Cascade server checks what a request carries ("Clear refusals" in SPEC):
// - JSON bodies are taken as sent: a wrong type is refused, never converted (no
//   `"2"` for 2, no `true` for 1, no `"x"` for ["x"]);
// - query strings and path parameters are text by nature: each value is parsed
//   explicitly by the type its schema declares (`limit=10` → 10), and what does not
//   parse stays text, so the schema refuses it;
// - no text anywhere carries a control character (see CONTROL_CHARACTERS), unless
//   its schema says `controlChars: 'allowLineBreaks'` (tab, line feed, carriage return).
// Schema fragments for bounded numbers are below, so limits fit the columns they land in.

// ajv-formats is CommonJS: its module object is the plugin function itself.
const addFormats = formatsModule as unknown as typeof formatsModule.default;

/** The largest value of a PostgreSQL `integer` (int4) column. */
export const INT4_MAX = 2_147_483_647;

/** A count or index stored in an `integer` column. */
export const int4 = (minimum = 0, description?: string) =>
  ({ type: 'integer', minimum, maximum: INT4_MAX, ...(description ? { description } : {}) }) as const;

/** A size or amount stored in a `bigint` column, and exact in a JavaScript number. */
export const safeInteger = (minimum = 0, description?: string) =>
  ({ type: 'integer', minimum, maximum: Number.MAX_SAFE_INTEGER, ...(description ? { description } : {}) }) as const;

/** C0 controls (NUL…US), DEL and C1 controls: never part of a name, a title or an ID. */
export const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;
/** The same, but tab, line feed and carriage return are allowed (free text such as a summary). */
export const CONTROL_CHARACTERS_BUT_LINE_BREAKS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

export type ControlChars = 'refuse' | 'allowLineBreaks';

interface Compiled {
  validate: ValidateFunction;
  parse: Map<string, TextParser> | null;
}

let sharedAjv: Ajv | undefined;
/**
 * Validators by schema, for every server in this process: servers started in one process (an
 * origin and its agents in tests, the agents of the swarm benchmark) compile each schema once
 * (#19: each agent compiling its routes again was ~3 % of the swarm benchmark's agent CPU). The
 * key is the schema's text, so the map holds one entry per distinct schema the code declares.
 */
const compiledBySchema = new Map<string, Compiled>();

function compile(schema: unknown, httpPart: string | undefined): Compiled {
  const key = `${httpPart === 'body' ? 'body' : 'text'} ${JSON.stringify(schema)}`;
  let compiled = compiledBySchema.get(key);
  if (!compiled) {
    if (!sharedAjv) {
      // strictNumbers (ajv's default, kept): NaN and Infinity (`1e400` in JSON) are no numbers.
      sharedAjv = new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: false, strictNumbers: true });
      addFormats(sharedAjv);
      sharedAjv.addKeyword({ keyword: 'controlChars', schemaType: 'string', errors: true, validate: checkControlChars });
    }
    compiled = {
      validate: sharedAjv.compile(withTextRule(schema) as object),
      // Query strings, path parameters and headers: parse each declared number or boolean first.
      parse: httpPart === 'body' ? null : textParsers(schema),
    };
    compiledBySchema.set(key, compiled);
  }
  return compiled;
}

/** The shared validator compiler: set once on the root instance (src/core/http.ts). */
export function validatorCompiler(): FastifySchemaCompiler<unknown> {
  return ({ schema, httpPart }) => {
    // Compiled on a route's first request, not when the route is added: compiling every
    // route's schemas took a good part of the origin's start-up (#12 point 1).
    let compiled: Compiled | undefined;
    const check = ((data: unknown) => {
      compiled ??= compile(schema, httpPart);
      const { validate, parse } = compiled;
      if (parse && data && typeof data === 'object') parseFields(data as Record<string, unknown>, parse);
      const ok = validate(data);
      check.errors = validate.errors;
      return ok;
    }) as ValidateFunction;
    return check;
  };
}

// ---- control characters ----

const checkControlChars: SchemaValidateFunction = function check(mode: ControlChars, data: unknown, _schema?: unknown, cxt?: { instancePath: string }): boolean {
  const refused = mode === 'allowLineBreaks' ? CONTROL_CHARACTERS_BUT_LINE_BREAKS : CONTROL_CHARACTERS;
  const at = findControlCharacter(data, refused);
  if (at === null) return true;
  const error: Partial<ErrorObject> = {
    keyword: 'controlChars',
    instancePath: (cxt?.instancePath ?? '') + at,
    params: { controlChars: mode },
    message: `must not contain control characters (U+0000–U+001F, U+007F–U+009F${mode === 'allowLineBreaks' ? '; tab and line breaks are fine' : ''})`,
  };
  checkControlChars.errors = [error];
  return false;
};

/**
 * The JSON pointer (relative to `data`) of the first text holding a refused character,
 * keys included; null if none. Iterative: a deeply nested body must not overflow the stack.
 */
export function findControlCharacter(data: unknown, refused: RegExp = CONTROL_CHARACTERS): string | null {
  const stack: [unknown, string][] = [[data, '']];
  while (stack.length) {
    const [value, path] = stack.pop()!;
    if (typeof value === 'string') {
      if (refused.test(value)) return path;
    } else if (Array.isArray(value)) {
      value.forEach((v, i) => stack.push([v, `${path}/${i}`]));
    } else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) {
        const p = `${path}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`;
        if (refused.test(k)) return p;
        stack.push([v, p]);
      }
    }
  }
  return null;
}

/**
 * A copy of `schema` where every text value is checked for control characters: each
 * `string` schema, and each free-form one (no `type`) wholly, keys and nested values
 * alike. A schema that states `controlChars` keeps its own rule.
 */
export function withTextRule(schema: unknown): unknown {
  if (!schema || typeof schema !== 'object' || Array.isArray(schema)) return schema;
  const s = { ...(schema as Record<string, any>) };
  const types = [s.type].flat();
  if (s.controlChars === undefined && (types.includes('string') || s.type === undefined)) s.controlChars = 'refuse';
  for (const key of ['properties', 'patternProperties', 'definitions', '$defs']) {
    if (s[key]) s[key] = Object.fromEntries(Object.entries(s[key]).map(([k, v]) => [k, withTextRule(v)]));
  }
  for (const key of ['items', 'additionalProperties', 'not', 'if', 'then', 'else', 'contains', 'propertyNames']) {
    if (s[key] && typeof s[key] === 'object') s[key] = Array.isArray(s[key]) ? s[key].map(withTextRule) : withTextRule(s[key]);
  }
  for (const key of ['anyOf', 'oneOf', 'allOf']) if (Array.isArray(s[key])) s[key] = s[key].map(withTextRule);
  return s;
}

// ---- query strings and path parameters ----

type TextParser = (text: string) => unknown;

const INTEGER_TEXT = /^-?(0|[1-9][0-9]{0,15})$/;
const NUMBER_TEXT = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;

/** For each top-level property that declares a number, integer or boolean type: how to read it from text. */
function textParsers(schema: unknown): Map<string, TextParser> {
  const parsers = new Map<string, TextParser>();
  const properties = (schema as { properties?: Record<string, { type?: string | string[] }> } | null)?.properties ?? {};
  for (const [name, prop] of Object.entries(properties)) {
    const types = [prop?.type].flat();
    if (types.includes('string')) continue; // text stays text
    if (types.includes('integer')) parsers.set(name, (t) => (INTEGER_TEXT.test(t) ? Number(t) : t));
    else if (types.includes('number')) parsers.set(name, (t) => (NUMBER_TEXT.test(t) && Number.isFinite(Number(t)) ? Number(t) : t));
    else if (types.includes('boolean')) parsers.set(name, (t) => (t === 'true' ? true : t === 'false' ? false : t));
  }
  return parsers;
}

function parseFields(data: Record<string, unknown>, parsers: Map<string, TextParser>) {
  for (const [name, parse] of parsers) {
    const value = data[name];
    if (typeof value === 'string') data[name] = parse(value);
  }
}
