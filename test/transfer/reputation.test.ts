import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ManualClock } from '../../src/core/clock.ts';
import { AppError } from '../../src/core/errors.ts';
import type { DbHandle } from '../../src/db/connection.ts';
import { ReputationService, type PeerReport } from '../../src/transfer/reputation.ts';
import { testEngines } from '../helpers/db.ts';

// Peer reports and reputation (S1.5 reliability, #3 "Bad peers"), on both engines.
// The reports reference terminals and contents by foreign key, so the setup inserts
// minimal rows of those directly; this file tests the transfer domain only.

const isRefusal = (status: number, code: string) => (err: unknown) => err instanceof AppError && err.status === status && err.code === code;
const zeros = { completedUploads: 0, bytesUploaded: 0, badPieces: 0, stalls: 0 };

let seq = 0;

for (const engine of testEngines()) {
  describe(`peer reputation (${engine.name})`, () => {
    let handle: DbHandle;
    let clock: ManualClock;
    let svc: ReputationService;
    let userId: string;

    before(async () => {
      handle = await engine.open();
      clock = new ManualClock(Date.UTC(2026, 0, 1));
      svc = new ReputationService({ db: handle.db, clock });
      userId = `usr_rep${++seq}`;
      await handle.db.insertInto('users').values({ id: userId, username: `rep${process.pid}x${seq}`, password_hash: 'x', roles: ['member'], created_at: new Date(clock.now()) }).execute();
    });
    after(() => handle.close());

    async function terminal(): Promise<string> {
      const id = `trm_${randomBytes(6).toString('hex')}`;
      await handle.db
        .insertInto('terminals')
        .values({ id, user_id: userId, name: id, public_key: randomBytes(32).toString('base64url'), region: '', network: '', serve_url: null, created_at: new Date(clock.now()), last_seen_at: null, last_state: null })
        .execute();
      return id;
    }

    async function content(): Promise<string> {
      const id = randomBytes(32).toString('hex');
      await handle.db
        .insertInto('contents')
        .values({ id, title: 't', summary: '', author: '', genre: 'g', price: 0, publisher_id: userId, piece_size: 1024, piece_count: 10, total_size: 10240, manifest: {} as any, created_at: new Date(clock.now()) })
        .execute();
      return id;
    }

    async function counts() {
      const n = async (table: 'peer_reports' | 'peer_reputation') =>
        Number((await handle.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
      return { reports: await n('peer_reports'), reputation: await n('peer_reputation') };
    }

    async function one(id: string) {
      return (await svc.get([id])).get(id);
    }

    test('each kind moves its counter, and the report is kept as evidence', async () => {
      const [rx, src, c] = [await terminal(), await terminal(), await content()];
      await svc.report(rx, { contentId: c, sourceId: src, kind: 'bad_piece', pieces: '0-2,5' });
      assert.deepEqual(await one(src), { ...zeros, badPieces: 4 });
      await svc.report(rx, { contentId: c, sourceId: src, kind: 'bad_piece' }); // no pieces named: at least 1
      assert.deepEqual(await one(src), { ...zeros, badPieces: 5 });
      await svc.report(rx, { contentId: c, sourceId: src, kind: 'stalled', transferId: 'tx_1' });
      assert.deepEqual(await one(src), { ...zeros, badPieces: 5, stalls: 1 });
      await svc.report(rx, { contentId: c, sourceId: src, kind: 'completed', bytes: 5_000_000_000, pieces: '0-9' });
      await svc.report(rx, { contentId: c, sourceId: src, kind: 'completed', bytes: 1024 });
      assert.deepEqual(await one(src), { completedUploads: 2, bytesUploaded: 5_000_001_024, badPieces: 5, stalls: 1 });
      await svc.report(rx, { contentId: c, sourceId: src, kind: 'refused' }); // evidence only
      assert.deepEqual(await one(src), { completedUploads: 2, bytesUploaded: 5_000_001_024, badPieces: 5, stalls: 1 });

      const rows = await handle.db.selectFrom('peer_reports').selectAll().where('source_id', '=', src).orderBy('created_at').orderBy('kind').execute();
      assert.equal(rows.length, 6);
      const stall = rows.find((r) => r.kind === 'stalled')!;
      assert.match(stall.id, /^rep_/);
      assert.deepEqual(
        { reporter: stall.reporter_id, content: stall.content_id, transfer: stall.transfer_id, pieces: stall.pieces, bytes: Number(stall.bytes), at: stall.created_at.getTime() },
        { reporter: rx, content: c, transfer: 'tx_1', pieces: null, bytes: 0, at: clock.now() },
      );
      const updated = await handle.db.selectFrom('peer_reputation').select('updated_at').where('terminal_id', '=', src).executeTakeFirstOrThrow();
      assert.equal(updated.updated_at.getTime(), clock.now());
    });

    test('reports are not idempotent: the same report twice counts twice', async () => {
      const [rx, src, c] = [await terminal(), await terminal(), await content()];
      const r: PeerReport = { contentId: c, sourceId: src, kind: 'stalled', transferId: 'tx_same' };
      await svc.report(rx, r);
      await svc.report(rx, r);
      assert.equal((await one(src))!.stalls, 2);
    });

    test('concurrent reports about one source all count (the upsert adds in the database)', async () => {
      const [src, c] = [await terminal(), await content()];
      const rxs = await Promise.all(Array.from({ length: 8 }, () => terminal()));
      await Promise.all(rxs.flatMap((rx) => [1, 2].map(() => svc.report(rx, { contentId: c, sourceId: src, kind: 'completed', bytes: 100 }))));
      assert.deepEqual(await one(src), { ...zeros, completedUploads: 16, bytesUploaded: 1600 });
    });

    test('reports about the origin are stored but move no reputation', async () => {
      const [rx, c] = [await terminal(), await content()];
      const before = await counts();
      await svc.report(rx, { contentId: c, sourceId: 'origin', kind: 'bad_piece', pieces: '1' });
      await svc.report(rx, { contentId: c, sourceId: 'origin', kind: 'completed', bytes: 10 });
      const afterwards = await counts();
      assert.equal(afterwards.reports, before.reports + 2);
      assert.equal(afterwards.reputation, before.reputation);
      assert.deepEqual(await one('origin'), zeros);
    });

    test('get returns zeros for terminals nobody reported on, and an empty map for no ids', async () => {
      const [rx, src, quiet, c] = [await terminal(), await terminal(), await terminal(), await content()];
      await svc.report(rx, { contentId: c, sourceId: src, kind: 'stalled' });
      const got = await svc.get([src, quiet, 'trm_never_existed', src]);
      assert.deepEqual([...got.keys()], [src, quiet, 'trm_never_existed']);
      assert.deepEqual(got.get(src), { ...zeros, stalls: 1 });
      assert.deepEqual(got.get(quiet), zeros);
      assert.deepEqual(got.get('trm_never_existed'), zeros);
      assert.equal((await svc.get([])).size, 0);
    });

    describe('exclusion rule', () => {
      test('after one bad_piece report, only the reporter stops seeing the source, and only for that content', async () => {
        const [a, b, src, other, c, c2] = [await terminal(), await terminal(), await terminal(), await terminal(), await content(), await content()];
        await svc.report(a, { contentId: c, sourceId: src, kind: 'bad_piece', pieces: '3' });
        assert.deepEqual(await svc.excludedFor(c, a), new Set([src]));
        assert.deepEqual(await svc.excludedFor(c, b), new Set());
        assert.deepEqual(await svc.excludedFor(c2, a), new Set());
        // a second report by the same receiver is still one witness
        await svc.report(a, { contentId: c, sourceId: src, kind: 'bad_piece', pieces: '4' });
        assert.deepEqual(await svc.excludedFor(c, b), new Set());
        // the reporter's verdict is about that source only
        await svc.report(a, { contentId: c, sourceId: other, kind: 'completed', bytes: 1 });
        assert.deepEqual(await svc.excludedFor(c, a), new Set([src]));
      });

      test('after two distinct receivers report bad pieces, everyone stops seeing the source for that content', async () => {
        const [a, b, d, src, c, c2] = [await terminal(), await terminal(), await terminal(), await terminal(), await content(), await content()];
        await svc.report(a, { contentId: c, sourceId: src, kind: 'bad_piece' });
        await svc.report(b, { contentId: c, sourceId: src, kind: 'bad_piece' });
        for (const who of [a, b, d]) assert.deepEqual(await svc.excludedFor(c, who), new Set([src]), who);
        assert.deepEqual(await svc.excludedFor(c2, d), new Set());
        assert.deepEqual(await svc.excludedFor(c2, a), new Set());
      });

      test('two reporters on different contents do not add up', async () => {
        const [a, b, d, src, c, c2] = [await terminal(), await terminal(), await terminal(), await terminal(), await content(), await content()];
        await svc.report(a, { contentId: c, sourceId: src, kind: 'bad_piece' });
        await svc.report(b, { contentId: c2, sourceId: src, kind: 'bad_piece' });
        assert.deepEqual(await svc.excludedFor(c, d), new Set());
        assert.deepEqual(await svc.excludedFor(c2, d), new Set());
      });

      test('stalls, refusals and completions never exclude', async () => {
        const [a, b, d, src, c] = [await terminal(), await terminal(), await terminal(), await terminal(), await content()];
        for (const kind of ['stalled', 'refused', 'completed'] as const) {
          await svc.report(a, { contentId: c, sourceId: src, kind });
          await svc.report(b, { contentId: c, sourceId: src, kind });
        }
        for (const who of [a, b, d]) assert.deepEqual(await svc.excludedFor(c, who), new Set());
      });

      test('the origin is never excluded', async () => {
        const [a, b, c] = [await terminal(), await terminal(), await content()];
        await svc.report(a, { contentId: c, sourceId: 'origin', kind: 'bad_piece' });
        await svc.report(b, { contentId: c, sourceId: 'origin', kind: 'bad_piece' });
        assert.deepEqual(await svc.excludedFor(c, a), new Set());
      });
    });

    describe('refusals store nothing', () => {
      test('bad input is 400 invalid_report', async () => {
        const [rx, src, c] = [await terminal(), await terminal(), await content()];
        const ok: PeerReport = { contentId: c, sourceId: src, kind: 'completed', bytes: 1 };
        const bad: Array<[string, string, PeerReport]> = [
          ['unknown kind', rx, { ...ok, kind: 'great' as any }],
          ['missing kind', rx, { ...ok, kind: undefined as any }],
          ['negative bytes', rx, { ...ok, bytes: -1 }],
          ['fractional bytes', rx, { ...ok, bytes: 1.5 }],
          ['bytes at 1e13', rx, { ...ok, bytes: 1e13 }],
          ['NaN bytes', rx, { ...ok, bytes: NaN }],
          ['string bytes', rx, { ...ok, bytes: '5' as any }],
          ['self report', src, ok],
          ['self report (bad piece)', rx, { ...ok, sourceId: rx, kind: 'bad_piece' }],
          ['malformed pieces', rx, { ...ok, kind: 'bad_piece', pieces: '3-1' }],
          ['overlapping pieces', rx, { ...ok, kind: 'bad_piece', pieces: '0-3,2' }],
          ['empty pieces', rx, { ...ok, kind: 'bad_piece', pieces: '' }],
          ['too many pieces', rx, { ...ok, kind: 'bad_piece', pieces: '0-1000000' }],
          ['malformed content id', rx, { ...ok, contentId: 'abc' }],
          ['empty source', rx, { ...ok, sourceId: '' }],
          ['non-string transfer id', rx, { ...ok, transferId: 42 as any }],
        ];
        const before = await counts();
        for (const [name, reporter, r] of bad) {
          await assert.rejects(svc.report(reporter, r), isRefusal(400, 'invalid_report'), name);
        }
        assert.deepEqual(await counts(), before);
        assert.deepEqual(await one(src), zeros);
        assert.deepEqual(await one(rx), zeros);
      });

      test('unknown content, source or reporter is 404, and the report row is rolled back with it', async () => {
        const [rx, src, c] = [await terminal(), await terminal(), await content()];
        const before = await counts();
        await assert.rejects(svc.report(rx, { contentId: randomBytes(32).toString('hex'), sourceId: src, kind: 'stalled' }), isRefusal(404, 'unknown_content'));
        // the report row goes in first; the reputation upsert then fails on the source
        await assert.rejects(svc.report(rx, { contentId: c, sourceId: 'trm_ghost', kind: 'bad_piece' }), isRefusal(404, 'unknown_terminal'));
        await assert.rejects(svc.report(rx, { contentId: c, sourceId: 'trm_ghost', kind: 'refused' }), isRefusal(404, 'unknown_terminal'));
        await assert.rejects(svc.report('trm_ghost', { contentId: c, sourceId: src, kind: 'completed', bytes: 3 }), isRefusal(404, 'unknown_terminal'));
        assert.deepEqual(await counts(), before);
        assert.deepEqual(await one(src), zeros);
        assert.deepEqual(await svc.excludedFor(c, rx), new Set());
      });
    });
  });
}
