import type { FastifyPluginAsync } from 'fastify';
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { checkManifest, contentIdOf, type ManifestBody, type SignedManifest } from '../content/manifest.ts';
import type { Clock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import { checkIntroduction, INTRODUCTION_REFUSALS, type RequesterProfile } from '../terminals/introductions.ts';

// S1.14, terminal side: a terminal serves its own content list to another terminal
// that the origin has introduced (see src/terminals/introductions.ts). The list holds
// what this terminal can re-serve, picked for the requester from the profile the origin
// signed (balance, history, link state), with the owner's notes, news and
// recommendations. The rules are in docs/peers.md, "Content lists between terminals".
//
//   GET /content-list?limit=20
//   Authorization: Introduction <token>

// ---- the owner's notes ----

/** What the terminal's owner adds to its list, kept in a JSON file beside the agent's store. */
export interface AgentNotes {
  /** Short announcements shown above the list, in the owner's order. */
  news: string[];
  /** The owner's note per content ID. */
  notes: Record<string, string>;
  /** Content IDs the owner recommends; they come first. */
  recommendations: string[];
}

export const emptyNotes = (): AgentNotes => ({ news: [], notes: {}, recommendations: [] });

// Bounds keep one careless file from turning every list reply into megabytes.
export const NOTES_LIMITS = { newsItems: 50, newsChars: 500, notes: 10_000, noteChars: 1000, recommendations: 1000 } as const;
const CONTENT_ID = /^[0-9a-f]{64}$/;

/**
 * Reads the owner's notes. A missing file means no notes (most owners write none); a
 * file that exists but is not valid is refused with `invalid_agent_notes` naming the file
 * and the problem, rather than half-used: the owner should learn of a typo at start-up.
 */
export async function loadAgentNotes(file: string): Promise<AgentNotes> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err: any) {
    if (err?.code === 'ENOENT') return emptyNotes();
    throw new AppError('invalid_agent_notes', `Cannot read the notes file ${file}: ${err?.message ?? err}.`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err: any) {
    throw new AppError('invalid_agent_notes', `The notes file ${file} is not valid JSON: ${err?.message ?? err}.`);
  }
  return parseAgentNotes(raw, file);
}

/** Checks notes already parsed from JSON; every field is optional, unknown fields are refused (typos). */
export function parseAgentNotes(raw: unknown, source = 'the notes'): AgentNotes {
  const refuse = (problem: string): never => {
    throw new AppError('invalid_agent_notes', `${source}: ${problem}. Expected {"news": [text], "notes": {contentId: text}, "recommendations": [contentId]}.`);
  };
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) refuse('the file must hold one JSON object');
  const obj = raw as Record<string, unknown>;
  const unknown = Object.keys(obj).filter((k) => !['news', 'notes', 'recommendations'].includes(k));
  if (unknown.length) refuse(`unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}`);
  const L = NOTES_LIMITS;

  const news = obj.news ?? [];
  if (!Array.isArray(news) || news.length > L.newsItems) refuse(`"news" must be a list of at most ${L.newsItems} texts`);
  (news as unknown[]).forEach((n, i) => {
    if (typeof n !== 'string' || n.length > L.newsChars) refuse(`"news"[${i}] must be a text of at most ${L.newsChars} characters`);
  });

  const notes = obj.notes ?? {};
  if (!notes || typeof notes !== 'object' || Array.isArray(notes)) refuse('"notes" must be an object from content ID to text');
  const entries = Object.entries(notes as Record<string, unknown>);
  if (entries.length > L.notes) refuse(`"notes" holds more than ${L.notes} entries`);
  for (const [id, note] of entries) {
    if (!CONTENT_ID.test(id)) refuse(`"notes" key "${id}" is not a content ID (64 lower-case hex characters)`);
    if (typeof note !== 'string' || note.length > L.noteChars) refuse(`"notes"."${id}" must be a text of at most ${L.noteChars} characters`);
  }

  const recs = obj.recommendations ?? [];
  if (!Array.isArray(recs) || recs.length > L.recommendations) refuse(`"recommendations" must be a list of at most ${L.recommendations} content IDs`);
  (recs as unknown[]).forEach((id, i) => {
    if (typeof id !== 'string' || !CONTENT_ID.test(id)) refuse(`"recommendations"[${i}] is not a content ID (64 lower-case hex characters)`);
  });

  return { news: [...(news as string[])], notes: Object.fromEntries(entries) as Record<string, string>, recommendations: [...new Set(recs as string[])] };
}

// ---- the relevance rules (pure) ----

/** One item of a terminal's content list (S1.14). */
export interface ContentListItem {
  id: string;
  title: string;
  genre: string;
  /** Whole-content price in minor units, as signed in the manifest. */
  price: number;
  totalSize: number;
  /** price ≤ balance; null while the requester's balance is unknown. */
  affordable: boolean | null;
  /** Whole seconds to download at the requester's reported downstream rate; null if unknown. */
  estimatedSeconds: number | null;
  /** The owner's note, if any. */
  note: string | null;
  /** The owner recommends it. */
  recommended: boolean;
}

/**
 * Below this downstream rate a requester's link is "slow" and smaller items come first:
 * 2 MB/s, i.e. 16 Mbit/s, since heartbeats report rates in bits/s (S1.2). At that rate
 * a 1 GiB item takes about 9 minutes.
 */
export const SLOW_LINK_BPS = 16_000_000;

// Computing a content ID means canonicalising the whole body (its piece list included),
// so it is done once per manifest object.
const idCache = new WeakMap<object, string | null>();

function wellFormedId(m: SignedManifest): string | null {
  if (!m || typeof m !== 'object') return null;
  const cached = idCache.get(m);
  if (cached !== undefined) return cached;
  let id: string | null = null;
  if (typeof m.signature === 'string' && isWellFormedBody(m.body)) {
    try {
      id = contentIdOf(m.body);
    } catch {
      id = null;
    }
  }
  idCache.set(m, id);
  return id;
}

function isWellFormedBody(b: ManifestBody | undefined): b is ManifestBody {
  if (!b || typeof b !== 'object') return false;
  const count = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  return (
    b.v === 1 &&
    typeof b.title === 'string' &&
    b.title.length > 0 &&
    typeof b.genre === 'string' &&
    typeof b.summary === 'string' &&
    typeof b.author === 'string' &&
    typeof b.publisher === 'string' &&
    typeof b.createdAt === 'string' &&
    count(b.price) &&
    count(b.totalSize) &&
    count(b.pieceSize) &&
    b.pieceSize > 0 &&
    Array.isArray(b.pieces) &&
    b.pieces.length === Math.ceil(b.totalSize / b.pieceSize) &&
    b.pieces.every((h) => typeof h === 'string' && CONTENT_ID.test(h))
  );
}

const genreKey = (g: string) => g.trim().toLowerCase();

/**
 * S1.14: the items of this terminal's list for one requester, best first, at most `limit`.
 *
 * 1. Manifests that are not well formed are skipped; a content listed twice appears once.
 * 2. Items the requester already holds (its history) are left out.
 * 3. Order, each rule breaking the ties of the one before:
 *    a. items this terminal's owner recommends;
 *    b. items in the genres of the requester's history, the genre it holds most first
 *       (genres come from the manifests this terminal holds, so only history items this
 *       terminal also holds count);
 *    c. when the balance is low (known, and short of at least one candidate's price):
 *       cheaper first, which also puts every affordable item before the others;
 *    d. when the link is slow (downstream < SLOW_LINK_BPS): smaller first;
 *    e. newer first, then by content ID, so the order is stable.
 * Every item carries `affordable` (price ≤ balance, or null with no balance) and
 * `estimatedSeconds` (size over the requester's downstream rate, or null with no link).
 */
export function pickForRequester(manifests: SignedManifest[], profile: RequesterProfile, notes: AgentNotes, limit: number): ContentListItem[] {
  const held = new Set(profile.history);
  const recommended = new Set(notes.recommendations);

  const byId = new Map<string, ManifestBody>();
  for (const m of manifests) {
    const id = wellFormedId(m);
    if (id && !byId.has(id)) byId.set(id, m.body);
  }

  // How many of the requester's items this terminal knows to be of each genre.
  const affinity = new Map<string, number>();
  for (const id of held) {
    const body = byId.get(id);
    if (body) affinity.set(genreKey(body.genre), (affinity.get(genreKey(body.genre)) ?? 0) + 1);
  }

  const candidates = [...byId].filter(([id]) => !held.has(id));
  const { balance, link } = profile;
  const lowBalance = balance !== null && candidates.some(([, b]) => b.price > balance);
  const slowLink = link !== null && link.downBps < SLOW_LINK_BPS;

  const ranked = candidates.map(([id, b]) => ({
    id,
    body: b,
    recommended: recommended.has(id),
    affinity: affinity.get(genreKey(b.genre)) ?? 0,
    createdAt: Date.parse(b.createdAt) || 0,
  }));
  ranked.sort(
    (x, y) =>
      Number(y.recommended) - Number(x.recommended) ||
      y.affinity - x.affinity ||
      (lowBalance ? x.body.price - y.body.price : 0) ||
      (slowLink ? x.body.totalSize - y.body.totalSize : 0) ||
      y.createdAt - x.createdAt ||
      (x.id < y.id ? -1 : x.id > y.id ? 1 : 0),
  );

  return ranked.slice(0, Math.max(0, Math.floor(limit))).map(
    ({ id, body: b, recommended: rec }): ContentListItem => ({
      id,
      title: b.title,
      genre: b.genre,
      price: b.price,
      totalSize: b.totalSize,
      affordable: balance === null ? null : b.price <= balance,
      estimatedSeconds: link && link.downBps > 0 ? Math.ceil((b.totalSize * 8) / link.downBps) : null,
      note: Object.hasOwn(notes.notes, id) ? notes.notes[id]! : null,
      recommended: rec,
    }),
  );
}

// ---- the route ----

export interface ContentListOptions {
  /** This terminal's ID: introductions for any other terminal are refused. */
  selfId: string;
  originPublicKey: KeyObject | string;
  clock: Clock;
  /** The manifests of the content this terminal holds and may re-serve. */
  list: () => Promise<SignedManifest[]>;
  /** The owner's notes; read per request so that edits show without a restart. */
  notes: () => Promise<AgentNotes>;
}

export interface ContentListReply {
  /** The serving terminal. */
  terminalId: string;
  requesterId: string;
  generatedAt: string;
  news: string[];
  items: ContentListItem[];
  /** More items matched than `limit`. */
  more: boolean;
}

export const CONTENT_LIST_DEFAULT_LIMIT = 20;
export const CONTENT_LIST_MAX_LIMIT = 100;

const itemSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    title: { type: 'string' },
    genre: { type: 'string' },
    price: { type: 'integer' },
    totalSize: { type: 'integer' },
    affordable: { type: ['boolean', 'null'] },
    estimatedSeconds: { type: ['integer', 'null'] },
    note: { type: ['string', 'null'] },
    recommended: { type: 'boolean' },
  },
} as const;

export function contentListRoutes(opts: ContentListOptions): FastifyPluginAsync {
  return async (app) => {
    // Signature checks cost more than ranking; a manifest's verdict never changes.
    const genuine = new Map<string, boolean>();
    const isGenuine = (m: SignedManifest): boolean => {
      const id = wellFormedId(m);
      if (!id) return false;
      const key = `${id}.${m.signature}`;
      let ok = genuine.get(key);
      if (ok === undefined) {
        ok = checkManifest(m, id, opts.originPublicKey).ok;
        if (genuine.size >= 10_000) genuine.delete(genuine.keys().next().value!);
        genuine.set(key, ok);
      }
      return ok;
    };

    app.get<{ Querystring: { limit?: number } }>('/content-list', {
      // Not 'public' in spirit: the check is the origin's introduction, which the shared
      // access hook does not know, so the handler makes it before anything else.
      config: { access: 'public' },
      schema: {
        summary:
          'This terminal’s content list, picked for the requester (S1.14). Needs "Authorization: Introduction <token>" ' +
          'from POST /terminals/:id/introductions on the origin.',
        tags: ['peers'],
        headers: { type: 'object', properties: { authorization: { type: 'string' } } },
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { limit: { type: 'integer', minimum: 1, maximum: CONTENT_LIST_MAX_LIMIT, default: CONTENT_LIST_DEFAULT_LIMIT } },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              terminalId: { type: 'string' },
              requesterId: { type: 'string' },
              generatedAt: { type: 'string' },
              news: { type: 'array', items: { type: 'string' } },
              items: { type: 'array', items: itemSchema },
              more: { type: 'boolean' },
            },
          },
          400: errorSchema,
          401: errorSchema,
          403: errorSchema,
        },
      },
      handler: async (req): Promise<ContentListReply> => {
        const m = /^Introduction\s+(\S+)$/i.exec(req.headers.authorization ?? '');
        const now = opts.clock.now();
        const checked = checkIntroduction(m?.[1], opts.originPublicKey, opts.selfId, now);
        if (!checked.ok) {
          const [status, message] = INTRODUCTION_REFUSALS[checked.refusal];
          throw new AppError(checked.refusal, message, status);
        }
        const intro = checked.payload;
        const limit = req.query.limit ?? CONTENT_LIST_DEFAULT_LIMIT;
        let notes: AgentNotes;
        try {
          notes = await opts.notes();
        } catch (err) {
          // A broken notes file is the owner's problem, not the requester's: serve the
          // list without notes and say so where the owner looks.
          req.log.error({ err }, 'content list served without notes: the notes could not be read');
          notes = emptyNotes();
        }
        const manifests = (await opts.list()).filter(isGenuine);
        // One extra item tells whether there are more than `limit`.
        const items = pickForRequester(manifests, intro.profile, notes, limit + 1);
        req.log.debug({ introduction: intro.id, requester: intro.requesterId, items: Math.min(items.length, limit) }, 'content list served');
        return {
          terminalId: opts.selfId,
          requesterId: intro.requesterId,
          generatedAt: new Date(now).toISOString(),
          news: notes.news,
          items: items.slice(0, limit),
          more: items.length > limit,
        };
      },
    });
  };
}
