import type { Clock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import type { Db } from '../db/connection.ts';
import { HOLDS } from './accounts.ts';
import type { Ledger } from './ledger.ts';
import { proRataCharge } from './tariff.ts';
import type { Wallets } from './wallets.ts';

// S1 flow "balance check first" (#4.3) and two-phase holds (#4.1): before a transfer
// starts, the receiver's wallet must cover the list price of the bytes it still lacks;
// that amount is reserved (a pending ledger transfer wallet → holds). Settlement pays
// receipts out of the reservation and re-reserves the rest; when the transfer ends the
// rest is released. A reservation nobody settles or releases expires on its own.

export class Reservations {
  constructor(private readonly deps: { db: Db; ledger: Ledger; wallets: Wallets; clock: Clock; holdTimeoutMs: number }) {}

  /** Refuses with `insufficient_balance` (402) when the wallet cannot cover `price × missing / total`; reserves it otherwise. */
  async reserve(req: { transferId: string; userId: string; contentId: string; price: number; totalBytes: number; missingBytes: number }): Promise<number> {
    const amount = proRataCharge(req.price, req.missingBytes, req.totalBytes, []);
    if (amount === 0) return 0;
    const { ledger, db, clock } = this.deps;
    const wallet = await this.deps.wallets.open(req.userId);
    await ledger.ensureAccount(HOLDS);
    const holdId = `hold:${req.transferId}:0`;
    const result = await db.transaction().execute(async (trx) => {
      const [result] = await ledger.apply(
        [{ id: holdId, kind: 'pending', debit: wallet, credit: HOLDS.id, amount, timeoutMs: this.deps.holdTimeoutMs, reason: 'reservation', contentId: req.contentId }],
        { trx },
      );
      if (result.status !== 'failed') {
        await trx
          .insertInto('ledger_holds')
          .values({ transfer_id: req.transferId, user_id: req.userId, hold_id: holdId, amount, seq: 1, updated_at: new Date(clock.now()) })
          .onConflict((oc) => oc.column('transfer_id').doNothing())
          .execute();
      }
      return result;
    });
    if (result.code === 'insufficient_balance') {
      const available = (await ledger.balance(wallet)).available;
      throw new AppError('insufficient_balance', `This content costs ${amount} for the ${req.missingBytes} bytes still missing; the wallet has ${available} available. Top up first (cascade wallet topup CODE).`, 402, { needed: amount, available });
    }
    if (result.status === 'failed') throw new AppError(result.code!, result.message ?? 'The reservation failed.', 409);
    return amount;
  }

  /** Releases what is left of a transfer's reservation (it finished, or was given up). */
  async release(transferId: string): Promise<void> {
    const { ledger, db, clock } = this.deps;
    await db.transaction().execute(async (trx) => {
      const hold = await trx.selectFrom('ledger_holds').selectAll().where('transfer_id', '=', transferId).forUpdate().executeTakeFirst();
      if (!hold?.hold_id) return;
      // Already expired or released: nothing is held any more either way.
      await ledger.apply([{ id: `${hold.hold_id}:release`, kind: 'void', pendingId: hold.hold_id, reason: 'reservation' }], { trx });
      await trx.updateTable('ledger_holds').set({ hold_id: null, amount: 0, updated_at: new Date(clock.now()) }).where('transfer_id', '=', transferId).execute();
    });
  }
}
