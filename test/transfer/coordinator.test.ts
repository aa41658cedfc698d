import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Api } from '../../src/core/http-client.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { decodeRanges } from '../../src/transfer/piece-ranges.ts';
import { SLICE_HOLD_MS, SLICE_MAX_PIECES, SLICE_MIN_UPLOAD_SHARE } from '../../src/transfer/coordinator.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// The origin's side of peer transfers: automatic offers (S1.5), origin slices in a
// swarm, and monitoring with reassignment of dead transfers (S1.7).

const PIECE = 16 * 1024;
const PIECES = 32;
const beat = { uptimeRatio: 0.99, upBps: 80_000_000, downBps: 80_000_000, sendLoadBps: 0, recvLoadBps: 0, cpu: 0.1 };

for (const engine of testEngines()) {
  describe(`peer coordinator on ${engine.name}`, () => {
    let origin: TestOrigin;
    let work: string;
    let contentId: string;
    let n = 0;

    /** A registered, signed-in terminal with an address and a fresh heartbeat. */
    async function terminal(opts: { holds?: 'all' | string } = {}) {
      const user = await origin.userWithRoles(['member']);
      const session = await deviceSession(new Api(origin.url, user.token), path.join(work, `t${++n}`), { region: 'eu', network: 'lan' });
      const call = (method: string, url: string, json?: unknown) => origin.call(method, url, { token: session.token, json });
      assert.equal((await call('PUT', '/terminals/address', { serveUrl: `http://127.0.0.1:${40000 + n}` })).status, 200);
      assert.equal((await call('POST', '/terminals/heartbeat', beat)).status, 204);
      if (opts.holds === 'all') await call('PUT', '/terminals/holdings', { contentIds: [contentId] });
      else if (opts.holds) assert.equal((await call('PUT', `/terminals/holdings/${contentId}/pieces`, { pieces: opts.holds })).status, 204);
      return { id: session.terminalId, call };
    }

    before(async () => {
      // Holders here have made-up addresses: no piece server answers the origin's spot check.
      origin = await startTestOrigin({ engine, config: { pieceSize: PIECE, transferDeadMs: 10_000, holdingsSpotCheck: false } });
      work = mkdtempSync(path.join(os.tmpdir(), 'cascade-coord-'));
      const pub = await origin.userWithRoles(['publisher']);
      contentId = (await origin.call('POST', '/contents?title=C&genre=g&price=1', { token: pub.token, body: randomBytes(PIECE * PIECES), headers: { 'content-type': 'application/octet-stream' } })).body.id;
    });
    after(async () => {
      await origin.close();
      rmSync(work, { recursive: true, force: true });
    });

    test('alone, a receiver gets the origin for everything', async () => {
      const r = await terminal();
      const res = await r.call('POST', '/grants/auto', { contentId });
      assert.equal(res.status, 200);
      assert.deepEqual(res.body.sources.map((s: any) => [s.sourceId, s.pieces]), [['origin', null]]);
      assert.match(res.body.transferId, /^tx_/);
    });

    test('S1.5: a holder at 100 % CPU is offered; one whose slots are all in use is skipped, and the answer says why', async () => {
      const busyCpu = await terminal({ holds: 'all' });
      const full = await terminal({ holds: 'all' });
      // A millisecond later than their first beats: of two beats at one time, a flushed one may win.
      origin.clock.advance(1);
      assert.equal((await busyCpu.call('POST', '/terminals/heartbeat', { ...beat, cpu: 1, slots: 4, slotsBusy: 0 })).status, 204);
      assert.equal((await full.call('POST', '/terminals/heartbeat', { ...beat, cpu: 0, slots: 2, slotsBusy: 2 })).status, 204);
      const r = await terminal({ holds: '0' }); // a partial holder of what it is fetching
      const res = await r.call('POST', '/grants/auto', { contentId, maxPeers: 32 });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const offered = res.body.sources.find((s: any) => s.sourceId === busyCpu.id);
      assert.ok(offered, `the busy machine is offered: ${JSON.stringify(res.body.skipped)}`);
      assert.ok(offered.why.includes('load 100% (CPU): ranked lower'), offered.why.join('|'));
      assert.ok(!res.body.sources.some((s: any) => s.sourceId === full.id));
      assert.deepEqual(
        res.body.skipped.find((s: any) => s.sourceId === full.id),
        { sourceId: full.id, reason: 'saturated', why: 'saturated: all 2 of its upload slots were in use since its last heartbeat' },
      );
      assert.ok(!res.body.skipped.some((s: any) => s.sourceId === r.id), 'the receiver itself is not listed');
      // Done with them: other tests here count holders.
      await busyCpu.call('PUT', '/terminals/holdings', { contentIds: [], mode: 'replace' });
      await full.call('PUT', '/terminals/holdings', { contentIds: [], mode: 'replace' });
      await r.call('PUT', '/terminals/holdings', { contentIds: [], mode: 'replace' });
    });

    test('in a swarm, receivers get disjoint origin slices of pieces nobody holds', async () => {
      const partial = await terminal({ holds: '0-7' }); // a peer already has pieces 0–7
      const receivers = [await terminal(), await terminal(), await terminal()];
      const slices: number[][] = [];
      const transfers: string[] = [];
      for (const r of receivers) {
        const res = await r.call('POST', '/grants/auto', { contentId });
        const originOffer = res.body.sources.at(-1);
        assert.equal(originOffer.sourceId, 'origin');
        assert.ok(res.body.sources.some((s: any) => s.sourceId === partial.id), 'the partial holder is offered');
        assert.notEqual(originOffer.pieces, null, 'in a swarm the origin hands out a slice, not everything');
        slices.push(originOffer.pieces === '' ? [] : decodeRanges(originOffer.pieces, PIECES)!);
        transfers.push(res.body.transferId);
      }
      const all = slices.flat();
      assert.equal(new Set(all).size, all.length, `slices overlap: ${JSON.stringify(slices)}`);
      assert.ok(all.every((i) => i >= 8), 'no piece a peer holds is sent by the origin');
      assert.ok(slices.filter((x) => x.length > 0).length >= 2, JSON.stringify(slices));
      // A receiver asking again keeps its slice while it still needs it (no new hand-outs).
      const again = await receivers[0].call('POST', '/grants/auto', { contentId, transferId: transfers[0] });
      assert.deepEqual(decodeRanges(again.body.sources.at(-1).pieces, PIECES), slices[0]);
      // Once a peer reports holding part of it, that part leaves the slice.
      await partial.call('PUT', `/terminals/holdings/${contentId}/pieces`, { pieces: `0-7,${slices[0][0]}` });
      const third = await receivers[0].call('POST', '/grants/auto', { contentId, transferId: transfers[0] });
      assert.deepEqual(decodeRanges(third.body.sources.at(-1).pieces, PIECES), slices[0].slice(1));
    });

    test('a transfer nobody reports on is marked stalled and reassigned to other holders', async () => {
      const holderA = await terminal({ holds: 'all' });
      const holderB = await terminal({ holds: 'all' });
      const r = await terminal();
      const first = await r.call('POST', '/grants/auto', { contentId, maxPeers: 1 });
      const tx = first.body.transferId;
      const firstPeer = first.body.sources[0].sourceId;
      assert.ok([holderA.id, holderB.id].includes(firstPeer));
      const events: any[] = [];
      const off = origin.bus.subscribe('transfer.reassigned', (e) => events.push(e));

      origin.clock.advance(9_000);
      assert.equal((await origin.coordinator.reassignStalled()).length, 0, 'not dead yet');
      origin.clock.advance(2_000);
      await holderA.call('POST', '/terminals/heartbeat', beat);
      await holderB.call('POST', '/terminals/heartbeat', beat);
      const reassigned = await origin.coordinator.reassignStalled();
      off();
      // The origin's own monitor may have got there first (it runs on a timer): its announcement counts the same.
      const mine = reassigned.find((x) => x.transferId === tx) ?? events.find((e) => e.transferId === tx);
      assert.ok(mine, 'the silent transfer was reassigned');
      assert.ok(!mine.sources.includes(firstPeer), 'to other holders than the one it had');
      assert.ok(mine.sources.includes(firstPeer === holderA.id ? holderB.id : holderA.id));
      assert.deepEqual(events.find((e) => e.transferId === tx)?.sources, mine.sources);
      const row = await origin.db.db.selectFrom('transfers').selectAll().where('id', '=', tx).executeTakeFirstOrThrow();
      assert.equal(row.state, 'stalled');
      assert.ok(row.reassigned_at);
      // New grants for the new holder exist, and the receiver's next report revives the transfer.
      const grants = await origin.db.db.selectFrom('grants').select('source_id').where('transfer_id', '=', tx).execute();
      assert.ok(grants.some((g) => g.source_id !== firstPeer && g.source_id !== 'origin'));
      const progress = await r.call('POST', `/transfers/${tx}/progress`, { piecesDone: 3 });
      assert.equal(progress.body.state, 'active');
    });

    test('refusals: another receiver’s transfer, unknown transfer, bad ranges, bad reports — nothing changes', async () => {
      const r = await terminal();
      const other = await terminal();
      const tx = (await r.call('POST', '/grants/auto', { contentId })).body.transferId;
      const cases: [Promise<any>, number, string][] = [
        [other.call('POST', '/grants/auto', { contentId, transferId: tx }), 403, 'transfer_not_yours'],
        [other.call('POST', `/transfers/${tx}/progress`, { piecesDone: 1 }), 403, 'transfer_not_yours'],
        [r.call('POST', '/transfers/tx_nope/progress', { piecesDone: 1 }), 404, 'unknown_transfer'],
        [r.call('POST', '/grants/auto', { contentId, transferId: tx, have: '9-3' }), 400, 'invalid_pieces'],
        [r.call('POST', `/transfers/${tx}/progress`, { piecesDone: 1, reports: [{ sourceId: r.id, kind: 'bad_piece' }] }), 400, 'invalid_report'],
        [r.call('POST', `/transfers/${tx}/progress`, { piecesDone: 1, reports: [{ sourceId: 'trm_x', kind: 'lied' }] }), 400, 'invalid_request'],
      ];
      for (const [p, status, code] of cases) {
        const res = await p;
        assert.equal(res.status, status, code);
        assert.equal(res.body.error.code, code);
      }
      const row = await origin.db.db.selectFrom('transfers').selectAll().where('id', '=', tx).executeTakeFirstOrThrow();
      assert.equal(row.pieces_done, 0);
      assert.equal(row.receiver_id, r.id);
    });

    test('#19: a slice still on its way to a receiver that keeps calling in is not handed to another', async () => {
      origin.clock.advance(SLICE_HOLD_MS + 1); // earlier receivers' hand-outs are old news
      await origin.db.db.deleteFrom('holdings').where('content_id', '=', contentId).execute(); // and earlier tests' holders gone
      const [r1, r2] = [await terminal(), await terminal()];
      await r2.call('POST', '/grants/auto', { contentId }); // the first receiver alone is sent everything
      const first = await r1.call('POST', '/grants/auto', { contentId });
      const slice1 = decodeRanges(first.body.sources.at(-1).pieces, PIECES)!;
      assert.ok(slice1.length > 0, JSON.stringify(first.body.sources.at(-1)));
      // r1 is slow (a capped origin, a slow link): it still lacks its slice when it calls in again…
      origin.clock.advance(SLICE_HOLD_MS - 1000);
      const again = await r1.call('POST', '/grants/auto', { contentId, transferId: first.body.transferId });
      assert.deepEqual(decodeRanges(again.body.sources.at(-1).pieces, PIECES), slice1);
      // Meanwhile two more receivers take the other pieces into the swarm.
      for (const r of [await terminal(), await terminal()]) await r.call('POST', '/grants/auto', { contentId });
      // …so a receiver arriving after SLICE_HOLD_MS from the first hand-out is not sent the same pieces.
      origin.clock.advance(2000);
      const r3 = await terminal();
      const third = await r3.call('POST', '/grants/auto', { contentId });
      const slice3 = decodeRanges(third.body.sources.at(-1).pieces || '', PIECES) ?? [];
      assert.deepEqual(slice3.filter((i) => slice1.includes(i)), [], `r3 got r1’s pieces again: ${slice3} vs ${slice1}`);
    });

    test(`#19: a swarm's receivers are each handed at most ${SLICE_MAX_PIECES} pieces by the origin, no two the same piece`, async () => {
      origin.clock.advance(SLICE_HOLD_MS + 1);
      await origin.db.db.deleteFrom('holdings').where('content_id', '=', contentId).execute();
      const receivers = [];
      for (let k = 0; k < 4; k++) receivers.push(await terminal());
      await receivers[0].call('POST', '/grants/auto', { contentId }); // the first alone: served everything
      const slices: number[][] = [];
      for (const r of receivers.slice(1)) {
        const offer = (await r.call('POST', '/grants/auto', { contentId })).body.sources.at(-1);
        slices.push(decodeRanges(offer.pieces ?? '', PIECES) ?? []);
      }
      // The second caller sees two receivers: a share would have been half the content.
      assert.ok(PIECES / 2 > SLICE_MAX_PIECES, 'the content is large enough for the cap to bind');
      for (const slice of slices) assert.ok(slice.length > 0 && slice.length <= SLICE_MAX_PIECES, `slice ${slice}`);
      const all = slices.flat();
      assert.equal(new Set(all).size, all.length, `handed twice: ${slices.join(' | ')}`);
    });

    test(`#19: a receiver declaring under ${SLICE_MIN_UPLOAD_SHARE * 100}% of the fastest receiver's upload gets no fresh slice, and is told why`, async () => {
      origin.clock.advance(SLICE_HOLD_MS + 1);
      await origin.db.db.deleteFrom('holdings').where('content_id', '=', contentId).execute();
      const fast = await terminal(); // 80 Mbit/s (10 MB/s)
      const slow = await terminal();
      origin.clock.advance(1); // of two beats at one time, a flushed one may win
      assert.equal((await slow.call('POST', '/terminals/heartbeat', { ...beat, upBps: 8_000_000 })).status, 204); // 1 MB/s
      await fast.call('POST', '/grants/auto', { contentId });
      const before = await origin.db.db.selectFrom('holdings').selectAll().where('content_id', '=', contentId).execute();
      const res = await slow.call('POST', '/grants/auto', { contentId });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const offer = res.body.sources.at(-1);
      assert.equal(offer.sourceId, 'origin');
      assert.equal(offer.pieces, '', 'no piece nobody holds is handed to the slow receiver');
      assert.ok(offer.why.some((w: string) => /^your upload, 8\.0 Mbit\/s \(1\.0 MB\/s\), is under 25% of the fastest receiver's, 80\.0 Mbit\/s/.test(w)), offer.why.join(' | '));
      assert.deepEqual(await origin.db.db.selectFrom('holdings').selectAll().where('content_id', '=', contentId).execute(), before, 'nothing recorded');
      // The fast one gone quiet (no call for SLICE_HOLD_MS), the slow one is left alone: the origin serves it everything.
      origin.clock.advance(SLICE_HOLD_MS + 1);
      assert.equal((await slow.call('POST', '/terminals/heartbeat', { ...beat, upBps: 8_000_000 })).status, 204);
      const later = (await slow.call('POST', '/grants/auto', { contentId, transferId: res.body.transferId })).body.sources.at(-1);
      assert.equal(later.pieces, null);
    });

    test('#19: a slice handed to a slow receiver before a fast one called in goes back at once', async () => {
      origin.clock.advance(SLICE_HOLD_MS + 1);
      await origin.db.db.deleteFrom('holdings').where('content_id', '=', contentId).execute();
      const [slowA, slowB] = [await terminal(), await terminal()];
      origin.clock.advance(1); // of two beats at one time, a flushed one may win
      for (const t of [slowA, slowB]) assert.equal((await t.call('POST', '/terminals/heartbeat', { ...beat, upBps: 8_000_000 })).status, 204); // 1 MB/s
      await slowA.call('POST', '/grants/auto', { contentId }); // alone: served everything
      const first = await slowB.call('POST', '/grants/auto', { contentId });
      const sliceB = decodeRanges(first.body.sources.at(-1).pieces ?? '', PIECES) ?? [];
      assert.ok(sliceB.length > 0, 'the slow receivers are the only ones yet: a slice for the second');
      await (await terminal()).call('POST', '/grants/auto', { contentId }); // a fast receiver (80 Mbit/s) calls in
      const again = (await slowB.call('POST', '/grants/auto', { contentId, transferId: first.body.transferId })).body.sources.at(-1);
      assert.equal(again.pieces, '', 'its slice is gone');
      assert.ok(again.why.some((w: string) => /^your upload, 8\.0 Mbit\/s/.test(w)), again.why.join(' | '));
      // Fast receivers calling in now, within SLICE_HOLD_MS, are handed those pieces: they are no longer on their way anywhere.
      const handed = new Set<number>();
      for (let k = 0; k < PIECES / SLICE_MAX_PIECES; k++) {
        const offer = (await (await terminal()).call('POST', '/grants/auto', { contentId })).body.sources.at(-1);
        for (const i of decodeRanges(offer.pieces ?? '', PIECES) ?? []) handed.add(i);
      }
      assert.deepEqual(sliceB.filter((i) => !handed.has(i)), [], `handed to fast receivers: ${[...handed].sort((a, b) => a - b)}`);
    });

    test('#19: a piece only a slow holder has is still handed out as a slice: its copy does not count', async () => {
      origin.clock.advance(SLICE_HOLD_MS + 1);
      await origin.db.db.deleteFrom('holdings').where('content_id', '=', contentId).execute();
      const slow = await terminal({ holds: '0-7' });
      origin.clock.advance(1); // of two beats at one time, a flushed one may win
      assert.equal((await slow.call('POST', '/terminals/heartbeat', { ...beat, upBps: 8_000_000 })).status, 204); // 1 MB/s
      await terminal({ holds: '8-31' }); // a fast holder of everything else
      const receiver = await terminal(); // 80 Mbit/s
      const res = await receiver.call('POST', '/grants/auto', { contentId, maxPeers: 8 });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.ok(res.body.sources.some((s: any) => s.sourceId === slow.id), 'the slow holder is offered all the same');
      const slice = decodeRanges(res.body.sources.at(-1).pieces ?? '', PIECES) ?? [];
      assert.ok(slice.length > 0 && slice.every((i) => i < 8), `slice ${res.body.sources.at(-1).pieces}`);
    });

    test('#19: with `announce`, a refresh records the caller’s pieces as its holdings (one call, not two); without, nothing', async () => {
      const quiet = await terminal();
      const announcing = await terminal();
      const held = (id: string) => origin.db.db.selectFrom('holdings').select('pieces').where('terminal_id', '=', id).where('content_id', '=', contentId).executeTakeFirst();
      assert.equal((await quiet.call('POST', '/grants/auto', { contentId, have: '1-2' })).status, 200);
      assert.equal(await held(quiet.id), undefined, 'a receiver that does not serve records nothing');
      const res = await announcing.call('POST', '/grants/auto', { contentId, have: '1-2', announce: true });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.announceRefused, undefined);
      assert.deepEqual(await held(announcing.id), { pieces: '1-2' });
      const later = await announcing.call('POST', '/grants/auto', { contentId, transferId: res.body.transferId, have: '1-5', announce: true });
      assert.equal(later.status, 200);
      assert.deepEqual(await held(announcing.id), { pieces: '1-5' }, 'each refresh brings it up to date');
      // Offered to others from then on, with those pieces.
      const other = await terminal();
      const offer = (await other.call('POST', '/grants/auto', { contentId, maxPeers: 32 })).body.sources.find((s: any) => s.sourceId === announcing.id);
      assert.equal(offer?.pieces, '1-5');
      await announcing.call('PUT', '/terminals/holdings', { contentIds: [], mode: 'replace' });
    });
  });
}
