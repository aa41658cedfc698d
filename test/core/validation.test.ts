import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { INT4_MAX } from '../../src/core/validation.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// "Clear refusals, nothing left behind" at the schema layer (src/core/validation.ts,
// issue 11 point 3): JSON bodies are not coerced, query strings are parsed explicitly,
// integers fit their columns, and text refuses control characters — each refusal a
// 400 with its code, and no row or piece file written. The cases are the ones a fuzzing
// run found answering 200 (coercion) or 500 (int4 overflow, NUL); test/fuzz covers the rest.

const TABLES = ['contents', 'transfers', 'grants', 'peer_reports', 'schedules', 'ledger_transfers', 'ledger_purchases', 'holdings'] as const;

for (const engine of testEngines()) {
  describe(`request validation (${engine.name})`, () => {
    let o: TestOrigin;
    let publisher: { token: string };
    let terminal: string;
    let contentId: string;

    const call = (method: string, url: string, json?: unknown, token = terminal) => o.call(method, url, { token, json });

    /** Row counts of the tables a refused request could have written, and the piece files. */
    async function state() {
      const counts = await Promise.all(TABLES.map(async (t) => (await sql<{ n: string }>`select count(*)::text as n from ${sql.table(t)}`.execute(o.db.db)).rows[0].n));
      const files = readdirSync(path.join(o.config.dataDir, 'pieces'), { recursive: true }).length;
      return { counts: Object.fromEntries(TABLES.map((t, i) => [t, counts[i]])), files };
    }

    async function refused(method: string, url: string, json: unknown, code: string, field?: string, token = terminal) {
      const beforeState = await state();
      const res = await call(method, url, json, token);
      assert.equal(res.status, 400, `${method} ${url} ${JSON.stringify(json)} → ${res.status} ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, code, JSON.stringify(res.body));
      if (field) assert.match(res.body.error.message, new RegExp(field), 'the message names the field');
      assert.deepEqual(await state(), beforeState, 'a refusal writes nothing');
    }

    before(async () => {
      o = await startTestOrigin({ engine, now: Date.UTC(2030, 4, 6, 10) });
      const pub = await o.userWithRoles(['publisher', 'member']);
      publisher = pub;
      const res = await o.call('POST', '/contents?title=Clip&genre=news&price=0', { token: pub.token, body: randomBytes(5000), headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(res.status, 201);
      contentId = res.body.id;
      const reg = await o.registerTerminal(pub.token, generateKeyPair(), { name: 'box' });
      terminal = await o.accounts.issueToken(pub.userId, reg.body.terminal.id, 'test', null);
    });
    after(() => o?.close());

    test('JSON bodies are taken as sent: wrong types are refused, not converted', async () => {
      const auto = (extra: Record<string, unknown>) => ({ contentId, ...extra });
      await refused('POST', '/grants/auto', auto({ piecesDone: true }), 'invalid_request', 'piecesDone');
      await refused('POST', '/grants/auto', auto({ piecesDone: '2' }), 'invalid_request', 'piecesDone');
      await refused('POST', '/grants/auto', auto({ maxPeers: '3' }), 'invalid_request', 'maxPeers');
      await refused('POST', '/grants/auto', auto({ have: [null] }), 'invalid_request', 'have');
      await refused('POST', '/grants/auto', auto({ exclude: 'trm_x' }), 'invalid_request', 'exclude');
      await refused('POST', '/grants/auto', auto({ piecesDone: 1.5 }), 'invalid_request', 'piecesDone');
      // The same request with the right types is accepted.
      const ok = await call('POST', '/grants/auto', auto({ piecesDone: 0, maxPeers: 3, exclude: ['trm_x'] }));
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      const t = ok.body.transferId;
      await refused('POST', `/transfers/${t}/progress`, { piecesDone: '1' }, 'invalid_request', 'piecesDone');
      await refused('POST', `/transfers/${t}/progress`, { piecesDone: 0, done: 'true' }, 'invalid_request', 'done');
    });

    test('integers fit their columns: piecesDone above int4 is a 400, not a 500', async () => {
      await refused('POST', '/grants/auto', { contentId, piecesDone: INT4_MAX + 1 }, 'invalid_request', 'piecesDone');
      await refused('POST', '/grants/auto', { contentId, piecesDone: 2 ** 53 }, 'invalid_request', 'piecesDone');
      const ok = await call('POST', '/grants/auto', { contentId });
      await refused('POST', `/transfers/${ok.body.transferId}/progress`, { piecesDone: INT4_MAX + 1 }, 'invalid_request', 'piecesDone');
      // 1e400 is valid JSON that parses as Infinity: refused like any number past the bound.
      const res = await o.call('POST', `/transfers/${ok.body.transferId}/progress`, { token: terminal, body: '{"piecesDone":1e400}', headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 400);
      assert.equal(res.body.error.code, 'invalid_request');
      await refused('POST', '/schedules/deliveries/report', { contentId, bytes: 2 ** 63, state: 'running' }, 'invalid_request', 'bytes');
    });

    test('text refuses control characters with invalid_text, naming the field', async () => {
      const publish = (query: string) =>
        o.call('POST', `/contents?${query}`, { token: publisher.token, body: randomBytes(100), headers: { 'content-type': 'application/octet-stream' } });
      for (const [query, field] of [
        ['title=a%00b&genre=news&price=0', 'title'],
        ['title=ab&genre=n%00ews&price=0', 'genre'],
        ['title=ab&genre=news&price=0&author=x%1By', 'author'],
        ['title=ab&genre=news&price=0&summary=x%00y', 'summary'],
        ['title=a%C2%85b&genre=news&price=0', 'title'],
        ['title=Li%0Ane&genre=news&price=0', 'title'],
      ]) {
        const beforeState = await state();
        const res = await publish(query);
        assert.equal(res.status, 400, query);
        assert.equal(res.body.error.code, 'invalid_text', query);
        assert.match(res.body.error.message, new RegExp(field));
        assert.deepEqual(await state(), beforeState, 'no content row, no piece file');
      }
      // Free text keeps its line breaks and tabs.
      const multi = await publish('title=Lines&genre=news&price=0&summary=one%0Atwo%09three');
      assert.equal(multi.status, 201, JSON.stringify(multi.body));
      assert.equal(multi.body.manifest.body.summary, 'one\ntwo\tthree');

      await refused('POST', '/schedules', { select: { genre: 'ne\u0000ws' }, windows: [{ days: 'weekdays', start: '01:00', end: '05:00', timeZone: 'UTC' }] }, 'invalid_text', 'select/genre');
      await refused('POST', '/schedules', { select: { genre: 'news' }, windows: [{ days: 'weekdays', start: '01:00', end: '05:00', timeZone: 'UTC\u0007' }] }, 'invalid_text', 'windows/0/timeZone');
      await refused('PUT', '/terminals/address', { serveUrl: null, region: 'eu\u0000' }, 'invalid_text', 'region');
      // Keys count as text in free-form parts.
      await refused('POST', '/schedules', { select: { 'gen\u0000re': 'news' }, windows: [] }, 'invalid_text', 'select');
      const path = await o.call('GET', `/contents/${'a'.repeat(10)}%00`);
      assert.equal(path.status, 400);
      assert.equal(path.body.error.code, 'invalid_text');
      const query = await o.call('GET', '/contents?q=a%00b');
      assert.equal(query.body.error.code, 'invalid_text');
    });

    test('query strings are parsed explicitly: a number where one is declared, else a refusal', async () => {
      const ok = await o.call('GET', '/contents?limit=10');
      assert.equal(ok.status, 200);
      for (const bad of ['1e1', '0x10', '+5', ' 5', '5.0', '', 'ten']) {
        const res = await o.call('GET', `/contents?limit=${encodeURIComponent(bad)}`);
        assert.equal(res.status, 400, `limit=${bad}`);
        assert.equal(res.body.error.code, 'invalid_request', `limit=${bad}`);
      }
      const twice = await o.call('GET', '/contents?limit=5&limit=6');
      assert.equal(twice.body.error.code, 'invalid_request');
      // A declared text stays text: a numeric-looking search is a search.
      const q = await o.call('GET', '/contents?q=2024');
      assert.equal(q.status, 200);
      // Path parameters likewise: a piece index is parsed, and past int4 it is refused before any grant check.
      const piece = await o.call('GET', `/pieces/${contentId}/${INT4_MAX + 1}`);
      assert.equal(piece.status, 400);
      assert.equal(piece.body.error.code, 'invalid_request');
    });

    test('refusals before routing have the documented shape', async () => {
      const bad = await o.call('GET', '/contents/%ZZ');
      assert.equal(bad.status, 400);
      assert.deepEqual(Object.keys(bad.body.error).sort(), ['code', 'message']);
      assert.equal(bad.body.error.code, 'invalid_url');
      const long = await o.call('GET', `/contents/${'a'.repeat(200)}`);
      assert.equal(long.status, 414);
      assert.equal(long.body.error.code, 'path_too_long');
    });
  });
}
