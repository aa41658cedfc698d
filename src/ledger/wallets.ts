import { walletAccount } from './accounts.ts';
import type { Ledger } from './ledger.ts';

/** Where promotional credit comes from (sign-up credit); it goes negative by what it gave. */
export const PLATFORM_PROMOTIONS = { id: 'platform:promotions', kind: 'platform', noOverdraft: false };

/**
 * Opens users' wallets (S1.11). A new wallet receives the configured sign-up credit
 * once: the transfer's ID is derived from the user, so opening again never pays twice.
 */
export class Wallets {
  constructor(private readonly deps: { ledger: Ledger; signupCredit: number }) {}

  /** The user's wallet account ID, created (and credited) on first use. */
  async open(userId: string): Promise<string> {
    const { ledger, signupCredit } = this.deps;
    const wallet = walletAccount(userId);
    await ledger.ensureAccounts(signupCredit > 0 ? [wallet, PLATFORM_PROMOTIONS] : [wallet]);
    if (signupCredit > 0) {
      await ledger.apply([{ id: `signup:${userId}`, debit: PLATFORM_PROMOTIONS.id, credit: wallet.id, amount: signupCredit, reason: 'topup', ref: 'signup credit' }]);
    }
    return wallet.id;
  }
}
