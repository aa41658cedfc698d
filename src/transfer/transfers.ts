import type { Clock } from '../core/clock.ts';
import { badRequest, forbidden, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Transaction } from 'kysely';
import type { Db } from '../db/connection.ts';
import type { Database } from '../db/schema.ts';
import { ORIGIN_SOURCE_ID } from './grant-token.ts';
import type { TransfersTable } from './tables.ts';

// S1.7: the origin monitors every peer-assisted transfer. Receivers report progress
// when they refresh their sources; sources report what they served. A transfer that
// nobody reported on for `deadAfterMs` is marked stalled, and the coordinator
// reassigns it to other holders on its own (see PeerCoordinator.reassignStalled).

export type Transfer = TransfersTable;

/** A transfer in progress, as the operations dashboard shows it (#13). */
export interface RunningTransfer {
  id: string;
  contentId: string;
  receiverId: string;
  startedAt: string;
  lastReportAt: string;
  piecesDone: number;
  pieces: number;
  /** Sources it holds an unexpired grant for: `origin` or a terminal ID; the origin first. */
  sources: string[];
}

/** The most running transfers `running()` lists. */
export const RUNNING_MAX = 100;

export class TransferService {
  constructor(private readonly deps: { db: Db; clock: Clock; deadAfterMs: number }) {}

  /**
   * Opens a transfer for the receiver, or resumes the one it left unfinished for this
   * content (a rerun of an interrupted `cascade get` is the same transfer, #10 point 2).
   * `hold` runs first, in the same transaction (the reservation the transfer needs): if
   * it refuses, nothing is written. `verified` is how many pieces the receiver proved it
   * has (its `have` ranges); only that can make a transfer done at once.
   */
  async openOrResume<R>(
    req: { receiverId: string; contentId: string; piecesTotal: number; verified: number },
    hold: (trx: Transaction<Database>) => Promise<R>,
  ): Promise<{ transfer: Transfer; held: R }> {
    const now = new Date(this.deps.clock.now());
    const state = req.verified >= req.piecesTotal ? 'done' : 'active';
    return this.deps.db.transaction().execute(async (trx) => {
      const held = await hold(trx);
      const open = await trx
        .selectFrom('transfers')
        .selectAll()
        .where('receiver_id', '=', req.receiverId)
        .where('content_id', '=', req.contentId)
        .where('state', 'in', ['active', 'stalled'])
        .orderBy('created_at', 'desc')
        .limit(1)
        .forUpdate()
        .executeTakeFirst();
      if (open) {
        const transfer = await trx
          .updateTable('transfers')
          .set({ state, pieces_done: req.verified, last_report_at: now })
          .where('id', '=', open.id)
          .returningAll()
          .executeTakeFirstOrThrow();
        return { transfer, held };
      }
      const transfer: Transfer = {
        id: newId('tx'),
        receiver_id: req.receiverId,
        content_id: req.contentId,
        state,
        pieces_done: req.verified,
        pieces_total: req.piecesTotal,
        created_at: now,
        last_report_at: now,
        reassigned_at: null,
      };
      await trx.insertInto('transfers').values(transfer).execute();
      return { transfer, held };
    });
  }

  /** The transfer, if `receiverId` is its receiver. */
  async mine(id: string, receiverId: string): Promise<Transfer> {
    const row = await this.deps.db.selectFrom('transfers').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('unknown_transfer', `No transfer ${id}.`);
    if (row.receiver_id !== receiverId) throw forbidden('transfer_not_yours', 'That transfer belongs to another receiver.');
    return row;
  }

  /** The receiver's progress report on its transfer `t` (from `mine`): the transfer is alive (again). */
  async progress(t: Pick<Transfer, 'id' | 'pieces_total'>, piecesDone: number, done: boolean): Promise<Transfer> {
    checkPiecesDone(piecesDone, t.pieces_total);
    const state = done || piecesDone >= t.pieces_total ? 'done' : 'active';
    const row = await this.deps.db
      .updateTable('transfers')
      .set({ pieces_done: Math.min(Math.max(piecesDone, 0), t.pieces_total), state, last_report_at: new Date(this.deps.clock.now()) })
      .where('id', '=', t.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return row;
  }

  /** A source's report of pieces served under these grants keeps their transfers alive. */
  async servedUnder(grantIds: string[]): Promise<number> {
    if (grantIds.length === 0) return 0;
    const res = await this.deps.db
      .updateTable('transfers')
      .set({ last_report_at: new Date(this.deps.clock.now()) })
      .where('state', 'in', ['active', 'stalled'])
      .where('id', 'in', (eb) => eb.selectFrom('grants').select('transfer_id').where('id', 'in', grantIds).where('transfer_id', 'is not', null) as any)
      .executeTakeFirst();
    return Number(res.numUpdatedRows);
  }

  /**
   * #13 operations dashboard: the transfers in progress — not finished (`active`, or
   * `stalled` and being reassigned) and reported on within `deadAfterMs` (a receiver's
   * call or a source's served report), the monitor's own test of being alive — newest
   * first, at most `limit`, with the sources each holds an unexpired grant for.
   */
  async running(limit = RUNNING_MAX): Promise<RunningTransfer[]> {
    const now = this.deps.clock.now();
    const rows = await this.deps.db
      .selectFrom('transfers')
      .selectAll()
      .where('state', 'in', ['active', 'stalled'])
      .where('last_report_at', '>=', new Date(now - this.deps.deadAfterMs))
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .limit(Math.min(Math.max(Math.trunc(limit), 1), RUNNING_MAX))
      .execute();
    if (!rows.length) return [];
    const grants = await this.deps.db
      .selectFrom('grants')
      .select(['transfer_id', 'source_id'])
      .distinct()
      .where('transfer_id', 'in', rows.map((r) => r.id))
      .where('expires_at', '>', new Date(now))
      .execute();
    const sources = new Map<string, string[]>();
    for (const g of grants) if (g.transfer_id) sources.set(g.transfer_id, [...(sources.get(g.transfer_id) ?? []), g.source_id]);
    const originFirst = (a: string, b: string) => Number(b === ORIGIN_SOURCE_ID) - Number(a === ORIGIN_SOURCE_ID) || a.localeCompare(b);
    return rows.map((r) => ({
      id: r.id,
      contentId: r.content_id,
      receiverId: r.receiver_id,
      startedAt: r.created_at.toISOString(),
      lastReportAt: r.last_report_at.toISOString(),
      piecesDone: r.pieces_done,
      pieces: r.pieces_total,
      sources: (sources.get(r.id) ?? []).sort(originFirst),
    }));
  }

  /** Active transfers nobody reported on for too long become stalled; returns them. */
  async markStalled(): Promise<Transfer[]> {
    const now = this.deps.clock.now();
    return this.deps.db
      .updateTable('transfers')
      .set({ state: 'stalled', reassigned_at: new Date(now) })
      .where('state', '=', 'active')
      .where('last_report_at', '<', new Date(now - this.deps.deadAfterMs))
      .returningAll()
      .execute();
  }
}

/** A receiver's count of verified pieces is a whole number no larger than the content's piece count. */
export function checkPiecesDone(piecesDone: number | undefined, piecesTotal: number): void {
  if (piecesDone === undefined) return;
  if (!Number.isSafeInteger(piecesDone) || piecesDone < 0 || piecesDone > piecesTotal) {
    throw badRequest('invalid_progress', `piecesDone must be a whole number from 0 to ${piecesTotal} (the content's piece count).`, { field: 'piecesDone' });
  }
}
