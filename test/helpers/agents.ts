import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { startAgent, type Agent, type AgentOptions } from '../../src/agent/agent.ts';
import type { Config } from '../../src/core/config.ts';
import { startTestOrigin, type TestOrigin } from './origin.ts';

/**
 * An agent in this process, for a fresh member of `origin`, with its home under `work`:
 * real HTTP on loopback, silent, heartbeats only when the test sends them, and a fixed
 * CPU figure: CPU never makes a holder saturated (S1.5), but it lowers its rank, and tests
 * that compare holders must not depend on the machine's load at the moment of a beat.
 * (test/e2e/busy-machine.test.ts runs agents on their real measurement.)
 */
export async function startTestAgent(origin: TestOrigin, work: string, name: string, extra: Partial<AgentOptions> = {}): Promise<Agent> {
  const user = await origin.userWithRoles(['member']);
  return startAgent({
    origin: origin.url,
    token: user.token,
    originKey: origin.keys.publicKeyB64,
    home: path.join(work, name),
    name,
    region: 'eu-west',
    network: 'lan-1',
    heartbeatMs: 60_000,
    cpuLoad: () => 0.1,
    downloads: { stallMs: 400, refreshMs: 200 },
    logger: pino({ level: 'silent' }),
    ...extra,
  });
}

/** The agents a test starts: started with startTestAgent, closed together. */
export class TestAgents {
  readonly all: Agent[] = [];

  constructor(
    private readonly origin: TestOrigin,
    private readonly work: string,
  ) {}

  async start(name: string, extra: Partial<AgentOptions> = {}): Promise<Agent> {
    const a = await startTestAgent(this.origin, this.work, name, extra);
    this.all.push(a);
    return a;
  }

  /** Every other agent, for a receiver that wants only `keep` as peers (S1.5: it may choose). */
  allBut(...keep: Agent[]): string[] {
    return this.all.filter((a) => !keep.includes(a)).map((a) => a.terminalId);
  }

  async close() {
    for (const a of this.all) await a.close().catch(() => {});
  }
}

/** An origin with one published content, a work directory and the agents a test starts. */
export interface AgentLab {
  origin: TestOrigin;
  work: string;
  agents: TestAgents;
  contentId: string;
  close(): Promise<void>;
}

export async function startAgentLab(opts: { config: Partial<Config>; file: Buffer; price: number }): Promise<AgentLab> {
  const origin = await startTestOrigin({ config: opts.config });
  const work = mkdtempSync(path.join(os.tmpdir(), 'cascade-lab-'));
  const agents = new TestAgents(origin, work);
  const publisher = await origin.userWithRoles(['publisher']);
  const res = await origin.call('POST', `/contents?title=Lab&genre=test&price=${opts.price}`, { token: publisher.token, body: opts.file, headers: { 'content-type': 'application/octet-stream' } });
  if (res.status !== 201) throw new Error(`publishing failed: ${JSON.stringify(res.body)}`);
  return {
    origin,
    work,
    agents,
    contentId: res.body.id,
    async close() {
      await agents.close();
      await origin.close();
      rmSync(work, { recursive: true, force: true });
    },
  };
}
