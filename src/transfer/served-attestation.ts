import type { KeyObject } from 'node:crypto';
import { signBytes, verifyBytes } from '../core/crypto.ts';

// A source's signed statement that it served piece `index` under grant `grantId`,
// sent with the piece in the `cascade-served` header. The receiver keeps it with the
// piece and puts it into its receipt, so the origin pays a source only for pieces the
// source itself says it served (#3 "receipts for pieces never served") — even when the
// source died before it could report anything.

export const SERVED_HEADER = 'cascade-served';

function statement(grantId: string, index: number): string {
  return `cascade-served|${grantId}|${index}`;
}

export function attestServed(sourceKey: KeyObject, grantId: string, index: number): string {
  return signBytes(sourceKey, statement(grantId, index));
}

export function verifyServed(sourcePublicKey: KeyObject | string, grantId: string, index: number, attestation: string): boolean {
  return verifyBytes(sourcePublicKey, statement(grantId, index), attestation);
}
