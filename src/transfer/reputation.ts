import type { Clock } from '../core/clock.ts';
import { badRequest, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { sql, type Db } from '../db/connection.ts';
import type { PeerReportsTable } from './tables.ts';
import type { Reputation } from './selection.ts';
import { ORIGIN_SOURCE_ID } from './grant-token.ts';

// What receivers say about sources (S1.5 reliability; "Verified integrity": bad data
// from a peer is discarded and the peer is reported; #3 "Bad peers").
//
// Every report is kept in `peer_reports` as evidence. Reports about a terminal also
// move its counters in `peer_reputation`, which selection scores (selection.ts):
//   bad_piece  bad_pieces        += number of pieces named (at least 1)
//   stalled    stalls            += 1
//   completed  completed_uploads += 1, bytes_uploaded += bytes
//   refused    nothing (kept as evidence only)
// Reports about the origin (sourceId "origin") are kept but move no counters: the
// origin is the fallback of every selection and is never scored or excluded.
//
// Exclusion rule (excludedFor): for one content, a source is not selected for a
// requester if
//   (a) that requester itself reported a bad piece from it for this content, or
//   (b) at least EXCLUDE_AFTER_REPORTERS distinct receivers did.
// (a) means a receiver never meets again the peer that fed it bad bytes, on its
// word alone; (b) needs independent witnesses, so that one malicious receiver
// cannot ban an honest peer for everybody. Other contents are unaffected: the
// peer's lower score (bad_pieces) is what follows it there.
// "Distinct receivers" are distinct terminals; one account with several terminals
// counts several times (a known limit: see docs/selection.md).

export const REPORT_KINDS = ['bad_piece', 'stalled', 'refused', 'completed'] as const;
export type ReportKind = (typeof REPORT_KINDS)[number];

/** Distinct receivers whose bad_piece reports exclude a source for everyone, per content. */
export const EXCLUDE_AFTER_REPORTERS = 2;
/** Bytes in one report: below 10 TB, far above any content we carry, far below 2^53. */
export const MAX_REPORT_BYTES = 1e13;
/** Pieces named in one report; a million 1 MiB pieces is a terabyte. */
export const MAX_REPORT_PIECES = 1_000_000;
/** The source ID of the origin in grants, receipts and reports. */

export interface PeerReport {
  contentId: string;
  sourceId: string;
  transferId?: string | null;
  kind: ReportKind;
  pieces?: string | null;
  bytes?: number;
}

const CONTENT_ID = /^[0-9a-f]{64}$/;
const ID_MAX = 200;

function refuse(message: string, details?: Record<string, unknown>): never {
  throw badRequest('invalid_report', message, details);
}

/**
 * Counts the pieces in ascending, non-overlapping ranges ("0-9,12") without
 * expanding them; refuses anything else.
 */
export function countPieces(text: string): number {
  if (text.length === 0 || text.length > 100_000) refuse('pieces must be ascending ranges such as "0-9,12".');
  let count = 0;
  let last = -1;
  for (const part of text.split(',')) {
    const m = /^(\d{1,9})(?:-(\d{1,9}))?$/.exec(part);
    if (!m) refuse('pieces must be ascending ranges such as "0-9,12".');
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (a <= last || b < a) refuse('pieces must be ascending ranges such as "0-9,12".');
    count += b - a + 1;
    last = b;
  }
  if (count > MAX_REPORT_PIECES) refuse(`A report may name at most ${MAX_REPORT_PIECES} pieces.`);
  return count;
}

/** Checks a report whole; returns the row to store and the counter increments. */
function checkReport(reporterId: string, r: PeerReport) {
  if (!r || typeof r !== 'object') refuse('A report must be an object.');
  if (!(REPORT_KINDS as readonly string[]).includes(r.kind)) refuse(`kind must be one of ${REPORT_KINDS.join(', ')}.`, { field: 'kind' });
  if (typeof r.contentId !== 'string' || !CONTENT_ID.test(r.contentId)) refuse('contentId must be a content ID (64 hex characters).', { field: 'contentId' });
  if (typeof r.sourceId !== 'string' || r.sourceId.length === 0 || r.sourceId.length > ID_MAX) refuse('sourceId must name a terminal or "origin".', { field: 'sourceId' });
  if (typeof reporterId !== 'string' || reporterId.length === 0) refuse('The reporter must be a terminal.');
  // A report about oneself is no evidence, and `completed` ones would let a
  // terminal inflate its own reputation.
  if (r.sourceId === reporterId) refuse('A terminal cannot report about itself.', { field: 'sourceId' });
  const transferId = r.transferId ?? null;
  if (transferId !== null && (typeof transferId !== 'string' || transferId.length === 0 || transferId.length > ID_MAX)) refuse('transferId must be a transfer ID.', { field: 'transferId' });
  const bytes = r.bytes ?? 0;
  if (typeof bytes !== 'number' || !Number.isInteger(bytes) || bytes < 0 || bytes >= MAX_REPORT_BYTES) {
    refuse(`bytes must be an integer from 0 to below ${MAX_REPORT_BYTES}.`, { field: 'bytes' });
  }
  const pieces = r.pieces ?? null;
  if (pieces !== null && typeof pieces !== 'string') refuse('pieces must be ascending ranges such as "0-9,12".', { field: 'pieces' });
  const pieceCount = pieces === null ? 0 : countPieces(pieces);
  const inc = {
    bad_pieces: r.kind === 'bad_piece' ? Math.max(1, pieceCount) : 0,
    stalls: r.kind === 'stalled' ? 1 : 0,
    completed_uploads: r.kind === 'completed' ? 1 : 0,
    bytes_uploaded: r.kind === 'completed' ? bytes : 0,
  };
  const row: Omit<PeerReportsTable, 'created_at'> = {
    id: newId('rep'),
    reporter_id: reporterId,
    source_id: r.sourceId,
    content_id: r.contentId,
    transfer_id: transferId,
    kind: r.kind,
    pieces,
    bytes,
  };
  return { row, inc };
}

export class ReputationService {
  private readonly db: Db;
  private readonly clock: Clock;

  constructor(deps: { db: Db; clock: Clock }) {
    this.db = deps.db;
    this.clock = deps.clock;
  }

  /**
   * Stores one report and moves the source's counters, in one transaction: either
   * both happen or neither. Refusals (400 `invalid_report`, 404 `unknown_content` /
   * `unknown_terminal`) store nothing. Not idempotent: two reports count twice.
   */
  async report(reporterId: string, r: PeerReport): Promise<void> {
    await this.reportAll(reporterId, [r]);
  }

  /** Several reports, all or none: each is checked before any is stored, and a refused one stores nothing of the others. */
  async reportAll(reporterId: string, reports: PeerReport[]): Promise<void> {
    const checked = reports.map((r) => checkReport(reporterId, r));
    const now = new Date(this.clock.now());
    let current: (typeof checked)[number]['row'] | undefined;
    try {
      await this.db.transaction().execute(async (trx) => {
        for (const { row, inc } of checked) {
          current = row;
          await trx.insertInto('peer_reports').values({ ...row, created_at: now }).execute();
          if (row.source_id === ORIGIN_SOURCE_ID) continue;
          // Upserted even for `refused` (zero increments): the foreign key then refuses
          // reports about terminals that do not exist, whatever the kind.
          await trx
            .insertInto('peer_reputation')
            .values({ terminal_id: row.source_id, ...inc, updated_at: now })
            .onConflict((oc) =>
              oc.column('terminal_id').doUpdateSet((eb) => ({
                completed_uploads: eb('peer_reputation.completed_uploads', '+', eb.ref('excluded.completed_uploads')),
                bytes_uploaded: eb('peer_reputation.bytes_uploaded', '+', eb.ref('excluded.bytes_uploaded')),
                bad_pieces: eb('peer_reputation.bad_pieces', '+', eb.ref('excluded.bad_pieces')),
                stalls: eb('peer_reputation.stalls', '+', eb.ref('excluded.stalls')),
                updated_at: now,
              })),
            )
            .execute();
        }
      });
    } catch (err) {
      throw current ? translateForeignKey(err, current) : err;
    }
  }

  /** Counters of each terminal asked for; zeros for terminals nobody reported on. */
  async get(ids: string[]): Promise<Map<string, Reputation>> {
    const out = new Map<string, Reputation>();
    const unique = [...new Set(ids)];
    for (const id of unique) out.set(id, { completedUploads: 0, bytesUploaded: 0, badPieces: 0, stalls: 0 });
    if (unique.length === 0) return out;
    const rows = await this.db.selectFrom('peer_reputation').selectAll().where('terminal_id', 'in', unique).execute();
    for (const r of rows) {
      out.set(r.terminal_id, {
        completedUploads: Number(r.completed_uploads),
        bytesUploaded: Number(r.bytes_uploaded),
        badPieces: Number(r.bad_pieces),
        stalls: Number(r.stalls),
      });
    }
    return out;
  }

  /**
   * Sources not to select for `requesterId` fetching `contentId` (the exclusion rule
   * in the module header). Never contains the origin.
   */
  async excludedFor(contentId: string, requesterId: string): Promise<Set<string>> {
    const rows = await this.db
      .selectFrom('peer_reports')
      .select('source_id')
      .where('content_id', '=', contentId)
      .where('kind', '=', 'bad_piece')
      .where('source_id', '<>', ORIGIN_SOURCE_ID)
      .groupBy('source_id')
      .having((eb) =>
        eb.or([
          eb(eb.fn.count('reporter_id').distinct(), '>=', EXCLUDE_AFTER_REPORTERS),
          eb(sql<boolean>`bool_or(${eb.ref('reporter_id')} = ${requesterId})`, '=', true),
        ]),
      )
      .execute();
    return new Set(rows.map((r) => r.source_id));
  }
}

/** A report naming a content or terminal that does not exist is the caller's mistake, not a 500. */
function translateForeignKey(err: unknown, row: { content_id: string; reporter_id: string; source_id: string }): unknown {
  const e = err as { code?: unknown; constraint?: unknown; detail?: unknown; message?: unknown };
  if (e?.code !== '23503') return err;
  const where = `${String(e.constraint ?? '')} ${String(e.detail ?? '')} ${String(e.message ?? '')}`;
  if (where.includes('content_id')) return notFound('unknown_content', `No content ${row.content_id}.`);
  if (where.includes('reporter_id')) return notFound('unknown_terminal', `No terminal ${row.reporter_id}.`);
  return notFound('unknown_terminal', `No terminal ${row.source_id}.`);
}
