import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { Api } from '../../src/core/http-client.ts';
import { PLATFORM_REVENUE, PLATFORM_ROUNDING, royaltyAccount, walletAccount } from '../../src/ledger/accounts.ts';
import { playRef, splitPlay } from '../../src/ledger/plays.ts';
import { DEFAULT_TARIFF, playPrice } from '../../src/ledger/tariff.ts';
import { PLATFORM_PROMOTIONS } from '../../src/ledger/wallets.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { download, fileTarget } from '../../src/transfer/downloader.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// Pay per play (S1.13, docs/ledger.md "Pay per play"): a play on a terminal with no
// download record of the content is charged the play price, split between the
// publisher's royalties and the platform; a retry of the same play charges nothing more.

const PIECE = 64 * 1024;
const tariff = { ...DEFAULT_TARIFF, offPeakRatePercent: 100 };

test('the play split: royalty and fee in the tariff’s ratio, rounded down, the rest to rounding', () => {
  // Default tariff: royalty 40 %, fee 10 % → 4/5 and 1/5.
  assert.deepEqual(splitPlay(123, DEFAULT_TARIFF), { royalty: 98, fee: 24, rounding: 1 });
  assert.deepEqual(splitPlay(100, DEFAULT_TARIFF), { royalty: 80, fee: 20, rounding: 0 });
  assert.deepEqual(splitPlay(1, DEFAULT_TARIFF), { royalty: 0, fee: 0, rounding: 1 });
  assert.deepEqual(splitPlay(10, { ...DEFAULT_TARIFF, uploaderPercent: 100, royaltyPercent: 0 }), { royalty: 0, fee: 10, rounding: 0 });
  assert.deepEqual(splitPlay(10, { ...DEFAULT_TARIFF, uploaderPercent: 0, royaltyPercent: 100 }), { royalty: 10, fee: 0, rounding: 0 });
  for (const t of [DEFAULT_TARIFF, { ...DEFAULT_TARIFF, uploaderPercent: 33, royaltyPercent: 33 }, { ...DEFAULT_TARIFF, uploaderPercent: 0, royaltyPercent: 7 }]) {
    for (let charge = 0; charge < 500; charge++) {
      const s = splitPlay(charge, t);
      assert.equal(s.royalty + s.fee + s.rounding, charge);
      assert.ok(s.royalty >= 0 && s.fee >= 0 && s.rounding >= 0 && s.rounding < 2);
    }
  }
});

for (const engine of testEngines()) {
  describe(`pay per play on ${engine.name}`, () => {
    let origin: TestOrigin;
    let work: string;
    let publisherId: string;
    let publisherToken: string;
    let n = 0;

    before(async () => {
      origin = await startTestOrigin({ engine, config: { pieceSize: PIECE, signupCredit: 0, holdingsSpotCheck: false, tariff } });
      work = mkdtempSync(path.join(os.tmpdir(), 'cascade-plays-'));
      const publisher = await origin.userWithRoles(['publisher']);
      publisherId = publisher.userId;
      publisherToken = publisher.token;
    });
    after(async () => {
      await origin?.close();
      rmSync(work, { recursive: true, force: true });
    });

    async function publish(price: number, pieces = 2): Promise<string> {
      const res = await origin.call('POST', `/contents?title=Play${++n}&genre=test&price=${price}`, {
        token: publisherToken,
        body: randomBytes(PIECE * pieces),
        headers: { 'content-type': 'application/octet-stream' },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.id;
    }

    /** A member with `funds` in the wallet and a registered terminal (device session). */
    async function player(funds: number, name = `p${++n}`) {
      const member = await origin.userWithRoles(['member']);
      const wallet = await origin.wallets.open(member.userId);
      if (funds > 0) {
        await origin.ledger.ensureAccount(PLATFORM_PROMOTIONS);
        const [r] = await origin.ledger.apply([{ id: `test-fund:${member.userId}`, debit: PLATFORM_PROMOTIONS.id, credit: wallet, amount: funds, reason: 'topup' }]);
        assert.equal(r.status, 'created');
      }
      const device = await deviceSession(new Api(origin.url, member.token), path.join(work, name));
      return { ...member, wallet, device, api: new Api(origin.url, device.token) };
    }

    const play = (token: string, contentId: string, playId: string) => origin.call('POST', '/plays', { token, json: { contentId, playId } });
    const posted = async (id: string) => (await origin.ledger.balance(id).catch(() => ({ posted: 0 }))).posted;
    async function snapshot() {
      const db = origin.db.db;
      const accounts = await db.selectFrom('ledger_accounts').selectAll().orderBy('id').execute();
      const transfers = await sql<{ n: number }>`select count(*)::int8 as n from ledger_transfers`.execute(db);
      return { accounts, transfers: transfers.rows[0].n };
    }

    test('not owned: charged exactly the play price, split between royalty, fee and rounding; one play record', async () => {
      const contentId = await publish(1234);
      const p = await player(1000);
      const price = playPrice(1234, tariff);
      assert.equal(price, 123);
      const before = { royalty: await posted(royaltyAccount(publisherId).id), revenue: await posted(PLATFORM_REVENUE.id), rounding: await posted(PLATFORM_ROUNDING.id) };

      const res = await play(p.device.token, contentId, 'play-1');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const ref = playRef(p.device.terminalId, 'play-1');
      assert.deepEqual(res.body, {
        playId: 'play-1',
        contentId,
        charged: 123,
        reason: 'charged',
        created: true,
        parts: { royalty: 98, fee: 24, rounding: 1 },
        balance: 1000 - 123,
        transfers: [`${ref}:royalty`, `${ref}:fee`, `${ref}:rounding`],
      });
      assert.equal(await posted(p.wallet), 877);
      assert.equal((await posted(royaltyAccount(publisherId).id)) - before.royalty, 98);
      assert.equal((await posted(PLATFORM_REVENUE.id)) - before.revenue, 24);
      assert.equal((await posted(PLATFORM_ROUNDING.id)) - before.rounding, 1);
      // The ledger: one linked chain, reason play, content and ref set.
      const rows = await origin.db.db.selectFrom('ledger_transfers').selectAll().where('ref', '=', ref).orderBy('seq').execute();
      assert.deepEqual(
        rows.map((r) => [r.id, r.debit_account_id, r.credit_account_id, r.amount, r.reason, r.content_id, r.linked_group]),
        [
          [`${ref}:royalty`, p.wallet, royaltyAccount(publisherId).id, 98, 'play', contentId, `${ref}:royalty`],
          [`${ref}:fee`, p.wallet, PLATFORM_REVENUE.id, 24, 'play', contentId, `${ref}:royalty`],
          [`${ref}:rounding`, p.wallet, PLATFORM_ROUNDING.id, 1, 'play', contentId, `${ref}:royalty`],
        ],
      );
      // In the wallet's records: one play, not three lines.
      const h = await origin.call('GET', '/wallet/history', { token: p.token });
      const [rec] = h.body.entries;
      assert.deepEqual(
        { reason: rec.reason, amount: rec.amount, balanceAfter: rec.balanceAfter, counterpart: rec.counterpart, contentId: rec.contentId, id: rec.id },
        { reason: 'play', amount: -123, balanceAfter: 877, counterpart: royaltyAccount(publisherId).id, contentId, id: ref },
      );
      // S1.12: the split of the play, in the record and in words.
      assert.deepEqual(
        rec.split.map((x: any) => [x.part, x.amount]),
        [
          ['royalty', 98],
          ['fee', 24],
          ['rounding', 1],
        ],
      );
      assert.match(rec.description, /^Played .+ on a terminal without a download record: 123 \(royalty to \S+ 98, platform fee 24, rounding 1\)$/);
      assert.equal(h.body.entries.length, 2); // the play and the funding
      assert.ok((await origin.ledger.checkConservation()).ok);
    });

    test('the same playId again charges nothing more and answers the first result; a new playId is a new play', async () => {
      const contentId = await publish(1000);
      const p = await player(500);
      const first = await play(p.device.token, contentId, 'again');
      assert.equal(first.body.charged, 100);
      const before = await snapshot();
      const retry = await play(p.device.token, contentId, 'again');
      assert.equal(retry.status, 200);
      assert.deepEqual(retry.body, { ...first.body, created: false });
      assert.deepEqual(await snapshot(), before);
      assert.equal(await posted(p.wallet), 400);
      // Concurrent retries: still one charge.
      const results = await Promise.all([1, 2, 3].map(() => play(p.device.token, contentId, 'burst')));
      assert.ok(results.every((r) => r.status === 200 && r.body.charged === 100));
      assert.equal(results.filter((r) => r.body.created).length, 1);
      assert.equal(await posted(p.wallet), 300);
      // The same playId for another content is a conflict, and charges nothing.
      const other = await publish(1000);
      const snap = await snapshot();
      const conflict = await play(p.device.token, other, 'again');
      assert.deepEqual([conflict.status, conflict.body.error.code], [409, 'play_id_conflict']);
      assert.deepEqual(await snapshot(), snap);
      // Play IDs are per terminal: another terminal of the same user may use the same one.
      const second = await deviceSession(new Api(origin.url, p.token), path.join(work, `second-${p.userId}`));
      const onSecond = await play(second.token, contentId, 'again');
      assert.deepEqual([onSecond.body.charged, onSecond.body.created], [100, true]);
      assert.equal(await posted(p.wallet), 200);
      assert.ok((await origin.ledger.checkConservation()).ok);
    });

    test('owned: a terminal with a download record plays free; another terminal of the same user does not', async () => {
      const contentId = await publish(1000);
      const p = await player(5000);
      await download({ api: p.api, originKey: origin.keys.publicKeyB64, device: p.device, contentId, files: fileTarget(path.join(work, `${contentId}.bin`)) });
      const afterDownload = await posted(p.wallet);
      assert.equal(afterDownload, 4000);
      const before = await snapshot();
      const res = await play(p.device.token, contentId, 'owned-1');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, { playId: 'owned-1', contentId, charged: 0, reason: 'owned', created: false, parts: null, balance: null, transfers: [] });
      assert.deepEqual(await snapshot(), before);
      // The download record is the terminal's, not the user's.
      const other = await deviceSession(new Api(origin.url, p.token), path.join(work, `other-${p.userId}`));
      const charged = await play(other.token, contentId, 'owned-1');
      assert.deepEqual([charged.body.reason, charged.body.charged], ['charged', 100]);
      assert.equal(await posted(p.wallet), 3900);
    });

    test('owned only once paid for (#10): a finished transfer counts as a download record when the content is fully paid, a bare done report does not', async () => {
      const contentId = await publish(1000);
      const p = await player(2000);
      const offer = await origin.call('POST', '/grants/auto', { token: p.device.token, json: { contentId } });
      assert.equal(offer.status, 200, JSON.stringify(offer.body));
      // Not finished yet: charged.
      assert.equal((await play(p.device.token, contentId, 'mid')).body.reason, 'charged');
      // Reporting the transfer done without receiving (or paying for) a byte is no download record.
      await origin.call('POST', `/transfers/${offer.body.transferId}/progress`, { token: p.device.token, json: { piecesDone: 2, done: true } });
      assert.equal((await play(p.device.token, contentId, 'claimed')).body.reason, 'charged');
      // A real download pays for the content: from then on its plays are free here.
      await download({ api: p.api, originKey: origin.keys.publicKeyB64, device: p.device, contentId, files: fileTarget(path.join(work, `owned-${n}.bin`)) });
      const res = await play(p.device.token, contentId, 'done');
      assert.deepEqual([res.body.reason, res.body.charged], ['owned', 0]);
    });

    test('insufficient balance: 402 and nothing changes', async () => {
      const contentId = await publish(1000);
      const p = await player(99);
      const before = await snapshot();
      const res = await play(p.device.token, contentId, 'poor');
      assert.equal(res.status, 402, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'insufficient_balance');
      assert.deepEqual(res.body.error.details, { needed: 100, available: 99 });
      assert.deepEqual(await snapshot(), before);
      // Money held by a reservation is not available either.
      const holder = await player(1050);
      const offer = await origin.call('POST', '/grants/auto', { token: holder.device.token, json: { contentId } });
      assert.equal(offer.status, 200);
      const held = await play(holder.device.token, contentId, 'held');
      assert.deepEqual([held.status, held.body.error.code, held.body.error.details], [402, 'insufficient_balance', { needed: 100, available: 50 }]);
      // After a top-up the same playId goes through.
      await origin.ledger.apply([{ id: `test-more:${p.userId}`, debit: PLATFORM_PROMOTIONS.id, credit: p.wallet, amount: 1, reason: 'topup' }]);
      const ok = await play(p.device.token, contentId, 'poor');
      assert.deepEqual([ok.status, ok.body.charged, ok.body.balance], [200, 100, 0]);
      assert.ok((await origin.ledger.checkConservation()).ok);
    });

    test('a play price that rounds to 0 is free; refusals: unknown content, malformed input, not a terminal', async () => {
      const cheap = await publish(9);
      const p = await player(0);
      const before = await snapshot();
      const free = await play(p.device.token, cheap, 'cheap');
      assert.deepEqual([free.status, free.body.reason, free.body.charged], [200, 'free', 0]);
      const unknown = await play(p.device.token, 'f'.repeat(64), 'x');
      assert.deepEqual([unknown.status, unknown.body.error.code], [404, 'unknown_content']);
      for (const body of [{ contentId: 'nope', playId: 'x' }, { contentId: cheap }, { contentId: cheap, playId: 'a:b' }, { contentId: cheap, playId: 'x'.repeat(101) }]) {
        const res = await origin.call('POST', '/plays', { token: p.device.token, json: body });
        assert.deepEqual([res.status, res.body.error.code], [400, 'invalid_request'], JSON.stringify(body));
      }
      const account = await play(p.token, cheap, 'x');
      assert.deepEqual([account.status, account.body.error.code], [403, 'terminal_required']);
      assert.deepEqual(await snapshot(), before);
      assert.equal(walletAccount(p.userId).id, p.wallet);
    });
  });
}
