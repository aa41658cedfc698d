import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Api } from '../../src/core/http-client.ts';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { download, fileTarget } from '../../src/transfer/downloader.ts';
import { makeReceipt as nodeMakeReceipt } from '../../src/transfer/receipt.ts';
import { decodeRanges } from '../../src/transfer/piece-ranges.ts';
import { downloadContent, makeReceipt, type DownloadOptions, type DownloadProgress } from '../../web/src/lib/download.ts';
import { memoryKeyStore } from '../../web/src/lib/device.ts';
import { CascadeError, signText, type FetchLike } from '../../web/src/lib/wire.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';

// #13 point 4: the web app's download library (web/src/lib) is a terminal like the CLI's:
// a WebCrypto key, registration and login, /grants/auto with the origin as only source,
// pieces checked against the signed manifest and the origin's served statements, and
// receipts the origin accepts (S1.2, S1.6). It runs here on Node's WebCrypto and fetch.

const PIECE = 64 * 1024;
const PRICE = 300;
const CREDIT = 1000;

test('receipts are byte for byte those of src/transfer/receipt.ts (same ID rule, same signed text)', async () => {
  const keys = generateKeyPair();
  const pkcs8 = keys.privateKey.export({ format: 'der', type: 'pkcs8' });
  const webKey = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, false, ['sign']);
  const fields = { grant: 'gr_abc', content: 'c'.repeat(64), source: 'origin', receiver: 'trm_x', pieces: '0-7,9', bytes: 9 * PIECE, served: ['s0', 's1'] };
  assert.deepEqual(await makeReceipt(fields, webKey), nodeMakeReceipt(fields, keys.privateKey));
  assert.equal(await signText(webKey, 'cascade-piece:gr_abc:1'), (await import('../../src/core/crypto.ts')).signBytes(keys.privateKey, 'cascade-piece:gr_abc:1'));
});

for (const engine of testEngines()) {
  describe(`browser download library (#13.4, S1.6) on ${engine.name}`, () => {
    let origin: TestOrigin;
    let work: string;
    let store: { token: string };
    let contentId: string;
    const file = randomBytes(PIECE * 20 + 1234); // 21 pieces, the last one short
    const fileSha = createHash('sha256').update(file).digest('hex');
    let n = 0;

    before(async () => {
      // No sign-up credit: members pay with vouchers.
      origin = await startTestOrigin({ engine, config: { pieceSize: PIECE, signupCredit: 0 } });
      work = mkdtempSync(path.join(os.tmpdir(), 'cascade-weblib-'));
      const publisher = await origin.userWithRoles(['publisher']);
      const res = await origin.call('POST', `/contents?title=Film&genre=drama&price=${PRICE}`, { token: publisher.token, body: file, headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      contentId = res.body.id;
      store = await origin.userWithRoles(['store']);
    });
    after(async () => {
      await origin.close();
      rmSync(work, { recursive: true, force: true });
    });

    /** A member whose wallet holds `amount`, put there with a voucher. */
    async function member(amount: number) {
      const m = await origin.userWithRoles(['member'], `web${process.pid}m${++n}`);
      if (amount > 0) {
        const v = await origin.call('POST', '/vouchers', { token: store.token, json: { amount, count: 1 } });
        assert.equal(v.status, 201, JSON.stringify(v.body));
        const r = await origin.call('POST', '/wallet/topup', { token: m.token, json: { code: v.body.vouchers[0].code } });
        assert.equal(r.status, 200, JSON.stringify(r.body));
      }
      return m;
    }
    const wallet = async (token: string) => (await origin.call('GET', '/wallet', { token })).body.balance as { posted: number; pending: number; available: number };
    /** The browser's clock an hour ahead of the origin's: proofs must carry the origin's time anyway. */
    const browserClock = () => ({ now: () => origin.clock.now() + 3_600_000 });
    const opts = (token: string, extra: Partial<DownloadOptions> = {}): DownloadOptions => ({
      origin: origin.url,
      accountToken: token,
      contentId,
      keyStore: memoryKeyStore(),
      clock: browserClock(),
      retryDelayMs: () => 5,
      ...extra,
    });
    const receiptsOf = (terminalId: string) => origin.db.db.selectFrom('receipts').selectAll().where('receiver_id', '=', terminalId).execute();
    const transfersOf = async (userId: string) => {
      const terminals = await origin.db.db.selectFrom('terminals').select('id').where('user_id', '=', userId).execute();
      if (!terminals.length) return [];
      return origin.db.db.selectFrom('transfers').selectAll().where('receiver_id', 'in', terminals.map((t) => t.id)).execute();
    };
    const rejectsWith = async (p: Promise<unknown>, code: string) => {
      await assert.rejects(p, (e: unknown) => {
        assert.ok(e instanceof CascadeError, String(e));
        assert.equal(e.code, code, e.message);
        return true;
      });
    };
    /** A fetch that rewrites piece `index`'s answers with `rewrite` (the first `times` of them). */
    const tamperPiece = (index: number, rewrite: (bytes: Uint8Array, headers: Headers) => void, times = Infinity) => {
      const seen = { count: 0 };
      const f: FetchLike = async (url, init) => {
        const res = await fetch(url, init);
        if (!url.endsWith(`/pieces/${contentId}/${index}`) || res.status !== 200) return res;
        if (++seen.count > times) return res;
        const bytes = new Uint8Array(await res.arrayBuffer());
        const headers = new Headers(res.headers);
        rewrite(bytes, headers);
        return new Response(bytes, { status: 200, headers });
      };
      return { f, seen };
    };

    test('S1.6 a member downloads in the browser: byte-exact, receipts accepted, charged as `cascade get` charges', async () => {
      const web = await member(CREDIT);
      const seen: DownloadProgress[] = [];
      const keyStore = memoryKeyStore();
      const result = await downloadContent(opts(web.token, { keyStore, receiptBatch: 8, onProgress: (p) => seen.push(p) }));
      assert.equal(result.sha256, fileSha);
      assert.equal(result.bytes, file.length);
      assert.ok(Buffer.from(await result.blob.arrayBuffer()).equals(file));
      assert.equal(result.title, 'Film');
      // Progress: from nothing to everything, one verified piece at a time.
      assert.deepEqual(seen[0], { pieces: 0, totalPieces: 21, bytes: 0, totalBytes: file.length });
      assert.deepEqual(seen.at(-1), { pieces: 21, totalPieces: 21, bytes: file.length, totalBytes: file.length });
      assert.ok(seen.every((p, i) => i === 0 || p.pieces === seen[i - 1].pieces + 1));
      // Receipts: 21 pieces in batches of 8, all accepted, every piece exactly once, from the origin.
      assert.equal(result.receipts.accepted.length, 3);
      assert.deepEqual(result.receipts.refused, []);
      const receipts = await receiptsOf(result.terminalId);
      assert.deepEqual(receipts.map((r) => r.id).sort(), [...result.receipts.accepted].sort());
      assert.deepEqual(receipts.flatMap((r) => decodeRanges(r.pieces, 21)!).sort((a, b) => a - b), [...Array(21).keys()]);
      assert.ok(receipts.every((r) => r.source_id === 'origin'));
      // The browser is a terminal of the member, named so, with its key in the store.
      const terminal = await origin.db.db.selectFrom('terminals').selectAll().where('id', '=', result.terminalId).executeTakeFirstOrThrow();
      assert.equal(terminal.user_id, web.userId);
      assert.equal(terminal.name, 'Web browser');
      const [record] = keyStore.records.values();
      assert.equal(record.terminalId, result.terminalId);
      assert.equal(record.keys.privateKey.extractable, false);
      // The transfer is closed and nothing stays held.
      const [transfer] = await transfersOf(web.userId);
      assert.equal(transfer.state, 'done');
      const after = await wallet(web.token);
      assert.equal(after.pending, 0);

      // The same content bought the CLI's way (src/transfer/downloader.ts, what `cascade get` runs) costs the same.
      const cli = await member(CREDIT);
      const device = await deviceSession(new Api(origin.url, cli.token), path.join(work, `home-${n}`));
      await download({ api: new Api(origin.url, device.token), originKey: origin.keys.publicKeyB64, device, contentId, files: fileTarget(path.join(work, `cli-${n}.bin`)), clock: origin.clock });
      const cliAfter = await wallet(cli.token);
      assert.ok(CREDIT - after.posted > 0, 'the browser download was charged');
      assert.deepEqual(after, cliAfter);
      // …and the ledger says so: what left each wallet (posted transfers, holds aside) for this content is the same.
      const spent = async (userId: string) => {
        const rows = await origin.db.db
          .selectFrom('ledger_transfers')
          .selectAll()
          .where('debit_account_id', '=', `wallet:${userId}`)
          .where('kind', 'in', ['normal', 'post'])
          .where('content_id', '=', contentId)
          .execute();
        return rows.reduce((s, r) => s + Number(r.amount), 0);
      };
      assert.equal(await spent(web.userId), CREDIT - after.posted);
      assert.equal(await spent(web.userId), await spent(cli.userId));
    });

    test('the same browser downloads again as the same terminal, and pays nothing more', async () => {
      const web = await member(CREDIT);
      const keyStore = memoryKeyStore();
      const first = await downloadContent(opts(web.token, { keyStore }));
      const paid = await wallet(web.token);
      const second = await downloadContent(opts(web.token, { keyStore }));
      assert.equal(second.terminalId, first.terminalId);
      assert.equal(second.sha256, fileSha);
      assert.deepEqual(await wallet(web.token), paid);
      const terminals = await origin.db.db.selectFrom('terminals').select('id').where('user_id', '=', web.userId).execute();
      assert.equal(terminals.length, 1);
    });

    test('a browser whose terminal the origin no longer accepts registers again', async () => {
      const web = await member(CREDIT);
      const keyStore = memoryKeyStore();
      const first = await downloadContent(opts(web.token, { keyStore }));
      const [id] = keyStore.records.keys();
      // The credential no longer verifies (e.g. the origin's key changed): the old key is still registered, so a new one is made.
      keyStore.records.get(id)!.credential = 'e30.AAAA';
      const second = await downloadContent(opts(web.token, { keyStore }));
      assert.notEqual(second.terminalId, first.terminalId);
      assert.equal(keyStore.records.get(id)!.terminalId, second.terminalId);
      assert.equal(second.sha256, fileSha);
    });

    test('receipts the origin calls receipt_not_served are sent again and accepted; refused for good they are reported', async () => {
      const web = await member(CREDIT);
      let answered = 0;
      // The first two answers say the origin has not yet noted the pieces as served (its note is on its way).
      const notYet: FetchLike = async (url, init) => {
        if (!url.endsWith('/receipts') || answered++ >= 2) return fetch(url, init);
        const { receipts } = JSON.parse(String(init!.body));
        return Response.json({ accepted: [], duplicates: [], refused: receipts.map((_: unknown, index: number) => ({ index, receiptId: null, code: 'receipt_not_served', message: 'not yet' })) });
      };
      const result = await downloadContent(opts(web.token, { fetch: notYet }));
      assert.ok(answered >= 3);
      assert.equal(result.receipts.accepted.length, 1);
      assert.deepEqual(result.receipts.refused, []);
      assert.equal((await receiptsOf(result.terminalId)).length, 1);

      const other = await member(CREDIT);
      const never: FetchLike = async (url, init) => {
        if (!url.endsWith('/receipts')) return fetch(url, init);
        const { receipts } = JSON.parse(String(init!.body));
        return Response.json({ accepted: [], duplicates: [], refused: receipts.map((r: { body: string }, index: number) => ({ index, receiptId: JSON.parse(r.body).id, code: 'receipt_served_invalid', message: 'no' })) });
      };
      const refused = await downloadContent(opts(other.token, { fetch: never }));
      assert.equal(refused.sha256, fileSha);
      assert.deepEqual(refused.receipts.accepted, []);
      assert.deepEqual(refused.receipts.refused.map((r) => r.code), ['receipt_served_invalid']);
    });

    test('a tampered piece is refused: piece_corrupt after three copies, never kept nor receipted', async () => {
      const web = await member(CREDIT);
      const keyStore = memoryKeyStore();
      const { f, seen } = tamperPiece(3, (b) => void (b[100] ^= 0xff));
      await rejectsWith(downloadContent(opts(web.token, { keyStore, fetch: f, concurrency: 1, receiptBatch: 2 })), 'piece_corrupt');
      assert.equal(seen.count, 3);
      const [record] = keyStore.records.values();
      const receipts = await receiptsOf(record.terminalId!);
      // The block 0-1 arrived verified and was receipted; piece 3 is in none (nor 2, its unfinished block's other piece).
      assert.deepEqual(receipts.flatMap((r) => decodeRanges(r.pieces, 21)!).sort((a, b) => a - b), [0, 1]);
    });

    test('one bad copy of a piece is dropped and fetched again; the content arrives exact', async () => {
      const web = await member(CREDIT);
      const { f, seen } = tamperPiece(7, (b) => void (b[0] ^= 1), 1);
      const result = await downloadContent(opts(web.token, { fetch: f }));
      assert.equal(seen.count, 2);
      assert.equal(result.sha256, fileSha);
      assert.deepEqual(result.receipts.refused, []);
    });

    test('a piece whose served statement is not the origin’s is refused: served_unattested', async () => {
      const web = await member(CREDIT);
      const other = generateKeyPair();
      const { f } = tamperPiece(5, (_b, h) => h.set('cascade-served', (other.privateKey.export({ format: 'jwk' }) as { d: string }).d.slice(0, 43)));
      await rejectsWith(downloadContent(opts(web.token, { fetch: f, concurrency: 1 })), 'served_unattested');
    });

    test('a piece longer than the manifest says is not read past its size and is refused', async () => {
      const web = await member(CREDIT);
      const f: FetchLike = async (url, init) => {
        const res = await fetch(url, init);
        if (!url.endsWith(`/pieces/${contentId}/2`)) return res;
        const bytes = new Uint8Array(await res.arrayBuffer());
        const headers = new Headers(res.headers);
        headers.delete('content-length');
        // An endless stream: the library must stop after the piece's size.
        let sent = 0;
        const body = new ReadableStream<Uint8Array>({
          pull(c) {
            c.enqueue(sent === 0 ? bytes : new Uint8Array(PIECE));
            sent++;
          },
        });
        return new Response(body, { status: 200, headers });
      };
      await rejectsWith(downloadContent(opts(web.token, { fetch: f, concurrency: 1 })), 'piece_corrupt');
    });

    test('a tampered manifest is refused (manifest_invalid) before anything is registered or reserved', async () => {
      const web = await member(CREDIT);
      const f: FetchLike = async (url, init) => {
        const res = await fetch(url, init);
        if (!url.endsWith('/manifest')) return res;
        const m = await res.json();
        m.body.price = 0;
        return Response.json(m);
      };
      const before = await wallet(web.token);
      await rejectsWith(downloadContent(opts(web.token, { fetch: f })), 'manifest_invalid');
      // Signed by another key: also refused.
      await rejectsWith(downloadContent(opts(web.token, { originKey: generateKeyPair().publicKeyB64 })), 'manifest_invalid');
      assert.deepEqual(await wallet(web.token), before);
      assert.deepEqual(await transfersOf(web.userId), []);
      assert.equal((await origin.db.db.selectFrom('terminals').select('id').where('user_id', '=', web.userId).execute()).length, 0);
    });

    test('insufficient balance: the API’s code and message, nothing reserved or fetched', async () => {
      const web = await member(PRICE - 1);
      const before = await wallet(web.token);
      let pieceRequests = 0;
      const f: FetchLike = (url, init) => {
        if (url.includes('/pieces/')) pieceRequests++;
        return fetch(url, init);
      };
      await assert.rejects(downloadContent(opts(web.token, { fetch: f })), (e: unknown) => {
        assert.ok(e instanceof CascadeError);
        assert.equal(e.code, 'insufficient_balance');
        assert.equal(e.status, 402);
        assert.ok(e.message.length > 0);
        return true;
      });
      assert.equal(pieceRequests, 0);
      assert.deepEqual(await wallet(web.token), before);
      assert.deepEqual(await transfersOf(web.userId), []);
    });

    test('a content over the browser limit is refused (content_too_large) before anything is reserved', async () => {
      const web = await member(CREDIT);
      const before = await wallet(web.token);
      await rejectsWith(downloadContent(opts(web.token, { maxBytes: file.length - 1 })), 'content_too_large');
      assert.deepEqual(await wallet(web.token), before);
      assert.deepEqual(await transfersOf(web.userId), []);
    });

    test('an unknown content gives the API’s code', async () => {
      const web = await member(CREDIT);
      await rejectsWith(downloadContent(opts(web.token, { contentId: 'f'.repeat(64) })), 'unknown_content');
    });

    test('stopping a download rejects with aborted; pieces of whole blocks are paid, and once only', async () => {
      const web = await member(CREDIT);
      const stop = new AbortController();
      const keyStore = memoryKeyStore();
      await rejectsWith(
        downloadContent(opts(web.token, { keyStore, signal: stop.signal, concurrency: 1, receiptBatch: 4, onProgress: (p) => p.pieces >= 6 && stop.abort() })),
        'aborted',
      );
      const [record] = keyStore.records.values();
      const covered = (await receiptsOf(record.terminalId!)).flatMap((r) => decodeRanges(r.pieces, 21)!);
      // The whole block 0-3 was receipted; 4-5 (an unfinished block, dropped with the page's copy) not.
      assert.deepEqual(covered, [0, 1, 2, 3]);
      // Downloading it again in full costs what one whole download costs: the block's receipt comes again
      // byte-identical (a duplicate), nothing overlaps, nothing is paid twice or left unpaid.
      const again = await downloadContent(opts(web.token, { keyStore, receiptBatch: 4 }));
      assert.deepEqual(again.receipts.refused, []);
      assert.equal(again.receipts.accepted.length, 6);
      const whole = await member(CREDIT);
      await downloadContent(opts(whole.token));
      assert.deepEqual(await wallet(web.token), await wallet(whole.token));
    });
  });
}
