import type { Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import { sql, type Db } from '../db/connection.ts';
import type { Database } from '../db/schema.ts';
import { arrayLiteral } from '../db/array-literal.ts';
import { decodeRanges, encodeRanges, parseRangeSpans, rangeSet } from './piece-ranges.ts';

// Receipts only for what was served (#10 point 6). Every source tells the origin which
// pieces it sent in full under which grant: agents report ranges per grant
// (`POST /transfers/served`), the origin's own piece server notes each piece it sent.
// The origin keeps the union per grant (`grant_served`) and refuses a receipt naming a
// piece its source never reported (`receipt_not_served`; the receiver sends it again
// later, once the report is in). With the source's signed served statement in every
// receipt, a piece is paid for only when both ends say it moved.

/** Pieces noted by this process and not yet written; beyond it they are written at once. */
const MAX_PENDING = 50_000;

export class ServedLog {
  private pending = new Map<string, Set<number>>();
  private pendingCount = 0;
  private flushing: Promise<void> = Promise.resolve();

  constructor(private readonly deps: { db: Db; clock: Clock; logger?: Logger }) {}

  /** The origin's piece server sent piece `index` in full under `grantId` (written on the next flush). */
  note(grantId: string, index: number) {
    // The database is away and the notes pile up: beyond a bound they are lost (those pieces go unpaid).
    if (this.pendingCount >= 4 * MAX_PENDING) return;
    let set = this.pending.get(grantId);
    if (!set) this.pending.set(grantId, (set = new Set()));
    if (set.has(index)) return;
    set.add(index);
    if (++this.pendingCount >= MAX_PENDING) void this.flush().catch((err) => this.deps.logger?.error({ err }, 'writing served pieces failed'));
  }

  /** Writes what was noted; calls queue behind each other. */
  flush(): Promise<void> {
    this.flushing = this.flushing.catch(() => {}).then(async () => {
      if (this.pendingCount === 0) return;
      const batch = this.pending;
      this.pending = new Map();
      this.pendingCount = 0;
      try {
        await this.deps.db.transaction().execute((trx) => this.merge(trx, new Map([...batch].map(([g, s]) => [g, [...s]]))));
      } catch (err) {
        // Keep them for the next flush (bounded: see note).
        for (const [g, s] of batch) for (const i of s) this.note(g, i);
        throw err;
      }
    });
    return this.flushing;
  }

  /**
   * A source's report: ranges it sent in full, per grant. Each grant is judged on its own:
   * one the origin never issued (the origin's own holding spot check is not a stored
   * grant), one naming another source (`served_not_yours`) or pieces the grant does not
   * cover (`invalid_pieces`) is refused, and the others are recorded.
   */
  async report(sourceId: string, items: { id: string; pieces: string }[]): Promise<{ recorded: string[]; refused: { id: string; code: string; message: string }[] }> {
    const out = { recorded: [] as string[], refused: [] as { id: string; code: string; message: string }[] };
    if (items.length === 0) return out;
    await this.deps.db.transaction().execute(async (trx) => {
      const grants = await trx.selectFrom('grants').select(['id', 'source_id', 'pieces']).where('id', 'in', [...new Set(items.map((i) => i.id))]).execute();
      const byId = new Map(grants.map((g) => [g.id, g]));
      const add = new Map<string, number[]>();
      for (const item of items) {
        const grant = byId.get(item.id);
        if (!grant) {
          out.refused.push({ id: item.id, code: 'unknown_grant', message: `No grant ${item.id} (a holding spot check is not paid).` });
          continue;
        }
        if (grant.source_id !== sourceId) {
          out.refused.push({ id: item.id, code: 'served_not_yours', message: `Grant ${item.id} does not name this terminal as its source.` });
          continue;
        }
        const granted = rangeSet(grant.pieces);
        const pieces = parseRangeSpans(item.pieces, Number.MAX_SAFE_INTEGER) ? decodeRanges(item.pieces, Number.MAX_SAFE_INTEGER) : null;
        if (!pieces || !pieces.every(granted)) {
          out.refused.push({ id: item.id, code: 'invalid_pieces', message: `The pieces reported for grant ${item.id} must be ascending ranges within what it granted (${grant.pieces}).` });
          continue;
        }
        add.set(item.id, [...(add.get(item.id) ?? []), ...pieces]);
      }
      await this.merge(trx, add);
      out.recorded = [...add.keys()];
    });
    return out;
  }

  /** What was reported served under each grant, read in the caller's transaction. */
  async served(trx: Transaction<Database>, grantIds: string[]): Promise<Map<string, (index: number) => boolean>> {
    const out = new Map<string, (index: number) => boolean>();
    if (grantIds.length === 0) return out;
    const rows = await trx.selectFrom('grant_served').select(['grant_id', 'pieces']).where('grant_id', 'in', grantIds).execute();
    for (const r of rows) out.set(r.grant_id, rangeSet(r.pieces));
    return out;
  }

  /** Adds pieces to each grant's union: rows created first, then locked, merged and written. */
  private async merge(trx: Transaction<Database>, add: Map<string, number[]>) {
    if (add.size === 0) return;
    const ids = [...add.keys()].sort();
    const now = new Date(this.deps.clock.now());
    await sql`
      insert into grant_served (grant_id, pieces, updated_at)
      select g, '', ${now}::timestamptz from unnest(${arrayLiteral(ids)}::text[]) as u(g)
      where exists (select 1 from grants where id = u.g)
      on conflict (grant_id) do nothing`.execute(trx);
    const rows = await trx.selectFrom('grant_served').select(['grant_id', 'pieces']).where('grant_id', 'in', ids).orderBy('grant_id').forUpdate().execute();
    const merged = rows.map((r) => ({ id: r.grant_id, pieces: encodeRanges([...(r.pieces ? decodeRanges(r.pieces, Number.MAX_SAFE_INTEGER)! : []), ...add.get(r.grant_id)!]) }));
    await sql`
      update grant_served as s set pieces = v.p, updated_at = ${now}::timestamptz
      from unnest(${arrayLiteral(merged.map((m) => m.id))}::text[], ${arrayLiteral(merged.map((m) => m.pieces))}::text[]) as v(g, p)
      where s.grant_id = v.g`.execute(trx);
  }
}
