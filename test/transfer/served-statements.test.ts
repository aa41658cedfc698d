import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { decodeRanges, RUN_HEADER } from '../../src/transfer/piece-ranges.ts';
import { attestServed, SERVED_HEADER, verifyServed } from '../../src/transfer/served-attestation.ts';
import { startAgentLab, type AgentLab } from '../helpers/agents.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';

// #10.5, receiver side: a piece is kept only if its source's `cascade-served` statement
// verifies with that source's key (the origin offers each peer's key with its grant; the
// origin's own is the key pinned at login). A forger is dropped and reported like a
// source of bad bytes, once; its pieces come from another source; no receipt carries a
// forged statement, so none is refused and every piece is paid for.

const PIECE = 64 * 1024;
const PIECES = 24;

describe('served statements are verified before a piece is kept (#10.5)', () => {
  let proxy: TamperProxy;
  const file = randomBytes(PIECE * PIECES);
  let lab: AgentLab;

  before(async () => {
    lab = await startAgentLab({ config: { pieceSize: PIECE }, file, price: 2400 });
  });
  after(async () => {
    await proxy?.close();
    await lab.close();
  });

  test('a peer forging its served statements is dropped and reported once; the pieces come from elsewhere and every receipt settles', async () => {
    // The forger serves the right bytes, but the statement with each piece is signed by a
    // key that is not its own (it would like receivers to hold receipts the origin refuses).
    const stranger = generateKeyPair();
    let forgerUrl = '';
    proxy = await startTamperProxy(() => forgerUrl, (_p, body) => body, {
      headers: (p, headers, request) => {
        const m = /^\/pieces\/[0-9a-f]{64}\/(\d+)(\?count=\d+)?$/.exec(p);
        if (!m || !headers[SERVED_HEADER]) return headers;
        // One statement per piece of the run answered (#19 runs).
        const pieces = Array.from({ length: Number(headers[RUN_HEADER] ?? 1) }, (_, k) => Number(m[1]) + k);
        return { ...headers, [SERVED_HEADER]: pieces.map((i) => attestServed(stranger.privateKey, grantIdOf(String(request.authorization)), i)).join(',') };
      },
    });
    const seen = proxy.seen;
    // It advertises the proxy: the origin offers receivers that address.
    const forger = await lab.agents.start('forger', { advertiseUrl: proxy.url });
    forgerUrl = `http://127.0.0.1:${(forger.app.server.address() as AddressInfo).port}`; // where it really listens
    await forger.fetch(lab.contentId);

    const receiver = await lab.agents.start('receiver');
    const result = await receiver.fetch(lab.contentId);

    assert.ok(readFileSync(receiver.store.paths(lab.contentId).data).equals(file), 'byte-exact');
    assert.ok(seen.some((p) => p.startsWith('/pieces/')), 'the forger was asked for pieces');
    assert.equal(result.dropped[forger.terminalId], 'bad_piece');
    assert.equal(result.bySource[forger.terminalId] ?? 0, 0, 'nothing the forger sent was kept');
    assert.equal(result.bySource.origin, file.length, 'every piece came from the origin instead');

    // Reported once, as a bad piece.
    const reports = await lab.origin.db.db.selectFrom('peer_reports').select(['kind']).where('source_id', '=', forger.terminalId).where('reporter_id', '=', receiver.terminalId).execute();
    assert.deepEqual(reports.map((r) => r.kind), ['bad_piece']);
    assert.equal((await lab.origin.reputation.get([forger.terminalId])).get(forger.terminalId)!.badPieces, 1);

    // Receipts: none names the forger, every piece is covered once, every statement is genuine, all settled.
    const receipts = await lab.origin.db.db
      .selectFrom('receipts as r')
      .innerJoin('ledger_settlements as s', 's.receipt_id', 'r.id')
      .select(['r.source_id', 'r.grant_id', 'r.pieces', 'r.body', 's.status'])
      .where('r.receiver_id', '=', receiver.terminalId)
      .execute();
    assert.ok(receipts.every((r) => r.source_id === 'origin'));
    assert.deepEqual(receipts.flatMap((r) => decodeRanges(r.pieces, PIECES)!).sort((a, b) => a - b), [...Array(PIECES).keys()]);
    for (const r of receipts) {
      const served: string[] = JSON.parse(r.body).served;
      decodeRanges(r.pieces, PIECES)!.forEach((i, k) => assert.ok(verifyServed(lab.origin.keys.publicKey, r.grant_id, i, served[k]), `statement for piece ${i}`));
      assert.equal(r.status, 'settled');
    }
    assert.deepEqual(receiver.journal.unsettled(), [], 'the receiver holds no receipt the origin refused');
  });
});

/** The grant ID inside a grant token (`Grant <base64url(payload)>.<signature>`). */
function grantIdOf(authorization: string): string {
  const token = authorization.replace(/^Grant /, '');
  return JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()).id;
}
