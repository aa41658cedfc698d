import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { generateKeyPair, signBytes } from '../../src/core/crypto.ts';
import { AppError } from '../../src/core/errors.ts';
import { loginMessage } from '../../src/terminals/service.ts';
import { MAX_SCHEDULES_PER_TERMINAL } from '../../src/schedule/requests.ts';
import { testEngines } from '../helpers/db.ts';
import { recorder } from '../helpers/deliveries.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #5 points 1, 2 and 6 through the origin (S0.1, S0.2, S0.5, S0.7): distribution
// requests over HTTP with every refusal (and nothing stored), each terminal's plan
// (new content appears in the plans of the matching terminals only) and the delivery
// records, through the service the dispatcher writes them with. The clock is the origin's
// ManualClock from T0 on: no sleeping, and the real time of the run does not matter. The
// records here are the test's own: the scheduler, which would write its own for the open
// windows, is off (delivery.test.ts runs it).

const at = (iso: string) => Date.parse(iso);
const H = 3_600_000;
/** Friday 2026-03-27 12:00 UTC: the next Berlin weekday 01:00 is Monday 2026-03-30 01:00 CEST = 2026-03-29 23:00 UTC. */
const T0 = at('2026-03-27T12:00:00Z');
const berlinNights = { days: 'weekdays', start: '01:00', end: '05:00', timeZone: 'Europe/Berlin' };
const always = { days: 'daily', start: '00:00', end: '24:00', timeZone: 'UTC' };

const expectError = (res: { status: number; body: any }, status: number, code: string) => {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body?.error?.code, code, JSON.stringify(res.body));
  assert.equal(typeof res.body.error.message, 'string');
};

const rejectsWith = async (p: Promise<unknown>, status: number, code: string) => {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof AppError, String(e));
    assert.equal(e.code, code, e.message);
    assert.equal(e.status, status);
    return true;
  });
};

for (const engine of testEngines()) {
  describe(`schedules (${engine.name})`, () => {
    let o: TestOrigin;
    let owner: { token: string; userId: string };
    let pub: { userId: string; username: string; token: string };
    let member: { username: string };

    async function terminal(name = 'box') {
      const keys = generateKeyPair();
      const reg = await o.registerTerminal(owner.token, keys, { name });
      assert.equal(reg.status, 201, JSON.stringify(reg.body));
      const id: string = reg.body.terminal.id;
      const ch = await o.call('POST', '/terminals/challenge', { json: { terminalId: id } });
      const login = await o.call('POST', '/terminals/login', {
        json: { credential: reg.body.credential, nonce: ch.body.nonce, signature: signBytes(keys.privateKey, loginMessage(id, ch.body.nonce)) },
      });
      assert.equal(login.status, 200, JSON.stringify(login.body));
      // A terminal session that outlives the clock's jumps across months (a login's lasts 24 h).
      return { id, token: await o.accounts.issueToken(owner.userId, id, 'test terminal session', null) };
    }

    async function publish(meta: { title: string; genre: string }, by = pub): Promise<string> {
      o.clock.advance(1000); // distinct creation times: plans list the newest first
      const res = await o.content.publish({ id: by.userId, username: by.username }, { ...meta, price: 0 }, Readable.from([randomBytes(2000)]));
      return res.id;
    }

    const count = async (terminalId?: string) => {
      let q = o.db.db.selectFrom('schedules').select((eb) => eb.fn.countAll<number>().as('n'));
      if (terminalId) q = q.where('terminal_id', '=', terminalId);
      return Number((await q.executeTakeFirstOrThrow()).n);
    };
    const add = (t: { token: string }, json: unknown) => {
      o.clock.advance(10); // distinct creation times: schedules list oldest first
      return o.call('POST', '/schedules', { token: t.token, json });
    };
    const plan = (t: { token: string }, q = '') => o.call('GET', `/schedules/plan${q}`, { token: t.token });

    before(async () => {
      o = await startTestOrigin({ engine, now: T0, config: { holdingsSpotCheck: false, scheduler: false } });
      owner = await o.userWithRoles(['member']);
      pub = await o.userWithRoles(['publisher']);
      member = await o.userWithRoles(['member']);
    });
    after(() => o.close());

    test('add → list → rm: stored as normalised windows, with the next window', async () => {
      o.clock.set(T0);
      const t = await terminal();
      const content = await publish({ title: 'Alpine Lakes', genre: 'Nature' });
      const res = await add(t, { select: { genre: ' Nature ' }, windows: [{ ...berlinNights, capBytesPerSecond: 2_000_000 }, { days: ['sat', 'SUN'], start: '22:00', end: '06:00', timeZone: 'europe/berlin' }], priority: 7 });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const s = res.body;
      assert.match(s.id, /^sch_/);
      assert.equal(s.terminalId, t.id);
      assert.deepEqual(s.select, { genre: 'Nature' });
      assert.deepEqual(s.windows, [
        { days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '01:00', end: '05:00', timeZone: 'Europe/Berlin', capBytesPerSecond: 2_000_000 },
        { days: ['sat', 'sun'], start: '22:00', end: '06:00', timeZone: 'Europe/Berlin' },
      ]);
      assert.equal(s.priority, 7);
      // Saturday 22:00 CET (21:00 UTC) comes before Monday 01:00 CEST.
      assert.deepEqual(s.next, { start: '2026-03-28T21:00:00.000Z', end: '2026-03-29T04:00:00.000Z', open: false, windowIndex: 1, capBytesPerSecond: null });

      const byContent = await add(t, { select: { contentId: content }, windows: [always] });
      assert.equal(byContent.status, 201);
      assert.deepEqual(byContent.body.select, { contentId: content });
      assert.equal(byContent.body.next.open, true);
      const byPublisher = await add(t, { select: { publisher: pub.username }, windows: [always] });
      assert.equal(byPublisher.status, 201, JSON.stringify(byPublisher.body));
      assert.deepEqual(byPublisher.body.select, { publisherId: pub.userId, publisher: pub.username });
      const byId = await add(t, { select: { publisherId: pub.userId }, windows: [always] });
      assert.deepEqual(byId.body.select, { publisherId: pub.userId, publisher: pub.username });
      const bySeries = await add(t, { select: { series: 'Alpine' }, windows: [always] });
      assert.deepEqual(bySeries.body.select, { series: 'Alpine' });

      const list = await o.call('GET', '/schedules', { token: t.token });
      assert.equal(list.status, 200);
      assert.deepEqual(
        list.body.schedules.map((x: any) => x.id),
        [s.id, byContent.body.id, byPublisher.body.id, byId.body.id, bySeries.body.id],
      );
      assert.deepEqual(list.body.schedules[0], s);

      const rm = await o.call('DELETE', `/schedules/${byId.body.id}`, { token: t.token });
      assert.equal(rm.status, 200);
      assert.deepEqual(rm.body, { id: byId.body.id, removed: true });
      expectError(await o.call('DELETE', `/schedules/${byId.body.id}`, { token: t.token }), 404, 'unknown_schedule');
      assert.equal(await count(t.id), 4);
      // Another terminal sees none of them.
      const other = await terminal('other');
      assert.deepEqual((await o.call('GET', '/schedules', { token: other.token })).body, { schedules: [] });
    });

    test('every refusal has its code, and nothing is stored', async () => {
      const t = await terminal();
      const missing = 'f'.repeat(64);
      const cases: [string, unknown, number, string][] = [
        ['no select', { windows: [always] }, 400, 'empty_selection'],
        ['empty select', { select: {}, windows: [always] }, 400, 'empty_selection'],
        ['blank value', { select: { genre: '   ' }, windows: [always] }, 400, 'empty_selection'],
        ['only nulls', { select: { genre: null, series: null }, windows: [always] }, 400, 'empty_selection'],
        ['two selections', { select: { genre: 'a', series: 'b' }, windows: [always] }, 400, 'invalid_selection'],
        ['tag (no tags exist)', { select: { tag: 'kids' }, windows: [always] }, 400, 'invalid_selection'],
        ['select is text', { select: 'drama', windows: [always] }, 400, 'invalid_selection'],
        ['value not text', { select: { genre: 5 }, windows: [always] }, 400, 'invalid_selection'],
        ['genre too long', { select: { genre: 'g'.repeat(61) }, windows: [always] }, 400, 'invalid_selection'],
        ['bad content id', { select: { contentId: 'xyz' }, windows: [always] }, 400, 'invalid_content_id'],
        ['unknown content', { select: { contentId: missing }, windows: [always] }, 404, 'unknown_content'],
        ['unknown publisher id', { select: { publisherId: 'usr_nobody' }, windows: [always] }, 404, 'unknown_publisher'],
        ['not a publisher', { select: { publisher: member.username }, windows: [always] }, 404, 'unknown_publisher'],
        ['no windows', { select: { genre: 'drama' } }, 400, 'invalid_window'],
        ['empty windows', { select: { genre: 'drama' }, windows: [] }, 400, 'invalid_window'],
        ['windows not a list', { select: { genre: 'drama' }, windows: always }, 400, 'invalid_window'],
        ['bad start', { select: { genre: 'drama' }, windows: [always, { ...always, start: '25:00' }] }, 400, 'invalid_window'],
        ['start = end', { select: { genre: 'drama' }, windows: [{ ...always, start: '05:00', end: '05:00' }] }, 400, 'invalid_window'],
        ['misspelt field', { select: { genre: 'drama' }, windows: [{ ...always, untill: '2026-12-31' }] }, 400, 'invalid_window'],
        ['unknown zone', { select: { genre: 'drama' }, windows: [{ ...always, timeZone: 'Mars/Olympus' }] }, 400, 'unknown_time_zone'],
        ['zero cap', { select: { genre: 'drama' }, windows: [{ ...always, capBytesPerSecond: 0 }] }, 400, 'invalid_cap'],
        ['too many windows', { select: { genre: 'drama' }, windows: Array.from({ length: 11 }, () => always) }, 400, 'too_many_windows'],
        ['priority too high', { select: { genre: 'drama' }, windows: [always], priority: 101 }, 400, 'invalid_priority'],
        ['priority not whole', { select: { genre: 'drama' }, windows: [always], priority: 1.5 }, 400, 'invalid_priority'],
        ['unknown field', { select: { genre: 'drama' }, windows: [always], from: '2026-01-01' }, 400, 'invalid_request'],
      ];
      for (const [what, body, status, code] of cases) {
        const res = await add(t, body);
        assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error.code, code, `${what}: ${JSON.stringify(res.body)}`);
      }
      const bad = await add(t, { select: { genre: 'drama' }, windows: [always, { ...always, start: '25:00' }] });
      assert.deepEqual(bad.body.error.details, { field: 'start', index: 1 });
      assert.equal(await count(t.id), 0);
      // An account token (not a terminal session) is refused before anything is read.
      expectError(await o.call('POST', '/schedules', { token: owner.token, json: { select: { genre: 'drama' }, windows: [always] } }), 403, 'terminal_required');
      assert.equal(await count(t.id), 0);
    });

    test(`at most ${MAX_SCHEDULES_PER_TERMINAL} schedules per terminal, also when requests race`, async () => {
      const t = await terminal();
      for (let i = 0; i < MAX_SCHEDULES_PER_TERMINAL - 2; i++) await o.schedules.requests.create(t.id, { select: { genre: `g${i}` }, windows: [always] });
      const results = await Promise.all(Array.from({ length: 5 }, (_, i) => add(t, { select: { genre: `race${i}` }, windows: [always] })));
      assert.deepEqual(results.map((r) => r.status).sort(), [201, 201, 409, 409, 409]);
      for (const r of results.filter((r) => r.status === 409)) expectError(r, 409, 'too_many_schedules');
      assert.equal(await count(t.id), MAX_SCHEDULES_PER_TERMINAL);
      // Removing one makes room again.
      const [first] = (await o.call('GET', '/schedules', { token: t.token })).body.schedules;
      assert.equal((await o.call('DELETE', `/schedules/${first.id}`, { token: t.token })).status, 200);
      assert.equal((await add(t, { select: { genre: 'again' }, windows: [always] })).status, 201);
    });

    test("rm of another terminal's schedule is refused (403) and leaves it; unknown ids are 404", async () => {
      const a = await terminal('a');
      const b = await terminal('b');
      const s = (await add(a, { select: { genre: 'drama' }, windows: [always] })).body;
      expectError(await o.call('DELETE', `/schedules/${s.id}`, { token: b.token }), 403, 'schedule_not_yours');
      expectError(await o.call('DELETE', '/schedules/sch_doesnotexist', { token: b.token }), 404, 'unknown_schedule');
      assert.equal(await count(a.id), 1);
      await rejectsWith(o.schedules.requests.remove(b.id, s.id), 403, 'schedule_not_yours');
    });

    test('plan: a content published later that matches appears in the plans of the matching terminals only', async () => {
      o.clock.set(T0);
      const genre = `nature-${randomBytes(3).toString('hex')}`;
      const nature = await terminal('nature fan');
      const drama = await terminal('drama fan');
      const byPublisher = await terminal('publisher fan');
      const none = await terminal('no schedule');
      const otherPub = await o.userWithRoles(['publisher']);
      const ownPub = await o.userWithRoles(['publisher']); // no schedule of an earlier test follows this one
      assert.equal((await add(nature, { select: { genre: genre.toUpperCase() }, windows: [berlinNights] })).status, 201);
      assert.equal((await add(drama, { select: { genre: `drama-${genre}` }, windows: [always] })).status, 201);
      assert.equal((await add(byPublisher, { select: { publisherId: otherPub.userId }, windows: [always] })).status, 201);
      for (const t of [nature, drama, byPublisher, none]) assert.deepEqual((await plan(t)).body.items, []);

      const id = await publish({ title: 'Coral Reefs', genre }, ownPub);
      const p = await plan(nature);
      assert.equal(p.status, 200);
      assert.equal(p.body.terminalId, nature.id);
      assert.equal(p.body.truncated, false);
      assert.equal(p.body.items.length, 1);
      const item = p.body.items[0];
      assert.equal(item.contentId, id);
      assert.equal(item.title, 'Coral Reefs');
      assert.equal(item.publisher, ownPub.username);
      assert.equal(item.totalSize, 2000);
      // Due at the next opening: Monday 01:00 Berlin, after the switch to summer time.
      assert.equal(item.dueAt, '2026-03-29T23:00:00.000Z');
      assert.equal(item.windowEnd, '2026-03-30T03:00:00.000Z');
      assert.equal(item.open, false);
      assert.equal(item.deferrals, 0);
      assert.equal(item.deliveryId, null);
      for (const t of [drama, byPublisher, none]) assert.deepEqual((await plan(t)).body.items, [], 'only the matching terminal');
      assert.deepEqual(await o.schedules.planner.matchingTerminals(id), [{ terminalId: nature.id, scheduleIds: [item.scheduleId] }]);

      // The other publisher's new content reaches only its follower.
      const theirs = await publish({ title: 'Other', genre: 'misc' }, otherPub);
      assert.deepEqual((await plan(byPublisher)).body.items.map((i: any) => i.contentId), [theirs]);
      assert.deepEqual((await plan(nature)).body.items.map((i: any) => i.contentId), [id]);

      // The week's openings: five weekday nights, the first after the DST change.
      const openings = p.body.openings;
      assert.equal(openings.length, 5);
      assert.deepEqual(openings[0], { scheduleId: item.scheduleId, windowIndex: 0, start: '2026-03-29T23:00:00.000Z', end: '2026-03-30T03:00:00.000Z', capBytesPerSecond: null });

      // Fetching (partial holding) keeps it due, with the pieces held; holding it whole removes it.
      await o.terminals.reportPieces(nature.id, id, '0');
      const partial = (await plan(nature)).body.items;
      assert.equal(partial.length, 1);
      assert.equal(partial[0].heldPieces, '0');
      const held = await o.call('PUT', '/terminals/holdings', { token: nature.token, json: { contentIds: [id], mode: 'add' } });
      assert.equal(held.status, 200, JSON.stringify(held.body));
      assert.deepEqual((await plan(nature)).body.items, []);
      assert.deepEqual(await o.schedules.planner.matchingTerminals(id), []);
    });

    test('plans of many terminals read together (the scheduler) equal each terminal’s own plan', async () => {
      o.clock.set(T0);
      const tag = randomBytes(3).toString('hex');
      const [a, b, c, none] = [await terminal('a'), await terminal('b'), await terminal('c'), await terminal('none')];
      const ownPub = await o.userWithRoles(['publisher']);
      assert.equal((await add(a, { select: { genre: `g-${tag}` }, windows: [always] })).status, 201);
      assert.equal((await add(a, { select: { series: `Saga ${tag}` }, windows: [berlinNights], priority: 7 })).status, 201);
      assert.equal((await add(b, { select: { publisherId: ownPub.userId }, windows: [berlinNights] })).status, 201);
      assert.equal((await add(c, { select: { genre: `g-${tag}` }, windows: [{ ...always, until: '2026-01-01' }] })).status, 201); // expired: never due
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) ids.push(await publish({ title: `Saga ${tag} ${i}`, genre: i % 2 ? `g-${tag}` : 'other' }, ownPub));
      await o.terminals.reportPieces(a.id, ids[1]!, '0'); // partly held: still due
      await o.call('PUT', '/terminals/holdings', { token: b.token, json: { contentIds: [ids[2]!], mode: 'add' } }); // held whole: not due
      const rec = recorder(o.schedules.deliveries, () => o.clock.now());
      const d = await rec.due({ terminalId: a.id, contentId: ids[3]!, dueAt: T0 - 3_600_000 });
      await rec.end(d, 'deferred', { reason: 'window_closed' }); // aged once
      const many = await o.schedules.planner.plans([a.id, b.id, c.id, none.id, 'trm_unknown']);
      const iso = (ms: number) => new Date(ms).toISOString();
      for (const t of [a, b, c, none]) {
        const own = (await o.schedules.planner.plan(t.id, { limit: 1000 })).items;
        assert.deepEqual(many.get(t.id)!.map((i) => ({ ...i, dueAt: iso(i.dueAt), windowEnd: iso(i.windowEnd) })), own, t.id);
      }
      assert.equal(many.get(a.id)!.length, 4);
      assert.equal(many.get(a.id)!.find((i) => i.contentId === ids[3])!.deferrals, 1);
      assert.equal(many.get(a.id)!.find((i) => i.contentId === ids[1])!.heldPieces, '0');
      assert.deepEqual(many.get(b.id)!.map((i) => i.contentId).sort(), [ids[0], ids[1], ids[3]].sort());
      assert.deepEqual([many.get(c.id), many.get(none.id), many.get('trm_unknown')], [[], [], []]);
    });

    test('plan: the earliest-serving schedule wins; series, priority, expired windows, limit; removal drops items', async () => {
      o.clock.set(T0);
      const t = await terminal();
      const tag = randomBytes(3).toString('hex');
      const series = `Saga ${tag}`;
      const a = await publish({ title: `${series} part 1`, genre: `doc-${tag}` });
      const b = await publish({ title: `${series} part 2`, genre: `other-${tag}` });
      const c = await publish({ title: `Unrelated ${tag}`, genre: `doc-${tag}` });
      const nights = (await add(t, { select: { genre: `doc-${tag}` }, windows: [berlinNights] })).body;
      const now = (await add(t, { select: { series: series.toLowerCase() }, windows: [always], priority: 3 })).body;
      const expired = (await add(t, { select: { contentId: c }, windows: [{ ...always, until: '2026-01-31' }] })).body;
      assert.equal(expired.next, null);

      const p = (await plan(t)).body;
      // Open items first (newest first among equals), then the Monday night one.
      assert.deepEqual(p.items.map((i: any) => [i.contentId, i.scheduleId, i.open]), [
        [b, now.id, true],
        [a, now.id, true],
        [c, nights.id, false],
      ]);
      assert.deepEqual(p.items[1].matchedBy.sort(), [nights.id, now.id].sort());
      assert.equal(p.items[0].dueAt, '2026-03-27T00:00:00.000Z');
      assert.equal(p.items[0].priority, 3);
      assert.deepEqual(p.items[2].matchedBy.sort(), [nights.id, expired.id].sort());

      const limited = (await plan(t, '?limit=2')).body;
      assert.equal(limited.items.length, 2);
      assert.equal(limited.truncated, true);
      expectError(await plan(t, '?limit=0'), 400, 'invalid_request');
      await rejectsWith(o.schedules.planner.plan(t.id, { limit: 5000 }), 400, 'invalid_limit');

      assert.equal((await o.call('DELETE', `/schedules/${now.id}`, { token: t.token })).status, 200);
      assert.deepEqual((await plan(t)).body.items.map((i: any) => [i.contentId, i.scheduleId]), [
        [c, nights.id],
        [a, nights.id],
      ]);
    });

    test('plan across both DST changes (Europe/Berlin): due times and window lengths follow the wall clock', async () => {
      o.clock.set(T0);
      const t = await terminal();
      const tag = randomBytes(3).toString('hex');
      await add(t, { select: { genre: `dst-${tag}` }, windows: [{ days: 'daily', start: '01:00', end: '05:00', timeZone: 'Europe/Berlin' }] });
      await publish({ title: 'Night film', genre: `dst-${tag}` });
      // Saturday 2026-03-28 23:30 UTC = Sunday 00:30 CET; clocks go 02:00 → 03:00 that night.
      o.clock.set(at('2026-03-28T23:30:00Z'));
      let [item] = (await o.schedules.planner.plan(t.id)).items;
      assert.equal(item.dueAt, '2026-03-29T00:00:00.000Z'); // 01:00 CET
      assert.equal(item.windowEnd, '2026-03-29T03:00:00.000Z'); // 05:00 CEST: 3 real hours
      // 2026-10-24 22:30 UTC = Sunday 00:30 CEST; clocks go 03:00 → 02:00 that night.
      o.clock.set(at('2026-10-24T22:30:00Z'));
      [item] = (await o.schedules.planner.plan(t.id)).items;
      assert.equal(item.dueAt, '2026-10-24T23:00:00.000Z'); // 01:00 CEST
      assert.equal(item.windowEnd, '2026-10-25T04:00:00.000Z'); // 05:00 CET: 5 real hours
      // Inside the window it is open, due since its start.
      o.clock.set(at('2026-10-25T03:30:00Z'));
      [item] = (await o.schedules.planner.plan(t.id)).items;
      assert.equal(item.open, true);
      assert.equal(item.dueAt, '2026-10-24T23:00:00.000Z');
      o.clock.set(T0);
    });

    test('records (S0.7): due → running → deferred → next window (aging) → done; the plan and history follow', async () => {
      o.clock.set(T0);
      const t = await terminal();
      const tag = randomBytes(3).toString('hex');
      const s = (await add(t, { select: { genre: `rec-${tag}` }, windows: [berlinNights] })).body;
      const film = await publish({ title: 'Long Film', genre: `rec-${tag}` });
      const other = await publish({ title: 'Short', genre: `rec-${tag}` });
      const [first] = (await plan(t)).body.items.filter((i: any) => i.contentId === film);

      o.clock.set(at(first.dueAt));
      const rec = recorder(o.schedules.deliveries, () => o.clock.now());
      const d1 = await rec.due({ terminalId: t.id, contentId: film, scheduleId: s.id, dueAt: at(first.dueAt), windowEnd: at(first.windowEnd) });
      assert.equal(d1.outcome, 'due');
      assert.equal(d1.deferrals, 0);
      // Idempotent while open.
      assert.equal((await rec.due({ terminalId: t.id, contentId: film, scheduleId: s.id, dueAt: at(first.dueAt) })).id, d1.id);
      let item = (await plan(t)).body.items.find((i: any) => i.contentId === film);
      assert.equal(item.deliveryId, d1.id);
      assert.equal(item.lastOutcome, 'due');

      o.clock.advance(60_000);
      const started = await rec.start(d1, 'origin');
      assert.equal(started.outcome, 'running');
      assert.equal(started.startedAt, new Date(at(first.dueAt) + 60_000).toISOString());
      o.clock.set(at(first.windowEnd));
      const deferred = await rec.end(d1, 'deferred', { reason: 'window_closed', bytes: 1500 });
      assert.deepEqual([deferred.outcome, deferred.reason, deferred.bytes, deferred.endedAt], ['deferred', 'window_closed', 1500, first.windowEnd]);
      assert.equal(deferred.startedAt, started.startedAt);
      // An ended record stays as it ended: later events for its attempt change nothing.
      assert.deepEqual(await rec.end(d1, 'done'), deferred);
      assert.deepEqual(await rec.start(d1, 'origin'), deferred);

      // Still planned, now for the next night, one deferral older.
      item = (await plan(t)).body.items.find((i: any) => i.contentId === film);
      assert.equal(item.deferrals, 1);
      assert.equal(item.deliveryId, null);
      assert.equal(item.lastOutcome, 'deferred');
      assert.equal(item.dueAt, '2026-03-30T23:00:00.000Z');

      o.clock.set(at(item.dueAt));
      const d2 = await rec.due({ terminalId: t.id, contentId: film, scheduleId: s.id, dueAt: at(item.dueAt), windowEnd: at(item.windowEnd) });
      assert.notEqual(d2.id, d1.id);
      assert.equal(d2.deferrals, 1);
      await rec.start(d2, 'peer');
      o.clock.advance(H);
      const done = await rec.end(d2, 'done', { bytes: 500, source: 'peer', sourceId: 'trm_somepeer' });
      assert.deepEqual([done.outcome, done.source, done.sourceId, done.bytes, done.reason], ['done', 'peer', 'trm_somepeer', 500, null]);
      // Delivered: out of the plan, though the terminal has not reported the holding yet.
      assert.deepEqual((await plan(t)).body.items.map((i: any) => i.contentId), [other]);

      // A failure keeps the item, one deferral older; done without a start starts when it ends.
      o.clock.advance(1000);
      const d3 = await rec.due({ terminalId: t.id, contentId: other, dueAt: o.clock.now() });
      o.clock.advance(1000);
      const failed = await rec.end(d3, 'failed', { reason: 'piece_corrupt', source: 'edge' });
      assert.equal(failed.outcome, 'failed');
      o.clock.advance(1000);
      const d4 = await rec.due({ terminalId: t.id, contentId: other, dueAt: o.clock.now() });
      assert.equal(d4.deferrals, 1);
      o.clock.advance(1000);
      const d4done = await rec.end(d4, 'done');
      assert.equal(d4done.startedAt, d4done.endedAt);

      // History, newest first, with titles; paging and a content filter.
      const h = await o.call('GET', '/schedules/history', { token: t.token });
      assert.equal(h.status, 200);
      assert.deepEqual(h.body.entries.map((e: any) => [e.id, e.outcome]), [
        [d4.id, 'done'],
        [d3.id, 'failed'],
        [d2.id, 'done'],
        [d1.id, 'deferred'],
      ]);
      assert.equal(h.body.nextCursor, null);
      const e1 = h.body.entries[3];
      assert.deepEqual(
        { title: e1.title, scheduleId: e1.scheduleId, dueAt: e1.dueAt, windowEnd: e1.windowEnd, bytes: e1.bytes, source: e1.source, reason: e1.reason, deferrals: e1.deferrals },
        { title: 'Long Film', scheduleId: s.id, dueAt: first.dueAt, windowEnd: first.windowEnd, bytes: 1500, source: 'origin', reason: 'window_closed', deferrals: 0 },
      );
      const page1 = (await o.call('GET', '/schedules/history?limit=3', { token: t.token })).body;
      assert.equal(page1.entries.length, 3);
      assert.equal(page1.nextCursor, d2.id);
      const page2 = (await o.call('GET', `/schedules/history?limit=3&before=${page1.nextCursor}`, { token: t.token })).body;
      assert.deepEqual(page2.entries.map((e: any) => e.id), [d1.id]);
      const onlyFilm = (await o.call('GET', `/schedules/history?contentId=${film}`, { token: t.token })).body;
      assert.deepEqual(onlyFilm.entries.map((e: any) => e.id), [d2.id, d1.id]);
      const stranger = await terminal('stranger');
      assert.deepEqual((await o.call('GET', '/schedules/history', { token: stranger.token })).body.entries, []);
      expectError(await o.call('GET', `/schedules/history?before=${d1.id}`, { token: stranger.token }), 400, 'invalid_cursor');
      assert.deepEqual(await o.schedules.deliveries.openDeliveries({ terminalId: t.id }), []);
    });

    test('record events for attempts with no record are refused (unknown_delivery) after the others are written', async () => {
      const t = await terminal();
      const id = await publish({ title: 'X', genre: 'x' });
      const d = await o.schedules.deliveries.recordBatch([{ kind: 'due', attempt: 'a', terminalId: t.id, contentId: id, scheduleId: null, dueAt: T0, windowEnd: null }], new Map());
      await rejectsWith(
        o.schedules.deliveries.recordBatch([{ kind: 'end', attempt: 'nobody', outcome: 'done', reason: null, at: T0, bytes: 5 }], d),
        404,
        'unknown_delivery',
      );
      const still = await o.schedules.deliveries.openDeliveries({ terminalId: t.id });
      assert.deepEqual(still.map((r) => [r.id, r.outcome, r.bytes]), [[d.get('a'), 'due', 0]]);
    });

    test('schedule changes are announced on the event bus', async () => {
      const t = await terminal();
      const seen: unknown[] = [];
      const off = o.bus.subscribe('schedules.changed', (e) => seen.push(e));
      try {
        const s = (await add(t, { select: { genre: 'bus' }, windows: [always] })).body;
        await o.call('DELETE', `/schedules/${s.id}`, { token: t.token });
        assert.deepEqual(seen, [
          { terminalId: t.id, scheduleId: s.id, change: 'added' },
          { terminalId: t.id, scheduleId: s.id, change: 'removed' },
        ]);
      } finally {
        off();
      }
    });
  });
}
