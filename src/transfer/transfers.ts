import type { Clock } from '../core/clock.ts';
import { forbidden, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Db } from '../db/connection.ts';
import type { TransfersTable } from './tables.ts';

// S1.7: the origin monitors every peer-assisted transfer. Receivers report progress
// when they refresh their sources; sources report what they served. A transfer that
// nobody reported on for `deadAfterMs` is marked stalled, and the coordinator
// reassigns it to other holders on its own (see PeerCoordinator.reassignStalled).

export type Transfer = TransfersTable;

export class TransferService {
  constructor(private readonly deps: { db: Db; clock: Clock; deadAfterMs: number }) {}

  async open(receiverId: string, contentId: string, piecesTotal: number, piecesDone: number, id = newId('tx')): Promise<Transfer> {
    const now = new Date(this.deps.clock.now());
    const row: Transfer = {
      id,
      receiver_id: receiverId,
      content_id: contentId,
      state: piecesDone >= piecesTotal ? 'done' : 'active',
      pieces_done: piecesDone,
      pieces_total: piecesTotal,
      created_at: now,
      last_report_at: now,
      reassigned_at: null,
    };
    await this.deps.db.insertInto('transfers').values(row).execute();
    return row;
  }

  /** The transfer, if `receiverId` is its receiver. */
  async mine(id: string, receiverId: string): Promise<Transfer> {
    const row = await this.deps.db.selectFrom('transfers').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('unknown_transfer', `No transfer ${id}.`);
    if (row.receiver_id !== receiverId) throw forbidden('transfer_not_yours', 'That transfer belongs to another receiver.');
    return row;
  }

  /** The receiver's progress report: the transfer is alive (again). */
  async progress(id: string, receiverId: string, piecesDone: number, done: boolean): Promise<Transfer> {
    const t = await this.mine(id, receiverId);
    const state = done || piecesDone >= t.pieces_total ? 'done' : 'active';
    const row = await this.deps.db
      .updateTable('transfers')
      .set({ pieces_done: Math.min(Math.max(piecesDone, 0), t.pieces_total), state, last_report_at: new Date(this.deps.clock.now()) })
      .where('id', '=', id)
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
