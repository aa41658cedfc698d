import type { FastifyPluginAsync } from 'fastify';
import { errorSchema } from '../core/http.ts';
import { safeInteger } from '../core/validation.ts';
import type { Db } from '../db/connection.ts';
import { signedReceiptSchema, type ReceiptsAnswer, type SignedReceipt } from '../transfer/receipt.ts';
import { receiptsInvolving } from '../transfer/queries.ts';
import type { Ledger } from './ledger.ts';
import type { Wallets } from './wallets.ts';

// S1.10 (#4.6): a terminal that lost contact sends its journal when it is back. The
// origin matches it against its own record: receipts it never got are stored and
// settled (once: settlement is idempotent by receipt), receipts it has are ignored,
// and disagreements — a receipt stored with other contents, one that fails its checks,
// a charge the terminal noted that differs from the origin's — are reported. The
// answer is the origin's record of every receipt named, which the terminal adopts.

export interface ReconcileRequest {
  receipts: SignedReceipt[];
  /** Charges the terminal has noted, to be compared with the origin's. */
  charges?: { receiptId: string; amount: number }[];
}

export interface ReconcileResult {
  settled: string[];
  duplicates: string[];
  conflicts: { receiptId: string | null; code: string; message: string }[];
  record: { receiptId: string; status: 'settled' | 'unpaid'; charge: number }[];
  balance: number;
}

export class Reconciler {
  constructor(
    private readonly deps: {
      db: Db;
      ledger: Ledger;
      wallets: Wallets;
      /** ReceiptService.submit: checks, stores and settles receipts, each on its own. */
      submitReceipts: (terminalId: string, receipts: SignedReceipt[]) => Promise<ReceiptsAnswer>;
    },
  ) {}

  async reconcile(terminal: { id: string; userId: string }, req: ReconcileRequest): Promise<ReconcileResult> {
    const result: ReconcileResult = { settled: [], duplicates: [], conflicts: [], record: [], balance: 0 };
    const named = new Set<string>();
    for (const receipt of req.receipts) {
      const id = receiptIdOf(receipt);
      if (id) named.add(id);
    }
    // Each receipt is judged on its own: a bad one is reported without holding back the others.
    if (req.receipts.length) {
      const r = await this.deps.submitReceipts(terminal.id, req.receipts);
      result.settled.push(...r.accepted);
      result.duplicates.push(...r.duplicates);
      for (const x of r.refused) result.conflicts.push({ receiptId: x.receiptId, code: x.code, message: x.message });
    }
    for (const c of req.charges ?? []) named.add(c.receiptId);

    const theirs = await receiptsInvolving(this.deps.db, [...named], terminal.id);
    const rows = theirs.size
      ? await this.deps.db.selectFrom('ledger_settlements').select(['receipt_id', 'status', 'charge']).where('receipt_id', 'in', [...theirs]).execute()
      : [];
    const origin = new Map(rows.map((r) => [r.receipt_id, r]));
    for (const c of req.charges ?? []) {
      const o = origin.get(c.receiptId);
      if (!o) result.conflicts.push({ receiptId: c.receiptId, code: 'receipt_unknown', message: 'The origin has no record of this receipt for this terminal.' });
      else if (o.status === 'settled' && o.charge !== c.amount) {
        result.conflicts.push({ receiptId: c.receiptId, code: 'charge_mismatch', message: `The terminal noted ${c.amount}; the origin charged ${o.charge}.` });
      }
    }
    result.record = rows.map((r) => ({ receiptId: r.receipt_id, status: r.status, charge: r.charge })).sort((a, b) => a.receiptId.localeCompare(b.receiptId));
    result.balance = (await this.deps.ledger.balance(await this.deps.wallets.open(terminal.userId))).posted;
    return result;
  }
}

function receiptIdOf(r: SignedReceipt): string | null {
  try {
    const id = JSON.parse(r.body).id;
    return typeof id === 'string' ? id : null;
  } catch {
    return null;
  }
}

export function reconcileRoutes(deps: { reconciler: Reconciler; terminalOwner: (terminalId: string) => Promise<string> }): FastifyPluginAsync {
  return async (app) => {
    app.post<{ Body: ReconcileRequest }>('/ledger/reconcile', {
      config: { access: 'terminal' },
      schema: {
        summary: 'A terminal back from being offline sends its accounting journal; the origin settles what it missed and answers with its record (S1.10)',
        tags: ['ledger'],
        body: {
          type: 'object',
          required: ['receipts'],
          additionalProperties: false,
          properties: {
            receipts: {
              type: 'array',
              maxItems: 1000,
              items: signedReceiptSchema,
            },
            charges: {
              type: 'array',
              maxItems: 10_000,
              items: { type: 'object', required: ['receiptId', 'amount'], additionalProperties: false, properties: { receiptId: { type: 'string', maxLength: 64 }, amount: safeInteger(0) } },
            },
          },
        },
        response: { 400: errorSchema, 401: errorSchema },
      },
      handler: async (req) => {
        const terminalId = req.principal!.terminalId!;
        return deps.reconciler.reconcile({ id: terminalId, userId: await deps.terminalOwner(terminalId) }, req.body);
      },
    });
  };
}
