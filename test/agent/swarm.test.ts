import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { Api } from '../../src/core/http-client.ts';
import type { AppError } from '../../src/core/errors.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import type { Agent } from '../../src/agent/agent.ts';
import { decodeRanges, encodeRanges } from '../../src/transfer/piece-ranges.ts';
import { PieceClient, SourceRefusal } from '../../src/transfer/piece-client.ts';
import { systemClock } from '../../src/core/clock.ts';
import { SLICE_HOLD_MS, type Offer } from '../../src/transfer/coordinator.ts';
import { startAgentLab, type AgentLab, type TestAgents } from '../helpers/agents.ts';
import type { TestOrigin } from '../helpers/origin.ts';

// #19, fewer round trips, with real agents on loopback: a peer still fetching says which
// pieces it holds with every answer (and when asked), an agent's refresh doubles as its
// holdings report, and the end game fetches a straggling last piece again elsewhere.

const PIECE = 64 * 1024;
const PIECES = 40;

describe('swarm signals (#19)', () => {
  let origin: TestOrigin;
  let work: string;
  let contentId: string;
  const file = randomBytes(PIECE * PIECES);
  const hashes = Array.from({ length: PIECES }, (_, i) => createHash('sha256').update(file.subarray(i * PIECE, (i + 1) * PIECE)).digest('hex'));
  let agents: TestAgents;
  let lab: AgentLab;

  before(async () => {
    lab = await startAgentLab({ config: { pieceSize: PIECE }, file, price: 100 });
    ({ origin, work, agents, contentId } = lab);
  });
  after(async () => {
    await lab.close();
  });

  /** The grant /grants/auto gives `receiver` for `source` (everyone else excluded). */
  async function grantFor(receiver: Agent, source: Agent) {
    // By ID: an agent started again is a second Agent object for the same terminal.
    const exclude = agents.all.map((a) => a.terminalId).filter((id) => id !== receiver.terminalId && id !== source.terminalId);
    const offer = await receiver.api().post<Offer>('/grants/auto', { contentId, maxPeers: 5, exclude });
    const s = offer.sources.find((x) => x.sourceId === source.terminalId);
    assert.ok(s, `the source is offered: ${JSON.stringify(offer.skipped)}`);
    return s;
  }

  test('a peer still fetching sends the pieces it holds with each piece and each 404, and says them when asked; a whole source does not', async () => {
    // An agent stopped after a few pieces, started again: it holds part of the content.
    const first = await agents.start('part');
    const stop = new AbortController();
    let n = 0;
    await assert.rejects(first.fetch(contentId, { signal: stop.signal, onPiece: () => void (++n === 5 && stop.abort()) }), (e: AppError) => e.code === 'aborted');
    await first.close();
    const part = await agents.start('part');
    const held = [...part.store.get(contentId)!.have].sort((a, b) => a - b);
    assert.ok(held.length >= 5 && held.length < PIECES, `partial: ${held.length}`);
    const ranges = encodeRanges(held);

    const receiver = await agents.start('asker');
    const offer = await grantFor(receiver, part);
    assert.equal(offer.pieces, ranges, 'the origin knows what it reported when it started');
    const keys = (await deviceSession(new Api(origin.url, 'unused'), path.join(work, 'asker'))).keys;
    const client = new PieceClient({ sourceUrl: offer.sourceUrl!, grant: { ...offer.grant, contentId }, receiverKey: keys.privateKey, clock: systemClock });
    try {
      const into = Buffer.alloc(PIECE);
      const got = await client.fetch(held[0], into);
      assert.equal(got.sha256, hashes[held[0]]);
      assert.equal(got.have, ranges, 'a piece comes with what its source holds now');
      const missing = [...Array(PIECES).keys()].find((i) => !held.includes(i))!;
      await assert.rejects(client.fetch(missing, into), (e: SourceRefusal) => e instanceof SourceRefusal && e.code === 'piece_unavailable' && e.have === ranges);
      assert.equal(await client.have(), ranges);

      // A piece it gets later shows in its next answer.
      const fd = openSync(part.store.paths(contentId).data, 'r+');
      writeSync(fd, file, missing * PIECE, PIECE, missing * PIECE);
      closeSync(fd);
      part.store.markPiece(contentId, missing);
      assert.equal((await client.fetch(held[0], into)).have, encodeRanges([...held, missing]));
    } finally {
      await client.close();
    }

    // The origin (a whole source) sends no list with its pieces.
    const fromOrigin = (await receiver.api().post<Offer>('/grants/auto', { contentId, maxPeers: 0 })).sources.at(-1)!;
    const originClient = new PieceClient({ sourceUrl: origin.url, grant: { ...fromOrigin.grant, contentId }, receiverKey: keys.privateKey, clock: systemClock });
    try {
      const got = await originClient.fetch(0, Buffer.alloc(PIECE));
      assert.equal(got.sha256, hashes[0]);
      assert.equal(got.have, undefined);
    } finally {
      await originClient.close();
    }
  });

  test('an agent’s refresh carries its holdings; a claim the origin cannot check is refused with the reason, nothing recorded, and the download goes on', async () => {
    const liar = await agents.start('liar');
    // It claims pieces it does not have: the first claim is spot-checked (its store has nothing to serve).
    const res = await liar.api().post<Offer>('/grants/auto', { contentId, have: '0-3', announce: true, maxPeers: 0 });
    assert.equal(res.announceRefused?.code, 'holding_unproven', JSON.stringify(res.announceRefused));
    assert.match(res.announceRefused!.message, /./);
    assert.equal(res.sources.at(-1)!.sourceId, 'origin', 'the offer comes all the same');
    const row = await origin.db.db.selectFrom('holdings').selectAll().where('terminal_id', '=', liar.terminalId).executeTakeFirst();
    assert.equal(row, undefined, 'nothing recorded');

    // An honest agent's download records its pieces as it goes, with no separate holdings calls.
    const honest = await agents.start('honest');
    // The origin's clock stands still in tests: pieces handed to the earlier receivers' slices would
    // stay theirs for good (coordinator.ts SLICE_HOLD_MS).
    origin.clock.advance(SLICE_HOLD_MS + 1);
    const before = await holdingsCalls();
    // What the origin has on record for it while the download runs.
    const seen = new Set<string | null>();
    let running = true;
    const watching = (async () => {
      while (running) {
        const row = await origin.db.db.selectFrom('holdings').select('pieces').where('terminal_id', '=', honest.terminalId).executeTakeFirst();
        if (row) seen.add(row.pieces);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await honest.fetch(contentId, { order: 'sequential', downRate: 20 * PIECE }); // two seconds: several refreshes
    } finally {
      running = false;
      await watching;
    }
    const partial = [...seen].filter((p): p is string => p !== null);
    assert.ok(partial.length >= 2, `its pieces were on record as they arrived: ${JSON.stringify([...seen])}`);
    assert.ok(partial.every((p) => decodeRanges(p, PIECES)!.length < PIECES), JSON.stringify(partial));
    const end = await origin.db.db.selectFrom('holdings').selectAll().where('terminal_id', '=', honest.terminalId).executeTakeFirstOrThrow();
    assert.equal(end.pieces, null, 'whole at the end');
    assert.equal(await holdingsCalls(), before + 1, 'only the final "add" call (PUT /terminals/holdings)');
  });

  async function holdingsCalls(): Promise<number> {
    const text = await (await fetch(`${origin.url}/metrics`)).text();
    return [...text.matchAll(/^cascade_http_requests_total\{method="PUT",route="\/terminals\/holdings[^"]*",status="\d+"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  }

  test('end game: the last pieces stuck at a slow peer are fetched again from a fast one; the first copy wins and is paid once', async () => {
    const fast = await agents.start('fast');
    await fast.fetch(contentId);
    const slow = await agents.start('slow', { upRate: 16_000 }); // a 64 KiB piece takes 4 s alone, 16 s when four share
    await slow.fetch(contentId);
    const r = await agents.start('late', { downloads: { stallMs: 5000, refreshMs: 200 } });
    const started = Date.now();
    const result = await r.fetch(contentId, { exclude: agents.allBut(fast, slow, r), perPeer: 4, concurrency: 8 });
    const seconds = (Date.now() - started) / 1000;
    assert.ok(readFileSync(r.store.paths(contentId).data).equals(file));
    assert.ok(result.duplicates >= 1, `duplicates: ${result.duplicates}`);
    assert.ok(seconds < 8, `the slow peer did not hold the download up: ${seconds} s (its pieces alone take 16 s)`);
    assert.equal((result.bySource[fast.terminalId] ?? 0) + (result.bySource[slow.terminalId] ?? 0) + (result.bySource.origin ?? 0), file.length, JSON.stringify(result.bySource));
    assert.ok(!result.dropped[slow.terminalId] || result.dropped[slow.terminalId] === 'slow', 'cancelled copies are no fault of the slow peer');
    // Every piece receipted exactly once, to the source whose copy won.
    const receipts = await origin.db.db.selectFrom('receipts').selectAll().where('receiver_id', '=', r.terminalId).execute();
    const pieces = receipts.flatMap((x) => decodeRanges(x.pieces, PIECES)!).sort((a, b) => a - b);
    assert.deepEqual(pieces, [...Array(PIECES).keys()]);
    const paidBytes = (id: string) => receipts.filter((x) => x.source_id === id).reduce((n, x) => n + Number(x.bytes), 0);
    assert.equal(paidBytes(fast.terminalId), result.bySource[fast.terminalId] ?? 0);
    assert.equal(paidBytes(slow.terminalId), result.bySource[slow.terminalId] ?? 0);
  });
});
