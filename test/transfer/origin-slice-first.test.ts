import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.ts';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { sourceOrder } from '../../src/transfer/downloader.ts';
import { SourceSet, type SourceOffer } from '../../src/transfer/source-set.ts';

// #19: the origin's slice of a swarm is pieces it hands this receiver to pass on, because no peer
// that spreads them fast holds them (a fast peer's copy, learned since, still counts: ignoring it
// made the origin send a 16-agent swarm 1.42–1.56 copies of the file). Asked of a 1 MB/s peer that happened to hold one too, such a
// piece stayed rare for 13 s in a 32-agent swarm and everyone waited for it at the end.

const keys = generateKeyPair();
const offer = (sourceId: string, sourceUrl: string | null, pieces: string | null, upRate: number | null = null): SourceOffer => ({
  sourceId,
  sourceUrl,
  pieces,
  score: null,
  why: [],
  grant: { id: `grant-${sourceId}`, token: 'token', expiresAt: new Date(0).toISOString() },
  publicKey: keys.publicKeyB64,
  upRate,
});

function sources(originPieces: string | null) {
  const set = new SourceSet({ contentId: 'c'.repeat(64), receiverKey: keys.privateKey, clock: new ManualClock(0), originUrl: 'http://127.0.0.1:1', originKey: keys.publicKeyB64, connections: 1, originConnections: 1, stallMs: 5000 });
  // A 1 MB/s peer, under a quarter of the 8 MB/s one (SLICE_MIN_UPLOAD_SHARE).
  set.apply([offer('slow-peer', 'http://127.0.0.1:2', '0-3', 1_000_000), offer('fast-peer', 'http://127.0.0.1:3', '10', 8_000_000), offer('origin', null, originPieces)]);
  return { set, origin: set.all.get('origin')!, peer: set.all.get('slow-peer')! };
}

test('the origin serving a slice is asked for its pieces even where a slow peer holds them, not where a fast one does; serving everything, only for what no peer has', async () => {
  const slice = sources('2-3,10');
  assert.equal(slice.origin.originSlice, true);
  for (let k = 0; k < 20; k++) assert.ok([2, 3].includes(slice.set.pick(slice.origin, [0, 1, 2, 3, 4, 10], 'rarest')), 'a slice piece, though the slow peer has it; not the fast peer\'s');
  assert.equal(slice.set.mayServe(slice.origin, 3), true);
  assert.equal(slice.set.mayServe(slice.origin, 10), false);
  assert.equal(slice.set.pick(slice.origin, [0, 1, 10], 'rarest'), -1, 'nothing outside the slice, nor what a fast peer has');
  const whole = sources(null);
  assert.equal(whole.set.pick(whole.origin, [0, 1, 2, 3, 4, 10], 'rarest'), 4, 'the last resort: only what no peer has');
  assert.equal(whole.set.mayServe(whole.origin, 3), false);
  await Promise.all([slice.set.close(), whole.set.close()]);
});

test('requests go first to the origin slice, then to peers, then to the origin serving everything', () => {
  const { origin, peer } = sources('2-3');
  assert.ok(sourceOrder(origin) < sourceOrder(peer));
  assert.ok(sourceOrder(peer) < sourceOrder({ isOrigin: true, originSlice: false }));
});
