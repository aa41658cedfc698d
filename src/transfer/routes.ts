import type { FastifyPluginAsync } from 'fastify';
import { badRequest, forbidden } from '../core/errors.ts';
import { errorSchema } from '../core/http.ts';
import { int4, safeInteger } from '../core/validation.ts';
import type { ContentService } from '../content/service.ts';
import type { TerminalService } from '../terminals/service.ts';
import type { GrantService } from './grants.ts';
import type { ReceiptService } from './receipts.ts';
import type { ServedLog } from './served-log.ts';
import { signedReceiptSchema, type SignedReceipt } from './receipt.ts';
import type { OfferRequest, PeerCoordinator } from './coordinator.ts';
import { checkPiecesDone, type TransferService } from './transfers.ts';
import { REPORT_KINDS, type ReputationService } from './reputation.ts';
import type { ReceiptCharge } from '../ledger/settlement.ts';

const sourceOfferSchema = {
  type: 'object',
  properties: {
    sourceId: { type: 'string' },
    sourceUrl: { type: ['string', 'null'] },
    pieces: { type: ['string', 'null'] },
    score: { type: ['number', 'null'] },
    why: { type: 'array', items: { type: 'string' } },
    grant: { type: 'object', properties: { id: { type: 'string' }, token: { type: 'string' }, expiresAt: { type: 'string' } } },
    publicKey: { type: 'string', description: 'The source’s Ed25519 key (base64url raw); its `cascade-served` statements must verify with it' },
    upRate: { type: ['integer', 'null'], description: 'The upload rate the source declared, bytes/s (null: none; the origin)' },
  },
} as const;

export function transferRoutes(deps: {
  coordinator: PeerCoordinator;
  transfers: TransferService;
  reputation: ReputationService;
  grants: GrantService;
  receipts: ReceiptService;
  served: ServedLog;
  content: ContentService;
  terminals: TerminalService;
  originSourceId: string;
  /** What each receipt cost, from the ledger (its exported query, receiptCharges). */
  charges: (receiptIds: string[]) => Promise<Map<string, ReceiptCharge>>;
}): FastifyPluginAsync {
  return async (app) => {
    app.post<{ Body: { contentId: string; source?: string; pieces?: string } }>('/grants', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Ask for a grant to fetch pieces of a content from a source (S1.6)',
        description: 'An explicit grant from the origin itself, whose pieces are served at /pieces on this server; peers are granted through /grants/auto.',
        tags: ['transfer'],
        body: {
          type: 'object',
          required: ['contentId'],
          additionalProperties: false,
          properties: {
            contentId: { type: 'string', pattern: '^[0-9a-f]{64}$' },
            source: { type: 'string', maxLength: 64, default: 'origin' },
            pieces: { type: 'string', maxLength: 200_000, description: 'piece ranges such as "0-9,12"; default: all' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              id: { type: 'string' },
              token: { type: 'string' },
              contentId: { type: 'string' },
              sourceId: { type: 'string' },
              sourceUrl: { type: ['string', 'null'] },
              pieces: { type: 'string' },
              expiresAt: { type: 'string' },
            },
          },
          400: errorSchema,
          404: errorSchema,
        },
      },
      handler: async (req) => {
        const source = req.body.source ?? deps.originSourceId;
        if (source !== deps.originSourceId) throw badRequest('unknown_source', 'Explicit grants are for the origin; ask /grants/auto for peers.');
        const grant = await deps.grants.issue(req.principal!.terminalId!, { contentId: req.body.contentId, sourceId: source, pieces: req.body.pieces });
        // A null sourceUrl means "this origin": the receiver already knows where it is.
        return { ...grant, sourceUrl: null };
      },
    });

    app.post<{ Body: OfferRequest }>('/grants/auto', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Automatic source selection (S1.5): grants for the best holders for this terminal, and the origin as last resort',
        description:
          'Called again every few seconds during a transfer: it reports progress (S1.7) and returns fresh grants, minus the sources the receiver excluded. Each peer comes with its score and the reasons (`why`), and each holder not offered comes in `skipped` with why not; see docs/selection.md.',
        tags: ['transfer'],
        body: {
          type: 'object',
          required: ['contentId'],
          additionalProperties: false,
          properties: {
            contentId: { type: 'string', pattern: '^[0-9a-f]{64}$' },
            transferId: { type: 'string', maxLength: 64 },
            exclude: { type: 'array', maxItems: 1000, items: { type: 'string', maxLength: 64 } },
            maxPeers: { type: 'integer', minimum: 0, maximum: 32, default: 6 },
            piecesDone: int4(0),
            have: { type: 'string', maxLength: 200_000 },
            announce: { type: 'boolean', description: 'The receiver serves the pieces in `have` (an agent): record them as its holdings, as PUT /terminals/holdings/{contentId}/pieces would (#19: one call, not two).' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              transferId: { type: 'string' },
              sources: { type: 'array', items: sourceOfferSchema },
              skipped: {
                type: 'array',
                description: 'Holders of the content not offered to this terminal, each with the first rule it broke (`reason`) and why in words (`why`); see docs/selection.md.',
                items: {
                  type: 'object',
                  properties: {
                    sourceId: { type: 'string' },
                    reason: { type: 'string', enum: ['offline', 'saturated', 'no_address', 'excluded', 'nothing_needed'] },
                    why: { type: 'string' },
                  },
                },
              },
              announceRefused: {
                type: 'object',
                description: 'With `announce`: why the holdings were not recorded (the sources are offered all the same).',
                properties: { code: { type: 'string' }, message: { type: 'string' } },
              },
              reservation: {
                type: 'object',
                description: 'When the call opened or resumed a transfer: what is reserved for the rest of this content, and why (docs/ledger.md "Purchases").',
                properties: {
                  held: { type: 'integer' },
                  heldUntil: { type: ['integer', 'null'] },
                  paid: { type: 'boolean' },
                  reused: { type: 'boolean' },
                  why: { type: 'string' },
                },
              },
            },
          },
          402: errorSchema,
          400: errorSchema,
          403: errorSchema,
          404: errorSchema,
        },
      },
      handler: async (req) => deps.coordinator.offer(req.principal!.terminalId!, req.body),
    });

    app.post<{ Params: { id: string }; Body: { piecesDone: number; done?: boolean; reports?: { sourceId: string; kind: string; bytes?: number; pieces?: string }[] } }>(
      '/transfers/:id/progress',
      {
        config: { access: 'terminal' },
        schema: {
          summary: 'The receiver reports progress, and what it saw of its sources (S1.7): completed uploads, stalls, refusals, bad pieces',
          tags: ['transfer'],
          params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
          body: {
            type: 'object',
            required: ['piecesDone'],
            additionalProperties: false,
            properties: {
              piecesDone: int4(0),
              done: { type: 'boolean' },
              reports: {
                type: 'array',
                maxItems: 100,
                items: {
                  type: 'object',
                  required: ['sourceId', 'kind'],
                  additionalProperties: false,
                  properties: {
                    sourceId: { type: 'string', maxLength: 64 },
                    kind: { type: 'string', enum: [...REPORT_KINDS] },
                    bytes: safeInteger(0),
                    pieces: { type: 'string', maxLength: 100_000 },
                  },
                },
              },
            },
          },
          response: { 200: { type: 'object', properties: { state: { type: 'string' } } }, 400: errorSchema, 403: errorSchema, 404: errorSchema },
        },
      },
      async (req) => {
        const me = req.principal!.terminalId!;
        const t = await deps.transfers.mine(req.params.id, me);
        checkPiecesDone(req.body.piecesDone, t.pieces_total);
        // All reports or none: a refused one (unknown source, a report about itself) leaves no other behind.
        const reports = (req.body.reports ?? []).map((r) => ({ contentId: t.content_id, sourceId: r.sourceId, transferId: t.id, kind: r.kind as any, bytes: r.bytes, pieces: r.pieces ?? null }));
        if (reports.length) await deps.reputation.reportAll(me, reports);
        const updated = await deps.transfers.progress(t, req.body.piecesDone, req.body.done ?? false);
        if (updated.state === 'done') await deps.coordinator.finished(updated);
        return { state: updated.state };
      },
    );

    app.post<{ Body: { grants: { id: string; pieces: string }[] } }>('/transfers/served', {
      config: { access: 'terminal' },
      schema: {
        summary: 'A source reports the pieces it sent in full, per grant (S1.7: both ends report; #10: receipts are paid only for reported pieces)',
        tags: ['transfer'],
        body: {
          type: 'object',
          required: ['grants'],
          additionalProperties: false,
          properties: {
            grants: {
              type: 'array',
              maxItems: 1000,
              items: {
                type: 'object',
                required: ['id', 'pieces'],
                additionalProperties: false,
                properties: { id: { type: 'string', maxLength: 64 }, pieces: { type: 'string', minLength: 1, maxLength: 100_000, description: 'ranges such as "0-9,12"' } },
              },
            },
          },
        },
        response: {
          200: {
            type: 'object',
            description: 'Each grant is judged on its own: `refused` lists those not recorded, with their code (unknown_grant, served_not_yours, invalid_pieces).',
            properties: {
              transfers: { type: 'integer' },
              refused: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, code: { type: 'string' }, message: { type: 'string' } } } },
            },
          },
          400: errorSchema,
        },
      },
      handler: async (req) => {
        const { recorded, refused } = await deps.served.report(req.principal!.terminalId!, req.body.grants);
        return { transfers: await deps.transfers.servedUnder(recorded), refused };
      },
    });

    app.get<{ Querystring: { receiver?: string } }>('/receipts', {
      config: { access: 'user' },
      schema: {
        summary: 'Receipts signed by a terminal, or by all your terminals: which source delivered which pieces of what, and what each cost (#12)',
        description: 'Without ?receiver, the receipts of every terminal of yours (oldest first, at most 1000). A terminal’s receipts: its owner and operators only.',
        tags: ['transfer'],
        querystring: { type: 'object', additionalProperties: false, properties: { receiver: { type: 'string', maxLength: 64 } } },
        response: {
          200: {
            type: 'object',
            properties: {
              items: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'string' },
                    grantId: { type: 'string' },
                    contentId: { type: 'string' },
                    contentTitle: { type: ['string', 'null'] },
                    sourceId: { type: 'string' },
                    source: { type: 'string', description: '`origin`, or the source terminal’s name' },
                    receiverId: { type: 'string' },
                    pieces: { type: 'string' },
                    bytes: { type: 'integer' },
                    receivedAt: { type: 'string' },
                    status: { type: 'string', enum: ['settled', 'unpaid', 'pending'], description: 'pending: not settled yet' },
                    charge: { type: 'integer' },
                    why: { type: 'string', description: 'the pricing rules that applied, in words; or why it is unpaid' },
                  },
                },
              },
            },
          },
          403: errorSchema,
          404: errorSchema,
        },
      },
      handler: async (req) => {
        const p = req.principal!;
        let receivers: string[];
        if (req.query.receiver !== undefined) {
          const terminal = await deps.terminals.get(req.query.receiver);
          if (terminal.userId !== p.userId && !p.roles.includes('operator')) throw forbidden('forbidden', 'Only the terminal’s owner or an operator may see its receipts.');
          receivers = [terminal.id];
        } else receivers = await deps.terminals.idsOf(p.userId);
        const items = await deps.receipts.list(receivers);
        const [charges, titles] = await Promise.all([deps.charges(items.map((r) => r.id)), deps.content.titles(items.map((r) => r.contentId))]);
        const names = new Map<string, string>();
        for (const id of new Set(items.map((r) => r.sourceId))) {
          names.set(id, id === deps.originSourceId ? 'origin' : await deps.terminals.get(id).then((t) => t.name, () => id));
        }
        return {
          items: items.map((r) => {
            const c = charges.get(r.id);
            return {
              ...r,
              contentTitle: titles.get(r.contentId) ?? null,
              source: names.get(r.sourceId) ?? r.sourceId,
              status: c?.status ?? 'pending',
              charge: c?.charge ?? 0,
              why: c ? (c.status === 'unpaid' ? `unpaid: ${c.code}` : c.why || 'list price') : 'not settled yet',
            };
          }),
        };
      },
    });

    app.post<{ Body: { receipts: SignedReceipt[] } }>('/receipts', {
      config: { access: 'terminal' },
      schema: {
        summary: 'Hand in signed receipts for verified pieces (settled by the ledger)',
        tags: ['transfer'],
        body: {
          type: 'object',
          required: ['receipts'],
          additionalProperties: false,
          properties: {
            receipts: {
              type: 'array',
              minItems: 1,
              maxItems: 1000,
              items: signedReceiptSchema,
            },
          },
        },
        response: {
          200: {
            type: 'object',
            description: 'Each receipt is judged on its own: `refused` lists the ones not taken, with their code (`receipt_not_served` may be sent again later).',
            properties: {
              accepted: { type: 'array', items: { type: 'string' } },
              duplicates: { type: 'array', items: { type: 'string' } },
              refused: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: { index: { type: 'integer' }, receiptId: { type: ['string', 'null'] }, code: { type: 'string' }, message: { type: 'string' } },
                },
              },
            },
          },
          400: errorSchema,
          403: errorSchema,
          404: errorSchema,
          409: errorSchema,
        },
      },
      handler: async (req) => deps.receipts.submit(req.principal!.terminalId!, req.body.receipts),
    });
  };
}
