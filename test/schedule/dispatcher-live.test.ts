import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Dispatcher, MemoryRecorder, type Delivery, type DeliverySink, type DispatchTerminal } from '../../src/schedule/dispatcher.ts';
import { parseWindow } from '../../src/schedule/windows.ts';

// The dispatcher as the origin's scheduler drives it (runner.ts, S0.3/S0.4/S0.6/S0.7):
// the set of terminals changes under it (replan), terminals that have not called in
// are kept out (reachable), a reporting sink ends deliveries itself (complete), and
// withdrawn items are recorded (removeItem). Clock: plain numbers, no sleeping.

const MIN = 60_000;
const DAY0 = Date.parse('2026-05-04T00:00:00Z'); // a Monday
const at = (hhmm: string) => DAY0 + (Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3))) * MIN;
const daily = (start: string, end: string, cap?: number) => parseWindow({ days: 'daily', start, end, timeZone: 'UTC', ...(cap ? { capBytesPerSecond: cap } : {}) });
const term = (id: string, windows = [daily('10:00', '11:00')], tier = 'member'): DispatchTerminal => ({ id, windows, tier, link: null });

/** Records what the dispatcher asks of it; `bytes` is what progress() hands over next (a reporting sink). */
class ReportingSink implements DeliverySink {
  readonly starts: { key: string; rate: number; at: number; windowEnd: number }[] = [];
  readonly stops: { key: string; why: string; at: number }[] = [];
  readonly bytes = new Map<string, number>();
  start(d: Delivery, rate: number, at: number, windowEnd: number) {
    this.starts.push({ key: d.key, rate, at, windowEnd });
  }
  stop(d: Delivery, at: number, why: string) {
    this.stops.push({ key: d.key, why, at });
  }
  progress(d: Delivery) {
    const b = this.bytes.get(d.key) ?? 0;
    this.bytes.set(d.key, 0);
    return b;
  }
}

function setup(terminals: DispatchTerminal[], opts: { reachable?: (id: string) => boolean; budget?: number } = {}) {
  const sink = new ReportingSink();
  const recorder = new MemoryRecorder();
  const d = new Dispatcher({ terminals, from: DAY0, horizonMs: 86_400_000, egressBudgetBps: opts.budget ?? 1_000_000, sink, recorder, reachable: opts.reachable });
  return { d, sink, recorder };
}

const outcomes = (r: MemoryRecorder) => [...r.attempts.values()].map((a) => [a.id, a.outcome, a.reason, a.bytes]);

test('a reporting sink: bytes never end a delivery, complete() does — with the bytes reported (S0.7)', () => {
  const { d, sink, recorder } = setup([term('t')]);
  d.addItem({ terminalId: 't', contentId: 'c', totalSize: 1000 });
  d.tick(at('10:00'));
  assert.equal(sink.starts.length, 1);
  sink.bytes.set('t/c', 5000); // more than the size: still running until the terminal holds it
  d.tick(at('10:01'));
  assert.equal(d.get('t/c')!.state, 'running');
  assert.equal(d.get('t/c')!.bytesDone, 1000, 'capped to the size');
  d.complete('t/c', at('10:02'));
  assert.equal(d.get('t/c')!.state, 'done');
  assert.deepEqual(outcomes(recorder), [['t/c#1', 'done', null, 1000]]);
  assert.deepEqual(sink.stops, [{ key: 't/c', why: 'done', at: at('10:02') }]);
  assert.equal(d.egressInUse(), 0);
  // Completing at the same instant as the last tick works too (no time has to pass).
  d.addItem({ terminalId: 't', contentId: 'e', totalSize: 10 });
  d.tick(at('10:02'));
  sink.bytes.set('t/e', 10);
  d.complete('t/e', at('10:02'));
  assert.equal(d.get('t/e')!.state, 'done');
  assert.equal(recorder.attempts.get('t/e#1')!.bytes, 10);
});

test('fail() counts the bytes reported before the failure, and the item waits for its next window', () => {
  const { d, sink, recorder } = setup([term('t')]);
  d.addItem({ terminalId: 't', contentId: 'c', totalSize: 1000 });
  d.tick(at('10:00'));
  sink.bytes.set('t/c', 300);
  d.fail('t/c', 'disk_full', at('10:05'));
  d.tick(at('10:06'));
  assert.deepEqual(outcomes(recorder), [['t/c#1', 'failed', 'disk_full', 300]]);
  assert.equal(sink.starts.length, 1, 'not again in the same window');
  d.replan([term('t')], at('23:59')); // a fresh horizon, as the runner does before it runs out
  d.tick(at('23:59') + 10 * 60 * MIN + MIN); // 10:00 the next day
  assert.equal(sink.starts.length, 2, 'started again in the next window');
  assert.equal(d.get('t/c')!.deferrals, 1);
});

test('unreachable terminals (S0.3: not called in) are due and wait with terminal_absent; deferred at the window end if they never come', () => {
  const present = new Set<string>();
  const { d, sink, recorder } = setup([term('a'), term('b')], { reachable: (id) => present.has(id) });
  d.addItem({ terminalId: 'a', contentId: 'c', totalSize: 100_000 });
  d.addItem({ terminalId: 'b', contentId: 'c', totalSize: 100_000 });
  d.tick(at('10:00'));
  assert.equal(sink.starts.length, 0);
  assert.equal(d.waiting('a'), 1);
  assert.deepEqual(outcomes(recorder), [
    ['a/c#1', 'due', null, 0],
    ['b/c#1', 'due', null, 0],
  ]);
  present.add('a'); // a calls in
  d.wake();
  d.tick(at('10:01'));
  assert.deepEqual(sink.starts.map((s) => s.key), ['a/c']);
  d.tick(at('11:00'));
  assert.deepEqual(
    outcomes(recorder).map(([id, o, r]) => [id, o, r]),
    [
      ['a/c#1', 'deferred', 'window_closed'],
      ['b/c#1', 'deferred', 'terminal_absent'],
    ],
  );
});

test('replan keeps a running delivery (same attempt, no second start), adds new terminals, withdraws removed ones', () => {
  // Capped windows: an uncapped one would take the whole budget (S0.6) and the others would wait.
  const capped = (id: string, end = '11:00') => term(id, [daily('10:00', end, 100_000)]);
  const { d, sink, recorder } = setup([capped('a'), capped('b')]);
  d.addItem({ terminalId: 'a', contentId: 'c', totalSize: 10_000_000 });
  d.addItem({ terminalId: 'b', contentId: 'c', totalSize: 10_000_000 });
  d.tick(at('10:00'));
  assert.equal(sink.starts.length, 2);
  const inUse = d.egressInUse();
  // b's schedule goes; n arrives with a window open now.
  d.replan([capped('a'), capped('n', '12:00')], at('10:10'));
  assert.equal(d.get('a/c')!.state, 'running');
  assert.equal(d.get('a/c')!.attemptId, 'a/c#1');
  assert.equal(d.get('b/c'), undefined);
  assert.deepEqual(sink.stops.map((s) => [s.key, s.why]), [['b/c', 'failed']]);
  assert.equal(recorder.attempts.get('b/c#1')!.outcome, 'failed');
  assert.equal(recorder.attempts.get('b/c#1')!.reason, 'unscheduled');
  assert.ok(d.egressInUse() < inUse, 'b’s rate is released');
  d.addItem({ terminalId: 'n', contentId: 'c', totalSize: 1000 });
  d.tick(at('10:10'));
  assert.deepEqual(sink.starts.map((s) => s.key), ['a/c', 'b/c', 'n/c']);
  assert.equal(sink.starts[2]!.windowEnd, at('12:00'));
  // a's window still closes at 11:00 under the new plan.
  d.tick(at('11:00'));
  assert.equal(recorder.attempts.get('a/c#1')!.outcome, 'deferred');
  assert.equal(recorder.attempts.get('a/c#1')!.reason, 'window_closed');
});

test('replan while a terminal is open under a window that goes: its running delivery pauses now (window_closed)', () => {
  const { d, sink, recorder } = setup([term('a', [daily('10:00', '11:00'), daily('20:00', '21:00')])]);
  d.addItem({ terminalId: 'a', contentId: 'c', totalSize: 10_000_000 });
  d.tick(at('10:00'));
  d.replan([term('a', [daily('20:00', '21:00')])], at('10:30'));
  assert.deepEqual(sink.stops.map((s) => [s.key, s.why, s.at]), [['a/c', 'paused', at('10:30')]]);
  assert.equal(recorder.attempts.get('a/c#1')!.outcome, 'deferred');
  d.tick(at('20:00'));
  assert.equal(d.get('a/c')!.state, 'running', 'the remaining window still serves it');
  assert.equal(d.get('a/c')!.deferrals, 1);
});

test('an item carried out of a window (cannot_finish) is not retried in that window after a replan, and is in the next', () => {
  // 1 MB at 1 KB/s cannot finish in the hour left, but a whole window (2 h) could: carried.
  const cap = 1000;
  const { d, sink, recorder } = setup([term('a', [daily('09:00', '11:00', cap)])]);
  d.addItem({ terminalId: 'a', contentId: 'c', totalSize: 6_000_000 });
  d.tick(at('10:00'));
  assert.equal(recorder.attempts.get('a/c#1')!.reason, 'cannot_finish');
  assert.equal(d.waiting('a'), 0, 'carried: not waiting in this window');
  d.replan([term('a', [daily('09:00', '11:00', cap)]), term('z')], at('10:05'));
  d.tick(at('10:06'));
  assert.equal(sink.starts.length, 0);
  assert.equal(d.waiting('a'), 0);
  assert.equal(recorder.attempts.size, 1);
  d.tick(at('23:00'));
  assert.ok(d.horizonEnd > at('23:00'));
  d.replan([term('a', [daily('09:00', '11:00', cap)])], at('23:00')); // a fresh horizon
  d.tick(at('23:00') + 10 * 60 * MIN); // 09:00 next day
  assert.deepEqual(sink.starts.map((s) => s.key), ['a/c']);
});

test('removeItem withdraws a pending item with an open attempt (failed, unscheduled); unknown keys change nothing', () => {
  const { d, recorder } = setup([term('a')], { reachable: () => false });
  d.addItem({ terminalId: 'a', contentId: 'c', totalSize: 10 });
  d.tick(at('10:00'));
  d.removeItem('a/c', at('10:01'), 'unscheduled');
  d.removeItem('a/none', at('10:01'), 'unscheduled');
  assert.equal(d.get('a/c'), undefined);
  assert.deepEqual(outcomes(recorder), [['a/c#1', 'failed', 'unscheduled', 0]]);
  assert.throws(() => d.replan([term('a')], at('09:00')), RangeError, 'no going back in time');
});
