import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'undici';
import { Api } from '../../src/core/http-client.ts';
import { AppError } from '../../src/core/errors.ts';
import { generateKeyPair } from '../../src/core/crypto.ts';
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
      // #19: told once the copy is whole, before the download's last round trips to the origin.
      const whole: Buffer[] = [];
      const result = await download({ api, originKey: origin.keys.publicKeyB64, device, contentId, files: fileTarget(out), receiptBatch: 8, onComplete: () => whole.push(readFileSync(`${out}.part`)) });
      assert.equal(whole.length, 1, 'onComplete is called once');
      assert.ok(whole[0].equals(file), 'when told, the file holds every byte');
      assert.ok(readFileSync(out).equals(file));
      assert.equal(result.fetchedPieces, 21);
      assert.equal(existsSync(`${out}.part`) || existsSync(`${out}.part.journal`), false);
      const receipts = await receiptsFor(device.terminalId);
      const covered = receipts.flatMap((r) => decodeRanges(r.pieces, 21)!).sort((a, b) => a - b);
      assert.deepEqual(covered, [...Array(21).keys()]);
      assert.equal(receipts.reduce((s, r) => s + r.bytes, 0), file.length);
      assert.ok(receipts.every((r) => r.source_id === 'origin'));
    });

    test('a receiver whose clock is 10 minutes off the origin’s signs its proofs on the origin’s time and gets the content', { timeout: 60_000 }, async () => {
      // The download runs on the machine's clock; the origin's is set 10 minutes behind it.
      const out = path.join(work, 'skewed.bin');
      const was = origin.clock.now();
      origin.clock.set(Date.now() - 10 * 60_000);
      try {
        const result = await download({ api, originKey: origin.keys.publicKeyB64, device, contentId, files: fileTarget(out) });
        assert.ok(readFileSync(out).equals(file));
        assert.equal(result.fetchedPieces, 21);
        assert.deepEqual(result.dropped, {});
      } finally {
        origin.clock.set(was);
      }
    });

    test('when the origin refuses our piece requests and nobody else is offered, the download fails with its reason (not a silent wait)', { timeout: 60_000 }, async () => {
      // Proofs signed with a key that is not the terminal's: every piece request is refused.
      const impostor = { ...device, keys: generateKeyPair() };
      await assert.rejects(download({ api, originKey: origin.keys.publicKeyB64, device: impostor, contentId, files: fileTarget(path.join(work, 'refused.bin')) }), (e: AppError) => {
        assert.equal(e.code, 'grant_wrong_receiver');
        assert.match(e.message, /origin refused our piece requests/);
        return true;
      });
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
          download({ api: new Api(origin.url, receiver.token), originKey: origin.keys.publicKeyB64, device: receiver, contentId, files: fileTarget(out), sourceUrlOverride: evil.url, runPieces: 1 }), // piece by piece: the proxy spoils the first byte of each answer
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
      // The receiver's own proof, timed 5 minutes behind the origin's clock: stale, with the origin's time.
      cases.push([{ authorization: `Grant ${grant.token}`, 'cascade-proof': signGrantProof(device.keys.privateKey, grant.id, origin.clock.now() - 300_000) }, 401, 'proof_stale']);
      for (const [headers, status, code] of cases) {
        const res = await piece(headers);
        assert.equal(res.status, status, code);
        assert.equal(res.body.error.code, code);
        assert.equal(typeof res.body.error.message, 'string');
        if (code === 'proof_stale') assert.equal(res.body.error.details.sourceTime, origin.clock.now());
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

    test('receipts are judged one by one (#10 point 5): forged, replayed, conflicting and ungranted ones are refused with their code, the valid ones settle', async () => {
      const grant = (await api.post('/grants', { contentId, pieces: '0-3' })) as { id: string; token: string };
      const served = await fetchServed(grant, [0, 1, 2]);
      const fields = { grant: grant.id, content: contentId, source: 'origin', receiver: device.terminalId, pieces: '0-1', bytes: 2 * PIECE, served: served.slice(0, 2) };
      const good = makeReceipt(fields, device.keys.privateKey);
      const goodId = JSON.parse(good.body).id;
      const submit = (receipts: unknown[]) => origin.call('POST', '/receipts', { json: { receipts }, token: device.token });
      const stored = async () => (await origin.db.db.selectFrom('receipts').select('id').where('grant_id', '=', grant.id).execute()).map((r) => r.id);

      const forger = (await import('../../src/core/crypto.ts')).generateKeyPair();
      const refusals: [unknown, string][] = [
        [makeReceipt(fields, forger.privateKey), 'receipt_bad_signature'],
        [makeReceipt({ ...fields, pieces: '4-5' }, device.keys.privateKey), 'receipt_pieces_not_granted'],
        // Pieces without the source's valid signed statement that it served them under this grant.
        [makeReceipt({ ...fields, served: [] }, device.keys.privateKey), 'receipt_served_invalid'],
        [makeReceipt({ ...fields, served: [served[1], served[0]] }, device.keys.privateKey), 'receipt_served_invalid'],
        [makeReceipt({ ...fields, served: fields.served.map((a) => a.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'))) }, device.keys.privateKey), 'receipt_served_invalid'],
        [makeReceipt({ ...fields, served: [0, 1].map((i) => attestServed(device.keys.privateKey, grant.id, i)) }, device.keys.privateKey), 'receipt_served_invalid'],
        [makeReceipt({ ...fields, pieces: '0-2', bytes: 3 * PIECE, served: [...fields.served, fields.served[1]] }, device.keys.privateKey), 'receipt_served_invalid'],
        [makeReceipt({ ...fields, bytes: 3 * PIECE }, device.keys.privateKey), 'receipt_bytes_mismatch'],
        [makeReceipt({ ...fields, source: 'trm_x' }, device.keys.privateKey), 'receipt_grant_mismatch'],
        [{ body: '{"typ":"receipt"}', signature: 'x' }, 'receipt_invalid'],
      ];
      // Each bad receipt alone in front of the good one: refused with its code, nothing stored for it.
      for (const [r, code] of refusals) {
        const res = await submit([r, good]);
        assert.equal(res.status, 200, code);
        assert.equal(res.body.refused.length, 1, code);
        assert.equal(res.body.refused[0].index, 0);
        assert.equal(res.body.refused[0].code, code);
        assert.deepEqual(await stored(), [goodId], code);
      }
      // The first batch stored the good one; every later one found it a duplicate.
      const replay = await submit([good]);
      assert.deepEqual(replay.body, { accepted: [], duplicates: [goodId], refused: [] });
      // All the bad ones in one batch with a valid one for other pieces: that one settles.
      const other = makeReceipt({ ...fields, pieces: '2', bytes: PIECE, served: [served[2]] }, device.keys.privateKey);
      const mixed = await submit([...refusals.map(([r]) => r), other]);
      assert.equal(mixed.status, 200);
      assert.deepEqual(mixed.body.accepted, [JSON.parse(other.body).id]);
      assert.deepEqual(mixed.body.refused.map((r: { code: string }) => r.code), refusals.map(([, code]) => code));
      const settlement = await origin.db.db.selectFrom('ledger_settlements').selectAll().where('receipt_id', '=', JSON.parse(other.body).id).executeTakeFirstOrThrow();
      assert.equal(settlement.status, 'settled');
      // Same ID, other bytes: re-signed body with a different field order.
      const b = JSON.parse(good.body);
      const reordered = JSON.stringify({ id: b.id, ...b });
      const conflict = await submit([{ body: reordered, signature: (await import('../../src/core/crypto.ts')).signBytes(device.keys.privateKey, reordered) }]);
      assert.deepEqual(conflict.body.refused.map((r: { code: string }) => r.code), ['receipt_conflict']);
      const overlap = await submit([makeReceipt({ ...fields, pieces: '1-2', served: served.slice(1, 3) }, device.keys.privateKey)]);
      assert.deepEqual(overlap.body.refused.map((r: { code: string }) => r.code), ['receipt_overlap']);
      assert.deepEqual((await stored()).sort(), [goodId, JSON.parse(other.body).id].sort());
    });

    test('receipts only for what was served (#10 point 6): a piece its source never reported is refused until it does', async () => {
      // A source terminal that signs served statements (a colluding one, or one whose report is late).
      const holderUser = await origin.userWithRoles(['member']);
      const holder = await deviceSession(new Api(origin.url, holderUser.token), path.join(work, 'holder'));
      const holderApi = new Api(origin.url, holder.token);
      // Its claim is made before it has an address, so no spot check calls it (it serves nothing here).
      await holderApi.request('PUT', '/terminals/holdings', { json: { contentIds: [contentId] } });
      await holderApi.request('PUT', '/terminals/address', { json: { serveUrl: 'http://127.0.0.1:9' } });
      await holderApi.post('/terminals/heartbeat', { uptimeRatio: 1, upBps: 1e9, downBps: 1e9, sendLoadBps: 0, recvLoadBps: 0, cpu: 0.1 });
      const offer = await api.post<{ sources: { sourceId: string; grant: { id: string } }[] }>('/grants/auto', { contentId });
      const peer = offer.sources.find((s) => s.sourceId === holder.terminalId);
      assert.ok(peer, `the holder is offered: ${JSON.stringify(offer.sources.map((s) => s.sourceId))}`);
      const receipt = makeReceipt(
        { grant: peer.grant.id, content: contentId, source: holder.terminalId, receiver: device.terminalId, pieces: '3-4', bytes: 2 * PIECE, served: [3, 4].map((i) => attestServed(holder.keys.privateKey, peer.grant.id, i)) },
        device.keys.privateKey,
      );
      const submit = () => origin.call('POST', '/receipts', { json: { receipts: [receipt] }, token: device.token });
      const stored = async () => (await origin.db.db.selectFrom('receipts').select('id').where('grant_id', '=', peer.grant.id).execute()).length;
      const balances = async () => (await origin.db.db.selectFrom('ledger_accounts').selectAll().orderBy('id').execute()).map((a) => [a.id, a.credits_posted, a.debits_posted]);
      const before = await balances();
      const notYet = await submit();
      assert.deepEqual(notYet.body.refused.map((r: { code: string }) => r.code), ['receipt_not_served']);
      assert.equal(await stored(), 0);
      assert.deepEqual(await balances(), before, 'nothing was charged');

      // Each grant of a report is judged on its own: another source's grant, pieces outside the
      // grant, a grant the origin never issued (its own spot check) are refused; nothing is recorded for them.
      const report = (grants: unknown, token = holder.token) => origin.call('POST', '/transfers/served', { json: { grants }, token });
      const mine = await api.post<{ sources: { sourceId: string; grant: { id: string } }[] }>('/grants/auto', { contentId });
      const originGrant = mine.sources.find((s) => s.sourceId === 'origin')!.grant.id;
      const refusedReport = await report([{ id: originGrant, pieces: '3' }, { id: peer.grant.id, pieces: '3-999' }, { id: 'gr_spotcheck', pieces: '3' }]);
      assert.equal(refusedReport.status, 200);
      assert.deepEqual(refusedReport.body.refused.map((r: { code: string }) => r.code), ['served_not_yours', 'invalid_pieces', 'unknown_grant']);
      assert.equal((await submit()).body.refused[0]?.code, 'receipt_not_served', 'refused reports recorded nothing');

      // Piece 3 reported, 4 not yet: still refused (naming piece 4); both reported: accepted and settled.
      assert.equal((await report([{ id: peer.grant.id, pieces: '3' }])).status, 200);
      const half = await submit();
      assert.match(half.body.refused[0].message, /piece 4/);
      assert.equal((await report([{ id: peer.grant.id, pieces: '4' }])).status, 200);
      const ok = await submit();
      assert.deepEqual(ok.body.accepted, [JSON.parse(receipt.body).id]);
      assert.equal(await stored(), 1);
      const row = await origin.db.db.selectFrom('grant_served').selectAll().where('grant_id', '=', peer.grant.id).executeTakeFirstOrThrow();
      assert.equal(row.pieces, '3-4');
    });
  });
}
