import type { KeyObject } from 'node:crypto';
import { sha256Hex, signBytes } from '../core/crypto.ts';

// A receipt is the receiver's signed acknowledgement that it verified given pieces
// from one source under one grant. The ledger (#4) pays from receipts, so the ID is
// derived from what it covers: re-creating the receipt after a crash yields the same
// ID and the same bytes, and settling it twice is impossible.

export interface ReceiptBody {
  typ: 'receipt';
  id: string;
  grant: string;
  content: string;
  source: string;
  receiver: string;
  pieces: string;
  bytes: number;
  /** The source's signed served statement for each piece, in ascending piece order. */
  served: string[];
}

export interface SignedReceipt {
  /** The exact JSON text that was signed. */
  body: string;
  signature: string;
}

/** JSON schema of a SignedReceipt in request bodies (`POST /receipts`, `POST /ledger/reconcile`). */
export const signedReceiptSchema = {
  type: 'object',
  required: ['body', 'signature'],
  additionalProperties: false,
  properties: { body: { type: 'string', maxLength: 200_000 }, signature: { type: 'string', maxLength: 200 } },
} as const;

/** Refusals of a receipt that sending it again later may cure (#10 point 6: the source's report is on its way). */
export const RETRYABLE_REFUSALS: ReadonlySet<string> = new Set(['receipt_not_served']);

/** The origin's answer to `POST /receipts`: each receipt judged on its own. */
export interface ReceiptsAnswer {
  accepted: string[];
  duplicates: string[];
  refused: { index: number; receiptId: string | null; code: string; message: string }[];
}

export function receiptId(grantId: string, sourceId: string, pieces: string): string {
  return `rc_${sha256Hex(`${grantId}|${sourceId}|${pieces}`).slice(0, 32)}`;
}

export function makeReceipt(fields: Omit<ReceiptBody, 'typ' | 'id'>, receiverKey: KeyObject): SignedReceipt {
  const body: ReceiptBody = { typ: 'receipt', id: receiptId(fields.grant, fields.source, fields.pieces), ...fields };
  const text = JSON.stringify(body);
  return { body: text, signature: signBytes(receiverKey, text) };
}

export function parseReceiptBody(text: string): ReceiptBody | null {
  let b: any;
  try {
    b = JSON.parse(text);
  } catch {
    return null;
  }
  const ok =
    b &&
    b.typ === 'receipt' &&
    ['id', 'grant', 'content', 'source', 'receiver', 'pieces'].every((k) => typeof b[k] === 'string' && b[k].length > 0 && b[k].length < 100_000) &&
    Number.isSafeInteger(b.bytes) &&
    b.bytes > 0 &&
    Array.isArray(b.served) &&
    b.served.every((a: unknown) => typeof a === 'string' && a.length < 200);
  return ok ? (b as ReceiptBody) : null;
}
