import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { contentListRoutes } from '../../src/agent/content-list.ts';
import type { SignedManifest } from '../../src/content/manifest.ts';
import { AppError } from '../../src/core/errors.ts';
import { generateKeyPair, signBytes } from '../../src/core/crypto.ts';
import { createHttpApp } from '../../src/core/http.ts';
import { decodeToken, encodeToken } from '../../src/core/signed-token.ts';
import { introductionRoutes } from '../../src/terminals/introduction-routes.ts';
import {
  checkIntroduction,
  INTRODUCTION_HISTORY_LIMIT,
  INTRODUCTION_TTL_MS,
  IntroductionService,
  type IntroductionPayload,
} from '../../src/terminals/introductions.ts';
import { loginMessage } from '../../src/terminals/service.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { beat } from './fixture.ts';

// S1.14, origin side: the origin vouches for a signed-in terminal to another one with a
// signed introduction carrying the requester's profile; the target checks it offline.

const isRefusal = (status: number, code: string) => (err: unknown) => err instanceof AppError && err.status === status && err.code === code;

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

describe('checkIntroduction (pure)', () => {
  const origin = generateKeyPair();
  const now = Date.UTC(2026, 0, 1);
  const payload = (o: Partial<IntroductionPayload> = {}): IntroductionPayload => ({
    typ: 'introduction',
    id: 'int_1',
    requesterId: 'trm_a',
    targetId: 'trm_b',
    iat: now,
    exp: now + INTRODUCTION_TTL_MS,
    profile: { region: 'eu', network: 'fiber', link: null, history: [], historyComplete: true, balance: null },
    ...o,
  });
  const sign = (p: object, key = origin.privateKey) => encodeToken(p as IntroductionPayload, key);

  test('a valid introduction for this terminal returns its payload', () => {
    const r = checkIntroduction(sign(payload()), origin.publicKeyB64, 'trm_b', now);
    assert.deepEqual(r, { ok: true, payload: payload() });
    // The KeyObject form of the key works the same.
    assert.equal(checkIntroduction(sign(payload()), origin.publicKey, 'trm_b', now).ok, true);
  });

  test('each refusal has its code', () => {
    const refusal = (token: string | undefined, self = 'trm_b', at = now) => {
      const r = checkIntroduction(token, origin.publicKeyB64, self, at);
      return r.ok ? 'accepted' : r.refusal;
    };
    assert.equal(refusal(undefined), 'introduction_missing');
    assert.equal(refusal(''), 'introduction_missing');
    assert.equal(refusal('garbage'), 'introduction_invalid');
    assert.equal(refusal(sign(payload(), generateKeyPair().privateKey)), 'introduction_invalid', 'signed by another key');
    assert.equal(refusal(sign({ ...payload(), typ: 'grant' })), 'introduction_invalid', 'another kind of token');
    const { profile: _dropped, ...noProfile } = payload();
    assert.equal(refusal(sign(noProfile)), 'introduction_invalid', 'no profile');
    assert.equal(refusal(sign(payload({ exp: 'later' as any }))), 'introduction_invalid', 'exp not a number');
    assert.equal(refusal(sign(payload({ profile: { ...payload().profile, link: { downBps: -1 } as any } }))), 'introduction_invalid', 'bad link');
    assert.equal(refusal(sign(payload({ profile: { ...payload().profile, history: [1] as any } }))), 'introduction_invalid', 'bad history');
    assert.equal(refusal(sign(payload()), 'trm_c'), 'introduction_wrong_target');
    assert.equal(refusal(sign(payload()), 'trm_b', now + INTRODUCTION_TTL_MS - 1), 'accepted');
    assert.equal(refusal(sign(payload()), 'trm_b', now + INTRODUCTION_TTL_MS), 'introduction_expired');
    // Tampering with a signed token breaks it.
    const [body, sig] = sign(payload()).split('.');
    const altered = Buffer.from(JSON.stringify({ ...payload(), targetId: 'trm_c' })).toString('base64url');
    assert.equal(refusal(`${altered}.${sig}`, 'trm_c'), 'introduction_invalid');
    assert.equal(refusal(`${body}.${sig}`), 'accepted');
  });
});

for (const engine of testEngines()) {
  describe(`introductions through a test origin (${engine.name})`, () => {
    let o: TestOrigin;
    let owner: { token: string; userId: string };
    let publisher: { userId: string; username: string };
    let intros: IntroductionService;
    let app: FastifyInstance;
    let appUrl: string;

    /** Registers and logs in a terminal through the origin's HTTP API (as test/terminals/api.test.ts does). */
    async function newTerminal(extra: Record<string, unknown> = {}) {
      const keys = generateKeyPair();
      const reg = await o.registerTerminal(owner.token, keys, { name: 'box', region: 'eu-west', network: 'fiber-a', ...extra });
      assert.equal(reg.status, 201, JSON.stringify(reg.body));
      const terminalId: string = reg.body.terminal.id;
      const ch = await o.call('POST', '/terminals/challenge', { json: { terminalId } });
      const login = await o.call('POST', '/terminals/login', {
        json: { credential: reg.body.credential, nonce: ch.body.nonce, signature: signBytes(keys.privateKey, loginMessage(terminalId, ch.body.nonce)) },
      });
      assert.equal(login.status, 200, JSON.stringify(login.body));
      return { id: terminalId, session: login.body.token as string };
    }

    async function publish(genre: string, price: number): Promise<{ id: string; manifest: SignedManifest }> {
      const r = await o.content.publish({ id: publisher.userId, username: publisher.username }, { title: `A ${genre} film`, genre, price }, Readable.from([randomBytes(3000)]));
      return { id: r.id, manifest: r.manifest };
    }

    function decode(token: string): IntroductionPayload {
      const d = decodeToken<IntroductionPayload>(token, o.keys.publicKey, 'introduction');
      assert.ok(d.ok, 'the token verifies with the origin’s public key');
      return d.payload;
    }

    async function introduceOverHttp(session: string | undefined, targetId: string) {
      const res = await fetch(`${appUrl}/terminals/${encodeURIComponent(targetId)}/introductions`, {
        method: 'POST',
        headers: session ? { authorization: `Bearer ${session}` } : {},
      });
      return { status: res.status, body: (await res.json()) as any };
    }

    before(async () => {
      o = await startTestOrigin({ engine });
      owner = await o.userWithRoles(['member']);
      publisher = await o.userWithRoles(['publisher']);
      intros = new IntroductionService({ db: o.db.db, keys: o.keys, clock: o.clock, terminals: o.terminals });
      // The origin does not register the route yet (the lead adds it to src/server.ts): a small app with the origin's sessions does.
      app = createHttpApp({ logger: pino({ level: 'silent' }), resolveToken: o.accounts.resolveToken, title: 'introductions under test' });
      await app.register(introductionRoutes({ introductions: intros }));
      appUrl = await listen(app);
    });
    after(async () => {
      await app.close();
      await o.close();
    });

    test('the introduction names both terminals, expires in 5 minutes on the origin clock and carries the requester’s profile', async () => {
      const requester = await newTerminal({ region: 'eu-west', network: 'fiber-a' });
      const target = await newTerminal({ region: 'us-east', serveUrl: 'http://127.0.0.1:7001' });
      const [a, b] = [await publish('jazz', 10), await publish('drama', 20)];
      await o.terminals.reportHoldings(requester.id, [a.id, b.id], 'replace');

      const intro = await intros.introduce(requester.id, target.id);
      assert.deepEqual(intro.target, { terminalId: target.id, serveUrl: 'http://127.0.0.1:7001' });
      assert.equal(intro.expiresAt, new Date(o.clock.now() + INTRODUCTION_TTL_MS).toISOString());
      const p = decode(intro.token);
      assert.equal(p.requesterId, requester.id);
      assert.equal(p.targetId, target.id);
      assert.equal(p.iat, o.clock.now());
      assert.equal(p.exp, o.clock.now() + INTRODUCTION_TTL_MS);
      assert.deepEqual(p.profile, {
        region: 'eu-west',
        network: 'fiber-a',
        link: null, // no heartbeat yet
        history: p.profile.history, // order checked below
        historyComplete: true,
        balance: null, // the ledger is #4
      });
      assert.deepEqual([...p.profile.history].sort(), [a.id, b.id].sort());

      // The token stops working on the target once the origin's clock passes its expiry.
      assert.equal(checkIntroduction(intro.token, o.keys.publicKeyB64, target.id, o.clock.now()).ok, true);
      assert.deepEqual(checkIntroduction(intro.token, o.keys.publicKeyB64, target.id, o.clock.now() + INTRODUCTION_TTL_MS), {
        ok: false,
        refusal: 'introduction_expired',
      });
    });

    test('the link state is the latest heartbeat, before and after it is flushed to the database', async () => {
      const requester = await newTerminal();
      const target = await newTerminal();
      o.clock.advance(1000);
      await o.terminals.heartbeat(requester.id, beat({ upBps: 3_000_000, downBps: 12_000_000, uptimeRatio: 0.75 }));
      const expected = { upBps: 3_000_000, downBps: 12_000_000, uptimeRatio: 0.75, at: o.clock.now() };
      assert.deepEqual(decode((await intros.introduce(requester.id, target.id)).token).profile.link, expected, 'unflushed beat');
      await o.terminals.flush();
      assert.deepEqual(decode((await intros.introduce(requester.id, target.id)).token).profile.link, expected, 'flushed beat');
      o.clock.advance(1000);
      await o.terminals.heartbeat(requester.id, beat({ downBps: 90_000_000 }));
      assert.equal(decode((await intros.introduce(requester.id, target.id)).token).profile.link?.downBps, 90_000_000, 'a newer beat wins');
    });

    test(`history keeps the ${INTRODUCTION_HISTORY_LIMIT} most recent holdings and says when it is incomplete`, async () => {
      const requester = await newTerminal();
      const target = await newTerminal();
      // Catalog rows straight into the table: publishing 100 contents would only slow the test down.
      const ids = Array.from({ length: INTRODUCTION_HISTORY_LIMIT + 1 }, () => randomBytes(32).toString('hex'));
      await o.db.db
        .insertInto('contents')
        .values(
          ids.map((id) => ({
            id, title: 't', summary: '', author: '', genre: 'g', price: 0, publisher_id: publisher.userId,
            piece_size: 1024, piece_count: 0, total_size: 0, manifest: {} as any, created_at: new Date(o.clock.now()),
          })),
        )
        .execute();
      await o.terminals.reportHoldings(requester.id, ids.slice(0, INTRODUCTION_HISTORY_LIMIT), 'replace');
      o.clock.advance(1000);
      const newest = ids[INTRODUCTION_HISTORY_LIMIT]!;
      await o.terminals.reportHoldings(requester.id, [newest], 'add');

      const p = decode((await intros.introduce(requester.id, target.id)).token);
      assert.equal(p.profile.history.length, INTRODUCTION_HISTORY_LIMIT);
      assert.equal(p.profile.history[0], newest, 'most recently reported first');
      assert.equal(p.profile.historyComplete, false);
      assert.ok(Buffer.byteLength((await intros.introduce(requester.id, target.id)).token) < 12_000, 'fits in an HTTP header');
    });

    test('unknown target is 404 unknown_terminal; introducing a terminal to itself is 400 invalid_introduction', async () => {
      const t = await newTerminal();
      await assert.rejects(intros.introduce(t.id, 'trm_nobody'), isRefusal(404, 'unknown_terminal'));
      await assert.rejects(intros.introduce(t.id, t.id), isRefusal(400, 'invalid_introduction'));
    });

    test('POST /terminals/:id/introductions: the requester is the calling terminal; refusals have their codes', async () => {
      const requester = await newTerminal();
      const target = await newTerminal({ serveUrl: 'http://127.0.0.1:7002' });

      const ok = await introduceOverHttp(requester.session, target.id);
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
      assert.deepEqual(ok.body.target, { terminalId: target.id, serveUrl: 'http://127.0.0.1:7002' });
      assert.equal(decode(ok.body.token).requesterId, requester.id);
      assert.equal(ok.body.expiresAt, new Date(o.clock.now() + INTRODUCTION_TTL_MS).toISOString());

      const expect = (res: { status: number; body: any }, status: number, code: string) => {
        assert.equal(res.status, status, JSON.stringify(res.body));
        assert.equal(res.body.error.code, code);
      };
      expect(await introduceOverHttp(undefined, target.id), 401, 'unauthenticated');
      expect(await introduceOverHttp(owner.token, target.id), 403, 'terminal_required'); // an account, not a terminal
      expect(await introduceOverHttp(requester.session, 'trm_nobody'), 404, 'unknown_terminal');
      expect(await introduceOverHttp(requester.session, requester.id), 400, 'invalid_introduction');
      assert.ok(app.accessTable.some((r) => r.method === 'POST' && r.url === '/terminals/:id/introductions' && r.access === 'terminal'));
    });

    test('end to end: introduced by the origin, the requester gets the target’s list picked for it; another terminal’s token is refused', async () => {
      const requester = await newTerminal();
      const target = await newTerminal();
      const bystander = await newTerminal();
      const heldByRequester = await publish('jazz', 5);
      const jazz = await publish('jazz', 30);
      const drama = await publish('drama', 30);
      await o.terminals.reportHoldings(requester.id, [heldByRequester.id], 'replace');
      await o.terminals.heartbeat(requester.id, beat({ downBps: 8_000_000, recvLoadBps: 0 }));

      // The target's agent: trusts only the origin's public key, as published at GET /origin.
      const originKey = (await o.call('GET', '/origin')).body.publicKey as string;
      const agent = createHttpApp({ logger: pino({ level: 'silent' }), resolveToken: async () => null, title: 'target agent' });
      await agent.register(
        contentListRoutes({
          selfId: target.id,
          originPublicKey: originKey,
          clock: o.clock,
          list: async () => [drama.manifest, jazz.manifest, heldByRequester.manifest],
          notes: async () => ({ news: ['Hello neighbour'], notes: {}, recommendations: [] }),
        }),
      );
      const agentUrl = await listen(agent);
      try {
        const intro = await introduceOverHttp(requester.session, target.id);
        assert.equal(intro.status, 201);
        const res = await fetch(`${agentUrl}/content-list`, { headers: { authorization: `Introduction ${intro.body.token}` } });
        const body = (await res.json()) as any;
        assert.equal(res.status, 200, JSON.stringify(body));
        assert.equal(body.terminalId, target.id);
        assert.equal(body.requesterId, requester.id);
        assert.deepEqual(body.news, ['Hello neighbour']);
        // What the requester holds is left out; its genre (jazz) comes first; 8 Mbit/s gives a time estimate.
        assert.deepEqual(body.items.map((i: any) => i.id), [jazz.id, drama.id]);
        assert.equal(body.items[0].estimatedSeconds, Math.ceil((jazz.manifest.body.totalSize * 8) / 8_000_000));
        assert.equal(body.items[0].affordable, null);

        const other = await introduceOverHttp(requester.session, bystander.id);
        const refused = await fetch(`${agentUrl}/content-list`, { headers: { authorization: `Introduction ${other.body.token}` } });
        assert.equal(refused.status, 403);
        assert.equal(((await refused.json()) as any).error.code, 'introduction_wrong_target');
      } finally {
        await agent.close();
      }
    });
  });
}
