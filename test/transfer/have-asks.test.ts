import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HAVE_ASK_MS, HAVE_ASK_SPACING_MS, pickHaveAsk } from '../../src/transfer/downloader.ts';

// #19: a download asks an idle peer `/have` once the peer has said nothing for HAVE_ASK_MS, one
// peer per HAVE_ASK_SPACING_MS at most, the one silent the longest: a swarm's asks grow with its
// size, not its square, and every idle peer gets its turn.

test('the peer silent the longest is asked, once silent HAVE_ASK_MS, and only if the download asked nobody for HAVE_ASK_SPACING_MS', () => {
  const now = 100_000;
  assert.equal(pickHaveAsk(now, [], -Infinity), -1, 'no idle peer');
  assert.equal(pickHaveAsk(now, [-Infinity], -Infinity), 0, 'never heard, never asked');
  assert.equal(pickHaveAsk(now, [now - 3000, now - 5000, now - 2500], now - HAVE_ASK_SPACING_MS), 1, 'the one silent the longest');
  assert.equal(pickHaveAsk(now, [now - HAVE_ASK_MS + 1], -Infinity), -1, 'the peer spoke too recently');
  assert.equal(pickHaveAsk(now, [now - HAVE_ASK_MS, -Infinity], now - HAVE_ASK_SPACING_MS + 1), -1, 'the download asked another peer too recently');
});

test('31 idle peers over 10 s, the download looking every 200 ms: one ask per spacing at most, each peer in turn', () => {
  const heard = new Array<number>(31).fill(-Infinity);
  let lastAsk = -Infinity;
  const asks: { peer: number; at: number }[] = [];
  for (let now = 0; now <= 10_000; now += 200) {
    const p = pickHaveAsk(now, heard, lastAsk);
    if (p < 0) continue;
    heard[p] = lastAsk = now;
    asks.push({ peer: p, at: now });
  }
  // Per peer alone (every HAVE_ASK_MS) this would be 31 × 6 = 186 asks.
  assert.ok(asks.length <= 10_000 / HAVE_ASK_SPACING_MS + 1, `asks: ${asks.length}`);
  // …and not much fewer: the first look after the spacing asks (every 600 ms here, looks being 200 ms apart).
  assert.ok(asks.length >= Math.floor(10_000 / (HAVE_ASK_SPACING_MS + 200)), `asks: ${asks.length}`);
  for (let k = 1; k < asks.length; k++) assert.ok(asks[k].at - asks[k - 1].at >= HAVE_ASK_SPACING_MS);
  // Every idle peer gets its turn before any is asked again.
  assert.equal(new Set(asks.map((a) => a.peer)).size, asks.length);
});
