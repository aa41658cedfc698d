import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { generateKeyPair, signBytes } from '../../src/core/crypto.ts';
import { loginMessage } from '../../src/terminals/service.ts';
import { testEngines, snapshotTables } from '../helpers/db.ts';
import { recorder } from '../helpers/deliveries.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { beat } from '../terminals/fixture.ts';

// #13 web support: a member's own terminals with their online state (GET /me/terminals),
// and the schedule routes for an account session on a terminal the member owns
// (S0.1, S0.2, S0.5, S0.7): the same answers as the terminal's own routes; every
// refusal (another account's terminal, an unknown one, a terminal session) with its
// code and nothing changed. The origin's clock is a ManualClock; the scheduler is off.

const T0 = Date.parse('2026-03-27T12:00:00Z');
const always = { days: 'daily', start: '00:00', end: '24:00', timeZone: 'UTC' };

const expectError = (res: { status: number; body: any }, status: number, code: string) => {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body?.error?.code, code, JSON.stringify(res.body));
  assert.equal(typeof res.body.error.message, 'string');
};

for (const engine of testEngines()) {
  describe(`web support: member terminals and schedules (${engine.name})`, () => {
    let o: TestOrigin;
    let owner: { token: string; userId: string };
    let stranger: { token: string; userId: string };
    let box: { id: string; token: string };
    let attic: { id: string; token: string };
    let theirs: { id: string; token: string };
    let contentId: string;

    async function terminal(user: { token: string; userId: string }, name: string, region = 'eu-west') {
      const keys = generateKeyPair();
      const reg = await o.registerTerminal(user.token, keys, { name, region });
      assert.equal(reg.status, 201, JSON.stringify(reg.body));
      const id: string = reg.body.terminal.id;
      const ch = await o.call('POST', '/terminals/challenge', { json: { terminalId: id } });
      const login = await o.call('POST', '/terminals/login', {
        json: { credential: reg.body.credential, nonce: ch.body.nonce, signature: signBytes(keys.privateKey, loginMessage(id, ch.body.nonce)) },
      });
      assert.equal(login.status, 200, JSON.stringify(login.body));
      return { id, token: login.body.token as string };
    }

    before(async () => {
      o = await startTestOrigin({ engine, now: T0, config: { holdingsSpotCheck: false, scheduler: false } });
      owner = await o.userWithRoles(['member']);
      stranger = await o.userWithRoles(['member', 'publisher']);
      const pub = await o.userWithRoles(['publisher']);
      contentId = (await o.content.publish({ id: pub.userId, username: pub.username }, { title: 'Alpine Lakes', genre: 'Nature', price: 0 }, Readable.from([randomBytes(3000)]))).id;
      box = await terminal(owner, 'living room');
      o.clock.advance(10);
      attic = await terminal(owner, 'attic', 'eu-north');
      theirs = await terminal(stranger, 'their box');
    });
    after(() => o.close());

    test('GET /me/terminals lists only the member’s own terminals, oldest first, online by the holder registry’s rule', async () => {
      o.clock.set(T0 + 60_000);
      const none = await o.call('GET', '/me/terminals', { token: owner.token });
      assert.equal(none.status, 200, JSON.stringify(none.body));
      assert.deepEqual(none.body, {
        items: [
          { id: box.id, name: 'living room', region: 'eu-west', online: false, lastSeenAt: null },
          { id: attic.id, name: 'attic', region: 'eu-north', online: false, lastSeenAt: null },
        ],
      });

      // A beat not flushed yet already counts (this process holds it).
      assert.equal((await o.call('POST', '/terminals/heartbeat', { token: box.token, json: beat() })).status, 204);
      const beatAt = new Date(o.clock.now()).toISOString();
      let mine = await o.call('GET', '/me/terminals', { token: owner.token });
      assert.deepEqual(mine.body.items[0], { id: box.id, name: 'living room', region: 'eu-west', online: true, lastSeenAt: beatAt });
      assert.equal(mine.body.items[1].online, false);

      // Flushed: read from the table, same answer.
      await o.terminals.flush();
      mine = await o.call('GET', '/me/terminals', { token: owner.token });
      assert.deepEqual(mine.body.items[0], { id: box.id, name: 'living room', region: 'eu-west', online: true, lastSeenAt: beatAt });

      // Offline once the limit passed without a beat (30 s by default); lastSeenAt stays.
      o.clock.advance(o.terminals.offlineAfterMs);
      assert.equal((await o.call('GET', '/me/terminals', { token: owner.token })).body.items[0].online, true, 'at the limit it still counts');
      o.clock.advance(1);
      mine = await o.call('GET', '/me/terminals', { token: owner.token });
      assert.deepEqual(mine.body.items[0], { id: box.id, name: 'living room', region: 'eu-west', online: false, lastSeenAt: beatAt });

      const strangers = await o.call('GET', '/me/terminals', { token: stranger.token });
      assert.deepEqual(strangers.body.items.map((t: any) => t.id), [theirs.id]);
    });

    test('GET /me/terminals refuses a terminal session (403 account_session_required) and no token (401)', async () => {
      expectError(await o.call('GET', '/me/terminals', { token: box.token }), 403, 'account_session_required');
      expectError(await o.call('GET', '/me/terminals'), 401, 'unauthenticated');
    });

    test('S0.1/S0.5/S0.7: an owner’s schedule routes on its terminal answer as the terminal’s own routes', async () => {
      o.clock.set(T0 + 3_600_000);
      const created = await o.call('POST', `/me/terminals/${box.id}/schedules`, { token: owner.token, json: { select: { contentId }, windows: [always], priority: 3 } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(created.body.terminalId, box.id);
      assert.deepEqual(created.body.select, { contentId });
      assert.equal(created.body.priority, 3);
      o.clock.advance(10);
      // The terminal itself sends one too: both routes act on the same schedules.
      const own = await o.call('POST', '/schedules', { token: box.token, json: { select: { genre: 'Nature' }, windows: [always] } });
      assert.equal(own.status, 201, JSON.stringify(own.body));

      const viaMember = await o.call('GET', `/me/terminals/${box.id}/schedules`, { token: owner.token });
      const viaTerminal = await o.call('GET', '/schedules', { token: box.token });
      assert.equal(viaMember.status, 200);
      assert.deepEqual(viaMember.body, viaTerminal.body);
      assert.deepEqual(viaMember.body.schedules.map((s: any) => s.id), [created.body.id, own.body.id]);

      const planMember = await o.call('GET', `/me/terminals/${box.id}/schedules/plan?limit=5`, { token: owner.token });
      const planTerminal = await o.call('GET', '/schedules/plan?limit=5', { token: box.token });
      assert.equal(planMember.status, 200, JSON.stringify(planMember.body));
      assert.deepEqual(planMember.body, planTerminal.body);
      assert.equal(planMember.body.terminalId, box.id);
      assert.deepEqual(planMember.body.items.map((i: any) => i.contentId), [contentId]);

      // A delivery record, written the way the scheduler writes them.
      const rec = recorder(o.schedules.deliveries, () => o.clock.now());
      await rec.due({ terminalId: box.id, contentId, dueAt: o.clock.now() });
      const histMember = await o.call('GET', `/me/terminals/${box.id}/schedules/history?limit=10&contentId=${contentId}`, { token: owner.token });
      const histTerminal = await o.call('GET', `/schedules/history?limit=10&contentId=${contentId}`, { token: box.token });
      assert.equal(histMember.status, 200, JSON.stringify(histMember.body));
      assert.deepEqual(histMember.body, histTerminal.body);
      assert.equal(histMember.body.entries.length, 1);
      assert.equal(histMember.body.entries[0].title, 'Alpine Lakes');

      // The owner's other terminal has its own (empty) list.
      assert.deepEqual((await o.call('GET', `/me/terminals/${attic.id}/schedules`, { token: owner.token })).body, { schedules: [] });

      const removed = await o.call('DELETE', `/me/terminals/${box.id}/schedules/${own.body.id}`, { token: owner.token });
      assert.equal(removed.status, 200, JSON.stringify(removed.body));
      assert.deepEqual(removed.body, { id: own.body.id, removed: true });
      assert.deepEqual((await o.call('GET', '/schedules', { token: box.token })).body.schedules.map((s: any) => s.id), [created.body.id]);
    });

    test('the service’s own refusals come through unchanged (400 with the field’s code, 404 unknown_schedule, 403 schedule_not_yours) and store nothing', async () => {
      const before = await snapshotTables(o.db.db);
      const viaMember = await o.call('POST', `/me/terminals/${box.id}/schedules`, { token: owner.token, json: { select: { genre: 'x' }, windows: [{ ...always, timeZone: 'Mars/Olympus' }] } });
      const viaTerminal = await o.call('POST', '/schedules', { token: box.token, json: { select: { genre: 'x' }, windows: [{ ...always, timeZone: 'Mars/Olympus' }] } });
      expectError(viaMember, 400, 'unknown_time_zone');
      assert.deepEqual(viaMember.body, viaTerminal.body);
      expectError(await o.call('POST', `/me/terminals/${box.id}/schedules`, { token: owner.token, json: { select: { genre: 'x' }, windows: [always], extra: 1 } }), 400, 'invalid_request');
      expectError(await o.call('GET', `/me/terminals/${box.id}/schedules/plan?limit=0`, { token: owner.token }), 400, 'invalid_request');
      expectError(await o.call('DELETE', `/me/terminals/${box.id}/schedules/sch_nothing`, { token: owner.token }), 404, 'unknown_schedule');
      // A schedule of the owner's other terminal, named under this one: the service refuses it.
      const attics = await o.call('POST', `/me/terminals/${attic.id}/schedules`, { token: owner.token, json: { select: { genre: 'x' }, windows: [always] } });
      assert.equal(attics.status, 201);
      const mid = await snapshotTables(o.db.db);
      expectError(await o.call('DELETE', `/me/terminals/${box.id}/schedules/${attics.body.id}`, { token: owner.token }), 403, 'schedule_not_yours');
      assert.deepEqual(await snapshotTables(o.db.db), mid, 'nothing changed');
      assert.equal((await o.call('DELETE', `/me/terminals/${attic.id}/schedules/${attics.body.id}`, { token: owner.token })).status, 200);
      assert.deepEqual(await snapshotTables(o.db.db), before, 'nothing stored');
    });

    test('another account’s terminal: 403 not_your_terminal on every route, nothing read or changed', async () => {
      const mine = await o.call('POST', '/schedules', { token: theirs.token, json: { select: { genre: 'Nature' }, windows: [always] } });
      assert.equal(mine.status, 201);
      const operator = await o.userWithRoles(['operator']);
      const before = await snapshotTables(o.db.db);
      const base = `/me/terminals/${theirs.id}/schedules`;
      const calls: [string, string, unknown?][] = [
        ['GET', base],
        ['POST', base, { select: { genre: 'Nature' }, windows: [always] }],
        ['DELETE', `${base}/${mine.body.id}`],
        ['GET', `${base}/plan`],
        ['GET', `${base}/history`],
      ];
      for (const [method, url, json] of calls) {
        const res = await o.call(method, url, { token: owner.token, ...(json ? { json } : {}) });
        expectError(res, 403, 'not_your_terminal');
        assert.equal(JSON.stringify(res.body).includes(mine.body.id), false, `${method} ${url} tells nothing of the schedule`);
      }
      // An operator is no owner either.
      expectError(await o.call('POST', base, { token: operator.token, json: { select: { genre: 'Nature' }, windows: [always] } }), 403, 'not_your_terminal');
      assert.deepEqual(await snapshotTables(o.db.db), before, 'no row anywhere changed');
      assert.deepEqual((await o.call('GET', '/schedules', { token: theirs.token })).body.schedules.map((s: any) => s.id), [mine.body.id]);
    });

    test('an unknown terminal: 404 unknown_terminal on every route, nothing changed', async () => {
      const before = await snapshotTables(o.db.db);
      const base = '/me/terminals/trm_nobody/schedules';
      for (const [method, url, json] of [['GET', base], ['POST', base, { select: { genre: 'Nature' }, windows: [always] }], ['DELETE', `${base}/sch_x`], ['GET', `${base}/plan`], ['GET', `${base}/history`]] as [string, string, unknown?][]) {
        expectError(await o.call(method, url, { token: owner.token, ...(json ? { json } : {}) }), 404, 'unknown_terminal');
      }
      assert.deepEqual(await snapshotTables(o.db.db), before);
    });

    test('a terminal session — even on its own terminal — is refused with 403 account_session_required, nothing changed', async () => {
      const before = await snapshotTables(o.db.db);
      const base = `/me/terminals/${box.id}/schedules`;
      for (const [method, url, json] of [['GET', base], ['POST', base, { select: { genre: 'Nature' }, windows: [always] }], ['DELETE', `${base}/sch_x`], ['GET', `${base}/plan`], ['GET', `${base}/history`]] as [string, string, unknown?][]) {
        expectError(await o.call(method, url, { token: box.token, ...(json ? { json } : {}) }), 403, 'account_session_required');
        expectError(await o.call(method, url, json ? { json } : {}), 401, 'unauthenticated');
      }
      assert.deepEqual(await snapshotTables(o.db.db), before);
    });
  });
}
