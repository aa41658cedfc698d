import type { Transaction } from 'kysely';
import type { Clock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import type { Db } from '../db/connection.ts';
import type { Database } from '../db/schema.ts';
import { HOLDS } from './accounts.ts';
import { transferError, type Ledger, type TransferInput } from './ledger.ts';
import { isFullyPaid, stillToPay } from './purchase.ts';
import { holdId, lockPurchases, purchaseKey, purchaseRecord, savePurchases } from './purchases.ts';
import type { Wallets } from './wallets.ts';

// S1 flow "balance check first" (#4.3) and two-phase holds (#4.1), per purchase (#10).
// Before a transfer starts, the receiver's wallet must cover the most the rest of its
// purchase can cost; that amount is reserved (a pending ledger transfer wallet → holds).
// A purchase has at most one reservation, whatever the number of transfers, devices or
// reruns of `cascade get`: a second transfer of the same content reuses it. Settlement
// pays receipts out of it and reserves the rest again; the receipt that completes the
// purchase releases what is left, and so does the end of a transfer. A reservation
// nobody settles or releases expires on its own (HOLD_TIMEOUT_MS).
//
// A content already fully paid for is not charged again (a new device, a deleted copy):
// nothing is reserved and its receipts cost nothing. With REFETCH_POLICY=charge the
// operator decides otherwise: fetching a fully paid content again starts a new purchase.

export type RefetchPolicy = 'free' | 'charge';

/** What a transfer's reservation is, for the receiver (the offer answer and `cascade get` show it). */
export interface Reservation {
  /** Held for the rest of this purchase now (minor units). */
  held: number;
  /** When the hold expires unless settled or released (ms since the epoch); null when nothing is held. */
  heldUntil: number | null;
  /** The purchase was already fully paid for: nothing more is charged. */
  paid: boolean;
  /** An existing reservation of the same purchase was reused. */
  reused: boolean;
  /** Why, in a sentence. */
  why: string;
}

export interface ReserveRequest {
  userId: string;
  contentId: string;
  price: number;
  totalBytes: number;
  /** Bytes the transfer still lacks. */
  missingBytes: number;
}

export class Reservations {
  constructor(private readonly deps: { db: Db; ledger: Ledger; wallets: Wallets; clock: Clock; holdTimeoutMs: number; refetch?: RefetchPolicy }) {}

  /**
   * Reserves what the rest of the user's purchase of the content can cost, given the bytes
   * the transfer still lacks, or reuses the purchase's open reservation. Refuses with
   * `insufficient_balance` (402). Runs in `trx` when given (the transaction that opens
   * the transfer: a refusal leaves neither), else in one of its own.
   */
  async reserve(req: ReserveRequest, trx?: Transaction<Database>): Promise<Reservation> {
    const inTrx = await this.prepare(req);
    return trx ? inTrx(trx) : this.deps.db.transaction().execute(inTrx);
  }

  /**
   * What must happen outside the transaction (the wallet opened, the accounts created:
   * their own transactions), and the reservation itself to run inside it.
   */
  async prepare(req: ReserveRequest): Promise<(trx: Transaction<Database>) => Promise<Reservation>> {
    const wallet = await this.deps.wallets.open(req.userId);
    await this.deps.ledger.ensureAccount(HOLDS);
    return (trx) => this.reserveIn(trx, req, wallet);
  }

  private async reserveIn(trx: Transaction<Database>, req: ReserveRequest, wallet: string): Promise<Reservation> {
    const { ledger, clock, holdTimeoutMs } = this.deps;
    const now = clock.now();
    const contents = new Map([[req.contentId, { price: req.price, totalSize: req.totalBytes }]]);
    const purchases = await lockPurchases(trx, [req], contents, now, () => this.deps.refetch === 'charge');
    const p = purchases.get(purchaseKey(req))!;
    if (isFullyPaid(p.totals)) {
      return { held: 0, heldUntil: null, paid: true, reused: false, why: 'You have already paid for this content in full: fetching it again costs nothing.' };
    }
    const need = stillToPay(p.totals, req.missingBytes);
    if (p.hold && p.hold.amount >= need) {
      return { held: p.hold.amount, heldUntil: p.hold.timeoutAt, paid: false, reused: true, why: `Reusing the ${p.hold.amount} already reserved for this content.` };
    }
    if (need === 0) return { held: 0, heldUntil: null, paid: false, reused: false, why: 'Nothing left to pay for what this transfer still lacks.' };

    const transfers: TransferInput[] = [];
    const record = purchaseRecord(p);
    if (p.hold) transfers.push({ id: `${p.hold.id}:release`, kind: 'void', pendingId: p.hold.id, reason: 'reservation', linked: true, record });
    const seq = p.holdSeq + 1;
    const id = holdId(p, seq);
    transfers.push({ id, kind: 'pending', debit: wallet, credit: HOLDS.id, amount: need, timeoutMs: holdTimeoutMs, reason: 'reservation', contentId: req.contentId, record });
    const results = await ledger.apply(transfers, { trx });
    const failed = results.find((r) => r.status === 'failed' && r.code !== 'linked_event_failed');
    if (failed?.code === 'insufficient_balance') {
      const a = await trx.selectFrom('ledger_accounts').selectAll().where('id', '=', wallet).executeTakeFirstOrThrow();
      const available = a.credits_posted - a.debits_posted - a.debits_pending + (p.hold?.amount ?? 0);
      throw new AppError(
        'insufficient_balance',
        `This content costs up to ${need} for the ${req.missingBytes} bytes still missing; the wallet has ${available} available. Top up first (cascade wallet topup CODE).`,
        402,
        { needed: need, available },
      );
    }
    if (failed) throw transferError(failed);
    await savePurchases(trx, [{ ...p, hold: { id, amount: need, timeoutAt: now + holdTimeoutMs }, holdSeq: seq }], now);
    return { held: need, heldUntil: now + holdTimeoutMs, paid: false, reused: false, why: `Reserved ${need} for the rest of this content; receipts are paid from it and the rest is released when the transfer ends.` };
  }

  /** Releases what is left of the user's reservation for the content (a transfer finished or was given up). */
  async release(req: { userId: string; contentId: string }): Promise<void> {
    const { ledger, db, clock } = this.deps;
    await db.transaction().execute(async (trx) => {
      const now = clock.now();
      const p = (await lockPurchases(trx, [req], new Map(), now)).get(purchaseKey(req));
      if (!p?.hold) return;
      // Already expired or resolved meanwhile: the void fails harmlessly, nothing is held either way.
      await ledger.apply([{ id: `${p.hold.id}:release`, kind: 'void', pendingId: p.hold.id, reason: 'reservation', contentId: req.contentId, record: purchaseRecord(p) }], { trx });
      await savePurchases(trx, [{ ...p, hold: null }], now);
    });
  }
}
