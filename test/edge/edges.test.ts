import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { startEdge, type EdgeNode, type EdgeOptions } from '../../src/edge/node.ts';
import { walletAccount } from '../../src/ledger/accounts.ts';
import { TestAgents } from '../helpers/agents.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { waitFor } from '../helpers/wait.ts';

// S2.1, S2.2 (#17 point 1): edges register, the origin pushes contents to them by policy
// within their caches (LRU eviction), routes receivers to the nearest holding edge, and an
// edge that lacks a content fetches it while serving. Real HTTP on loopback: one origin, three
// edges and receiving agents in this process (test/edge/edge-processes.test.ts runs them as
// separate `cascade` processes).

const MiB = 1024 * 1024;
let origin: TestOrigin;
let work: string;
let agents: TestAgents;
let operator: { token: string; userId: string };
const edges: EdgeNode[] = [];
const contents: Record<string, string> = {};
let publisher: { token: string; userId: string };

async function publish(title: string, bytes: number, price = 1000): Promise<string> {
  const res = await origin.call('POST', `/contents?title=${title}&genre=test&price=${price}`, { token: publisher.token, body: randomBytes(bytes), headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.id;
}

async function edge(name: string, opts: Partial<EdgeOptions> & Pick<EdgeOptions, 'label' | 'cacheBytes'>): Promise<EdgeNode> {
  const node = await startEdge({
    origin: origin.url,
    token: operator.token,
    originKey: origin.keys.publicKeyB64,
    home: path.join(work, name),
    kind: 'delivery',
    reportMs: 3_600_000, // reports only when the test asks (sync)
    heartbeatMs: 3_600_000,
    clock: origin.clock,
    logger: pino({ level: 'silent' }),
    ...opts,
  });
  edges.push(node);
  return node;
}

/** A wallet's posted balance; a wallet not opened yet holds the sign-up credit it will open with. */
const balance = async (userId: string) => (await origin.ledger.balance(walletAccount(userId).id).catch(() => ({ posted: 1_000_000_000 }))).posted;

before(async () => {
  origin = await startTestOrigin();
  work = mkdtempSync(path.join(os.tmpdir(), 'cascade-edges-'));
  agents = new TestAgents(origin, work);
  operator = await origin.userWithRoles(['operator']);
  publisher = await origin.userWithRoles(['publisher']);
  contents.old = await publish('Old', 3 * MiB);
  origin.clock.advance(60_000);
  contents.mid = await publish('Mid', 2 * MiB);
  origin.clock.advance(60_000);
  contents.newest = await publish('Newest', 1 * MiB);
});

after(async () => {
  for (const e of edges) await e.close().catch(() => {});
  await agents.close();
  await origin.close();
  rmSync(work, { recursive: true, force: true });
});

test('S2.1: only an operator’s terminal becomes an edge; nothing is registered otherwise', async () => {
  const member = await origin.userWithRoles(['member']);
  await assert.rejects(
    startEdge({ origin: origin.url, token: member.token, originKey: origin.keys.publicKeyB64, home: path.join(work, 'not-an-operator'), kind: 'delivery', label: 'eu/paris', cacheBytes: MiB, clock: origin.clock, logger: pino({ level: 'silent' }), reportMs: 3_600_000, heartbeatMs: 3_600_000 }),
    (err: any) => err.code === 'operator_required',
  );
  const list = await origin.call('GET', '/edges', { token: operator.token });
  assert.equal(list.status, 200);
  assert.equal(list.body.items.length, 0);
});

test('S2.1: pre-distribution by policy within each cache: recently added, manual pins, most requested; LRU eviction', async () => {
  const lyon = await edge('lyon', { label: 'eu/lyon', cacheBytes: 4 * MiB, policy: 'recently_added' });
  const nyc = await edge('nyc', { label: 'us/nyc', cacheBytes: 8 * MiB, policy: 'manual' });
  // Recently added, 4 MiB: newest (1) and mid (2) fit, old (3) does not after them — and the plan says so.
  const plan = await lyon.sync();
  assert.deepEqual(lyon.store.list().filter((c) => c.complete).map((c) => c.id).sort(), [contents.newest, contents.mid].sort());
  assert.match(plan.skipped.find((s) => s.contentId === contents.old)!.why, /no room left/);
  // The origin knows which edge holds what.
  const detail = await origin.call('GET', `/edges/${lyon.edgeId}`, { token: operator.token });
  assert.deepEqual(detail.body.holdings.map((h: any) => h.contentId).sort(), [contents.newest, contents.mid].sort());
  assert.ok(detail.body.holdings.every((h: any) => h.complete));
  // Filling a cache costs the operator nothing (S2.1: the platform's own traffic).
  assert.equal(await balance(operator.userId), 1_000_000_000);

  // Manual: nothing until pinned; the pin is fetched at the next report.
  await nyc.sync();
  assert.equal(nyc.store.list().length, 0);
  const pin = await origin.call('PUT', `/edges/${nyc.edgeId}/pins/${contents.old}`, { token: operator.token });
  assert.equal(pin.status, 200);
  await nyc.sync();
  assert.deepEqual(nyc.store.list().map((c) => c.id), [contents.old]);
  assert.ok(nyc.store.isComplete(contents.old));

  // LRU: pin old (3 MiB) on lyon too. 3 held + 3 = 6 > 4: the least recently used goes first.
  origin.clock.advance(1000);
  lyon.touch(contents.newest); // newest was used after mid
  await origin.call('PUT', `/edges/${lyon.edgeId}/pins/${contents.old}`, { token: operator.token });
  const lru = await lyon.sync();
  assert.deepEqual(lyon.store.list().map((c) => c.id).sort(), [contents.old, contents.newest].sort());
  assert.ok(!existsSync(lyon.store.paths(contents.mid).base), 'the evicted copy is deleted from disk');
  assert.equal(lru.evict.length, 0, 'nothing more to drop once the pin is in');
});

test('S2.2: receivers are routed to the nearest holding edge, which serves every byte; the origin sends none', async () => {
  const paris = await edge('paris', { label: 'eu/paris', cacheBytes: 8 * MiB, policy: 'manual' });
  await origin.call('PUT', `/edges/${paris.edgeId}/pins/${contents.mid}`, { token: operator.token });
  await paris.sync();
  assert.ok(paris.store.isComplete(contents.mid));
  const member = await origin.userWithRoles(['member']);
  const receiver = await agents.start('paris-viewer', { region: 'eu/paris/b7', token: member.token });
  const before = await balance(member.userId);
  const operatorBefore = await balance(operator.userId);
  const routed = await origin.call('GET', `/edges/route?contentId=${contents.mid}`, { token: receiver.api().token });
  assert.equal(routed.body.edgeId, paris.edgeId, JSON.stringify(routed.body));
  assert.match(routed.body.why, /nearest holder/);
  const result = await receiver.fetch(contents.mid);
  assert.equal(result.bySource[paris.terminalId], 2 * MiB, JSON.stringify(result.bySource));
  assert.equal(result.bySource.origin ?? 0, 0);
  // The receiver pays for the content as from any source (the list price, less an off-peak discount
  // at night); the edge's operator earns the uploader share, half of it (docs/ledger.md).
  const charged = before - (await balance(member.userId));
  assert.ok(charged === 1000 || charged === 800, `charged ${charged}`);
  assert.equal((await balance(operator.userId)) - operatorBefore, charged / 2);
  // Counted once each piece's last byte left (the receiver may have it a moment before).
  await waitFor(() => paris.stats().hits === 2, 'two hits counted');
  const stats = paris.stats();
  assert.equal(stats.misses, 0);
  assert.equal(stats.bytesServed, 2 * MiB);
});

test('S2.2: an edge that lacks the content fetches it from the origin while serving (a miss), then keeps it', async () => {
  const berlin = await edge('berlin', { label: 'eu/berlin', cacheBytes: 8 * MiB, policy: 'manual' });
  await berlin.sync();
  // Patient (the test agents give up on a silent source after 400 ms): a miss answers once the edge has the piece,
  // which takes longer on a loaded machine, and a receiver that asked again would count a hit.
  const receiver = await agents.start('berlin-viewer', { region: 'eu/berlin', downloads: { stallMs: 20_000, refreshMs: 200 } });
  // Nobody near holds "newest" (lyon is nearer to nobody in eu/berlin than berlin itself, and lyon holds it:
  // a holder comes first), so take lyon away from the routing: the receiver excludes it.
  const lyon = edges.find((e) => e.label === 'eu/lyon')!;
  const result = await receiver.fetch(contents.newest, { exclude: [lyon.terminalId] });
  assert.equal(result.bySource[berlin.terminalId], 1 * MiB, JSON.stringify(result.bySource));
  assert.equal(berlin.stats().misses, 1);
  assert.ok(berlin.store.isComplete(contents.newest), 'the miss filled the cache');
  await berlin.report();
  const detail = await origin.call('GET', `/edges/${berlin.edgeId}`, { token: operator.token });
  assert.deepEqual(detail.body.holdings.map((h: any) => h.contentId), [contents.newest]);
  assert.equal(detail.body.hitRate, 0);
});

test('S2.1: an edge started again keeps its cache and fetches nothing again', async () => {
  const nyc = edges.find((e) => e.label === 'us/nyc')!;
  const home = nyc.home;
  await nyc.close();
  edges.splice(edges.indexOf(nyc), 1);
  const again = await edge('nyc', { label: 'us/nyc', cacheBytes: 8 * MiB, policy: 'manual', home });
  assert.equal(again.edgeId, nyc.edgeId, 'the same edge');
  const plan = await again.sync();
  assert.deepEqual(plan.fetch, []);
  assert.ok(again.store.isComplete(contents.old));
});

test('S2.1: most requested: what receivers asked for most (edges filling caches do not count) fills the cache first', async () => {
  const again = await agents.start('rome-viewer', { region: 'eu/rome' });
  await again.fetch(contents.newest);
  // Requests now: newest 2 (berlin-viewer, rome-viewer), mid 1 (paris-viewer); the edges' own fills are not counted.
  const rome = await edge('rome', { label: 'eu/rome', cacheBytes: 2.5 * MiB, policy: 'most_requested' });
  const plan = await rome.sync();
  assert.deepEqual(rome.store.list().map((c) => c.id), [contents.newest]);
  assert.match(plan.skipped.find((s) => s.contentId === contents.mid)!.why, /no room left/);
  const detail = await origin.call('GET', `/edges/${rome.edgeId}`, { token: operator.token });
  assert.match(detail.body.plan.skipped[0].why, /no room/);
  assert.equal(detail.body.policy, 'most_requested');
});

test('an edge keeps talking to the origin after its day-long terminal session lapses (renewed at a heartbeat)', async () => {
  const rome = edges.find((e) => e.label === 'eu/rome')!;
  const before = rome.api().token;
  origin.clock.advance(25 * 3_600_000);
  await rome.agent.heartbeat();
  assert.notEqual(rome.api().token, before, 'a new session');
  const plan = await rome.report();
  assert.deepEqual(plan.fetch, []);
});
