import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { PLATFORM_REVENUE, walletAccount } from '../../src/ledger/accounts.ts';
import type { StoredReceipt } from '../../src/ledger/settlement.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// S1.4, the personal content list (docs/content-list.md): order (placed, preferred genres,
// genres of what was received, newest), the affordable mark against the wallet, the why
// sentences, ratings and comments only from members who received the content, publishers'
// notes, holders online, and placement paid through the ledger (once per requestId,
// refused whole when the wallet cannot pay) that ends on the clock.

const NOON = Date.UTC(2030, 0, 7, 12); // list price at noon UTC (no off-peak rate)
const DAY = 86_400_000;
const PRICE_PER_DAY = 500;
const SIZE = 20_000;

type User = { token: string; userId: string; username: string };

for (const engine of testEngines()) {
  describe(`S1.4 content list (${engine.name})`, () => {
    let o: TestOrigin;
    let pub: User;
    let rival: User;
    let op: User;
    let n = 0;

    before(async () => {
      o = await startTestOrigin({ engine, now: NOON, config: { signupCredit: 0, pieceSize: 16_384, placementPricePerDay: PRICE_PER_DAY } });
      pub = await o.userWithRoles(['publisher']);
      rival = await o.userWithRoles(['publisher']);
      op = await o.userWithRoles(['operator']);
    });
    after(async () => {
      await o?.close();
    });

    const call = (method: string, url: string, token?: string, json?: unknown) => o.call(method, url, { token, json });

    async function publish(by: User, title: string, genre: string, price: number): Promise<string> {
      const res = await o.call('POST', `/contents?title=${encodeURIComponent(title)}&genre=${encodeURIComponent(genre)}&price=${price}`, {
        token: by.token,
        body: randomBytes(SIZE),
        headers: { 'content-type': 'application/octet-stream' },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      o.clock.advance(1000); // distinct creation times: "newest" is well defined
      return res.body.id;
    }

    async function member(funds = 0): Promise<User & { terminalId: string }> {
      const u = await o.userWithRoles(['member']);
      const reg = await o.registerTerminal(u.token, generateKeyPair(), { name: `box${++n}` });
      assert.equal(reg.status, 201, JSON.stringify(reg.body));
      if (funds) await o.fund(u.userId, funds, `fund:${u.userId}:${n}`);
      return { ...u, terminalId: reg.body.terminal.id };
    }

    /** Completes the member's purchase of the content: a receipt for every byte from the origin, settled as ReceiptService does. */
    async function receive(m: { terminalId: string }, contentId: string) {
      const receipt: StoredReceipt = { id: `rc-disc-${++n}`, grant_id: 'g', content_id: contentId, source_id: 'origin', receiver_id: m.terminalId, bytes: SIZE, received_at: new Date(o.clock.now()) };
      const result = await o.db.db.transaction().execute((trx) => o.settlement.settleIn(trx, [receipt]));
      assert.equal(result.unpaid.length, 0, JSON.stringify(result));
    }

    const list = (u: User, query = '') => call('GET', `/me/content-list${query}`, u.token);
    const item = (u: User, id: string) => call('GET', `/me/content-list/${id}`, u.token);
    const available = async (userId: string) => (await o.ledger.balance(walletAccount(userId).id)).available;

    /** Runs a refused call and checks its status, code, and that no row of any table changed. */
    async function refusedWithNothingChanged(run: () => Promise<{ status: number; body: any }>, status: number, code: string) {
      const before = await snapshotTables(o.db.db);
      const res = await run();
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.equal(res.body.error.code, code);
      assert.equal(typeof res.body.error.message, 'string');
      assert.deepEqual(await snapshotTables(o.db.db), before, `${code}: nothing changed`);
    }

    test('S1.4 order: placed first, then preferred genres, then genres of what was received, then newest; each with why', async () => {
      const m = await member(10_000);
      const jazzOld = await publish(pub, 'Jazz old', 'Jazz', 100);
      const rock = await publish(pub, 'Rock', 'rock', 100);
      const folkReceived = await publish(pub, 'Folk received', 'Folk', 100);
      const folkNew = await publish(pub, 'Folk new', 'folk', 100);
      const jazzNew = await publish(pub, 'Jazz new', 'jazz', 100);
      const news = await publish(pub, 'News placed', 'News', 100);
      const newest = await publish(pub, 'Plain newest', 'Misc', 100);
      await receive(m, folkReceived);

      const profile = await call('PUT', '/me/profile', m.token, { preferredGenres: [' Jazz ', 'jazz', 'Opera'] });
      assert.equal(profile.status, 200, JSON.stringify(profile.body));
      assert.deepEqual(profile.body, { preferredGenres: ['Jazz', 'Opera'], historyGenres: ['Folk'] });

      await o.fund(pub.userId, 10_000, `fund:pub:order`);
      const placed = await call('POST', `/contents/${news}/placements`, pub.token, { days: 2, requestId: 'order-placement-1' });
      assert.equal(placed.status, 201, JSON.stringify(placed.body));

      const res = await list(m, '?limit=100');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body.preferredGenres, ['Jazz', 'Opera']);
      const ids = res.body.items.map((i: any) => i.id);
      const mine = [news, jazzNew, jazzOld, folkNew, folkReceived, newest, rock];
      assert.deepEqual(ids.filter((id: string) => mine.includes(id)), mine);
      const by = (id: string) => res.body.items.find((i: any) => i.id === id);
      assert.deepEqual(by(news).placement, { until: new Date(NOON + 7_000 + 2 * DAY).toISOString() });
      assert.match(by(news).why[0], /^Placed first: its publisher paid for preferred placement until /);
      assert.equal(by(jazzNew).why[0], 'In jazz, a genre you prefer.');
      assert.equal(by(jazzNew).preferredGenre, true);
      assert.equal(by(folkNew).why[0], 'In folk, a genre of what you received before.');
      assert.equal(by(folkNew).preferredGenre, false);
      assert.equal(by(newest).why[0], 'Not in a genre you prefer or received before: listed newest first.');
      assert.equal(by(jazzNew).placement, null);
      assert.equal(by(folkReceived).received, true);
      assert.equal(by(folkNew).received, false);

      // Paging: pages of 2 give the same order, nothing repeated or skipped.
      const paged: string[] = [];
      let cursor: string | null = null;
      do {
        const page: any = await list(m, `?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        assert.equal(page.status, 200, JSON.stringify(page.body));
        assert.ok(page.body.items.length <= 2);
        paged.push(...page.body.items.map((i: any) => i.id));
        cursor = page.body.nextCursor;
      } while (cursor);
      assert.deepEqual(paged, ids);

      // q narrows it down, keeping the order.
      const q = await list(m, '?q=jazz');
      assert.deepEqual(q.body.items.map((i: any) => i.id).filter((id: string) => mine.includes(id)), [jazzNew, jazzOld]);
      // A bad cursor is refused.
      const bad = await list(m, '?cursor=bm9wZQ');
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'invalid_cursor');
    });

    test('S1.4 affordable: what it still costs against the available balance; received costs nothing', async () => {
      const m = await member(300);
      const cheap = await publish(pub, 'Cheap', 'Aff', 300);
      const dear = await publish(pub, 'Dear', 'Aff', 301);
      const got = await publish(pub, 'Got', 'Aff', 200);
      const free = await publish(pub, 'Free', 'Aff', 0);
      await receive(m, got); // 300 - 200: 100 left
      assert.equal(await available(m.userId), 100);

      const res = await list(m, '?q=Aff&limit=100');
      assert.equal(res.body.balance.available, 100);
      const by = (id: string) => res.body.items.find((i: any) => i.id === id);
      assert.equal(by(cheap).affordable, false);
      assert.equal(by(dear).affordable, false);
      assert.equal(by(free).affordable, true);
      assert.equal(by(got).affordable, true);
      assert.equal(by(got).received, true);
      assert.ok(by(got).why.includes('You received it already: getting it again costs nothing.'), by(got).why.join(' | '));
      assert.ok(by(cheap).why.includes('Not affordable: its price (300) is more than your available balance (100); top up first.'), by(cheap).why.join(' | '));
      assert.ok(by(free).why.includes('Marked affordable: its price (0) is within your available balance (100).'));

      await o.fund(m.userId, 200, `fund:aff:${m.userId}`);
      const after = await item(m, cheap);
      assert.equal(after.status, 200);
      assert.equal(after.body.affordable, true, 'exactly the price is affordable');
      assert.equal((await item(m, dear)).body.affordable, false, 'one more is not');
    });

    test('S1.4 holders online: terminals holding it whole with a fresh heartbeat, counted until they go quiet', async () => {
      const m = await member();
      const id = await publish(pub, 'Held', 'Hold', 10);
      const holders = [await member(), await member(), await member()];
      const at = new Date(o.clock.now());
      await o.db.db
        .insertInto('holdings')
        .values(holders.map((h, i) => ({ terminal_id: h.terminalId, content_id: id, reported_at: at, pieces: i === 2 ? '0' : null })))
        .execute();
      await o.db.db.updateTable('terminals').set({ last_seen_at: at }).where('id', 'in', [holders[0].terminalId, holders[2].terminalId]).execute();
      let res = await item(m, id);
      assert.equal(res.body.holdersOnline, 1, 'one whole holder online; one offline; one holds a part');
      assert.ok(res.body.why.includes('1 peer holding it is online.'), res.body.why.join(' | '));
      o.clock.advance(10 * 60_000);
      res = await item(m, id);
      assert.equal(res.body.holdersOnline, 0);
      assert.ok(res.body.why.includes('No peer holding it is online: the origin serves it.'));
    });

    test('S1.4 profile: history genres from what was received, most first; bad input refused with nothing changed', async () => {
      const m = await member(10_000);
      const a = await publish(pub, 'H1', 'Blues', 1);
      const b = await publish(pub, 'H2', 'Blues', 1);
      const c = await publish(pub, 'H3', 'Soul', 1);
      await publish(pub, 'H4', 'Funk', 1); // not received
      for (const id of [c, a, b]) await receive(m, id);
      assert.deepEqual((await call('GET', '/me/profile', m.token)).body, { preferredGenres: [], historyGenres: ['Blues', 'Soul'] });
      await refusedWithNothingChanged(() => call('PUT', '/me/profile', m.token, { preferredGenres: Array.from({ length: 21 }, (_, i) => `g${i}`) }), 400, 'invalid_request');
      await refusedWithNothingChanged(() => call('PUT', '/me/profile', m.token, { preferredGenres: ['x'.repeat(41)] }), 400, 'invalid_request');
      await refusedWithNothingChanged(() => call('PUT', '/me/profile', m.token, { preferredGenres: ['   '] }), 400, 'invalid_genre');
      await refusedWithNothingChanged(() => call('PUT', '/me/profile', m.token, { preferredGenres: ['a\u0007'] }), 400, 'invalid_text');
    });

    test('S1.4 ratings: only by a member who received it, not by its publisher; one per member, changeable', async () => {
      const id = await publish(pub, 'Rated', 'Rate', 10);
      const m1 = await member(1000);
      const m2 = await member(1000);
      const stranger = await member(1000);
      await receive(m1, id);
      await receive(m2, id);
      await refusedWithNothingChanged(() => call('PUT', `/contents/${id}/rating`, stranger.token, { stars: 5 }), 403, 'not_received');
      await refusedWithNothingChanged(() => call('PUT', `/contents/${id}/rating`, pub.token, { stars: 5 }), 403, 'own_content');
      await refusedWithNothingChanged(() => call('PUT', `/contents/${'f'.repeat(64)}/rating`, m1.token, { stars: 5 }), 404, 'unknown_content');
      await refusedWithNothingChanged(() => call('PUT', `/contents/${id}/rating`, m1.token, { stars: 6 }), 400, 'invalid_request');

      let r = await call('PUT', `/contents/${id}/rating`, m1.token, { stars: 4 });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body, { average: 4, count: 1, mine: 4 });
      r = await call('PUT', `/contents/${id}/rating`, m1.token, { stars: 2 });
      assert.deepEqual(r.body, { average: 2, count: 1, mine: 2 }, 'changed, not added');
      r = await call('PUT', `/contents/${id}/rating`, m2.token, { stars: 5 });
      assert.deepEqual(r.body, { average: 3.5, count: 2, mine: 5 });
      await call('PUT', `/contents/${id}/rating`, m1.token, { stars: 3 });
      const m3 = await member(1000);
      await receive(m3, id);
      r = await call('PUT', `/contents/${id}/rating`, m3.token, { stars: 5 });
      assert.deepEqual(r.body, { average: 4.3, count: 3, mine: 5 }, 'one decimal');
      assert.deepEqual((await item(stranger, id)).body.rating, { average: 4.3, count: 3, mine: null });
    });

    test('S1.4 comments: only by a member who received it; a requestId posts once; the list shows the latest 3', async () => {
      const id = await publish(pub, 'Talked about', 'Talk', 10);
      const m = await member(1000);
      const stranger = await member(1000);
      await receive(m, id);
      await refusedWithNothingChanged(() => call('POST', `/contents/${id}/comments`, stranger.token, { text: 'hi', requestId: 'stranger-1' }), 403, 'not_received');
      await refusedWithNothingChanged(() => call('POST', `/contents/${id}/comments`, pub.token, { text: 'mine', requestId: 'publisher-1' }), 403, 'not_received');
      await refusedWithNothingChanged(() => call('POST', `/contents/${id}/comments`, m.token, { text: '   ', requestId: 'blank-0001' }), 400, 'invalid_comment');
      await refusedWithNothingChanged(() => call('POST', `/contents/${id}/comments`, m.token, { text: 'x'.repeat(2001), requestId: 'long-0001' }), 400, 'invalid_request');
      await refusedWithNothingChanged(() => call('POST', `/contents/${id}/comments`, m.token, { text: 'short id', requestId: 'abc' }), 400, 'invalid_request');

      const first = await call('POST', `/contents/${id}/comments`, m.token, { text: 'Great\nshow', requestId: 'req-00000001' });
      assert.equal(first.status, 201, JSON.stringify(first.body));
      assert.equal(first.body.author, m.username);
      assert.equal(first.body.text, 'Great\nshow');
      const before = await snapshotTables(o.db.db);
      const again = await call('POST', `/contents/${id}/comments`, m.token, { text: 'Great\nshow', requestId: 'req-00000001' });
      assert.equal(again.status, 200);
      assert.deepEqual(again.body, first.body, 'the same comment');
      assert.deepEqual(await snapshotTables(o.db.db), before, 'posted once');
      await refusedWithNothingChanged(() => call('POST', `/contents/${id}/comments`, m.token, { text: 'other', requestId: 'req-00000001' }), 409, 'request_id_conflict');

      for (let i = 2; i <= 5; i++) {
        o.clock.advance(1000);
        assert.equal((await call('POST', `/contents/${id}/comments`, m.token, { text: `c${i}`, requestId: `req-0000000${i}` })).status, 201);
      }
      const it = await item(stranger, id);
      assert.equal(it.body.commentCount, 5);
      assert.deepEqual(it.body.comments.map((c: any) => c.text), ['c5', 'c4', 'c3']);
      // The public list pages through all of them, newest first.
      const p1 = await call('GET', `/contents/${id}/comments?limit=3`);
      assert.equal(p1.status, 200);
      assert.deepEqual(p1.body.items.map((c: any) => c.text), ['c5', 'c4', 'c3']);
      const p2 = await call('GET', `/contents/${id}/comments?limit=3&cursor=${p1.body.nextCursor}`);
      assert.deepEqual(p2.body.items.map((c: any) => c.text), ['c2', 'Great\nshow']);
      assert.equal(p2.body.nextCursor, null);
      assert.equal((await call('GET', `/contents/${'e'.repeat(64)}/comments`)).body.error.code, 'unknown_content');
    });

    test('S1.4 notes: the publisher of it or an operator; empty clears; anyone else refused with nothing changed', async () => {
      const id = await publish(pub, 'Noted', 'Notes', 10);
      const m = await member();
      await refusedWithNothingChanged(() => call('PUT', `/contents/${id}/notes`, rival.token, { notes: 'not mine' }), 403, 'not_your_content');
      await refusedWithNothingChanged(() => call('PUT', `/contents/${id}/notes`, m.token, { notes: 'member' }), 403, 'forbidden');
      let r = await call('PUT', `/contents/${id}/notes`, pub.token, { notes: 'Director’s cut.\nRemastered.' });
      assert.deepEqual([r.status, r.body], [200, { notes: 'Director’s cut.\nRemastered.' }]);
      assert.equal((await item(m, id)).body.notes, 'Director’s cut.\nRemastered.');
      r = await call('PUT', `/contents/${id}/notes`, op.token, { notes: 'Checked by ops.' });
      assert.deepEqual(r.body, { notes: 'Checked by ops.' });
      r = await call('PUT', `/contents/${id}/notes`, pub.token, { notes: '' });
      assert.deepEqual(r.body, { notes: null });
      assert.equal((await item(m, id)).body.notes, null);
      assert.deepEqual(await refusedWithNothingChanged(() => item(m, 'f'.repeat(64)), 404, 'unknown_content'), undefined);
    });

    test('S1.4 placement: one ledger transfer wallet → platform, shown in the wallet history; the same requestId charges once', async () => {
      const id = await publish(pub, 'Promoted', 'Promo', 10);
      const seller = await o.userWithRoles(['publisher']);
      const own = await publish(seller, 'Seller’s', 'Promo', 10);
      await o.fund(seller.userId, 2000, `fund:seller`);
      await refusedWithNothingChanged(() => call('POST', `/contents/${id}/placements`, seller.token, { days: 1, requestId: 'not-mine-01' }), 403, 'not_your_content');
      // 5 days cost 2500: more than the wallet holds. Nothing moves, nothing is placed.
      await refusedWithNothingChanged(() => call('POST', `/contents/${own}/placements`, seller.token, { days: 5, requestId: 'too-dear-01' }), 409, 'insufficient_balance');
      await refusedWithNothingChanged(() => call('POST', `/contents/${own}/placements`, seller.token, { days: 91, requestId: 'too-long-01' }), 400, 'invalid_request');

      const revenueBefore = (await o.ledger.balance(PLATFORM_REVENUE.id)).posted;
      const res = await call('POST', `/contents/${own}/placements`, seller.token, { days: 3, requestId: 'buy-3-days' });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const now = o.clock.now();
      assert.deepEqual({ ...res.body, id: undefined }, {
        id: undefined,
        contentId: own,
        from: new Date(now).toISOString(),
        until: new Date(now + 3 * DAY).toISOString(),
        days: 3,
        charged: 1500,
        balanceAfter: 500,
      });
      assert.equal(await available(seller.userId), 500);
      assert.equal((await o.ledger.balance(PLATFORM_REVENUE.id)).posted, revenueBefore + 1500);

      const before = await snapshotTables(o.db.db);
      const again = await call('POST', `/contents/${own}/placements`, seller.token, { days: 3, requestId: 'buy-3-days' });
      assert.equal(again.status, 200);
      assert.deepEqual(again.body, res.body, 'the same placement');
      assert.deepEqual(await snapshotTables(o.db.db), before, 'charged once: nothing more moved');
      await refusedWithNothingChanged(() => call('POST', `/contents/${own}/placements`, seller.token, { days: 1, requestId: 'buy-3-days' }), 409, 'request_id_conflict');
      assert.equal(await available(seller.userId), 500);

      const history = await call('GET', '/wallet/history', seller.token);
      const [record] = history.body.entries;
      assert.equal(record.reason, 'placement');
      assert.equal(record.amount, -1500);
      assert.equal(record.contentId, own);
      assert.equal(record.counterpart, PLATFORM_REVENUE.id);
      assert.equal(record.description, `Preferred placement of “Seller’s” in content lists: paid 1500 (placement ${res.body.id})`);

      const listed = await call('GET', `/contents/${own}/placements`, seller.token);
      assert.deepEqual(listed.body.items, [{ ...res.body, active: true }]);
      assert.equal(listed.body.pricePerDay, o.config.placementPricePerDay, 'what a day costs, told before paying');

      // Two requests with one requestId at once: one placement, charged once.
      await o.fund(seller.userId, 1000, 'fund:seller:race');
      const race = await Promise.all([1, 2].map(() => call('POST', `/contents/${own}/placements`, seller.token, { days: 1, requestId: 'race-0000001' })));
      assert.deepEqual(race.map((r) => r.status).sort(), [200, 201], JSON.stringify(race.map((r) => r.body)));
      assert.deepEqual(race[0].body, race[1].body);
      assert.equal(await available(seller.userId), 1000, '1500 − 500 once');
      await refusedWithNothingChanged(() => call('GET', `/contents/${own}/placements`, pub.token), 403, 'not_your_content');
      assert.equal((await call('GET', `/contents/${own}/placements`, op.token)).body.items.length, 2);
    });

    test('S1.4 placement ends on the clock; one bought while another runs starts where it ends', async () => {
      const m = await member();
      const seller = await o.userWithRoles(['publisher']);
      await o.fund(seller.userId, 5000, `fund:seller2`);
      const id = await publish(seller, 'Timed', 'Timed', 10);
      const start = o.clock.now();
      const one = await call('POST', `/contents/${id}/placements`, seller.token, { days: 1, requestId: 'timed-1-day' });
      assert.equal(one.status, 201);
      o.clock.advance(DAY / 2);
      const two = await call('POST', `/contents/${id}/placements`, seller.token, { days: 2, requestId: 'timed-2-days' });
      assert.equal(two.status, 201);
      assert.equal(two.body.from, new Date(start + DAY).toISOString(), 'starts where the running one ends');
      assert.equal(two.body.until, new Date(start + 3 * DAY).toISOString());

      const first = async () => (await list(m, '?limit=100')).body.items.find((i: any) => i.id === id);
      assert.deepEqual((await first()).placement, { until: new Date(start + 3 * DAY).toISOString() });
      o.clock.set(start + DAY); // the first ends, the second begins: still placed
      assert.deepEqual((await first()).placement, { until: new Date(start + 3 * DAY).toISOString() });
      o.clock.set(start + 3 * DAY - 1);
      assert.notEqual((await first()).placement, null);
      o.clock.set(start + 3 * DAY); // until is not included
      const ended = await first();
      assert.equal(ended.placement, null);
      assert.match(ended.why[0], /^Not in a genre/);
      const items = (await call('GET', `/contents/${id}/placements`, seller.token)).body.items;
      assert.deepEqual(items.map((p: any) => p.active), [false, false]);
    });
  });
}
