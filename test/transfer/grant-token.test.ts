import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '../../src/core/crypto.ts';
import { GrantVerifier, signGrant, signGrantProof } from '../../src/transfer/grant-token.ts';

// S1.6: sources serve pieces only against a valid, unexpired grant, to the receiver it names.
const origin = generateKeyPair();
const receiver = generateKeyPair();
const stranger = generateKeyPair();
const now = Date.UTC(2026, 10, 22, 12);
const content = 'a'.repeat(64);
const grant = { id: 'gr_1', content, receiver: 'trm_r', receiverKey: receiver.publicKeyB64, source: 'origin', pieces: '0-3,8', exp: now + 60_000 };
const token = signGrant(grant, origin.privateKey);
const proof = (key = receiver, ts = now) => signGrantProof(key.privateKey, 'gr_1', ts);
const base = { grantToken: token, proof: proof(), sourceId: 'origin', contentId: content, index: 2, now };

function refusal(over: Partial<typeof base> & { provenOnConnection?: (id: string) => boolean }) {
  const r = new GrantVerifier(origin.publicKey).check({ ...base, ...over });
  return r.ok ? 'ok' : r.refusal;
}

test('a valid grant and proof pass', () => {
  assert.equal(refusal({}), 'ok');
  assert.equal(refusal({ index: 8 }), 'ok');
});

test('missing, malformed and forged grants are refused', () => {
  assert.equal(refusal({ grantToken: undefined }), 'grant_missing');
  assert.equal(refusal({ grantToken: 'not-a-token' }), 'grant_invalid');
  assert.equal(refusal({ grantToken: signGrant(grant, stranger.privateKey) }), 'grant_invalid');
  // Payload changed after signing (more pieces), signature kept.
  const [, sig] = token.split('.');
  const widened = Buffer.from(JSON.stringify({ typ: 'grant', ...grant, pieces: '0-99' })).toString('base64url');
  assert.equal(refusal({ grantToken: `${widened}.${sig}` }), 'grant_invalid');
});

test('expired grants, other sources, other contents and ungranted pieces are refused', () => {
  assert.equal(refusal({ now: now + 60_000, proof: proof(receiver, now + 60_000) }), 'grant_expired');
  assert.equal(refusal({ sourceId: 'trm_other' }), 'grant_wrong_source');
  assert.equal(refusal({ contentId: 'b'.repeat(64) }), 'grant_wrong_content');
  assert.equal(refusal({ index: 5 }), 'piece_not_granted');
});

test('a grant used by anyone but its receiver is refused', () => {
  assert.equal(refusal({ proof: proof(stranger) }), 'grant_wrong_receiver');
  assert.equal(refusal({ proof: undefined }), 'grant_wrong_receiver');
  // A proof made for another grant does not carry over.
  assert.equal(refusal({ proof: signGrantProof(receiver.privateKey, 'gr_2', now) }), 'grant_wrong_receiver');
  // A stranger's proof is a stranger's, whatever its time.
  assert.equal(refusal({ proof: proof(stranger, now - 10 * 60_000) }), 'grant_wrong_receiver');
});

test('the receiver’s own proof timed outside the window is refused as stale, not as a stranger’s (its clock is off)', () => {
  assert.equal(refusal({ proof: proof(receiver, now - 10 * 60_000) }), 'proof_stale');
  assert.equal(refusal({ proof: proof(receiver, now + 120_001) }), 'proof_stale');
  assert.equal(refusal({ proof: proof(receiver, now + 120_000) }), 'ok', 'the window’s edge is in');
  assert.equal(refusal({ proof: proof(receiver, now - 120_000) }), 'ok');
});

test('a receiver that proved itself on a connection need not sign again there, but every other check holds', () => {
  const proven = (id: string) => id === 'gr_1';
  assert.equal(refusal({ proof: undefined, provenOnConnection: proven }), 'ok');
  assert.equal(refusal({ proof: undefined, provenOnConnection: () => false }), 'grant_wrong_receiver');
  assert.equal(refusal({ proof: undefined, provenOnConnection: proven, index: 5 }), 'piece_not_granted');
  assert.equal(refusal({ proof: undefined, provenOnConnection: proven, now: now + 60_000 }), 'grant_expired');
});
