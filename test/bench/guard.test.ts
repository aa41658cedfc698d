import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FIGURES, judge, TOLERANCE } from '../../bench/_guard.ts';

// #19 point 6: the regression guard flags a figure that got worse by more than 15 %, whichever
// way is better for it, and reads its figures from the benchmarks' last lines.

test('a ratio where higher is better: 15 % lower is the limit, anything beyond is flagged', () => {
  assert.equal(TOLERANCE, 0.15);
  assert.deepEqual(judge(0.85, 1, 'higher'), { change: 0.85, flagged: false });
  assert.equal(judge(0.849, 1, 'higher').flagged, true);
  assert.equal(judge(0.4, 0.645, 'higher').flagged, true);
  assert.equal(judge(2, 1, 'higher').flagged, false, 'better is never flagged');
});

test('a figure where lower is better (time against a bound, memory): over 1/0.85 of the recorded is flagged', () => {
  assert.equal(judge(1.1, 1, 'lower').flagged, false);
  assert.equal(judge(1.2, 1, 'lower').flagged, true);
  assert.equal(judge(4.289, 1.669, 'lower').flagged, true);
  assert.equal(judge(0.5, 1, 'lower').flagged, false);
  assert.equal(judge(Number.NaN, 1, 'lower').flagged, true, 'a figure that is not a number is flagged');
});

test('the figures are read from the benchmarks’ last lines as docs/benchmarks.md shows them', () => {
  const of = (bench: string, name: string, line: object) => FIGURES[bench].find((f) => f.name === name)!.of(line as any);
  assert.equal(of('transfer', 'transfer.ratio', { bench: 'transfer', ratio: 0.645 }), 0.645);
  assert.equal(of('swarm', 'swarm.ratio_to_bound', { ratio_to_bound: 1.669 }), 1.669);
  assert.equal(of('swarm', 'swarm.settled_ratio_to_bound', { settled_seconds: 14.92, bound_seconds: 7.46 }), 2);
  assert.equal(of('swarm', 'swarm.settled_ratio_to_bound', { ratio_to_bound: 1.669 }), undefined, 'a line from before settled_seconds has none');
  assert.equal(of('settle', 'settle.postgres.ratio', { results: [{ backend: 'pglite', ratio: 0.056 }, { backend: 'postgres', ratio: 0.048 }] }), 0.048);
  assert.equal(of('cli', 'cli.help_vs_node', { help_ms: 222, node_ms: 111 }), 2);
  assert.equal(of('memory', 'memory.pglite_idle_vs_node', { pglite_idle_mb: 186, node_baseline_mb: 0 }), undefined, 'no baseline, no figure');
  assert.equal(of('settle', 'settle.pglite.ratio', { results: [] }), undefined);
});
