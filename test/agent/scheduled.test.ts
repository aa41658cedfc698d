import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mainSource } from '../../src/agent/scheduled.ts';

// S0.7: a scheduled delivery's record names one source — who delivered most of its bytes.

test('mainSource: the origin or the peer with the most bytes; nothing fetched: none', () => {
  assert.deepEqual(mainSource({ origin: 10, trm_a: 30, trm_b: 20 }), { source: 'peer', sourceId: 'trm_a' });
  assert.deepEqual(mainSource({ origin: 50, trm_a: 30 }), { source: 'origin' });
  assert.equal(mainSource({}), undefined);
  assert.equal(mainSource({ origin: 0, trm_a: 0 }), undefined);
});
