import type { FastifyPluginAsync } from 'fastify';
import type { Clock } from '../core/clock.ts';
import type { Db } from '../db/connection.ts';
import { contentsByIds } from '../content/queries.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { ScheduleService } from '../schedule/service.ts';
import { terminalsByIds } from '../terminals/queries.ts';
import type { TerminalService } from '../terminals/service.ts';
import { ORIGIN_SOURCE_ID } from '../transfer/grant-token.ts';
import { receiptBytesPerBucket } from '../transfer/queries.ts';
import type { TransferService } from '../transfer/transfers.ts';

// #13 operations dashboard (`GET /ops/dashboard`, operators): one page of figures composed
// from the domains' services and query functions — it owns no table and names none.
// What each figure means and where it comes from: docs/operations.md "Dashboard".

export const EGRESS_BUCKET_SECONDS = 60;
export const EGRESS_BUCKETS = 60;
export const TOP_HELD = 20;

export interface Dashboard {
  at: string;
  terminals: { online: number; total: number };
  holders: { contentId: string; title: string; holdersOnline: number; holders: number }[];
  transfers: {
    id: string;
    contentId: string;
    title: string;
    receiver: { id: string; name: string };
    startedAt: string;
    piecesDone: number;
    pieces: number;
    sources: { id: string; kind: 'origin' | 'peer'; name: string }[];
  }[];
  egress: { bucketSeconds: number; points: { at: string; bytes: number }[] };
  ledger: { ok: boolean; checkedAt: string; message: string };
  schedule: { backlog: number; oldestDueAt: string | null };
}

export interface DashboardDeps {
  db: Db;
  clock: Clock;
  terminals: TerminalService;
  transfers: TransferService;
  ledger: Ledger;
  schedules: ScheduleService;
}

export class OpsDashboard {
  constructor(private readonly deps: DashboardDeps) {}

  async build(): Promise<Dashboard> {
    const { db, clock, terminals, transfers, ledger, schedules } = this.deps;
    const now = clock.now();
    const [presence, held, running, egress, totals, backlog] = await Promise.all([
      terminals.presence(),
      terminals.mostHeld(TOP_HELD),
      transfers.running(),
      this.egress(now),
      ledger.checkTotals(),
      schedules.deliveries.backlog(),
    ]);
    const [contents, names] = await Promise.all([
      contentsByIds(db, [...held.map((h) => h.contentId), ...running.map((t) => t.contentId)]),
      terminalsByIds(db, running.flatMap((t) => [t.receiverId, ...t.sources.filter((s) => s !== ORIGIN_SOURCE_ID)])),
    ]);
    const title = (id: string) => contents.get(id)?.title ?? id;
    const nameOf = (id: string) => names.get(id)?.name ?? id;
    return {
      at: new Date(now).toISOString(),
      terminals: presence,
      holders: held.map((h) => ({ contentId: h.contentId, title: title(h.contentId), holdersOnline: h.holdersOnline, holders: h.holders })),
      transfers: running.map((t) => ({
        id: t.id,
        contentId: t.contentId,
        title: title(t.contentId),
        receiver: { id: t.receiverId, name: nameOf(t.receiverId) },
        startedAt: t.startedAt,
        piecesDone: t.piecesDone,
        pieces: t.pieces,
        sources: t.sources.map((id) => (id === ORIGIN_SOURCE_ID ? { id, kind: 'origin' as const, name: 'origin' } : { id, kind: 'peer' as const, name: nameOf(id) })),
      })),
      egress,
      ledger: {
        ok: totals.ok,
        checkedAt: new Date(now).toISOString(),
        message: totals.ok
          ? `Debits equal credits over all accounts (posted ${totals.debitsPosted}, pending ${totals.debitsPending}): the balances sum to zero.`
          : `Conservation broken: posted debits ${totals.debitsPosted} vs credits ${totals.creditsPosted}, pending debits ${totals.debitsPending} vs credits ${totals.creditsPending}. Run the full check (Ledger.checkConservation) to find the accounts.`,
      },
      schedule: backlog,
    };
  }

  /**
   * Origin bytes per minute over the last hour on the injected clock: the bytes receipts
   * naming the origin as source acknowledge, by the minute the origin stored them. 60
   * points, oldest first, the last one the current (partial) minute; minutes without
   * receipts are 0.
   */
  async egress(now: number): Promise<Dashboard['egress']> {
    const bucketMs = EGRESS_BUCKET_SECONDS * 1000;
    const current = Math.floor(now / bucketMs) * bucketMs;
    const first = current - (EGRESS_BUCKETS - 1) * bucketMs;
    const bytes = await receiptBytesPerBucket(this.deps.db, ORIGIN_SOURCE_ID, new Date(first), new Date(current + bucketMs), bucketMs);
    const points = Array.from({ length: EGRESS_BUCKETS }, (_, i) => {
      const at = first + i * bucketMs;
      return { at: new Date(at).toISOString(), bytes: bytes.get(at) ?? 0 };
    });
    return { bucketSeconds: EGRESS_BUCKET_SECONDS, points };
  }
}

const iso = { type: 'string', format: 'date-time' } as const;

const dashboardSchema = {
  type: 'object',
  properties: {
    at: iso,
    terminals: { type: 'object', properties: { online: { type: 'integer' }, total: { type: 'integer' } } },
    holders: {
      type: 'array',
      items: { type: 'object', properties: { contentId: { type: 'string' }, title: { type: 'string' }, holdersOnline: { type: 'integer' }, holders: { type: 'integer' } } },
    },
    transfers: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          contentId: { type: 'string' },
          title: { type: 'string' },
          receiver: { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } } },
          startedAt: iso,
          piecesDone: { type: 'integer' },
          pieces: { type: 'integer' },
          sources: {
            type: 'array',
            items: { type: 'object', properties: { id: { type: 'string' }, kind: { type: 'string', enum: ['origin', 'peer'] }, name: { type: 'string' } } },
          },
        },
      },
    },
    egress: {
      type: 'object',
      properties: {
        bucketSeconds: { type: 'integer' },
        points: { type: 'array', items: { type: 'object', properties: { at: iso, bytes: { type: 'integer' } } } },
      },
    },
    ledger: { type: 'object', properties: { ok: { type: 'boolean' }, checkedAt: iso, message: { type: 'string' } } },
    schedule: { type: 'object', properties: { backlog: { type: 'integer' }, oldestDueAt: { type: ['string', 'null'], format: 'date-time' } } },
  },
} as const;

/** The operations dashboard's route and builder; server.ts composes it with the domains' services. */
export function opsDashboard(deps: DashboardDeps): { dashboard: OpsDashboard; plugin: FastifyPluginAsync } {
  const dashboard = new OpsDashboard(deps);
  const plugin: FastifyPluginAsync = async (app) => {
    app.get('/ops/dashboard', {
      config: { access: ['operator'] },
      schema: {
        summary: 'Operations dashboard (#13): terminals online, holders per content, running transfers, origin egress per minute, ledger conservation, schedule backlog',
        description:
          'Computed when asked. holders: the 20 contents with the most holders. transfers: at most 100 running (not finished, reported on recently). ' +
          'egress: origin bytes per minute over the last 60 minutes, from the receipts naming the origin. ledger: Σ debits = Σ credits over all accounts. ' +
          'schedule: open scheduled deliveries whose due time has come. docs/operations.md "Dashboard".',
        tags: ['ops'],
        response: { 200: dashboardSchema },
      },
      handler: async () => dashboard.build(),
    });
  };
  return { dashboard, plugin };
}
