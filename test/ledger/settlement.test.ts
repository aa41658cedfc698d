import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Api } from '../../src/core/http-client.ts';
import { startAgent, type Agent } from '../../src/agent/agent.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { systemClock } from '../../src/core/clock.ts';
import { PieceClient } from '../../src/transfer/piece-client.ts';
import { makeReceipt } from '../../src/transfer/receipt.ts';
import { PLATFORM_REVENUE, PLATFORM_ROUNDING, royaltyAccount, walletAccount } from '../../src/ledger/accounts.ts';
import { DEFAULT_TARIFF } from '../../src/ledger/tariff.ts';
import { testEngines } from '../helpers/db.ts';
import { submitReceipts } from '../helpers/receipts.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #4.3 settlement from receipts (S1.8): a transfer interrupted after 40 % from holder A
// and finished from holder B pays A for 40 % and B for 60 %, to the unit; the
// publisher gets its royalty; the receiver pays exactly the price; the reservation made
// before the transfer is used up; a receiver who cannot pay is refused before anything
// starts (insufficient_balance).

const PIECE = 64 * 1024;
const PIECES = 10;
const PRICE = 1000;
// Every hour at full rate: this test is about the split, not off-peak pricing (tariff.test.ts is).
const tariff = { ...DEFAULT_TARIFF, offPeakRatePercent: 100 };

for (const engine of testEngines()) {
  describe(`settlement from receipts on ${engine.name}`, () => {
    let origin: TestOrigin;
    let work: string;
    let contentId: string;
    let publisherId: string;
    const agents: Agent[] = [];

    const credit = (userId: string, amount: number, id: string) => origin.fund(userId, amount, id);
    const balance = async (accountId: string) => {
      const b = await origin.ledger.balance(accountId).catch(() => ({ posted: 0, pending: 0, available: 0 }));
      return b;
    };

    async function holder(name: string): Promise<{ agent: Agent; userId: string }> {
      const user = await origin.userWithRoles(['member']);
      await credit(user.userId, PRICE, `test-credit:${name}`);
      const agent = await startAgent({
        origin: origin.url,
        token: user.token,
        originKey: origin.keys.publicKeyB64,
        home: path.join(work, name),
        name,
        heartbeatMs: 60_000,
        cpuLoad: () => 0.1,
        downloads: { stallMs: 400, refreshMs: 200 },
        logger: pino({ level: 'silent' }),
      });
      agents.push(agent);
      await agent.fetch(contentId);
      return { agent, userId: user.userId };
    }

    before(async () => {
      origin = await startTestOrigin({ engine, config: { pieceSize: PIECE, signupCredit: 0, holdingsSpotCheck: false, tariff } });
      work = mkdtempSync(path.join(os.tmpdir(), 'cascade-settle-'));
      const publisher = await origin.userWithRoles(['publisher']);
      publisherId = publisher.userId;
      const res = await origin.call('POST', `/contents?title=Split&genre=test&price=${PRICE}`, {
        token: publisher.token,
        body: randomBytes(PIECE * PIECES),
        headers: { 'content-type': 'application/octet-stream' },
      });
      assert.equal(res.status, 201);
      contentId = res.body.id;
    });
    after(async () => {
      for (const a of agents) await a.close().catch(() => {});
      await origin.close();
      rmSync(work, { recursive: true, force: true });
    });

    test('interrupted after 40 % from A, finished from B: A earns for 40 %, B for 60 %, to the unit', async () => {
      const a = await holder('a');
      const b = await holder('b');
      const member = await origin.userWithRoles(['member']);
      await credit(member.userId, 5000, 'test-credit:receiver');
      const device = await deviceSession(new Api(origin.url, member.token), path.join(work, 'receiver'));
      const api = new Api(origin.url, device.token);
      const before = {
        a: await balance(walletAccount(a.userId).id),
        b: await balance(walletAccount(b.userId).id),
        royalty: await balance(royaltyAccount(publisherId).id),
        revenue: await balance(PLATFORM_REVENUE.id),
        rounding: await balance(PLATFORM_ROUNDING.id),
      };

      // Balance check first: the whole price is reserved before any piece moves.
      const offer = await api.post<{ transferId: string; sources: { sourceId: string; sourceUrl: string | null; grant: { id: string; token: string } }[] }>('/grants/auto', { contentId });
      assert.deepEqual(await balance(walletAccount(member.userId).id), { posted: 5000, pending: -PRICE, available: 5000 - PRICE });

      const fetchFrom = async (sourceId: string, pieces: number[]) => {
        const s = offer.sources.find((o) => o.sourceId === sourceId)!;
        const client = new PieceClient({ sourceUrl: s.sourceUrl!, grant: { id: s.grant.id, token: s.grant.token, contentId }, receiverKey: device.keys.privateKey, clock: systemClock, connections: 1 });
        const served: string[] = [];
        for (const i of pieces) served.push((await client.fetch(i, Buffer.alloc(PIECE))).served!);
        await client.close();
        return makeReceipt(
          { grant: s.grant.id, content: contentId, source: sourceId, receiver: device.terminalId, pieces: `${pieces[0]}-${pieces.at(-1)}`, bytes: pieces.length * PIECE, served },
          device.keys.privateKey,
        );
      };
      const fromA = await fetchFrom(a.agent.terminalId, [0, 1, 2, 3]);
      await a.agent.close(); // A disappears after 40 %
      const fromB = await fetchFrom(b.agent.terminalId, [4, 5, 6, 7, 8, 9]);
      const res = await submitReceipts(api, [fromA, fromB]);
      assert.equal(res.accepted.length, 2, JSON.stringify(res));

      // 1000 × 40 % = 400 → A 200 (50 %), royalty 160 (40 %), fee 40; 1000 × 60 % = 600 → B 300, royalty 240, fee 60.
      const gained = async (id: string, was: { posted: number }) => (await balance(id)).posted - was.posted;
      assert.equal(await gained(walletAccount(a.userId).id, before.a), 200);
      assert.equal(await gained(walletAccount(b.userId).id, before.b), 300);
      assert.equal(await gained(royaltyAccount(publisherId).id, before.royalty), 400);
      assert.equal(await gained(PLATFORM_REVENUE.id, before.revenue), 100);
      assert.equal(await gained(PLATFORM_ROUNDING.id, before.rounding), 0);
      // The receiver paid exactly the price, out of its reservation: nothing is held any more.
      assert.deepEqual(await balance(walletAccount(member.userId).id), { posted: 5000 - PRICE, pending: 0, available: 5000 - PRICE });

      // Handing the same receipts in again settles nothing twice.
      const again = await api.post<{ duplicates: string[] }>('/receipts', { receipts: [fromA, fromB] });
      assert.equal(again.duplicates.length, 2);
      assert.deepEqual(await balance(walletAccount(member.userId).id), { posted: 5000 - PRICE, pending: 0, available: 5000 - PRICE });
      const settled = await origin.db.db.selectFrom('ledger_settlements').selectAll().where('receipt_id', 'in', res.accepted).execute();
      assert.deepEqual(settled.map((s) => [s.status, s.charge]).sort(), [['settled', 400], ['settled', 600]]);
      assert.ok((await origin.ledger.checkConservation()).ok);
    });

    test('a receiver without enough balance is refused before the transfer starts, and nothing is recorded', async () => {
      const member = await origin.userWithRoles(['member']);
      await credit(member.userId, PRICE - 1, 'test-credit:poor');
      const device = await deviceSession(new Api(origin.url, member.token), path.join(work, 'poor'));
      const transfersBefore = await origin.db.db.selectFrom('transfers').select('id').where('receiver_id', '=', device.terminalId).execute();
      const holdsBefore = await origin.db.db.selectFrom('ledger_purchases').selectAll().where('user_id', '=', member.userId).execute();
      const res = await origin.call('POST', '/grants/auto', { token: device.token, json: { contentId } });
      assert.equal(res.status, 402);
      assert.equal(res.body.error.code, 'insufficient_balance');
      assert.deepEqual(res.body.error.details, { needed: PRICE, available: PRICE - 1 });
      assert.deepEqual(await balance(walletAccount(member.userId).id), { posted: PRICE - 1, pending: 0, available: PRICE - 1 });
      assert.equal((await origin.db.db.selectFrom('transfers').select('id').where('receiver_id', '=', device.terminalId).execute()).length, transfersBefore.length);
      assert.deepEqual(await origin.db.db.selectFrom('ledger_purchases').selectAll().where('user_id', '=', member.userId).execute(), holdsBefore);
      // A receiver that already has 60 % only needs to cover the rest.
      const partial = await origin.call('POST', '/grants/auto', { token: device.token, json: { contentId, have: '0-5', piecesDone: 6 } });
      assert.equal(partial.status, 200, JSON.stringify(partial.body));
      assert.deepEqual(await balance(walletAccount(member.userId).id), { posted: PRICE - 1, pending: -400, available: PRICE - 1 - 400 });
    });

    test('a finished transfer releases what it reserved but did not use', async () => {
      const member = await origin.userWithRoles(['member']);
      await credit(member.userId, 3000, 'test-credit:release');
      const device = await deviceSession(new Api(origin.url, member.token), path.join(work, 'release'));
      const api = new Api(origin.url, device.token);
      const offer = await api.post<{ transferId: string }>('/grants/auto', { contentId });
      assert.equal((await balance(walletAccount(member.userId).id)).available, 2000);
      await api.post(`/transfers/${offer.transferId}/progress`, { piecesDone: PIECES, done: true });
      assert.deepEqual(await balance(walletAccount(member.userId).id), { posted: 3000, pending: 0, available: 3000 });
      assert.ok((await origin.ledger.checkConservation()).ok);
    });
  });
}
