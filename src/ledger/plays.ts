import type { Clock } from '../core/clock.ts';
import { AppError, conflict, notFound } from '../core/errors.ts';
import type { Db } from '../db/connection.ts';
import { PLATFORM_REVENUE, PLATFORM_ROUNDING, royaltyAccount } from './accounts.ts';
import { transferError, type AccountSpec, type Ledger, type TransferInput } from './ledger.ts';
import { playPrice, type Tariff } from './tariff.ts';
import type { Wallets } from './wallets.ts';
import { fullyPaid } from './purchases.ts';
import { contentsByIds } from '../content/queries.ts';
import { receivedBy } from '../transfer/queries.ts';

// Pay per play (S1.13, docs/ledger.md "Pay per play"): playing a content with no
// download record on this terminal is charged as a play.
//
// A terminal reports each play with an ID of its own choosing. If the terminal has a
// download record for the content (its owner fully paid for it, and this terminal
// received it: a receipt it signed as receiver, or a monitored transfer that finished),
// the play is free. Otherwise the terminal's owner pays the
// play price (`playPrice`, a percent of the list price) as one linked chain of ledger
// transfers, reason `play`, whose IDs derive from `play:<terminalId>:<playId>`:
//   <play>:royalty   wallet → royalty:<publisher>
//   <play>:fee       wallet → platform:revenue
//   <play>:rounding  wallet → platform:rounding (what rounding down left, 0–1 units)
// A retry of the same play ID finds those transfers and answers what the first call
// answered; nothing is charged twice.

/** What playing costs the caller, and where the money went. */
export interface PlayResult {
  playId: string;
  contentId: string;
  /** Minor units taken from the wallet for this play (0 when owned or free). */
  charged: number;
  /** `owned`: a download record exists; `free`: the play price rounds to 0; `charged`: paid. */
  reason: 'owned' | 'free' | 'charged';
  /** False when this play ID was already charged (a retry): nothing moved this time. */
  created: boolean;
  /** The parts of the charge (they add up to `charged`); null when nothing was charged. */
  parts: PlaySplit | null;
  /** The wallet's posted balance right after the charge; null when nothing was charged. */
  balance: number | null;
  /** The ledger transfers of the charge, in order. */
  transfers: string[];
}

export interface PlaySplit {
  royalty: number;
  fee: number;
  rounding: number;
}

/** The ledger reference and transfer-ID stem of a play. */
export const playRef = (terminalId: string, playId: string) => `play:${terminalId}:${playId}`;
const LEGS = ['royalty', 'fee', 'rounding'] as const;

/**
 * Splits a play charge between the publisher and the platform in the ratio of the
 * tariff's royalty to its platform fee (a play has no uploader): with the default 40 %
 * royalty and 10 % fee, 4/5 to the publisher and 1/5 to the platform. Each share is
 * rounded down; the remainder goes to rounding, so the parts add up to the charge.
 */
export function splitPlay(charge: number, t: Tariff): PlaySplit {
  const royaltyWeight = BigInt(t.royaltyPercent);
  const feeWeight = BigInt(100 - t.uploaderPercent - t.royaltyPercent);
  const total = royaltyWeight + feeWeight;
  if (total === 0n) return { royalty: 0, fee: charge, rounding: 0 }; // a tariff that gives everything to uploaders: the platform keeps plays
  const c = BigInt(charge);
  const royalty = (c * royaltyWeight) / total;
  const fee = (c * feeWeight) / total;
  return { royalty: Number(royalty), fee: Number(fee), rounding: Number(c - royalty - fee) };
}

export class PlayService {
  constructor(private readonly deps: { db: Db; ledger: Ledger; wallets: Wallets; clock: Clock; tariff: Tariff }) {}

  /** Records a play of `contentId` on the caller's terminal; charges it unless the terminal owns the content. */
  async play(caller: { userId: string; terminalId: string }, req: { contentId: string; playId: string }): Promise<PlayResult> {
    const { db, ledger, tariff } = this.deps;
    const ref = playRef(caller.terminalId, req.playId);
    const ids = LEGS.map((leg) => `${ref}:${leg}`);

    // A retry: answer what the first call answered.
    const earlier = await this.stored(ids);
    if (earlier) return this.answer(req, earlier, false);

    const content = (await contentsByIds(db, [req.contentId])).get(req.contentId);
    if (!content) throw notFound('unknown_content', `No content ${req.contentId}.`);
    const none = { playId: req.playId, contentId: req.contentId, charged: 0, created: false, parts: null, balance: null, transfers: [] };
    if (await this.owned(caller, req.contentId)) return { ...none, reason: 'owned' };
    const charge = playPrice(content.price, tariff);
    if (charge === 0) return { ...none, reason: 'free' };

    const wallet = await this.deps.wallets.open(caller.userId);
    const split = splitPlay(charge, tariff);
    const royalty = royaltyAccount(content.publisherId);
    const credit: Record<(typeof LEGS)[number], string> = { royalty: royalty.id, fee: PLATFORM_REVENUE.id, rounding: PLATFORM_ROUNDING.id };
    const transfers: TransferInput[] = LEGS.filter((leg) => split[leg] > 0).map((leg) => ({
      id: `${ref}:${leg}`,
      debit: wallet,
      credit: credit[leg],
      amount: split[leg],
      reason: 'play',
      contentId: req.contentId,
      ref,
      record: ref, // S1.12: one record per play
      linked: true,
    }));
    transfers[transfers.length - 1].linked = false;

    const results = await db.transaction().execute(async (trx) => {
      // Created in the same transaction, so a refused play leaves no new account behind.
      const specs: AccountSpec[] = [royalty, PLATFORM_REVENUE, PLATFORM_ROUNDING];
      const now = new Date(this.deps.clock.now());
      await trx
        .insertInto('ledger_accounts')
        .values(specs.map((s) => ({ id: s.id, kind: s.kind, owner_id: s.ownerId ?? null, no_overdraft: s.noOverdraft, created_at: now })))
        .onConflict((oc) => oc.column('id').doNothing())
        .execute();
      const results = await ledger.apply(transfers, { trx });
      const failed = results.find((r) => r.status === 'failed' && r.code !== 'linked_event_failed') ?? results.find((r) => r.status === 'failed');
      if (failed?.code === 'insufficient_balance') {
        const a = await trx.selectFrom('ledger_accounts').selectAll().where('id', '=', wallet).executeTakeFirstOrThrow();
        const available = a.credits_posted - a.debits_posted - a.debits_pending;
        throw new AppError(
          'insufficient_balance',
          `Playing this content here costs ${charge} (it has no download record on this terminal); the wallet has ${available} available. Top up first (cascade wallet topup CODE).`,
          402,
          { needed: charge, available },
        );
      }
      if (failed?.code === 'transfer_id_conflict') throw conflict('play_id_conflict', `Play ${req.playId} was already recorded with other content.`);
      if (failed) throw transferError(failed);
      return results;
    });
    const rows = await this.stored(ids);
    if (!rows) throw new AppError('internal', 'The play was charged but its transfers cannot be read back.', 500);
    return this.answer(req, rows, results.some((r) => r.status === 'created'));
  }

  /**
   * S1.13 "download record" (#10): the user has fully paid for the content, and this
   * terminal received it (a receipt it signed as receiver, or a finished transfer to it).
   * A receipt alone is not enough: one piece bought must not make every play free.
   */
  private async owned({ userId, terminalId }: { userId: string; terminalId: string }, contentId: string): Promise<boolean> {
    const { db } = this.deps;
    return (await fullyPaid(db, userId, contentId)) && (await receivedBy(db, terminalId, contentId));
  }

  private async stored(ids: string[]) {
    const rows = await this.deps.db
      .selectFrom('ledger_transfers')
      .select(['id', 'seq', 'amount', 'content_id', 'debit_account_id', 'debit_balance_after'])
      .where('id', 'in', ids)
      .orderBy('seq')
      .execute();
    return rows.length ? rows : null;
  }

  private answer(
    req: { contentId: string; playId: string },
    rows: { id: string; amount: number; content_id: string | null; debit_balance_after: number }[],
    created: boolean,
  ): PlayResult {
    if (rows[0].content_id !== req.contentId) throw conflict('play_id_conflict', `Play ${req.playId} was already recorded for another content.`);
    const parts: PlaySplit = { royalty: 0, fee: 0, rounding: 0 };
    for (const r of rows) parts[r.id.slice(r.id.lastIndexOf(':') + 1) as keyof PlaySplit] = r.amount;
    return {
      playId: req.playId,
      contentId: req.contentId,
      charged: rows.reduce((s, r) => s + r.amount, 0),
      reason: 'charged',
      created,
      parts,
      balance: rows[rows.length - 1].debit_balance_after,
      transfers: rows.map((r) => r.id),
    };
  }
}
