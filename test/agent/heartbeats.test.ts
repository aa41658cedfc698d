import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { startAgent, type Agent } from '../../src/agent/agent.ts';
import type { WaitClock } from '../../src/core/clock.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { waitFor } from '../helpers/wait.ts';

// S1.2 from the agent's side: its heartbeats go out every heartbeatMs of the agent's clock
// (here the origin's ManualClock, which only the test moves), and the loads they carry are
// the bytes moved over that clock's time since the previous beat.

const PIECE = 64 * 1024;
const PIECES = 4;
const BEAT_MS = 60_000;

describe('agent heartbeats', () => {
  let origin: TestOrigin;
  let agent: Agent;
  let work: string;
  let contentId: string;

  before(async () => {
    // The clock starts at the real time: the agent fetches from the origin, which checks its proofs' times.
    origin = await startTestOrigin({ config: { pieceSize: PIECE } });
    work = mkdtempSync(path.join(os.tmpdir(), 'cascade-beats-'));
    const publisher = await origin.userWithRoles(['publisher']);
    const res = await origin.call('POST', '/contents?title=Beats&genre=test&price=0', { token: publisher.token, body: randomBytes(PIECE * PIECES), headers: { 'content-type': 'application/octet-stream' } });
    contentId = res.body.id;
  });
  after(async () => {
    await agent?.close();
    await origin.close();
    rmSync(work, { recursive: true, force: true });
  });

  test('one at start, then one every heartbeatMs of the agent’s clock and not before; loads are bytes over the clock’s time', async () => {
    const user = await origin.userWithRoles(['member']);
    const start = origin.clock.now();
    // The agent's own view of the origin's clock, to see what the agent itself waits for: other
    // waiters on the shared clock (the origin's) may wait for the same instant.
    const agentWaits: number[] = [];
    const agentClock: WaitClock = {
      now: () => origin.clock.now(),
      sleepUntil(t, signal) {
        agentWaits.push(t);
        return origin.clock.sleepUntil(t, signal).finally(() => agentWaits.splice(agentWaits.indexOf(t), 1));
      },
    };
    agent = await startAgent({
      origin: origin.url,
      token: user.token,
      originKey: origin.keys.publicKeyB64,
      home: path.join(work, 'box'),
      heartbeatMs: BEAT_MS,
      downRate: 10_000_000,
      cpuLoad: () => 0.1,
      clock: agentClock,
      logger: pino({ level: 'silent' }),
    });
    const latest = async () => (await origin.terminals.latestStates([agent.terminalId])).get(agent.terminalId);
    assert.equal((await latest())?.at, start, 'the first beat, at start');

    await agent.fetch(contentId);
    origin.clock.advance(BEAT_MS - 1);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await latest())?.at, start, 'no beat before heartbeatMs has passed on the agent’s clock');

    origin.clock.advance(1);
    await waitFor(async () => (await latest())?.at === start + BEAT_MS, 'the beat heartbeatMs later');
    const beat = (await latest())!;
    // What it received since the first beat, over the 60 s of its clock (not the real time the fetch took).
    assert.equal(beat.recvLoadBps, Math.round((PIECES * PIECE * 8) / (BEAT_MS / 1000)));
    assert.equal(beat.downBps, 80_000_000);
    // S1.5: its upload slots (the default 4), none in use over those 60 s.
    assert.deepEqual([beat.slots, beat.slotsBusy], [4, 0]);

    // Asleep again only once that beat's work is done: moving the clock before would make it sleep a period from then.
    await waitFor(() => agentWaits.includes(start + 2 * BEAT_MS), 'the agent asleep until its next beat');
    origin.clock.advance(BEAT_MS);
    await waitFor(async () => (await latest())?.at === start + 2 * BEAT_MS, 'the next beat');
    assert.equal((await latest())!.recvLoadBps, 0, 'nothing received since');
  });
});
