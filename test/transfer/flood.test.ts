import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { Api } from '../../src/core/http-client.ts';
import type { ManualClock } from '../../src/core/clock.ts';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { newId } from '../../src/core/ids.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { download, fileTarget } from '../../src/transfer/downloader.ts';
import { ORIGIN_SOURCE_ID, signGrant, signGrantProof } from '../../src/transfer/grant-token.ts';
import { TestAgents } from '../helpers/agents.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #10.7 "bounded resources": 500 piece requests at once, each with a valid grant, at the
// origin and at an agent (real HTTP on loopback, in this process). Both are capped, and
// their clock (the origin's ManualClock) stands still while the flood is in: a request
// admitted to a slot waits for tokens, yet holds at most one chunk; requests beyond the
// slots and the queue are turned away with 503 source_busy; memory stays within a bound
// far below what reading every admitted piece up front takes. Then the clock moves and
// the admitted requests, and a download started alongside, complete.

const PIECE = 1024 * 1024;
const PIECES = 8;
const FLOOD = 500;
const RATE = 2_000_000; // a quarter second of burst is less than a piece
/**
 * Buffer memory, and resident memory, the flood may add. Reading each admitted piece before
 * waiting for its tokens adds ~100 MiB of buffers (checked: the test then fails on them).
 */
const BOUND = { external: 48 * 2 ** 20, rss: 128 * 2 ** 20 };

/** Moves `clock` on by `stepMs` every few real milliseconds until stopped: time passing, fast. */
function run(clock: ManualClock, stepMs = 200): () => void {
  const timer = setInterval(() => clock.advance(stepMs), 2);
  return () => clearInterval(timer);
}

/** Waits (real time, bounded) until `f` holds. */
async function until(f: () => boolean, what: () => string, ms = 10_000) {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const external = () => process.memoryUsage().arrayBuffers;
const rss = () => process.memoryUsage().rss;

interface Flood {
  statuses: Map<number, number>;
  /** Whole pieces received. */
  complete: number;
  /** Highest external memory and resident set seen while the flood was in. */
  peak: number;
  peakRss: number;
  done: Promise<unknown>;
  stop(): Promise<void>;
}

/** FLOOD requests for pieces at `url`, all at once, each on its own connection; bodies are counted and dropped. */
function flood(url: string, headers: Record<string, string>, contentId: string): Flood {
  const pool = new Pool(url, { connections: FLOOD, headersTimeout: 60_000, bodyTimeout: 60_000 });
  const f: Flood = { statuses: new Map(), complete: 0, peak: external(), peakRss: rss(), done: Promise.resolve(), stop: async () => void (await pool.destroy()) };
  const sample = setInterval(() => {
    f.peak = Math.max(f.peak, external());
    f.peakRss = Math.max(f.peakRss, rss());
  }, 5);
  f.done = Promise.allSettled(
    Array.from({ length: FLOOD }, async (_, k) => {
      const res = await pool.request({ method: 'GET', path: `/pieces/${contentId}/${k % PIECES}`, headers });
      f.statuses.set(res.statusCode, (f.statuses.get(res.statusCode) ?? 0) + 1);
      let bytes = 0;
      for await (const chunk of res.body) bytes += chunk.length;
      if (res.statusCode === 200 && bytes === PIECE) f.complete++;
    }),
  ).finally(() => clearInterval(sample));
  return f;
}

function assertBounded(f: Flood, before: { external: number; rss: number }) {
  const grew = { external: f.peak - before.external, rss: f.peakRss - before.rss };
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  assert.ok(grew.external < BOUND.external && grew.rss < BOUND.rss, `buffers grew by ${mib(grew.external)}, resident memory by ${mib(grew.rss)}`);
}

describe('500 piece requests at once (#10.7)', () => {
  let origin: TestOrigin;
  let work: string;
  let contentId: string;
  let file: Buffer;
  let agents: TestAgents;

  before(async () => {
    origin = await startTestOrigin({ config: { pieceSize: PIECE, originUpRate: RATE, originSlots: 100, originQueue: 50 } });
    work = mkdtempSync(path.join(os.tmpdir(), 'cascade-flood-'));
    agents = new TestAgents(origin, work);
    const publisher = await origin.userWithRoles(['publisher']);
    file = randomBytes(PIECE * PIECES);
    contentId = (await origin.call('POST', '/contents?title=Flood&genre=test&price=0', { token: publisher.token, body: file, headers: { 'content-type': 'application/octet-stream' } })).body.id;
  });
  after(async () => {
    await agents.close();
    await origin.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** A valid grant, signed by the origin, for the flooder (a receiver with a key of its own) to fetch from `source`, and its proof. */
  const grantHeaders = (source: string, clock: ManualClock) => {
    const flooder = generateKeyPair();
    const grant = { id: newId('gr'), content: contentId, receiver: 'trm_flooder', receiverKey: flooder.publicKeyB64, source, pieces: `0-${PIECES - 1}`, exp: clock.now() + 3_600_000 };
    return { authorization: `Grant ${signGrant(grant, origin.keys.privateKey)}`, 'cascade-proof': signGrantProof(flooder.privateKey, grant.id, clock.now()) };
  };

  /** A member's device fetching the content alongside the flood, as `cascade get` would. */
  const honestDownload = async (name: string) => {
    const device = await deviceSession(new Api(origin.url, (await origin.userWithRoles(['member'])).token), path.join(work, name));
    const out = path.join(work, `${name}.bin`);
    return { out, done: download({ api: new Api(origin.url, device.token), originKey: origin.keys.publicKeyB64, device, contentId, files: fileTarget(out), clock: origin.clock }) };
  };

  test('the origin: 100 slots and 50 waiting places; the other 350 are refused; memory stays bounded; all admitted and an honest download complete', async () => {
    const before = { external: external(), rss: rss() };
    const f = flood(origin.url, grantHeaders(ORIGIN_SOURCE_ID, origin.clock), contentId);
    try {
      await until(() => f.statuses.get(503) === FLOOD - 150 && f.statuses.get(200) === 100, () => `refusals for all but 100 served and 50 waiting: ${JSON.stringify([...f.statuses])}`);
      const honest = await honestDownload('honest-origin');
      await new Promise((r) => setTimeout(r, 300)); // the flood settles in; the honest download is turned away and backs off
      assertBounded(f, before);
      const refused = await origin.call('GET', '/metrics');
      assert.match(refused.body, /cascade_piece_requests_refused_total\{code="source_busy"\} (3[5-9]\d|[4-9]\d\d)/);

      const stop = run(origin.clock);
      try {
        await f.done;
        const result = await honest.done;
        assert.equal(f.complete, 150, 'every admitted request got its whole piece');
        assert.equal(result.fetchedPieces, PIECES);
        assert.ok(readFileSync(honest.out).equals(file), 'the honest download is byte-exact');
      } finally {
        stop();
      }
    } finally {
      await f.stop();
    }
  });

  test('an agent: 4 slots, no queue; the other 496 are refused; memory stays bounded; an honest download from it completes', async () => {
    // Everything runs on the origin's clock: grants, proofs, the agent's cap and its own download.
    // No heartbeat during the test: one sent while the flood holds its 4 slots would rightly have the
    // origin call it saturated (S1.5) until the next, and the honest receiver could not be sent to it.
    const seed = await agents.start('seed', { slots: 4, upRate: RATE, transferClock: origin.clock, heartbeatMs: 3_600_000, downloads: { stallMs: 5000, refreshMs: 200 } });
    const stop = run(origin.clock); // the seed fetches from the capped origin: let time pass
    try {
      await seed.fetch(contentId);
    } finally {
      stop();
    }

    // However long the seed's fetch took in real time, its clock is the origin's: grants and proofs
    // are judged on it, not on real time (CI once saw all 500 refused as stale proofs).
    origin.clock.advance(600_000);
    // …and the origin, on that clock, hears from it now, idle: the first beat closes the window that
    // holds the origin's spot check of its copy (a piece sent at its full rate, moments ago in real
    // time), the second reports the idle moment since.
    await seed.heartbeat();
    await seed.heartbeat();
    const before = { external: external(), rss: rss() };
    const f = flood(seed.url, grantHeaders(seed.terminalId, origin.clock), contentId);
    try {
      await until(() => f.statuses.get(503) === FLOOD - 4 && f.statuses.get(200) === 4, () => `refusals for all but the 4 served: ${JSON.stringify([...f.statuses])}`);
      const honest = await honestDownload('honest-agent');
      await new Promise((r) => setTimeout(r, 300));
      assertBounded(f, before);

      const stop = run(origin.clock);
      try {
        await f.done;
        const result = await honest.done;
        assert.equal(f.complete, 4);
        assert.ok(readFileSync(honest.out).equals(file));
        assert.ok((result.bySource[seed.terminalId] ?? 0) > 0, `the agent served the honest receiver: ${JSON.stringify({ bySource: result.bySource, skipped: result.skipped, dropped: result.dropped })}`);
      } finally {
        stop();
      }
    } finally {
      await f.stop();
    }
  });
});
