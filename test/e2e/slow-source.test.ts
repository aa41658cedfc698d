import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AgentOptions } from '../../src/agent/agent.ts';
import { startAgentLab, type AgentLab } from '../helpers/agents.ts';

// #10.4 end to end, agents and origin on loopback (one process, real HTTP): a source is
// judged against the upload rate it declared. An honest slow source streams its pieces
// as its tokens allow, is never taken for stalled, and is paid its full uploader share
// for every byte it delivered; a source far slower than it declared is dropped as
// stalled, and that is reported once.

const PIECE = 1024 * 1024;
const PIECES = 12;
const PRICE = 120_000;

describe('sources judged by their declared rate (#10.4)', () => {
  const file = randomBytes(PIECE * PIECES);
  let lab: AgentLab;
  const agent = (name: string, extra: Partial<AgentOptions> = {}) => lab.agents.start(name, extra);
  const reportsAbout = async (sourceId: string) =>
    (await lab.origin.db.db.selectFrom('peer_reports').select(['kind', 'reporter_id']).where('source_id', '=', sourceId).execute()).map((r) => r.kind).sort();

  before(async () => {
    lab = await startAgentLab({ config: { pieceSize: PIECE }, file, price: PRICE });
  });
  after(async () => {
    await lab.close();
  });

  test('one source at 500 kB/s and a fast one, three receivers: the slow one is never reported stalled and is paid its full share for what it delivered', async () => {
    // 500 kB/s shared by 4 upload slots: each 1 MiB piece takes ~8 s. Before #10.4 the source
    // sent no headers until a whole piece's tokens were in, and receivers gave up after 3 s.
    const fast = await agent('fast');
    await fast.fetch(lab.contentId);
    const slow = await agent('slow', { upRate: 500_000, slots: 4 });
    await slow.fetch(lab.contentId); // its cap is on what it sends, not on what it fetches
    // Without #19's end game: it would fetch the slow source's last pieces again from the fast one
    // (and win); this test is about how the slow source itself is judged and paid.
    const receivers = await Promise.all(['r1', 'r2', 'r3'].map((n) => agent(n, { downloads: { stallMs: 3000, refreshMs: 200, endGame: false } })));
    const results = await Promise.all(receivers.map((r) => r.fetch(lab.contentId)));

    for (const r of receivers) assert.ok(readFileSync(r.store.paths(lab.contentId).data).equals(file), 'byte-exact');
    assert.deepEqual(results.map((r) => r.duplicates), [0, 0, 0], 'no end game when a download turns it off');
    const fromSlow = results.reduce((sum, r) => sum + (r.bySource[slow.terminalId] ?? 0), 0);
    assert.ok(fromSlow > 0, `the slow source delivered pieces: ${JSON.stringify(results.map((r) => r.bySource))}`);
    assert.ok(results.every((r) => r.dropped[slow.terminalId] === undefined || r.dropped[slow.terminalId] === 'slow'), JSON.stringify(results.map((r) => r.dropped)));

    // Never reported as anything but an upload that completed; its reputation is clean.
    assert.ok((await reportsAbout(slow.terminalId)).every((k) => k === 'completed'));
    const rep = (await lab.origin.reputation.get([slow.terminalId])).get(slow.terminalId)!;
    assert.deepEqual({ stalls: rep.stalls, badPieces: rep.badPieces }, { stalls: 0, badPieces: 0 });

    // Every receipt naming it is settled, covers what it delivered, and pays it its full share.
    const receipts = await lab.origin.db.db
      .selectFrom('receipts as r')
      .innerJoin('ledger_settlements as s', 's.receipt_id', 'r.id')
      .select(['r.id', 'r.bytes', 's.status', 's.charge'])
      .where('r.source_id', '=', slow.terminalId)
      .execute();
    assert.equal(receipts.reduce((sum, r) => sum + r.bytes, 0), fromSlow, 'receipted bytes = delivered bytes');
    const { uploaderPercent } = lab.origin.config.tariff;
    for (const r of receipts) {
      assert.equal(r.status, 'settled');
      assert.ok(r.charge > 0);
      const upload = await lab.origin.db.db.selectFrom('ledger_transfers').select('amount').where('id', '=', `${r.id}:upload`).executeTakeFirstOrThrow();
      assert.equal(upload.amount, Math.floor((r.charge * uploaderPercent) / 100), `receipt ${r.id}: the full uploader share of its charge`);
    }
  });

  test('a source far slower than the rate it declared is dropped as stalled, reported once, and the transfer completes elsewhere', async () => {
    // It declares 8 MB/s (its heartbeat at start), then crawls at 64 kB/s: bytes keep coming
    // (a chunk every 125 ms), so only the declared rate shows it up.
    const liar = await agent('overstated', { upRate: 8_000_000 });
    await liar.fetch(lab.contentId);
    liar.setUpRate(64_000);
    const r = await agent('r4', { downloads: { stallMs: 2000, refreshMs: 200 } });
    const started = Date.now();
    const result = await r.fetch(lab.contentId, { exclude: lab.agents.allBut(liar, r), signal: AbortSignal.timeout(30_000) });
    assert.ok(readFileSync(r.store.paths(lab.contentId).data).equals(file));
    assert.equal(result.dropped[liar.terminalId], 'stalled');
    assert.ok(Date.now() - started < 15_000, `given up on in time (a piece from it takes a minute): ${Date.now() - started} ms`);
    assert.deepEqual(await reportsAbout(liar.terminalId), ['stalled'], 'one incident, one report');
  });
});
