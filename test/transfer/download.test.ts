import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'undici';
import { Api } from '../../src/cli/api.ts';
import { AppError } from '../../src/core/errors.ts';
import { deviceSession } from '../../src/terminals/device.ts';
import { download, fileTarget } from '../../src/transfer/downloader.ts';
import { makeReceipt } from '../../src/transfer/receipt.ts';
import { PieceClient } from '../../src/transfer/piece-client.ts';
import { attestServed } from '../../src/transfer/served-attestation.ts';
import { SLICE_HOLD_MS } from '../../src/transfer/coordinator.ts';
import { decodeRanges } from '../../src/transfer/piece-ranges.ts';
import { testEngines } from '../helpers/db.ts';
import { startTestOrigin, type TestOrigin } from '../helpers/origin.ts';
import { startTamperProxy } from '../helpers/tamper-proxy.ts';

const PIECE = 64 * 1024;

for (const engine of testEngines()) {
  describe(`verified download (S1.6) on ${engine.name}`, () => {
    let origin: TestOrigin;
    let work: string;
    let contentId: string;
    let file: Buffer;
    let device: Awaited<ReturnType<typeof deviceSession>>;
    let api: Api;

    before(async () => {
      origin = await startTestOrigin({ engine, config: { pieceSize: PIECE } });
      work = mkdtempSync(path.join(os.tmpdir(), 'cascade-dl-'));
      const publisher = await origin.userWithRoles(['publisher']);
      file = randomBytes(PIECE * 20 + 1234); // 21 pieces, the last one short
      const res = await origin.call('POST', '/contents?title=Film&genre=drama&price=300', {
        token: publisher.token,
        body: file,
        headers: { 'content-type': 'application/octet-stream' },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      contentId = res.body.id;
      const member = await origin.userWithRoles(['member']);
      device = await deviceSession(new Api(origin.url, member.token), path.join(work, 'home'));
      api = new Api(origin.url, device.token);
    });
    after(async () => {
      await origin.close();
      rmSync(work, { recursive: true, force: true });
    });

    const receiptsFor = async (receiver: string) =>
      origin.db.db.selectFrom('receipts').selectAll().where('receiver_id', '=', receiver).execute();

    test('a content arrives byte-exact and every piece is receipted exactly once', async () => {
      const out = path.join(work, 'film.bin');
      const result = await download({ api, originKey: origin.keys.publicKeyB64, device, contentId, files: fileTarget(out), receiptBatch: 8 });
      assert.ok(readFileSync(out).equals(file));
      assert.equal(result.fetchedPieces, 21);
      assert.equal(existsSync(`${out}.part`) || existsSync(`${out}.part.journal`), false);
      const receipts = await receiptsFor(device.terminalId);
      const covered = receipts.flatMap((r) => decodeRanges(r.pieces, 21)!).sort((a, b) => a - b);
      assert.deepEqual(covered, [...Array(21).keys()]);
      assert.equal(receipts.reduce((s, r) => s + r.bytes, 0), file.length);
      assert.ok(receipts.every((r) => r.source_id === 'origin'));
    });

    test('an interrupted download resumes from its verified pieces', async () => {
      const out = path.join(work, 'resume.bin');
      const stop = new AbortController();
      // Stop once 7 pieces are verified; the journal and the part file stay behind.
      await assert.rejects(
        download({
          api, originKey: origin.keys.publicKeyB64, device, contentId, files: fileTarget(out), concurrency: 1, signal: stop.signal,
          onProgress: (p) => {
            if (p.pieces >= 7) stop.abort();
          },
        }),
        (e: AppError) => e.code === 'aborted',
      );
      assert.ok(existsSync(`${out}.part.journal`));
      assert.equal(existsSync(out), false);
      const result = await download({ api, originKey: origin.keys.publicKeyB64, device, contentId, files: fileTarget(out) });
      assert.ok(result.resumedPieces >= 7, `resumed ${result.resumedPieces}`);
      assert.equal(result.fetchedPieces + result.resumedPieces, 21);
      assert.ok(readFileSync(out).equals(file));
    });

    test('a tampered manifest is refused and nothing is written', async () => {
      const proxy = await startTamperProxy(origin.url, (p, body) => {
        if (!p.endsWith('/manifest')) return body;
        const m = JSON.parse(body.toString());
        m.body.price = 0;
        return Buffer.from(JSON.stringify(m));
      });
      try {
        const out = path.join(work, 'tampered.bin');
        await assert.rejects(
          download({ api: new Api(proxy.url, device.token), originKey: origin.keys.publicKeyB64, device, contentId, files: fileTarget(out) }),
          (e: AppError) => e.code === 'manifest_invalid',
        );
        assert.equal(existsSync(out) || existsSync(`${out}.part`) || existsSync(`${out}.part.journal`), false);
      } finally {
        await proxy.close();
      }
    });

    test('a manifest signed by another key is refused', async () => {
      const other = (await import('../../src/core/crypto.ts')).generateKeyPair();
      await assert.rejects(
        download({ api, originKey: other.publicKeyB64, device, contentId, files: fileTarget(path.join(work, 'x.bin')) }),
        (e: AppError) => e.code === 'manifest_invalid',
      );
    });

    test('a source serving wrong bytes: nothing unverified is kept or receipted', async () => {
      const receiver = await deviceSession(new Api(origin.url, (await origin.userWithRoles(['member'])).token), path.join(work, 'home-evil'));
      const evil = await startTamperProxy(origin.url, (p, body) => {
        if (!p.startsWith('/pieces/')) return body;
        const copy = Buffer.from(body);
        copy[0] ^= 0xff;
        return copy;
      });
      try {
        const out = path.join(work, 'evil.bin');
        await assert.rejects(
          download({ api: new Api(origin.url, receiver.token), originKey: origin.keys.publicKeyB64, device: receiver, contentId, files: fileTarget(out), sourceUrlOverride: evil.url }),
          (e: AppError) => e.code === 'piece_corrupt',
        );
        assert.ok(evil.seen.length >= 3);
        assert.equal(existsSync(out), false);
        const journal = readFileSync(`${out}.part.journal`, 'utf8');
        assert.equal(journal.includes('"t":"piece"'), false, 'no piece was journaled as verified');
        assert.equal((await receiptsFor(receiver.terminalId)).length, 0);
      } finally {
        await evil.close();
      }
    });

    test('a source that does not sign what it served: its pieces are not kept (#3, no unpayable pieces)', async () => {
      const receiver = await deviceSession(new Api(origin.url, (await origin.userWithRoles(['member'])).token), path.join(work, 'home-mute'));
      // The proxy forwards the right bytes but drops every header except content-type.
      const mute = await startTamperProxy(origin.url, (_p, body) => body);
      // The receiver of the previous test died holding the origin's slice of every piece; let it lapse.
      origin.clock.advance(SLICE_HOLD_MS);
      try {
        const out = path.join(work, 'mute.bin');
        await assert.rejects(
          download({ api: new Api(origin.url, receiver.token), originKey: origin.keys.publicKeyB64, device: receiver, contentId, files: fileTarget(out), sourceUrlOverride: mute.url }),
          (e: AppError) => e.code === 'served_unattested',
        );
        assert.ok(mute.seen.some((p) => p.startsWith('/pieces/')));
        assert.equal(readFileSync(`${out}.part.journal`, 'utf8').includes('"t":"piece"'), false, 'no piece was journaled');
        assert.equal((await receiptsFor(receiver.terminalId)).length, 0);
      } finally {
        await mute.close();
      }
    });

    test('piece requests are refused without a valid grant for this receiver', async () => {
      const grant = (await api.post('/grants', { contentId })) as { id: string; token: string };
      // Each request on a connection of its own: a proof shown once holds for its connection.
      const piece = async (headers: Record<string, string>) => {
        const client = new Client(origin.url);
        try {
          const res = await client.request({ method: 'GET', path: `/pieces/${contentId}/0`, headers });
          const buf = Buffer.from(await res.body.arrayBuffer());
          return { status: res.statusCode, body: res.statusCode === 200 ? buf : JSON.parse(buf.toString()) };
        } finally {
          await client.close();
        }
      };
      const { signGrantProof } = await import('../../src/transfer/grant-token.ts');
      const proof = (key = device.keys) => signGrantProof(key.privateKey, grant.id, Date.now());

      const ok = await piece({ authorization: `Grant ${grant.token}`, 'cascade-proof': proof() });
      assert.equal(ok.status, 200);

      const cases: [Record<string, string>, number, string][] = [
        [{}, 401, 'grant_missing'],
        [{ authorization: 'Grant garbage', 'cascade-proof': proof() }, 401, 'grant_invalid'],
        [{ authorization: `Grant ${grant.token.split('.')[0]}.${'A'.repeat(86)}`, 'cascade-proof': proof() }, 401, 'grant_invalid'],
      ];
      // Another terminal presenting this receiver's grant.
      const thief = await deviceSession(new Api(origin.url, (await origin.userWithRoles(['member'])).token), path.join(work, 'home-thief'));
      cases.push([{ authorization: `Grant ${grant.token}`, 'cascade-proof': proof(thief.keys) }, 403, 'grant_wrong_receiver']);
      for (const [headers, status, code] of cases) {
        const res = await piece(headers);
        assert.equal(res.status, status, code);
        assert.equal(res.body.error.code, code);
        assert.equal(typeof res.body.error.message, 'string');
      }
      // Expired: move the origin's clock past the grant's life.
      origin.clock.advance(origin.config.grantTtlMs + 1);
      try {
        const res = await piece({ authorization: `Grant ${grant.token}`, 'cascade-proof': signGrantProof(device.keys.privateKey, grant.id, origin.clock.now()) });
        assert.equal(res.status, 401);
        assert.equal(res.body.error.code, 'grant_expired');
      } finally {
        origin.clock.advance(-(origin.config.grantTtlMs + 1));
      }
    });

    test('grants for unknown content, bad ranges and malformed JSON are refused', async () => {
      const auth = { authorization: `Bearer ${device.token}` };
      const before = await origin.db.db.selectFrom('grants').select(origin.db.db.fn.countAll().as('n')).executeTakeFirstOrThrow();
      const cases: [unknown, number, string][] = [
        [{ contentId: 'f'.repeat(64) }, 404, 'unknown_content'],
        [{ contentId: 'nope' }, 400, 'invalid_request'],
        [{ contentId, pieces: '5-2' }, 400, 'invalid_pieces'],
        [{ contentId, pieces: '0-999' }, 400, 'invalid_pieces'],
        [{ contentId, source: 'trm_elsewhere' }, 400, 'unknown_source'],
      ];
      for (const [json, status, code] of cases) {
        const res = await origin.call('POST', '/grants', { json, headers: auth });
        assert.equal(res.status, status, JSON.stringify(json));
        assert.equal(res.body.error.code, code);
      }
      const malformed = await origin.call('POST', '/grants', { body: '{"contentId":', headers: { ...auth, 'content-type': 'application/json' } });
      assert.equal(malformed.status, 400);
      assert.equal(malformed.body.error.code, 'malformed_json');
      const after = await origin.db.db.selectFrom('grants').select(origin.db.db.fn.countAll().as('n')).executeTakeFirstOrThrow();
      assert.equal(Number(after.n), Number(before.n), 'no grant was stored');
    });

    /** Fetches pieces from the origin under a grant and returns its signed served statements. */
    const fetchServed = async (grant: { id: string; token: string }, pieces: number[]) => {
      const client = new PieceClient({ sourceUrl: origin.url, grant: { id: grant.id, token: grant.token, contentId }, receiverKey: device.keys.privateKey, clock: origin.clock, connections: 1 });
      try {
        const served: string[] = [];
        for (const i of pieces) served.push((await client.fetch(i, Buffer.alloc(PIECE))).served!);
        return served;
      } finally {
        await client.close();
      }
    };

    test('receipts: forged, replayed, conflicting and ungranted ones', async () => {
      const grant = (await api.post('/grants', { contentId, pieces: '0-3' })) as { id: string; token: string };
      const served = await fetchServed(grant, [0, 1, 2]);
      const fields = { grant: grant.id, content: contentId, source: 'origin', receiver: device.terminalId, pieces: '0-1', bytes: 2 * PIECE, served: served.slice(0, 2) };
      const good = makeReceipt(fields, device.keys.privateKey);
      const submit = (receipts: unknown[]) => origin.call('POST', '/receipts', { json: { receipts }, token: device.token });
      const stored = async () => (await origin.db.db.selectFrom('receipts').select('id').where('grant_id', '=', grant.id).execute()).length;

      const forger = (await import('../../src/core/crypto.ts')).generateKeyPair();
      const refusals: [unknown, number, string][] = [
        [makeReceipt(fields, forger.privateKey), 400, 'receipt_bad_signature'],
        [makeReceipt({ ...fields, pieces: '4-5' }, device.keys.privateKey), 400, 'receipt_pieces_not_granted'],
        // #3: pieces the source never signed as served under this grant.
        [makeReceipt({ ...fields, served: [] }, device.keys.privateKey), 400, 'receipt_not_served'],
        [makeReceipt({ ...fields, served: [served[1], served[0]] }, device.keys.privateKey), 400, 'receipt_not_served'],
        [makeReceipt({ ...fields, served: fields.served.map((a) => a.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'))) }, device.keys.privateKey), 400, 'receipt_not_served'],
        [makeReceipt({ ...fields, served: [0, 1].map((i) => attestServed(device.keys.privateKey, grant.id, i)) }, device.keys.privateKey), 400, 'receipt_not_served'],
        [makeReceipt({ ...fields, pieces: '0-2', bytes: 3 * PIECE, served: [...fields.served, fields.served[1]] }, device.keys.privateKey), 400, 'receipt_not_served'],
        [makeReceipt({ ...fields, bytes: 3 * PIECE }, device.keys.privateKey), 400, 'receipt_bytes_mismatch'],
        [makeReceipt({ ...fields, source: 'trm_x' }, device.keys.privateKey), 400, 'receipt_grant_mismatch'],
        [{ body: '{"typ":"receipt"}', signature: 'x' }, 400, 'receipt_invalid'],
      ];
      for (const [r, status, code] of refusals) {
        const res = await submit([good, r]);
        assert.equal(res.status, status, code);
        assert.equal(res.body.error.code, code);
        assert.equal(await stored(), 0, `${code}: the whole batch is refused`);
      }
      const first = await submit([good]);
      assert.deepEqual(first.body, { accepted: [JSON.parse(good.body).id], duplicates: [] });
      const replay = await submit([good]);
      assert.deepEqual(replay.body, { accepted: [], duplicates: [JSON.parse(good.body).id] });
      // Same ID, other bytes: re-signed body with a different field order.
      const b = JSON.parse(good.body);
      const reordered = JSON.stringify({ id: b.id, ...b });
      const conflict = await submit([{ body: reordered, signature: (await import('../../src/core/crypto.ts')).signBytes(device.keys.privateKey, reordered) }]);
      assert.equal(conflict.status, 409);
      assert.equal(conflict.body.error.code, 'receipt_conflict');
      const overlap = await submit([makeReceipt({ ...fields, pieces: '1-2', served: served.slice(1, 3) }, device.keys.privateKey)]);
      assert.equal(overlap.status, 409);
      assert.equal(overlap.body.error.code, 'receipt_overlap');
      assert.equal(await stored(), 1);
    });
  });
}
