import type { KeyObject } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { Database } from '../db/schema.ts';
import type { ReceiptsTable } from './tables.ts';
import type { Clock } from '../core/clock.ts';
import { verifyBytes } from '../core/crypto.ts';
import { AppError, badRequest, conflict, forbidden } from '../core/errors.ts';
import type { Db } from '../db/connection.ts';
import type { TerminalService } from '../terminals/service.ts';
import type { ContentService } from '../content/service.ts';
import { pieceLength } from '../content/manifest.ts';
import { decodeRanges, rangeSet } from './piece-ranges.ts';
import { parseReceiptBody, receiptId, type ReceiptBody, type ReceiptsAnswer, type SignedReceipt } from './receipt.ts';
import type { GrantService } from './grants.ts';
import { verifyServed } from './served-attestation.ts';
import type { ServedLog } from './served-log.ts';

export type SubmitResult = ReceiptsAnswer;

/**
 * Stores receipts (S1.6, S1.8 seam). Each receipt is judged on its own (#10 point 5):
 * one that fails its checks is refused with its code, the others are stored and
 * settled. A receipt already stored with the same bytes is a harmless retry; same ID
 * with other bytes, pieces already receipted under the same grant, or pieces the
 * source never reported serving (#10 point 6) are refused.
 */
export class ReceiptService {
  constructor(
    private readonly deps: {
      db: Db;
      clock: Clock;
      terminals: TerminalService;
      grants: GrantService;
      content: ContentService;
      /** The origin as a source: its ID in grants and the key it signs served statements with. */
      origin: { sourceId: string; publicKey: KeyObject };
      /** What sources reported serving; null: not checked (unit tests of other rules). */
      served: ServedLog | null;
      /** The ledger settles new receipts in the transaction that stores them (#4): never one without the other. */
      settle?: (trx: Transaction<Database>, stored: ReceiptsTable[]) => Promise<unknown>;
    },
  ) {}

  async submit(submitterTerminalId: string, items: SignedReceipt[]): Promise<SubmitResult> {
    const result: SubmitResult = { accepted: [], duplicates: [], refused: [] };
    const refuse = (index: number, receiptId: string | null, err: AppError) => result.refused.push({ index, receiptId, code: err.code, message: err.message });
    const checked: { index: number; body: ReceiptBody; item: SignedReceipt }[] = [];
    for (const [index, item] of items.entries()) {
      try {
        checked.push({ index, body: await this.check(submitterTerminalId, item), item });
      } catch (err) {
        if (!(err instanceof AppError) || err.status >= 500) throw err;
        refuse(index, receiptIdOf(item), err);
      }
    }
    if (checked.length === 0) return result;
    const { db, clock, served } = this.deps;
    // The origin's own piece server notes what it sent in memory: written before it is looked at.
    if (served && checked.some((c) => c.body.source === this.deps.origin.sourceId)) await served.flush();
    return db.transaction().execute(async (trx) => {
      const fresh: ReceiptsTable[] = [];
      const grantIds = [...new Set(checked.map((c) => c.body.grant))];
      // Locking the grants serialises concurrent batches for the same grant, so two
      // overlapping receipts cannot both pass the overlap check.
      await trx.selectFrom('grants').select('id').where('id', 'in', grantIds).orderBy('id').forUpdate().execute();
      const stored = await trx.selectFrom('receipts').select(['id', 'grant_id', 'pieces', 'body']).where('grant_id', 'in', grantIds).execute();
      const reported = served ? await served.served(trx, grantIds) : null;
      const byId = new Map(stored.map((r) => [r.id, r]));
      for (const { index, body, item } of checked) {
        const existing = byId.get(body.id);
        if (existing) {
          if (existing.body !== item.body) refuse(index, body.id, conflict('receipt_conflict', `Receipt ${body.id} was already stored with different contents.`));
          else result.duplicates.push(body.id);
          continue;
        }
        const mine = rangeSet(body.pieces);
        const overlap = [...byId.values()].find((r) => r.grant_id === body.grant && decodeRanges(r.pieces, Number.MAX_SAFE_INTEGER)!.some(mine));
        if (overlap) {
          refuse(index, body.id, conflict('receipt_overlap', `Receipt ${body.id} covers pieces already receipted in ${overlap.id}.`));
          continue;
        }
        if (reported) {
          const sent = reported.get(body.grant);
          const missing = decodeRanges(body.pieces, Number.MAX_SAFE_INTEGER)!.find((p) => !sent?.(p));
          if (missing !== undefined) {
            refuse(index, body.id, conflict('receipt_not_served', `The source has not reported sending piece ${missing} under this grant (yet); send the receipt again shortly.`));
            continue;
          }
        }
        const row = {
          id: body.id,
          grant_id: body.grant,
          content_id: body.content,
          source_id: body.source,
          receiver_id: body.receiver,
          pieces: body.pieces,
          bytes: body.bytes,
          signature: item.signature,
          body: item.body,
          received_at: new Date(clock.now()),
        };
        await trx.insertInto('receipts').values(row).execute();
        byId.set(row.id, row);
        fresh.push(row);
        result.accepted.push(body.id);
      }
      await this.deps.settle?.(trx, fresh);
      return result;
    });
  }

  /** A receiver's receipts, oldest first (S1.12 records; the ledger settles them). */
  /** Receipts these terminals signed, oldest first, at most `limit`. */
  async list(receiverIds: string | string[], limit = 1000) {
    const ids = typeof receiverIds === 'string' ? [receiverIds] : receiverIds;
    if (ids.length === 0) return [];
    const rows = await this.deps.db
      .selectFrom('receipts')
      .select(['id', 'grant_id', 'content_id', 'source_id', 'receiver_id', 'pieces', 'bytes', 'received_at'])
      .where('receiver_id', 'in', ids)
      .orderBy('received_at')
      .orderBy('id')
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      id: r.id,
      grantId: r.grant_id,
      contentId: r.content_id,
      sourceId: r.source_id,
      receiverId: r.receiver_id,
      pieces: r.pieces,
      bytes: r.bytes,
      receivedAt: r.received_at.toISOString(),
    }));
  }

  private async check(submitter: string, item: SignedReceipt): Promise<ReceiptBody> {
    const body = typeof item?.body === 'string' ? parseReceiptBody(item.body) : null;
    if (!body) throw badRequest('receipt_invalid', 'The receipt is not a well-formed receipt body.');
    const grant = await this.deps.grants.get(body.grant);
    if (grant.receiver_id !== body.receiver || grant.source_id !== body.source || grant.content_id !== body.content) {
      throw badRequest('receipt_grant_mismatch', 'The receipt does not match its grant (receiver, source or content).');
    }
    if (submitter !== body.receiver && submitter !== body.source) throw forbidden('receipt_not_yours', 'Only the receiver or the source may submit a receipt.');
    const receiver = await this.deps.terminals.get(body.receiver);
    if (!verifyBytes(receiver.publicKey, item.body, item.signature)) throw badRequest('receipt_bad_signature', 'The receipt is not signed by its receiver.');
    if (body.id !== receiptId(body.grant, body.source, body.pieces)) throw badRequest('receipt_invalid', 'The receipt ID does not match what it covers.');
    const manifest = await this.deps.content.getManifest(body.content);
    const pieces = decodeRanges(body.pieces, manifest.body.pieces.length);
    const granted = rangeSet(grant.pieces);
    if (!pieces || !pieces.every(granted)) throw badRequest('receipt_pieces_not_granted', 'The receipt names pieces its grant does not cover.');
    const bytes = pieces.reduce((sum, i) => sum + pieceLength(manifest.body, i), 0);
    if (bytes !== body.bytes) throw badRequest('receipt_bytes_mismatch', `The pieces add up to ${bytes} bytes, not ${body.bytes}.`);
    // #3: a source is paid only for pieces it signed as served under this grant.
    const sourceKey = body.source === this.deps.origin.sourceId ? this.deps.origin.publicKey : (await this.deps.terminals.get(body.source)).publicKey;
    const unserved = pieces.findIndex((p, k) => !body.served[k] || !verifyServed(sourceKey, body.grant, p, body.served[k]));
    if (body.served.length !== pieces.length || unserved >= 0) {
      throw badRequest('receipt_served_invalid', `The receipt lacks the source's valid signed statement that it served ${unserved >= 0 ? `piece ${pieces[unserved]}` : 'every piece'} under this grant.`);
    }
    return body;
  }
}

function receiptIdOf(item: SignedReceipt): string | null {
  try {
    const id = JSON.parse(item.body).id;
    return typeof id === 'string' && id.length <= 100 ? id : null;
  } catch {
    return null;
  }
}
