import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AppError } from '../../src/core/errors.ts';
import { defaultOfflineAfterMs } from '../../src/terminals/service.ts';
import { testEngines } from '../helpers/db.ts';
import { beat, openFixture, type Fixture } from './fixture.ts';

// S1.2 holdings reports and the S1.3 holder registry.

const isRefusal = (status: number, code: string) => (err: unknown) => err instanceof AppError && err.status === status && err.code === code;

async function heldBy(f: Fixture, terminalId: string): Promise<string[]> {
  const rows = await f.handle.db.selectFrom('holdings').select('content_id').where('terminal_id', '=', terminalId).orderBy('content_id').execute();
  return rows.map((r) => r.content_id);
}

for (const engine of testEngines()) {
  describe(`holdings and holders (${engine.name})`, () => {
    let f: Fixture;
    before(async () => {
      f = await openFixture(engine);
    });
    after(() => f.close());

    test('#3/#19: a serving terminal\'s first claim on a content is spot-checked once; a whole claim after a piece claim is not checked again', async () => {
      const checks: string[] = [];
      let refuse = false;
      const g = await openFixture(engine, {
        proveHolding: async (_t, _url, contentId) => {
          checks.push(contentId);
          if (refuse) throw new AppError('holding_unproven', 'Could not check piece 0.', 400);
        },
      });
      try {
        const dev = (await g.newTerminal()).id;
        await g.svc.updateAddress(dev, { serveUrl: 'http://127.0.0.1:9/' });
        const [a, b, c] = [await g.addContent(), await g.addContent(), await g.addContent()];
        await g.svc.reportPieces(dev, a, '0-1');
        await g.svc.reportPieces(dev, a, '0-3');
        assert.deepEqual(checks, [a], 'later piece claims are not checked again');
        await g.svc.reportHoldings(dev, [a], 'add');
        assert.deepEqual(checks, [a], 'the download that ended turns its piece claim whole without a second check');
        await g.svc.reportHoldings(dev, [a, b], 'add');
        assert.deepEqual(checks, [a, b], 'a content never claimed is checked');
        refuse = true;
        const before = await g.count('holdings');
        await assert.rejects(g.svc.reportHoldings(dev, [c], 'add'), isRefusal(400, 'holding_unproven'));
        assert.equal(await g.count('holdings'), before, 'a refused claim records nothing');
        assert.deepEqual(checks, [a, b, c]);
      } finally {
        await g.close();
      }
    });

    test('S1.2: a piece claim arriving after the whole claim (a refresh on its way when the download ended) does not narrow it', async () => {
      const t = await f.newTerminal();
      const a = await f.addContent();
      const claim = async () => (await f.handle.db.selectFrom('holdings').select('pieces').where('terminal_id', '=', t.id).where('content_id', '=', a).executeTakeFirst())?.pieces;
      await f.svc.reportPieces(t.id, a, '0-1');
      assert.equal(await claim(), '0-1');
      await f.svc.reportHoldings(t.id, [a], 'add');
      assert.equal(await claim(), null, 'whole');
      await f.svc.reportPieces(t.id, a, '0-2');
      assert.equal(await claim(), null, 'still whole: the late piece claim is older news');
      // A terminal that no longer holds it says so with a replace; its next piece claim counts again.
      await f.svc.reportHoldings(t.id, [], 'replace');
      assert.equal(await claim(), undefined);
      await f.svc.reportPieces(t.id, a, '0');
      assert.equal(await claim(), '0');
    });

    test('replace states the full list; add extends it; repeats are harmless', async () => {
      const t = await f.newTerminal();
      const [a, b, c] = [await f.addContent(), await f.addContent(), await f.addContent()];
      assert.deepEqual(await f.svc.reportHoldings(t.id, [a, b, a], 'replace'), { holdings: 2 });
      assert.deepEqual(await heldBy(f, t.id), [a, b].sort());
      assert.deepEqual(await f.svc.reportHoldings(t.id, [c], 'add'), { holdings: 3 });
      assert.deepEqual(await f.svc.reportHoldings(t.id, [b], 'replace'), { holdings: 1 });
      assert.deepEqual(await heldBy(f, t.id), [b]);
      assert.deepEqual(await f.svc.reportHoldings(t.id, [], 'replace'), { holdings: 0 });
    });

    test('unknown content is 404 unknown_content and nothing is recorded, even for the known IDs beside it', async () => {
      const t = await f.newTerminal();
      const a = await f.addContent();
      await f.svc.reportHoldings(t.id, [a], 'replace');
      const ghost = randomBytes(32).toString('hex');
      await assert.rejects(f.svc.reportHoldings(t.id, [ghost], 'replace'), isRefusal(404, 'unknown_content'));
      await assert.rejects(f.svc.reportHoldings(t.id, [await f.addContent(), ghost], 'add'), isRefusal(404, 'unknown_content'));
      assert.deepEqual(await heldBy(f, t.id), [a]);
    });

    test('malformed content IDs are 400 invalid_content_id and nothing is recorded', async () => {
      const t = await f.newTerminal();
      const before = await f.count('holdings');
      for (const bad of ['abc', 'A'.repeat(64), '0'.repeat(63) + 'g', 42 as any]) {
        await assert.rejects(f.svc.reportHoldings(t.id, [bad], 'add'), isRefusal(400, 'invalid_content_id'));
      }
      assert.equal(await f.count('holdings'), before);
    });

    test('holders lists each holder with its last state and online flag, online first', async () => {
      const content = await f.addContent();
      const quiet = await f.newTerminal('quiet');
      const busy = await f.newTerminal('busy');
      const bystander = await f.newTerminal('bystander');
      await f.svc.reportHoldings(quiet.id, [content], 'add');
      await f.svc.reportHoldings(busy.id, [content], 'add');
      await f.svc.heartbeat(busy.id, beat({ cpu: 0.7 }));
      await f.svc.heartbeat(bystander.id, beat());

      const list = await f.svc.holders(content);
      assert.deepEqual(list.map((h) => [h.name, h.online]), [['busy', true], ['quiet', false]]);
      const [h] = list;
      assert.equal(h!.terminalId, busy.id);
      assert.deepEqual(h!.state, { ...beat({ cpu: 0.7 }), at: f.clock.now() });
      assert.equal(h!.lastSeenAt, new Date(f.clock.now()).toISOString());
      assert.equal(list[1]!.state, null);
      assert.equal(list[1]!.lastSeenAt, null);
    });

    test('online turns offline after offlineAfterMs on the injected clock, flushed or not', async () => {
      const content = await f.addContent();
      const t = await f.newTerminal();
      await f.svc.reportHoldings(t.id, [content], 'replace');
      assert.equal(f.svc.offlineAfterMs, defaultOfflineAfterMs(f.config));
      await f.svc.heartbeat(t.id, beat());
      f.clock.advance(f.svc.offlineAfterMs);
      assert.equal((await f.svc.holders(content))[0]!.online, true, 'unflushed, at the limit');
      await f.svc.flush();
      assert.equal((await f.svc.holders(content))[0]!.online, true, 'flushed, at the limit');
      f.clock.advance(1);
      assert.equal((await f.svc.holders(content))[0]!.online, false, 'one ms past the limit');
      await f.svc.heartbeat(t.id, beat());
      assert.equal((await f.svc.holders(content))[0]!.online, true, 'back after a new beat');
    });

    test('unflushed beats are merged over stored ones', async () => {
      const content = await f.addContent();
      const t = await f.newTerminal();
      await f.svc.reportHoldings(t.id, [content], 'replace');
      await f.svc.heartbeat(t.id, beat({ cpu: 0.1 }));
      await f.svc.flush();
      f.clock.advance(500);
      await f.svc.heartbeat(t.id, beat({ cpu: 0.2 }));
      const [h] = await f.svc.holders(content);
      assert.equal(h!.state?.cpu, 0.2);
      assert.equal(h!.lastSeenAt, new Date(f.clock.now()).toISOString());
    });

    test('holders of unknown or malformed content are refused', async () => {
      await assert.rejects(f.svc.holders(randomBytes(32).toString('hex')), isRefusal(404, 'unknown_content'));
      await assert.rejects(f.svc.holders('nope'), isRefusal(400, 'invalid_content_id'));
    });

    test('content nobody holds has an empty holder list', async () => {
      assert.deepEqual(await f.svc.holders(await f.addContent()), []);
    });
  });
}
