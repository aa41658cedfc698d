import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import {
  contentListRoutes,
  loadAgentNotes,
  NOTES_LIMITS,
  pickForRequester,
  SLOW_LINK_BPS,
  type AgentNotes,
  type ContentListItem,
} from '../../src/agent/content-list.ts';
import { signManifest, type ManifestBody, type SignedManifest } from '../../src/content/manifest.ts';
import { ManualClock } from '../../src/core/clock.ts';
import { AppError } from '../../src/core/errors.ts';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { createHttpApp } from '../../src/core/http.ts';
import { encodeToken } from '../../src/core/signed-token.ts';
import { INTRODUCTION_TTL_MS, type IntroductionPayload, type RequesterProfile } from '../../src/terminals/introductions.ts';

// S1.14, terminal side: the relevance rules one by one, the owner's notes file, and the
// GET /content-list route over real HTTP with every introduction refusal.

const origin = generateKeyPair();
const PIECE = 1024;
let serial = 0;

/** A manifest signed by `origin`; each call makes a distinct content unless the fields repeat. */
function content(fields: Partial<ManifestBody> = {}, key = origin.privateKey): { id: string; manifest: SignedManifest } {
  const totalSize = fields.totalSize ?? 10 * PIECE;
  const count = Math.ceil(totalSize / PIECE);
  const tag = ++serial;
  const body: ManifestBody = {
    v: 1,
    title: `Item ${tag}`,
    summary: '',
    author: '',
    genre: 'drama',
    price: 100,
    publisher: 'pub',
    pieceSize: PIECE,
    totalSize,
    pieces: Array.from({ length: count }, (_, i) => createHash('sha256').update(`${tag}:${i}`).digest('hex')),
    // Later calls are newer, so "newest first" is the call order reversed.
    createdAt: new Date(Date.UTC(2026, 0, 1) + tag * 1000).toISOString(),
    ...fields,
  };
  return signManifest(body, key);
}

function profile(p: Partial<RequesterProfile> = {}): RequesterProfile {
  return { region: 'eu', network: 'fiber', link: null, history: [], historyComplete: true, balance: null, ...p };
}

const link = (downBps: number) => ({ upBps: 1_000_000, downBps, uptimeRatio: 0.9, at: Date.UTC(2026, 0, 1) });
const noNotes = (): AgentNotes => ({ news: [], notes: {}, recommendations: [] });
const ids = (items: ContentListItem[]) => items.map((i) => i.id);

describe('pickForRequester: the S1.14 relevance rules', () => {
  test('skips manifests that are not well formed, and lists a content held twice once', () => {
    const good = content();
    const noTitle = content({ title: '' });
    const badPrice = content({ price: -1 });
    const fractionalSize = content({ totalSize: 10.5 });
    const shortPieces = content();
    shortPieces.manifest.body.pieces.pop(); // piece count no longer matches the size
    const badHash = content();
    badHash.manifest.body.pieces[0] = 'not-a-hash';
    const list = [
      good.manifest,
      { ...good.manifest }, // the same content again
      noTitle.manifest,
      badPrice.manifest,
      fractionalSize.manifest,
      shortPieces.manifest,
      badHash.manifest,
      { body: null, signature: 'x' } as any,
      { body: good.manifest.body } as any, // no signature
      null as any,
    ];
    assert.deepEqual(ids(pickForRequester(list, profile(), noNotes(), 50)), [good.id]);
  });

  test('leaves out what the requester already holds', () => {
    const [a, b, c] = [content(), content(), content()];
    const items = pickForRequester([a.manifest, b.manifest, c.manifest], profile({ history: [b.id] }), noNotes(), 50);
    assert.deepEqual(ids(items), [c.id, a.id]);
  });

  test('affordable is price ≤ balance, and null while the balance is unknown', () => {
    const [cheap, exact, dear] = [content({ price: 10 }), content({ price: 50 }), content({ price: 51 })];
    const all = [cheap.manifest, exact.manifest, dear.manifest];
    const known = pickForRequester(all, profile({ balance: 50 }), noNotes(), 50);
    assert.deepEqual(Object.fromEntries(known.map((i) => [i.id, i.affordable])), { [cheap.id]: true, [exact.id]: true, [dear.id]: false });
    for (const item of pickForRequester(all, profile({ balance: null }), noNotes(), 50)) assert.equal(item.affordable, null);
  });

  test('recommended items come first and say so; the owner’s note travels with its item', () => {
    const [a, b, c] = [content(), content(), content()];
    const notes: AgentNotes = { news: [], notes: { [a.id]: 'Watch the ending twice.' }, recommendations: [a.id] };
    const items = pickForRequester([a.manifest, b.manifest, c.manifest], profile(), notes, 50);
    assert.deepEqual(ids(items), [a.id, c.id, b.id]);
    assert.deepEqual(
      items.map((i) => [i.recommended, i.note]),
      [[true, 'Watch the ending twice.'], [false, null], [false, null]],
    );
  });

  test('items in the genres of the requester’s history come next, the most-held genre first, ignoring case', () => {
    const heldJazz = [content({ genre: 'Jazz' }), content({ genre: 'jazz' })];
    const heldNews = content({ genre: 'news' });
    const jazz = content({ genre: 'jazz ' });
    const news = content({ genre: 'news' });
    const other = content({ genre: 'drama' });
    const all = [...heldJazz, heldNews, jazz, news, other].map((c) => c.manifest);
    const history = [...heldJazz, heldNews].map((c) => c.id);
    assert.deepEqual(ids(pickForRequester(all, profile({ history }), noNotes(), 50)), [jazz.id, news.id, other.id]);
    // Without history, the newest comes first.
    assert.deepEqual(ids(pickForRequester([jazz, news, other].map((c) => c.manifest), profile(), noNotes(), 50)), [other.id, news.id, jazz.id]);
  });

  test('a history item this terminal does not hold gives no genre (the genre is unknown here)', () => {
    const jazz = content({ genre: 'jazz' });
    const drama = content({ genre: 'drama' });
    const elsewhere = content({ genre: 'jazz' }); // held by the requester, not listed by this terminal
    const items = pickForRequester([jazz.manifest, drama.manifest], profile({ history: [elsewhere.id] }), noNotes(), 50);
    assert.deepEqual(ids(items), [drama.id, jazz.id]);
  });

  test('a low balance puts cheaper items first; a balance that covers everything does not', () => {
    const dear = content({ price: 900 });
    const cheap = content({ price: 10 });
    const mid = content({ price: 300 });
    const all = [dear.manifest, cheap.manifest, mid.manifest];
    assert.deepEqual(ids(pickForRequester(all, profile({ balance: 400 }), noNotes(), 50)), [cheap.id, mid.id, dear.id]);
    assert.deepEqual(ids(pickForRequester(all, profile({ balance: 900 }), noNotes(), 50)), [mid.id, cheap.id, dear.id]);
    assert.deepEqual(ids(pickForRequester(all, profile({ balance: null }), noNotes(), 50)), [mid.id, cheap.id, dear.id]);
  });

  test('a slow link puts smaller items first; every item shows its estimated download time when the link is known', () => {
    const big = content({ totalSize: 64 * PIECE });
    const small = content({ totalSize: 2 * PIECE });
    const medium = content({ totalSize: 16 * PIECE });
    const all = [big.manifest, small.manifest, medium.manifest];

    const slow = pickForRequester(all, profile({ link: link(SLOW_LINK_BPS - 1) }), noNotes(), 50);
    assert.deepEqual(ids(slow), [small.id, medium.id, big.id]);
    assert.equal(slow[0]!.estimatedSeconds, Math.ceil((2 * PIECE * 8) / (SLOW_LINK_BPS - 1)));

    const fast = pickForRequester(all, profile({ link: link(SLOW_LINK_BPS) }), noNotes(), 50);
    assert.deepEqual(ids(fast), [medium.id, small.id, big.id], 'at the threshold the link is not slow: newest first');
    // 64 KiB at 8 kbit/s is 64 s.
    const crawl = pickForRequester([big.manifest], profile({ link: link(8 * 1024) }), noNotes(), 50);
    assert.equal(crawl[0]!.estimatedSeconds, 64);

    for (const item of pickForRequester(all, profile({ link: null }), noNotes(), 50)) assert.equal(item.estimatedSeconds, null);
    for (const item of pickForRequester(all, profile({ link: link(0) }), noNotes(), 50)) assert.equal(item.estimatedSeconds, null);
  });

  test('precedence: recommendation, then genre, then price (low balance), then size (slow link)', () => {
    const heldJazz = content({ genre: 'jazz' });
    const recommendedDear = content({ genre: 'drama', price: 999, totalSize: 90 * PIECE });
    const jazzDear = content({ genre: 'jazz', price: 999, totalSize: 80 * PIECE });
    const cheapBig = content({ genre: 'drama', price: 1, totalSize: 70 * PIECE });
    const dearSmall = content({ genre: 'drama', price: 500, totalSize: 1 * PIECE });
    const sameDearBig = content({ genre: 'drama', price: 500, totalSize: 60 * PIECE });
    const all = [heldJazz, recommendedDear, jazzDear, cheapBig, dearSmall, sameDearBig].map((c) => c.manifest);
    const items = pickForRequester(
      all,
      profile({ history: [heldJazz.id], balance: 100, link: link(1_000_000) }),
      { news: [], notes: {}, recommendations: [recommendedDear.id] },
      50,
    );
    assert.deepEqual(ids(items), [recommendedDear.id, jazzDear.id, cheapBig.id, dearSmall.id, sameDearBig.id]);
  });

  test('limit caps the list; each item carries exactly the documented fields', () => {
    const all = Array.from({ length: 5 }, () => content());
    const items = pickForRequester(all.map((c) => c.manifest), profile(), noNotes(), 3);
    assert.equal(items.length, 3);
    assert.deepEqual(Object.keys(items[0]!).sort(), ['affordable', 'estimatedSeconds', 'genre', 'id', 'note', 'price', 'recommended', 'title', 'totalSize']);
    assert.deepEqual(pickForRequester(all.map((c) => c.manifest), profile(), noNotes(), 0), []);
  });
});

describe('loadAgentNotes: the owner’s notes file', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cascade-notes-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const id = 'a'.repeat(64);
  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };
  const refused = (file: string, fragment: RegExp) => (err: unknown) =>
    err instanceof AppError && err.code === 'invalid_agent_notes' && err.message.includes(file) && fragment.test(err.message);

  test('a missing file means no notes', async () => {
    assert.deepEqual(await loadAgentNotes(path.join(dir, 'absent.json')), { news: [], notes: {}, recommendations: [] });
  });

  test('a valid file is read whole; absent fields are empty; repeated recommendations count once', async () => {
    const file = write('ok.json', JSON.stringify({ news: ['New this week'], notes: { [id]: 'Great' }, recommendations: [id, id] }));
    assert.deepEqual(await loadAgentNotes(file), { news: ['New this week'], notes: { [id]: 'Great' }, recommendations: [id] });
    assert.deepEqual(await loadAgentNotes(write('partial.json', '{"news": ["hi"]}')), { news: ['hi'], notes: {}, recommendations: [] });
  });

  test('malformed files are refused with invalid_agent_notes, naming the file and the problem', async () => {
    const cases: [string, string, RegExp][] = [
      ['syntax.json', '{"news": [', /not valid JSON/],
      ['array.json', '[]', /one JSON object/],
      ['typo.json', JSON.stringify({ recommendation: [id] }), /unknown field "recommendation"/],
      ['news.json', JSON.stringify({ news: 'hello' }), /"news" must be a list/],
      ['news-item.json', JSON.stringify({ news: [42] }), /"news"\[0\]/],
      ['news-long.json', JSON.stringify({ news: ['x'.repeat(NOTES_LIMITS.newsChars + 1)] }), /"news"\[0\]/],
      ['notes-key.json', JSON.stringify({ notes: { film: 'x' } }), /"notes" key "film" is not a content ID/],
      ['notes-value.json', JSON.stringify({ notes: { [id]: 7 } }), /"notes"\."a{64}"/],
      ['notes-list.json', JSON.stringify({ notes: [] }), /"notes" must be an object/],
      ['recs.json', JSON.stringify({ recommendations: [id.toUpperCase()] }), /"recommendations"\[0\] is not a content ID/],
    ];
    for (const [name, text, fragment] of cases) {
      const file = write(name, text);
      await assert.rejects(loadAgentNotes(file), refused(file, fragment), name);
    }
  });
});

describe('GET /content-list over HTTP (S1.14)', () => {
  const selfId = 'trm_self';
  const clock = new ManualClock(Date.UTC(2026, 3, 1));
  const notesFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'cascade-notes-')), 'notes.json');
  const held = [content({ genre: 'jazz', price: 40 }), content({ genre: 'drama', price: 500 }), content({ genre: 'jazz', price: 60 })];
  const requesterHolds = content({ genre: 'jazz' });
  const forged = content({ title: 'Forged' }, generateKeyPair().privateKey);
  let app: FastifyInstance;
  let url: string;

  /** An introduction as the origin would sign it (the origin side is tested in test/terminals). */
  function introduction(o: Partial<IntroductionPayload> = {}, key = origin.privateKey): string {
    const now = clock.now();
    const payload: IntroductionPayload = {
      typ: 'introduction',
      id: 'int_test',
      requesterId: 'trm_requester',
      targetId: selfId,
      iat: now,
      exp: now + INTRODUCTION_TTL_MS,
      profile: profile({ history: [requesterHolds.id], balance: 50 }),
      ...o,
    };
    return encodeToken(payload, key);
  }

  async function get(query = '', auth?: string) {
    const res = await fetch(`${url}/content-list${query}`, { headers: auth === undefined ? {} : { authorization: auth } });
    return { status: res.status, body: (await res.json()) as any };
  }

  const expectRefusal = (res: { status: number; body: any }, status: number, code: string) => {
    assert.equal(res.status, status, JSON.stringify(res.body));
    assert.equal(res.body.error.code, code);
    assert.equal(typeof res.body.error.message, 'string');
    assert.equal(res.body.items, undefined);
  };

  before(async () => {
    writeFileSync(notesFile, JSON.stringify({ news: ['Open late on Friday'], notes: { [held[1]!.id]: 'Owner’s favourite' }, recommendations: [held[1]!.id] }));
    app = createHttpApp({ logger: pino({ level: 'silent' }), resolveToken: async () => null, title: 'agent under test' });
    await app.register(
      contentListRoutes({
        selfId,
        originPublicKey: origin.publicKeyB64,
        clock,
        list: async () => [...held, requesterHolds, forged].map((c) => c.manifest),
        notes: () => loadAgentNotes(notesFile),
      }),
    );
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address();
    url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  });
  after(async () => {
    await app.close();
    rmSync(path.dirname(notesFile), { recursive: true, force: true });
  });

  test('an introduced requester gets its list: news, notes, recommendation first, held and forged items left out', async () => {
    const res = await get('', `Introduction ${introduction()}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.terminalId, selfId);
    assert.equal(res.body.requesterId, 'trm_requester');
    assert.equal(res.body.generatedAt, new Date(clock.now()).toISOString());
    assert.deepEqual(res.body.news, ['Open late on Friday']);
    assert.equal(res.body.more, false);
    // Recommended drama first; then jazz (the requester's genre), cheaper first since 50 does not cover everything.
    assert.deepEqual(ids(res.body.items), [held[1]!.id, held[0]!.id, held[2]!.id]);
    assert.deepEqual(res.body.items[0], {
      id: held[1]!.id,
      title: held[1]!.manifest.body.title,
      genre: 'drama',
      price: 500,
      totalSize: 10 * PIECE,
      affordable: false,
      estimatedSeconds: null,
      note: 'Owner’s favourite',
      recommended: true,
    });
    assert.deepEqual(res.body.items.map((i: ContentListItem) => i.affordable), [false, true, false]);
  });

  test('limit caps the reply and `more` says there is more; a bad limit is refused', async () => {
    const res = await get('?limit=1', `Introduction ${introduction()}`);
    assert.equal(res.status, 200);
    assert.equal(res.body.items.length, 1);
    assert.equal(res.body.more, true);
    expectRefusal(await get('?limit=0', `Introduction ${introduction()}`), 400, 'invalid_request');
  });

  test('no introduction, or a bearer token instead of one: 401 introduction_missing', async () => {
    expectRefusal(await get(), 401, 'introduction_missing');
    expectRefusal(await get('', 'Bearer abc'), 401, 'introduction_missing');
    expectRefusal(await get('', 'Introduction'), 401, 'introduction_missing');
  });

  test('a forged, garbled or other-kind token: 401 introduction_invalid', async () => {
    expectRefusal(await get('', `Introduction ${introduction({}, generateKeyPair().privateKey)}`), 401, 'introduction_invalid');
    expectRefusal(await get('', 'Introduction not.a-token'), 401, 'introduction_invalid');
    // Signed by the origin, but a grant, not an introduction.
    expectRefusal(await get('', `Introduction ${encodeToken({ typ: 'grant', targetId: selfId, exp: clock.now() + 1000 }, origin.privateKey)}`), 401, 'introduction_invalid');
    // Signed by the origin, but missing the profile.
    expectRefusal(await get('', `Introduction ${introduction({ profile: undefined as any })}`), 401, 'introduction_invalid');
  });

  test('an introduction past its expiry on the injected clock: 401 introduction_expired', async () => {
    const token = introduction();
    clock.advance(INTRODUCTION_TTL_MS - 1);
    assert.equal((await get('', `Introduction ${token}`)).status, 200, 'still valid one millisecond before expiry');
    clock.advance(1);
    expectRefusal(await get('', `Introduction ${token}`), 401, 'introduction_expired');
  });

  test('an introduction to another terminal: 403 introduction_wrong_target', async () => {
    expectRefusal(await get('', `Introduction ${introduction({ targetId: 'trm_someone_else' })}`), 403, 'introduction_wrong_target');
  });

  test('a broken notes file does not break the list: it is served without notes', async () => {
    writeFileSync(notesFile, '{"news": ');
    const res = await get('', `Introduction ${introduction()}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.news, []);
    assert.ok(res.body.items.every((i: ContentListItem) => !i.recommended && i.note === null));
  });
});
