import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeSources } from '../../src/transfer/source-report.ts';

// "Tell people why" (S1.5, #12 point 3): what `cascade get` and `cascade agent --get`
// print after a download.

const none = { bySource: {}, skipped: [], dropped: {}, offered: [] };

test('peers served: who served how much, largest first, and nothing more', () => {
  const lines = describeSources({ ...none, bySource: { origin: 1_000, trm_a: 2_500_000 }, offered: ['trm_a', 'origin'], skipped: [{ sourceId: 'trm_b', reason: 'offline', why: 'offline: no recent heartbeat' }] });
  assert.deepEqual(lines, ['Served by terminal trm_a: 2.5 MB, the origin: 1.0 kB.']);
});

test('only the origin served: each other holder with why it was not used', () => {
  const lines = describeSources({
    bySource: { origin: 3_000_000 },
    offered: ['origin', 'trm_c', 'trm_d'],
    skipped: [
      { sourceId: 'trm_a', reason: 'saturated', why: 'saturated: on average 3.8 of its 4 upload slots were in use since its last heartbeat' },
      { sourceId: 'trm_b', reason: 'offline', why: 'offline: no recent heartbeat' },
    ],
    dropped: { trm_c: 'stalled' },
  });
  assert.deepEqual(lines, [
    'Served by the origin: 3.0 MB.',
    'Only the origin served. Other holders:',
    '  terminal trm_a: not offered: saturated: on average 3.8 of its 4 upload slots were in use since its last heartbeat',
    '  terminal trm_b: not offered: offline: no recent heartbeat',
    '  terminal trm_c: offered, but it stalled and was dropped',
    '  terminal trm_d: offered, but it served nothing before the download ended',
  ]);
});

test('only the origin served and nobody else holds the content; nothing fetched at all', () => {
  assert.deepEqual(describeSources({ ...none, bySource: { origin: 10 }, offered: ['origin'] }), [
    'Served by the origin: 10 B.',
    'Only the origin served: no other terminal holds this content.',
  ]);
  assert.deepEqual(describeSources(none), ['Nothing was fetched: every piece was already here.']);
});
