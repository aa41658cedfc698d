import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';
import { Api } from '../../src/core/http-client.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import type { Agent, AgentOptions } from '../../src/agent/agent.ts';
import { decodeRanges } from '../../src/transfer/piece-ranges.ts';
import { describeSources } from '../../src/transfer/source-report.ts';
import { startAgentLab, type AgentLab, type TestAgents } from '../helpers/agents.ts';
import type { TestOrigin } from '../helpers/origin.ts';

// #3 with real HTTP between an origin and agents on loopback (in one process):
// agents serve each other (S1.6), the origin picks holders (S1.5) and is the last
// resort, bad and stalling peers are dropped and reported (S1.7).

const PIECE = 64 * 1024;
const PIECES = 40;

describe('peer-assisted distribution', () => {
  let origin: TestOrigin;
  let work: string;
  let contentId: string;
  const file = randomBytes(PIECE * PIECES);
  let agents: TestAgents;
  let lab: AgentLab;
  const agent = (name: string, extra: Partial<AgentOptions> = {}) => agents.start(name, extra);

  const receiptsOf = (receiver: string) => origin.db.db.selectFrom('receipts').selectAll().where('receiver_id', '=', receiver).execute();

  before(async () => {
    lab = await startAgentLab({ config: { pieceSize: PIECE }, file, price: 100 });
    ({ origin, work, agents, contentId } = lab);
  });
  after(async () => {
    await lab.close();
  });

  test('the first agent fetches from the origin; the next one from it, the origin only as last resort', async () => {
    const a = await agent('a');
    const first = await a.fetch(contentId);
    assert.deepEqual(Object.keys(first.bySource), ['origin']);
    assert.ok(readFileSync(a.store.paths(contentId).data).equals(file));

    const b = await agent('b');
    const second = await b.fetch(contentId);
    assert.ok(readFileSync(b.store.paths(contentId).data).equals(file));
    assert.equal(second.bySource[a.terminalId], file.length, `all from the peer: ${JSON.stringify(second.bySource)}`);
    assert.equal(second.bySource.origin ?? 0, 0);
    // Receipts name the peer as the source of every piece, exactly once.
    const receipts = await receiptsOf(b.terminalId);
    const pieces = receipts.flatMap((r) => decodeRanges(r.pieces, PIECES)!).sort((x, y) => x - y);
    assert.deepEqual(pieces, [...Array(PIECES).keys()]);
    assert.ok(receipts.every((r) => r.source_id === a.terminalId));
  });

  test('automatic selection explains itself and never offers the requester, offline or excluded holders', async () => {
    const c = await agent('c');
    // The agent's own device session (cached in its home) asks as that terminal.
    const session = await deviceSession(new Api(origin.url, 'unused'), path.join(work, 'c'));
    const res = await origin.call('POST', '/grants/auto', { token: session.token, json: { contentId } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const ids = res.body.sources.map((s: any) => s.sourceId);
    assert.equal(ids.at(-1), 'origin', 'the origin comes last');
    assert.ok(ids.includes(agents.all[0].terminalId) && ids.includes(agents.all[1].terminalId));
    assert.ok(!ids.includes(c.terminalId), 'never the requester itself');
    for (const s of res.body.sources.slice(0, -1)) {
      assert.ok(s.why.length > 0 && s.why.some((w: string) => /same network/.test(w)), JSON.stringify(s.why));
      assert.equal(typeof s.score, 'number');
    }
    const excluded = await origin.call('POST', '/grants/auto', { token: session.token, json: { contentId, transferId: res.body.transferId, exclude: [agents.all[0].terminalId] } });
    assert.ok(!excluded.body.sources.some((s: any) => s.sourceId === agents.all[0].terminalId));
  });

  test('a serving terminal cannot claim content it does not have: the origin spot-checks a piece', async () => {
    const pretender = await agent('pretender');
    const session = await deviceSession(new Api(origin.url, 'unused'), path.join(work, 'pretender'));
    const claim = await origin.call('PUT', '/terminals/holdings', { token: session.token, json: { contentIds: [contentId], mode: 'add' } });
    assert.equal(claim.status, 400);
    assert.equal(claim.body.error.code, 'holding_unproven');
    const partial = await origin.call('PUT', `/terminals/holdings/${contentId}/pieces`, { token: session.token, json: { pieces: '0-3' } });
    assert.equal(partial.body.error.code, 'holding_unproven');
    const rows = await origin.db.db.selectFrom('holdings').selectAll().where('terminal_id', '=', pretender.terminalId).execute();
    assert.deepEqual(rows, [], 'nothing recorded');
    // Once it really has the content, the same claim passes the check.
    await pretender.fetch(contentId);
    const holders = await origin.terminals.holders(contentId);
    assert.ok(holders.some((h) => h.terminalId === pretender.terminalId && h.pieces === null));
  });

  const allBut = (...keep: Agent[]) => agents.allBut(...keep);

  test('a peer serving bad bytes is dropped, reported, loses reputation and is not offered again', async () => {
    const liar = await agent('liar');
    await liar.fetch(contentId);
    // Corrupt the liar's copy on disk: it will serve bytes that fail verification.
    const fd = openSync(liar.store.paths(contentId).data, 'r+');
    for (let i = 0; i < PIECES; i++) writeSync(fd, Buffer.from('evil'), 0, 4, i * PIECE + 7);
    closeSync(fd);
    const r = await agent('r');
    // The liar is the only peer on offer; the origin is the last resort.
    const result = await r.fetch(contentId, { exclude: allBut(liar, r) });
    assert.ok(readFileSync(r.store.paths(contentId).data).equals(file), 'byte-exact despite the liar');
    assert.equal(result.dropped[liar.terminalId], 'bad_piece');
    assert.ok(result.badPieces >= 1);
    const rep = await origin.reputation.get([liar.terminalId]);
    assert.equal(rep.get(liar.terminalId)!.badPieces, 1, 'one incident, reported once (not again in the final report)');
    assert.ok((await origin.reputation.excludedFor(contentId, r.terminalId)).has(liar.terminalId));
    // Nothing the liar sent was accepted, so no receipt names it.
    assert.ok((await receiptsOf(r.terminalId)).every((x) => x.source_id !== liar.terminalId));
    // And the origin does not offer it to this receiver again for this content.
    const session = await deviceSession(new Api(origin.url, 'unused'), path.join(work, 'r'));
    const again = await origin.call('POST', '/grants/auto', { token: session.token, json: { contentId } });
    assert.ok(!again.body.sources.some((s: any) => s.sourceId === liar.terminalId));
  });

  test('a stalling peer is retried briefly, dropped, reported, and the transfer completes elsewhere', async () => {
    const snail = await agent('snail');
    await snail.fetch(contentId);
    const r2 = await agent('r2');
    // Its link now crawls at 1 kB/s (a 64 KiB piece would take a minute), while its last
    // heartbeat said it was fine: the origin offers it, and the receiver finds out.
    snail.setUpRate(1000);
    const started = Date.now();
    const result = await r2.fetch(contentId, { exclude: allBut(snail, r2) });
    assert.ok(readFileSync(r2.store.paths(contentId).data).equals(file));
    assert.equal(result.dropped[snail.terminalId], 'stalled');
    assert.equal(result.bySource[snail.terminalId] ?? 0, 0);
    assert.ok(Date.now() - started < 15_000, 'the stall did not hold the transfer up for long (a piece from the snail takes a minute)');
    const rep = await origin.reputation.get([snail.terminalId]);
    assert.equal(rep.get(snail.terminalId)!.stalls, 1, 'one incident, reported once (not again in the final report)');
  });

  test('S1.5: a holder whose upload slots are all in use is skipped, and the receiver is told why in words', async () => {
    const full = await agent('full');
    await full.fetch(contentId);
    // Its heartbeat says all 4 slots were busy since the previous one (a CPU at 0 changes nothing).
    const session = await deviceSession(new Api(origin.url, 'unused'), path.join(work, 'full'));
    const hb = await origin.call('POST', '/terminals/heartbeat', {
      token: session.token,
      json: { uptimeRatio: 1, upBps: 1e10, downBps: 1e10, sendLoadBps: 0, recvLoadBps: 0, cpu: 0, slots: 4, slotsBusy: 4 },
    });
    assert.equal(hb.status, 204, JSON.stringify(hb.body));
    const r3 = await agent('r3');
    const result = await r3.fetch(contentId, { exclude: allBut(full, r3) });
    assert.ok(readFileSync(r3.store.paths(contentId).data).equals(file));
    assert.deepEqual(Object.keys(result.bySource), ['origin']);
    const why = 'saturated: all 4 of its upload slots were in use since its last heartbeat';
    assert.deepEqual(
      result.skipped.find((x) => x.sourceId === full.terminalId),
      { sourceId: full.terminalId, reason: 'saturated', why },
    );
    assert.ok(!result.skipped.some((x) => x.sourceId === r3.terminalId), 'the receiver itself is not news to it');
    const lines = describeSources(result);
    assert.match(lines[0]!, /^Served by the origin: 2\.6 MB\.$/);
    assert.equal(lines[1], 'Only the origin served. Other holders:');
    assert.ok(lines.includes(`  terminal ${full.terminalId}: not offered: ${why}`), lines.join('\n'));
  });
});
