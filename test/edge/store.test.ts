import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { encodeToken } from '../../src/core/signed-token.ts';
import { storeAccount, walletAccount } from '../../src/ledger/accounts.ts';
import { startEdge, type EdgeNode } from '../../src/edge/node.ts';
import type { MyOrder } from '../../src/edge/orders.ts';
import { storeExtension, type StoreExtension } from '../../src/edge/store/extension.ts';
import type { DeliveryHook } from '../../src/edge/delivery-hook.ts';
import type { EdgeContext } from '../../src/edge/node.ts';
import { isoFiles, zipFiles } from '../../src/edge/store/package-writer.ts';
import { snapshotTables, testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { waitFor } from '../helpers/wait.ts';

// S2.6 (#17 point 3): a store edge takes orders through the origin, packages the content through
// the delivery hook, hands it out by download (ticket) or at the counter (pickup code), deletes
// its copy, reports the delivery and the member is billed once. A live recording is a published
// content like this one (src/live/recordings.ts), so ordering one takes the same path.
// The store edge is the spine's startEdge with the store extension, as `cascade edge --kind store`
// runs it (it fetches the content over the piece protocol); the delivery service is a stand-in
// until the "bill" helper's is on main (test/helpers/edge-orders.ts).

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const PRICE = 700;

/** A stand-in mark: every byte XORed with the delivery serial's low byte (so each copy differs). */
const marked = (data: Buffer, serial: number) => Buffer.from(data.map((b) => b ^ (serial & 0xff || 1)));
const xorDir = mkdtempSync(path.join(os.tmpdir(), 'cascade-xor-'));
after(() => rmSync(xorDir, { recursive: true, force: true }));
const xorHook: DeliveryHook = {
  transform: (_mark, _part, bytes) => bytes,
  async fileFor(mark, source) {
    const out = path.join(xorDir, mark.deliveryId);
    writeFileSync(out, marked(readFileSync(source), mark.serial));
    return { path: out, carrier: null, note: 'xored by the test' };
  },
  release: async (deliveryId) => rmSync(path.join(xorDir, deliveryId), { force: true }),
};

for (const engine of testEngines()) {
  describe(`store server on ${engine.name}`, () => {
    let origin: TestOrigin;
    let work: string;
    let ext: StoreExtension;
    let node: EdgeNode;
    let homeNode: EdgeNode;
    let ctx: EdgeContext;
    let edgeUrl: string;
    let edgeId: string;
    let operator: { token: string; userId: string };
    let staff: { token: string; userId: string };
    let member: { token: string; userId: string };
    let stranger: { token: string; userId: string };
    let contentId: string;
    let expensiveId: string;
    const data = randomBytes(300_000);
    // The edge's own delivery journal reports (ctx.deliveries); a big disk.
    const storeOptions = () => ({ freeBytes: async () => 10 * 1024 ** 3, pollMs: 3_600_000 });

    /** A store edge as `cascade edge --kind store` starts it: the spine's startEdge with the store extension. */
    const startStore = () =>
      startEdge({
        origin: origin.url,
        token: operator.token,
        originKey: origin.keys.publicKeyB64,
        home: path.join(work, 'shop'),
        kind: 'store',
        label: 'eu/main-street',
        cacheBytes: 64 * 1024 * 1024,
        policy: 'manual',
        reportMs: 3_600_000,
        heartbeatMs: 3_600_000,
        clock: origin.clock,
        logger: pino({ level: process.env.STORE_LOG ?? 'silent' }),
        hook: xorHook,
        extensions: (c) => [(ext = storeExtension(c, storeOptions()))],
      });

    before(async () => {
      // The manual clock stands still: every time the orders show must be its reading, not the machine's.
      // (Not set far from the machine's time: the edge's piece fetches then stall — see the report.)
      origin = await startTestOrigin({ engine });
      work = mkdtempSync(path.join(os.tmpdir(), 'cascade-store-'));
      operator = await origin.userWithRoles(['operator']);
      staff = await origin.userWithRoles(['member', 'store']);
      member = await origin.userWithRoles(['member']);
      stranger = await origin.userWithRoles(['member']);
      const publisher = await origin.userWithRoles(['publisher']);
      const publish = async (title: string, price: number, body: Buffer) => {
        const res = await origin.call('POST', `/contents?title=${encodeURIComponent(title)}&genre=test&price=${price}`, { token: publisher.token, body, headers: { 'content-type': 'application/octet-stream' } });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        return res.body.id as string;
      };
      contentId = await publish('Concert: «Live at the Hall» 2026', PRICE, data);
      expensiveId = await publish('Expensive', 2_000_000_000, randomBytes(100));
      node = await startStore();
      ctx = node;
      edgeId = node.edgeId;
      edgeUrl = node.url;
      homeNode = await startEdge({ origin: origin.url, token: operator.token, originKey: origin.keys.publicKeyB64, home: path.join(work, 'home'), kind: 'home', label: 'eu/block-7', cacheBytes: 1024 * 1024, policy: 'manual', reportMs: 3_600_000, heartbeatMs: 3_600_000, clock: origin.clock, logger: pino({ level: 'silent' }) });
    });

    after(async () => {
      await node?.close();
      await homeNode?.close();
      await origin?.close();
      rmSync(work, { recursive: true, force: true });
    });

    const order = (token: string, body: Record<string, unknown>, edge?: string) => origin.call('POST', `/edges/${edge ?? edgeId}/orders`, { token, json: body });
    const mine = async (id: string): Promise<MyOrder> => (await origin.call('GET', '/orders/mine', { token: member.token })).body.items.find((o: MyOrder) => o.id === id);
    const balance = async (account: string) => (await origin.ledger.balance(account)).posted;
    const workDir = (id: string) => path.join(ctx.home, 'store-orders', id);
    /** The delivery as the origin bills it, once the edge's journal has sent what it holds. */
    const billing = async (deliveryId: string) => {
      await node.deliveries.flush();
      const d = (await origin.deliveries.get(deliveryId))!;
      return { state: d.state, charged: d.charged, reports: d.reports };
    };
    /** Every table but `terminals`, where the edges' own heartbeats land whenever they arrive. */
    const snapshot = async () => {
      const { terminals: _beats, ...rest } = await snapshotTables(origin.db.db);
      return rest;
    };
    const BILLED_ONCE = { state: 'billed', charged: PRICE, reports: 1 };
    const NOT_BILLED = { state: 'open', charged: null, reports: 0 };

    test('wallet order as zip: placed → ready → downloaded with its ticket → package verified → copy deleted → billed once', async () => {
      const wallet = walletAccount(member.userId).id;
      await origin.wallets.open(member.userId);
      const before = await balance(wallet);
      const res = await order(member.token, { contentId, format: 'zip', payment: 'wallet' });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const o: MyOrder = res.body;
      assert.equal(o.state, 'placed');
      assert.equal(o.createdAt, new Date(origin.clock.now()).toISOString());
      assert.equal(o.price, PRICE);
      assert.match(o.pickupCode, /^[A-Z2-9]{8}$/);
      assert.deepEqual(origin.orders!.verifyTicket(o.ticket), { typ: 'edge-order', orderId: o.id, edgeId, userId: member.userId, contentId, deliveryId: o.deliveryId, serial: o.serial, format: 'zip' });
      assert.equal((await origin.call('GET', `/orders/mine`, { token: stranger.token })).body.items.length, 0);

      await ext.poll();
      const ready = await mine(o.id);
      assert.equal(ready.state, 'ready');
      assert.ok(ready.packageBytes! > data.length);
      // Store staff see it, without the member's code or ticket.
      const listed = await origin.call('GET', `/edges/${edgeId}/orders?state=ready`, { token: staff.token });
      assert.equal(listed.status, 200);
      const seen = listed.body.items.find((x: MyOrder) => x.id === o.id);
      assert.equal(seen.state, 'ready');
      assert.equal(seen.pickupCode, undefined);
      assert.equal(seen.ticket, undefined);

      // A range that does not reach the end is served and is not yet the pickup.
      const part = await fetch(edgeUrl + o.downloadPath, { headers: { range: 'bytes=0-99' } });
      assert.equal(part.status, 206);
      assert.equal(part.headers.get('content-range'), `bytes 0-99/${ready.packageBytes}`);
      assert.equal((await part.arrayBuffer()).byteLength, 100);
      assert.equal((await mine(o.id)).state, 'ready');

      const dl = await fetch(edgeUrl + o.downloadPath);
      assert.equal(dl.status, 200);
      assert.equal(dl.headers.get('content-type'), 'application/zip');
      assert.equal(Number(dl.headers.get('content-length')), ready.packageBytes);
      const body = Buffer.from(await dl.arrayBuffer());
      assert.equal(sha(body), ready.packageSha256);
      const file = path.join(work, 'download.zip');
      writeFileSync(file, body);
      const inside = await zipFiles(file);
      const fileName = 'Concert_Live_at_the_Hall_2026';
      assert.deepEqual(inside.get(fileName), { bytes: data.length, sha256: sha(marked(data, o.serial)) });
      assert.ok(inside.has('README.txt'));

      await waitFor(async () => (await mine(o.id)).released, 'the edge to release the order');
      const done = await mine(o.id);
      assert.equal(done.state, 'picked_up');
      assert.equal(done.pickedUpBy, 'download');
      assert.ok(!existsSync(workDir(o.id)), 'package and working copy deleted');
      assert.equal(node.store.get(contentId), undefined, 'the content copy dropped');
      assert.deepEqual(await billing(o.deliveryId), BILLED_ONCE);
      assert.equal(await balance(wallet), before - PRICE);
      // Another round, another download attempt: nothing more is charged.
      await ext.poll();
      assert.equal((await fetch(edgeUrl + o.downloadPath)).status, 404);
      assert.equal(await balance(wallet), before - PRICE);
      assert.deepEqual(await billing(o.deliveryId), BILLED_ONCE);
    });

    test('counter order as ISO: handed over with the pickup code, the store’s cash account pays once', async () => {
      const cash = storeAccount(operator.userId).id;
      const res = await order(member.token, { contentId, format: 'iso', payment: 'counter' });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const o: MyOrder = res.body;
      await ext.poll();
      assert.equal((await mine(o.id)).state, 'ready');
      // The package on the edge holds the marked copy.
      const inside = await isoFiles('xorriso', path.join(workDir(o.id), 'package.iso'));
      assert.deepEqual(inside.get('Concert_Live_at_the_Hall_2026'), { bytes: data.length, sha256: sha(marked(data, o.serial)) });
      assert.match(readFileSync(path.join(workDir(o.id), 'files', 'README.txt'), 'utf8'), new RegExp(`Delivery serial: ${o.serial}`));

      const dl = await fetch(edgeUrl + o.downloadPath);
      assert.equal(dl.status, 409);
      assert.equal((await dl.json()).error.code, 'pay_at_counter');

      const snap = await snapshot();
      const wrong = await origin.call('POST', `/edges/${edgeId}/orders/${o.id}/pickup`, { token: staff.token, json: { code: 'WRONG234' } });
      assert.equal(wrong.status, 403);
      assert.equal(wrong.body.error.code, 'wrong_pickup_code');
      const notStaff = await origin.call('POST', `/edges/${edgeId}/orders/${o.id}/pickup`, { token: stranger.token, json: { code: o.pickupCode } });
      assert.equal(notStaff.body.error.code, 'not_store_staff');
      assert.deepEqual(await snapshot(), snap, 'refused pickups change nothing');

      origin.clock.advance(1_000);
      // Read out at the counter: case and dashes do not matter.
      const code = `${o.pickupCode.slice(0, 4)}-${o.pickupCode.slice(4)}`.toLowerCase();
      const ok = await origin.call('POST', `/edges/${edgeId}/orders/${o.id}/pickup`, { token: staff.token, json: { code } });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal(ok.body.state, 'picked_up');
      assert.equal(ok.body.pickedUpBy, staff.userId);
      // The store's cash account owes the platform the price less the shop's share (already in its till).
      const split = (await origin.deliveries.get(o.deliveryId))!.split!;
      const owed = PRICE - split.edge;
      assert.ok(owed > 0 && owed < PRICE);
      assert.equal(ok.body.pickedUpAt, new Date(origin.clock.now()).toISOString());
      assert.equal(ok.body.updatedAt, ok.body.pickedUpAt);
      assert.equal(await balance(cash), -owed);
      const again = await origin.call('POST', `/edges/${edgeId}/orders/${o.id}/pickup`, { token: staff.token, json: { code } });
      assert.equal(again.body.error.code, 'order_wrong_state');

      await ext.poll();
      assert.ok((await mine(o.id)).released);
      assert.ok(!existsSync(workDir(o.id)));
      // Reported at the counter and again by the edge's journal (a duplicate): billed once.
      assert.deepEqual(await billing(o.deliveryId), { ...BILLED_ONCE, charged: owed });
      assert.equal(await balance(cash), -owed);
    });

    test('refusals: unknown or non-store edge, unknown content, ordering twice, insufficient balance, strangers — nothing changed', async () => {
      await origin.wallets.open(member.userId);
      const snap = await snapshot();
      const cases: [Promise<{ status: number; body: any }>, number, string][] = [
        [order(member.token, { contentId, format: 'zip', payment: 'wallet' }, homeNode.edgeId), 409, 'not_a_store'],
        [order(member.token, { contentId, format: 'zip', payment: 'wallet' }, 'edg_nowhere'), 404, 'unknown_edge'],
        [order(member.token, { contentId: 'a'.repeat(64), format: 'zip', payment: 'wallet' }), 404, 'unknown_content'],
        [order(member.token, { contentId, format: 'tar', payment: 'wallet' }), 400, 'invalid_request'],
        [order(member.token, { contentId: expensiveId, format: 'iso', payment: 'wallet' }), 402, 'insufficient_balance'],
        [origin.call('GET', `/edges/${edgeId}/orders`, { token: stranger.token }), 403, 'not_store_staff'],
        [origin.call('GET', '/edges/me/orders', { token: member.token }), 403, 'terminal_required'],
      ];
      for (const [call, status, code] of cases) {
        const res = await call;
        assert.equal(res.status, status, `${code}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error.code, code);
      }
      assert.deepEqual(await snapshot(), snap, 'refused orders change nothing');

      const first = await order(member.token, { contentId, format: 'zip', payment: 'wallet' });
      assert.equal(first.status, 201);
      const snap2 = await snapshot();
      const twice = await order(member.token, { contentId, format: 'iso', payment: 'counter' });
      assert.equal(twice.status, 409);
      assert.equal(twice.body.error.code, 'order_exists');
      assert.deepEqual(await snapshot(), snap2, 'a second order changes nothing');
      // Cancelled before the edge made it: no charge, nothing left on the edge.
      const cancelled = await origin.call('POST', `/orders/${first.body.id}/cancel`, { token: member.token });
      assert.equal(cancelled.body.state, 'cancelled');
      assert.equal((await origin.call('POST', `/orders/${first.body.id}/cancel`, { token: stranger.token })).body.error.code, 'unknown_order');
      await ext.poll();
      const gone = await mine(first.body.id);
      assert.equal(gone.state, 'cancelled');
      assert.ok(gone.released);
      assert.deepEqual(await billing(first.body.deliveryId), NOT_BILLED);

      // Tickets the edge does not take.
      const forged = encodeToken({ typ: 'edge-order', orderId: 'ord_x', edgeId }, (await import('node:crypto')).generateKeyPairSync('ed25519').privateKey);
      const elsewhere = encodeToken({ typ: 'edge-order', orderId: first.body.id, edgeId: 'edg_other' }, origin.keys.privateKey);
      for (const [id, ticket, code] of [['ord_x', forged, 'invalid_ticket'], [first.body.id, elsewhere, 'wrong_edge'], [first.body.id, 'nonsense', 'invalid_ticket'], ['ord_other', first.body.ticket, 'invalid_ticket'], [first.body.id, first.body.ticket, 'no_package']]) {
        const res = await fetch(`${edgeUrl}/orders/${id}/package?ticket=${ticket}`);
        assert.equal((await res.json()).error.code, code);
      }
    });

    test('an order beyond the edge’s free space fails with the reason, and nothing stays on the edge', async () => {
      const tight = storeExtension(ctx, { reporter: { report: async () => assert.fail('nothing to report') }, freeBytes: async () => 500_000, reserveBytes: 0 });
      const res = await order(member.token, { contentId, format: 'zip', payment: 'wallet' });
      await tight.poll();
      const failed = await mine(res.body.id);
      assert.equal(failed.state, 'failed');
      assert.match(failed.reason!, /500000 bytes free.*needs \d+/);
      await tight.poll();
      assert.ok((await mine(res.body.id)).released);
      assert.ok(!existsSync(workDir(res.body.id)));
      assert.deepEqual(await billing(res.body.deliveryId), NOT_BILLED);
      // The same member may order again once it failed.
      const retry = await order(member.token, { contentId, format: 'zip', payment: 'counter' });
      assert.equal(retry.status, 201);
      await origin.call('POST', `/orders/${retry.body.id}/cancel`, { token: member.token });
    });

    test('a restarted store edge finds its packages again, and makes the orders it had claimed', async () => {
      const a: MyOrder = (await order(member.token, { contentId, format: 'zip', payment: 'wallet' })).body;
      await ext.poll();
      assert.equal((await mine(a.id)).state, 'ready');
      // Claimed, then the edge stopped before it made the package.
      const b = await order(stranger.token, { contentId, format: 'iso', payment: 'counter' });
      await node.api().post(`/edges/me/orders/${b.body.id}/claim`);
      await node.close();
      node = await startStore();
      ctx = node;
      assert.equal(node.edgeId, edgeId, 'the same edge again');
      await ext.poll();
      const staffView = (await origin.call('GET', `/edges/${edgeId}/orders`, { token: staff.token })).body.items;
      assert.equal(staffView.find((x: MyOrder) => x.id === b.body.id).state, 'ready');
      const dl = await fetch(node.url + a.downloadPath);
      assert.equal(dl.status, 200);
      assert.equal(sha(Buffer.from(await dl.arrayBuffer())), (await mine(a.id)).packageSha256);
      await waitFor(async () => (await mine(a.id)).released, 'the restarted edge to release the order');
      assert.deepEqual(await billing(a.deliveryId), BILLED_ONCE);
      await origin.call('POST', `/orders/${b.body.id}/cancel`, { token: stranger.token });
      await ext.poll();
      assert.ok(!existsSync(workDir(a.id)) && !existsSync(workDir(b.body.id)));
      assert.equal(node.store.get(contentId), undefined, 'no order needs the content any more: dropped');
    });
  });
}
