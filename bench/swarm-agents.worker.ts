// A worker thread running some of the swarm benchmark's agents, so that the agents
// use both of the machine's cores instead of one event loop (see bench/swarm.ts).
import { parentPort, workerData } from 'node:worker_threads';
import pino from 'pino';
import { startAgent, type Agent, type AgentOptions } from '../src/agent/agent.ts';

const { agents: configs, contentId } = workerData as { agents: AgentOptions[]; contentId: string };
const agents: Agent[] = [];
for (const c of configs) agents.push(await startAgent({ ...c, cpuLoad: () => 0.2, logger: pino({ level: 'warn' }) }));
parentPort!.postMessage({ type: 'ready' });
parentPort!.on('message', async (msg) => {
  if (msg.type === 'go') {
    const cpu0 = process.cpuUsage();
    // Pieces held by these agents, every half second: the distribution's progress over time.
    const held: number[] = [];
    const sampler = setInterval(() => held.push(agents.reduce((n, a) => n + (a.store.get(contentId)?.have.size ?? 0), 0)), 500);
    // When each piece first reached one of these agents: how fast the origin put the content into the swarm.
    const firstSeen = new Map<number, number>();
    const watcher = setInterval(() => {
      for (const a of agents) for (const i of a.store.get(contentId)?.have ?? []) if (!firstSeen.has(i)) firstSeen.set(i, Date.now());
    }, 50);
    // Two moments per agent: its copy is whole (every piece verified, the file synced) and its
    // fetch returned (last receipts handed in, transfer closed, holding reported, ledger reconciled).
    const results = await Promise.all(
      agents.map(async (a) => {
        let whole = 0;
        const result = await a.fetch(contentId, { onComplete: () => (whole = Date.now()) });
        return { result, whole, at: Date.now() };
      }),
    );
    const cpu = process.cpuUsage(cpu0);
    clearInterval(sampler);
    clearInterval(watcher);
    parentPort!.postMessage({
      type: 'done',
      held,
      times: results.map((r) => r.whole),
      settled: results.map((r) => r.at),
      duplicates: results.reduce((n, r) => n + r.result.duplicates, 0),
      misses: results.reduce((m, r) => ({ busy: m.busy + r.result.misses.busy, unavailable: m.unavailable + r.result.misses.unavailable, asks: m.asks + r.result.misses.asks }), { busy: 0, unavailable: 0, asks: 0 }),
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      firstSeen: [...firstSeen],
    });
  } else if (msg.type === 'stop') {
    for (const a of agents) await a.close().catch(() => {});
    parentPort!.postMessage({ type: 'stopped' });
  }
});
