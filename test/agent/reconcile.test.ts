import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { startAgent, type Agent } from '../../src/agent/agent.ts';
import { LedgerJournal } from '../../src/agent/ledger-journal.ts';
import { walletAccount } from '../../src/ledger/accounts.ts';
import { DEFAULT_TARIFF } from '../../src/ledger/tariff.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// S1.10 (#4.6): a receiver loses contact with the origin mid-transfer, finishes from a
// peer, keeps its receipts in its durable journal, and reconciles when the origin is
// back: what the origin missed is settled once, nothing twice, disagreements are
// reported, and the terminal's view ends equal to the origin's.

const PIECE = 64 * 1024;
const PIECES = 20;
const PRICE = 1000;

for (const engine of testEngines()) {
  describe(`offline journal and reconciliation on ${engine.name}`, () => {
    let origin: TestOrigin;
    let work: string;
    let contentId: string;
    const agents: Agent[] = [];

    async function agent(name: string, funds: number, downRate?: number): Promise<{ agent: Agent; userId: string }> {
      const user = await origin.userWithRoles(['member']);
      await origin.fund(user.userId, funds, `fund:${name}`);
      const a = await startAgent({
        origin: origin.url,
        token: user.token,
        originKey: origin.keys.publicKeyB64,
        home: path.join(work, name),
        name,
        heartbeatMs: 60_000,
        cpuLoad: () => 0.1,
        downRate,
        downloads: { stallMs: 400, refreshMs: 200, receiptBatch: 4 },
        clock: origin.clock,
        logger: pino({ level: 'silent' }),
      });
      agents.push(a);
      return { agent: a, userId: user.userId };
    }

    /** The origin's record of a receiver's receipts: id → charge. */
    const originRecord = async (terminalId: string) => {
      const rows = await origin.db.db
        .selectFrom('receipts as r')
        .innerJoin('ledger_settlements as s', 's.receipt_id', 'r.id')
        .select(['r.id', 's.status', 's.charge'])
        .where('r.receiver_id', '=', terminalId)
        .execute();
      return new Map(rows.map((r) => [r.id, { status: r.status, charge: r.charge }]));
    };
    const journalView = (a: Agent) => new Map([...a.journal.entries].map(([id, e]) => [id, { status: e.status, charge: e.charge }]));

    before(async () => {
      origin = await startTestOrigin({ engine, config: { pieceSize: PIECE, signupCredit: 0, holdingsSpotCheck: false, tariff: { ...DEFAULT_TARIFF, offPeakRatePercent: 100 } } });
      work = mkdtempSync(path.join(os.tmpdir(), 'cascade-reconcile-'));
      const publisher = await origin.userWithRoles(['publisher']);
      const res = await origin.call('POST', `/contents?title=Offline&genre=test&price=${PRICE}`, {
        token: publisher.token,
        body: randomBytes(PIECE * PIECES),
        headers: { 'content-type': 'application/octet-stream' },
      });
      contentId = res.body.id;
    });
    after(async () => {
      for (const a of agents) await a.close().catch(() => {});
      await origin.close();
      rmSync(work, { recursive: true, force: true });
    });

    test('contact lost mid-transfer: the receiver finishes from a peer, then reconciles exactly once', async () => {
      const seed = await agent('seed', PRICE);
      await seed.agent.fetch(contentId);
      const { agent: receiver, userId } = await agent('receiver', 5000, 512 * 1024);

      // Lose the origin once a few pieces have arrived; the peer keeps serving against its grant.
      let lost: Promise<void> | null = null;
      await receiver.fetch(contentId, {
        onPiece: () => {
          if (!lost && receiver.store.get(contentId)!.have.size >= 4) lost = origin.stop();
        },
      });
      assert.ok(lost, 'the origin went away mid-transfer');
      assert.equal(receiver.store.get(contentId)!.have.size, PIECES);
      const unconfirmed = receiver.journal.unsettled().length;
      assert.ok(unconfirmed > 0, 'some receipts never reached the origin');
      const storedBefore = (await originRecord(receiver.terminalId)).size;

      // The origin comes back (same data, same address); the receiver reconciles.
      await lost;
      await origin.restart();
      const first = await receiver.reconcile();
      assert.equal(first.settled.length, unconfirmed);
      assert.deepEqual(first.conflicts, []);
      const record = await originRecord(receiver.terminalId);
      assert.equal(record.size, storedBefore + unconfirmed);
      assert.ok([...record.values()].every((r) => r.status === 'settled'));
      // The bill follows the verified bytes: the whole price, once.
      assert.equal([...record.values()].reduce((s, r) => s + r.charge, 0), PRICE);
      assert.deepEqual(await origin.ledger.balance(walletAccount(userId).id), { posted: 5000 - PRICE, pending: 0, available: 5000 - PRICE });
      // The terminal's view ends equal to the origin's.
      assert.deepEqual(journalView(receiver), record);
      assert.equal(receiver.journal.lastSync!.balance, 5000 - PRICE);
      // The journal's times are the agent's clock (the origin's ManualClock here), not the machine's.
      const clockNow = new Date(origin.clock.now()).toISOString();
      assert.deepEqual([...new Set([...receiver.journal.entries.values()].map((e) => e.at)), receiver.journal.lastSync!.at], [clockNow, clockNow]);

      // #10 point 3: the end of the transfer, which the origin missed, is told at the next heartbeat:
      // the transfer is closed (not left active with a stale count until someone times it out).
      const transfers = () => origin.db.db.selectFrom('transfers').select(['state', 'pieces_done']).where('receiver_id', '=', receiver.terminalId).where('content_id', '=', contentId).execute();
      assert.deepEqual((await transfers()).map((t) => t.state), ['active']);
      await receiver.heartbeat();
      assert.deepEqual(await transfers(), [{ state: 'done', pieces_done: PIECES }]);

      // Again: nothing to settle, nothing charged twice.
      const again = await receiver.reconcile();
      assert.deepEqual([again.settled, again.conflicts], [[], []]);
      assert.deepEqual(await origin.ledger.balance(walletAccount(userId).id), { posted: 5000 - PRICE, pending: 0, available: 5000 - PRICE });
      assert.ok((await origin.ledger.checkConservation()).ok);

      // The journal is durable: reopened from disk it holds the same view.
      const reopened = new LedgerJournal(path.join(work, 'receiver', 'ledger.journal'), origin.clock);
      assert.deepEqual(new Map([...reopened.entries].map(([id, e]) => [id, { status: e.status, charge: e.charge }])), record);
      reopened.close();
      assert.ok(readFileSync(path.join(work, 'receiver', 'ledger.journal'), 'utf8').includes('"t":"synced"'));
    });

    test('a terminal whose journal disagrees is told so, and adopts the origin’s record', async () => {
      const receiver = agents.find((a) => a.journal.entries.size > 0)!;
      const [someId, entry] = [...receiver.journal.entries][0];
      // The terminal's notes say it was charged one unit less than the origin charged.
      receiver.journal.adopt([{ receiptId: someId, status: 'settled', charge: entry.charge! - 1 }], receiver.journal.lastSync!.balance, []);
      const res = await receiver.reconcile();
      assert.deepEqual(res.conflicts.map((c) => [c.receiptId, c.code]), [[someId, 'charge_mismatch']]);
      assert.equal(receiver.journal.entries.get(someId)!.charge, entry.charge);
      assert.deepEqual(receiver.journal.lastSync!.conflicts.map((c) => c.code), ['charge_mismatch']);
    });
  });
}
