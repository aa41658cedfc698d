import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Api } from '../../src/core/http-client.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { ANNOUNCE_DELAY_MS, download, fileTarget, ORIGIN_SLICE_REQUESTS, requestRoom } from '../../src/transfer/downloader.ts';
import { SLICE_MAX_PIECES } from '../../src/transfer/coordinator.ts';
import { decodeRanges } from '../../src/transfer/piece-ranges.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #19: two ways a download used to sit idle with pieces to fetch.
// - Its refresh (`POST /grants/auto`) held up the scheduler: a first holdings claim is
//   spot-checked by the origin fetching a piece from the receiver at its capped rate, and a
//   32-agent swarm had downloads idle for up to 7 s behind that answer.
// - The origin's slice of a swarm (pieces nobody holds yet, handed to this receiver only) counted
//   against `concurrency`: peer requests filled it and those pieces waited, and with them everyone.

test('the origin slice of a swarm is not counted against the concurrency limit; every other source is, and each has its own cap', () => {
  const slice = { originSlice: true, inFlight: 0 };
  const wholeOrigin = { originSlice: false, inFlight: 0 };
  const peer = { originSlice: false, inFlight: 1 };
  // Eight peer requests in flight fill a limit of eight…
  assert.equal(requestRoom(peer, 2, 8, 8), 0, 'a peer waits for room under the limit');
  assert.equal(requestRoom(wholeOrigin, 8, 8, 8), 0, 'so does the origin serving the whole content');
  // …but not the slice's own requests.
  assert.equal(requestRoom(slice, ORIGIN_SLICE_REQUESTS, 8, 8), ORIGIN_SLICE_REQUESTS);
  assert.equal(requestRoom({ ...slice, inFlight: ORIGIN_SLICE_REQUESTS }, ORIGIN_SLICE_REQUESTS, 8, 0), 0, 'the slice keeps its own cap');
  assert.equal(requestRoom(peer, 2, 8, 3), 1, "a peer's cap binds before the limit");
  assert.equal(requestRoom(peer, 4, 8, 6), 2, 'the limit binds before a peer cap');
});

const PIECE = 64 * 1024;
let origin: TestOrigin;
let work: string;
let contentId: string;
let file: Buffer;

before(async () => {
  // No spot check of announced holdings: these receivers serve nothing.
  origin = await startTestOrigin({ config: { pieceSize: PIECE, holdingsSpotCheck: false } });
  work = mkdtempSync(path.join(os.tmpdir(), 'cascade-refresh-'));
  const publisher = await origin.userWithRoles(['publisher']);
  file = randomBytes(PIECE * 24);
  const res = await origin.call('POST', '/contents?title=Film&genre=drama&price=1', { token: publisher.token, body: file, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  contentId = res.body.id;
});
after(async () => {
  await origin.close();
  rmSync(work, { recursive: true, force: true });
});

/** An API client whose refreshes after the first are held until `release` (an origin slow to answer them). */
class SlowRefreshApi extends Api {
  held = 0;
  private waiting: (() => void)[] = [];
  override async request<T = any>(method: string, route: string, opts?: Parameters<Api['request']>[2]): Promise<T> {
    if (route === '/grants/auto' && (opts?.json as { transferId?: string })?.transferId) {
      this.held++;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    return super.request<T>(method, route, opts);
  }
  release() {
    for (const go of this.waiting.splice(0)) go();
  }
}

test('pieces keep coming while a refresh waits for the origin; the end waits for it, then reports (#19)', { timeout: 15_000 }, async () => {
  const member = await origin.userWithRoles(['member']);
  const device = await deviceSession(new Api(origin.url, member.token), path.join(work, 'home'));
  const api = new SlowRefreshApi(origin.url, device.token);
  const out = path.join(work, 'film.bin');
  let piecesWhileHeld = 0;
  let whole = false;
  // ~1.7 s of fetching at 600 kB/s (a 600 kB burst first), refreshing every 50 ms: a held refresh would stop it early.
  const result = download({
    api,
    originKey: origin.keys.publicKeyB64,
    device,
    contentId,
    files: fileTarget(out),
    refreshMs: 50,
    downRate: 600_000,
    onPiece: () => void (api.held > 0 && piecesWhileHeld++),
    onComplete: () => {
      whole = true;
      api.release(); // the origin answers at last
    },
  });
  const finished = await result;
  assert.ok(whole);
  assert.ok(api.held >= 1, 'a refresh was held');
  assert.ok(piecesWhileHeld >= 20, `pieces verified while the refresh was held: ${piecesWhileHeld} of 24`);
  assert.ok(readFileSync(out).equals(file));
  assert.equal(finished.endReported, true);
  const transfer = await origin.db.db.selectFrom('transfers').selectAll().where('id', '=', finished.transferId).executeTakeFirstOrThrow();
  assert.equal(transfer.state, 'done', 'the end report came after the held refresh, and closed the transfer');
});

test(`an agent announces the pieces of its origin slice ${ANNOUNCE_DELAY_MS} ms after they land, not at its next refresh (#19)`, { timeout: 15_000 }, async () => {
  // Another receiver of the content calling in makes a swarm: the origin hands out slices of pieces nobody holds.
  const other = await deviceSession(new Api(origin.url, (await origin.userWithRoles(['member'])).token), path.join(work, 'other'));
  await new Api(origin.url, other.token).post('/grants/auto', { contentId });
  const device = await deviceSession(new Api(origin.url, (await origin.userWithRoles(['member'])).token), path.join(work, 'agent'));
  const slices: string[] = [];
  class RecordingApi extends Api {
    override async request<T = any>(method: string, route: string, opts?: Parameters<Api['request']>[2]): Promise<T> {
      const res = await super.request<T>(method, route, opts);
      if (route === '/grants/auto') slices.push((res as any).sources.at(-1).pieces);
      return res;
    }
  }
  // Refreshing once a minute, the download would wait a minute after each slice; announcing each, it gets the next at once.
  const result = await download({ api: new RecordingApi(origin.url, device.token), originKey: origin.keys.publicKeyB64, device, contentId, files: fileTarget(path.join(work, 'slices.bin')), refreshMs: 60_000, announce: true, signal: AbortSignal.timeout(10_000) });
  assert.equal(result.pieces, 24);
  assert.ok(slices.length >= 24 / SLICE_MAX_PIECES, `slices: ${slices.join(' | ')}`);
  assert.ok(slices.every((p) => p !== null), 'every piece came in a slice of the swarm');
  assert.ok(readFileSync(path.join(work, 'slices.bin')).equals(file));
});

test('a download the origin served whole withdraws its requests beyond the slice once a swarm forms (#19)', { timeout: 20_000 }, async () => {
  // A capped origin on the test's manual clock: its bucket lets a burst through (less than a piece), then only what the clock allows.
  const capped = await startTestOrigin({ config: { pieceSize: PIECE, originUpRate: 200_000, holdingsSpotCheck: false } });
  try {
    const publisher = await capped.userWithRoles(['publisher']);
    const body = randomBytes(PIECE * 24);
    const id = (await capped.call('POST', '/contents?title=Film&genre=drama&price=0', { token: publisher.token, body, headers: { 'content-type': 'application/octet-stream' } })).body.id;
    const device = await deviceSession(new Api(capped.url, (await capped.userWithRoles(['member'])).token), path.join(work, 'first'));
    const offers: (string | null)[] = [];
    const sliced = new Set<number>();
    class RecordingApi extends Api {
      override async request<T = any>(method: string, route: string, opts?: Parameters<Api['request']>[2]): Promise<T> {
        const res = await super.request<T>(method, route, opts);
        if (route === '/grants/auto') {
          const pieces: string | null = (res as any).sources.at(-1).pieces;
          offers.push(pieces);
          for (const i of pieces ? decodeRanges(pieces, 24)! : []) sliced.add(i);
        }
        return res;
      }
    }
    // Pieces that arrived from the origin while it served us a slice, but were in none of its slices.
    const beyond: number[] = [];
    const out = path.join(work, 'withdrawn.bin');
    // Alone, it is served everything: two runs of four pieces in flight.
    const result = download({ api: new RecordingApi(capped.url, device.token), originKey: capped.keys.publicKeyB64, device, contentId: id, files: fileTarget(out), refreshMs: 100, signal: AbortSignal.timeout(15_000), onPiece: (i) => void (offers.at(-1) && !sliced.has(i) && beyond.push(i)) });
    let done = false;
    void result.finally(() => (done = true)).catch(() => {});
    while (offers.length === 0) await new Promise((r) => setTimeout(r, 10));
    assert.equal(offers[0], null, 'alone, the origin serves everything');
    // A second receiver calls in: a swarm. The first one's next refresh brings it a slice.
    const other = await deviceSession(new Api(capped.url, (await capped.userWithRoles(['member'])).token), path.join(work, 'second'));
    await new Api(capped.url, other.token).post('/grants/auto', { contentId: id });
    const before = offers.length;
    while (offers.length < before + 2) await new Promise((r) => setTimeout(r, 10));
    assert.notEqual(offers.at(-1), null, 'in a swarm, a slice');
    // The clock moves on: the slices, then (the second receiver quiet for SLICE_HOLD_MS) everything again.
    while (!done) {
      capped.clock.advance(250);
      await new Promise((r) => setTimeout(r, 10));
    }
    const finished = await result;
    assert.ok(finished.misses.withdrawn >= 1, `withdrawn: ${JSON.stringify(finished.misses)}`);
    assert.deepEqual(beyond, [], 'no piece beyond the slices came while the origin served slices');
    assert.ok(readFileSync(out).equals(body));
  } finally {
    await capped.close();
  }
});
