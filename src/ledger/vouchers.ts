import { AttemptLimiter } from '../core/attempts.ts';
import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import { AppError, badRequest, conflict, notFound } from '../core/errors.ts';
import type { Db } from '../db/connection.ts';
import { storeAccount, VOUCHERS_OUTSTANDING, walletAccount } from './accounts.ts';
import { transferError, type Ledger, type TransferResult } from './ledger.ts';

// Prepaid vouchers (S1.11, docs/ledger.md "Vouchers"). A store sells a voucher for
// cash; issuing it moves its face value from the store's account (which goes negative:
// the store owes the platform that cash) to `vouchers:outstanding`; redeeming it moves
// the value on to the redeemer's wallet, once. Only the SHA-256 of a code is stored.

/** Crockford base32: no I, L, O, U, so a code read aloud or retyped is unambiguous. */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** 15 random bytes = 120 bits = 24 base32 characters, shown as 6 groups of 4. */
const CODE_BYTES = 15;
export const CODE_LENGTH = (CODE_BYTES * 8) / 5;
/** Face value ceiling: 100,000.00 in a two-decimal currency; a typo should not mint a fortune. */
export const MAX_VOUCHER_AMOUNT = 10_000_000;
export const MAX_VOUCHERS_PER_ISSUE = 1000;
/** Brute-force guard on redemption: this many failures per user within the window, then 429. */
export const MAX_FAILED_REDEMPTIONS = 10;
export const FAILED_REDEMPTION_WINDOW_MS = 10 * 60_000;

/** A fresh code, e.g. `7K3M-Q9TX-…` (24 characters in groups of 4). */
export function newVoucherCode(): string {
  const bytes = randomBytes(CODE_BYTES);
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(value >>> bits) & 31];
    }
    value &= (1 << bits) - 1;
  }
  return out.match(/.{4}/g)!.join('-');
}

/**
 * The canonical form of a typed code: upper case, without dashes or spaces, with the
 * look-alikes Crockford allows (I, L → 1; O → 0). Null if it cannot be a code.
 */
export function normaliseVoucherCode(input: string): string | null {
  if (typeof input !== 'string' || input.length > 100) return null;
  const s = input.toUpperCase().replace(/[\s-]/g, '').replace(/[IL]/g, '1').replace(/O/g, '0');
  if (s.length !== CODE_LENGTH) return null;
  for (const ch of s) if (!ALPHABET.includes(ch)) return null;
  return s;
}

/** What the database keeps instead of the code. */
export const voucherCodeHash = (normalised: string) => createHash('sha256').update(normalised).digest('hex');
/** The voucher's ID: a prefix of the hash (128 bits), so it names the voucher without revealing the code. */
const voucherIdOf = (hash: string) => hash.slice(0, 32);
export const issueTransferId = (voucherId: string) => `voucher-issue:${voucherId}`;
export const redeemTransferId = (voucherId: string) => `voucher-redeem:${voucherId}`;

export interface IssuedVoucher {
  id: string;
  /** Shown once, here; never stored. */
  code: string;
  amount: number;
  expiresAt: string | null;
}

export interface Redemption {
  voucherId: string;
  amount: number;
  /** The wallet's posted balance right after the top-up. */
  balance: number;
}

/** The refusals a redemption counts as failed attempts (a guess, or a code that cannot be used). */
const FAILED_REDEMPTION_CODES = new Set(['voucher_unknown', 'voucher_used', 'voucher_expired']);

const unknownVoucher = () => notFound('voucher_unknown', 'No voucher has this code; check it and try again.');

export class VoucherService {
  private readonly db: Db;
  private readonly ledger: Ledger;
  private readonly clock: Clock;
  private readonly attempts: AttemptLimiter;

  constructor(deps: { db: Db; ledger: Ledger; clock: Clock }) {
    this.db = deps.db;
    this.ledger = deps.ledger;
    this.clock = deps.clock;
    this.attempts = new AttemptLimiter(deps.clock, MAX_FAILED_REDEMPTIONS, FAILED_REDEMPTION_WINDOW_MS, 'failed voucher redemptions');
  }

  /**
   * Issues `count` vouchers of `amount` each for a store (S1.11). The voucher rows and
   * their ledger transfers are written in one transaction: all of them, or nothing.
   */
  async issue(storeId: string, opts: { amount: number; count: number; expiresAt?: Date | null }): Promise<IssuedVoucher[]> {
    const { amount, count } = opts;
    if (!Number.isSafeInteger(amount) || amount < 1 || amount > MAX_VOUCHER_AMOUNT) {
      throw badRequest('invalid_amount', `A voucher's amount is a whole number of minor units from 1 to ${MAX_VOUCHER_AMOUNT}.`);
    }
    if (!Number.isSafeInteger(count) || count < 1 || count > MAX_VOUCHERS_PER_ISSUE) {
      throw badRequest('invalid_count', `Issue from 1 to ${MAX_VOUCHERS_PER_ISSUE} vouchers at a time.`);
    }
    const now = this.clock.now();
    const expiresAt = opts.expiresAt ?? null;
    if (expiresAt && !(expiresAt.getTime() > now)) throw badRequest('invalid_expiry', 'expiresAt must be a time in the future.');

    const store = storeAccount(storeId);
    await this.ledger.ensureAccounts([store, VOUCHERS_OUTSTANDING]);
    const vouchers = Array.from({ length: count }, () => {
      const code = newVoucherCode();
      const hash = voucherCodeHash(normaliseVoucherCode(code)!);
      return { id: voucherIdOf(hash), hash, code };
    });
    await this.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('vouchers')
        .values(vouchers.map((v) => ({ id: v.id, code_hash: v.hash, store_id: storeId, amount, issued_at: new Date(now), expires_at: expiresAt, redeemed_by: null, redeemed_at: null })))
        .execute();
      const results = await this.ledger.apply(
        vouchers.map((v) => ({ id: issueTransferId(v.id), debit: store.id, credit: VOUCHERS_OUTSTANDING.id, amount, reason: 'voucher', ref: v.id })),
        { trx },
      );
      expectCreated(results);
    });
    return vouchers.map((v) => ({ id: v.id, code: v.code, amount, expiresAt: expiresAt ? expiresAt.toISOString() : null }));
  }

  /**
   * Credits the voucher's value to the user's wallet, once (S1.11). Refusals:
   * voucher_unknown (also for a malformed code: which one is not revealed),
   * voucher_used, voucher_expired, and too_many_attempts after repeated failures.
   */
  async redeem(userId: string, code: string): Promise<Redemption> {
    this.attempts.check(userId);
    try {
      return await this.redeemOnce(userId, code);
    } catch (err) {
      if (err instanceof AppError && FAILED_REDEMPTION_CODES.has(err.code)) this.attempts.fail(userId);
      throw err;
    }
  }

  private async redeemOnce(userId: string, code: string): Promise<Redemption> {
    const normalised = normaliseVoucherCode(code);
    if (!normalised) throw unknownVoucher();
    const voucher = await this.db.selectFrom('vouchers').selectAll().where('code_hash', '=', voucherCodeHash(normalised)).executeTakeFirst();
    if (!voucher) throw unknownVoucher();
    // The same answer whoever redeemed it: a second try by the redeemer credits nothing either.
    if (voucher.redeemed_by !== null) throw conflict('voucher_used', 'This voucher has already been redeemed.');
    const now = this.clock.now();
    if (voucher.expires_at && new Date(voucher.expires_at).getTime() <= now) throw new AppError('voucher_expired', 'This voucher has expired.', 410);

    // Checked first so that a refused code leaves no empty wallet behind. Outside the
    // transaction: ensureAccount uses its own connection (PGlite has only one).
    const wallet = walletAccount(userId);
    await this.ledger.ensureAccount(wallet);
    await this.db.transaction().execute(async (trx) => {
      // The claim: of two concurrent redemptions, the second waits for the first's row
      // lock, then finds redeemed_by set and updates nothing.
      const claimed = await trx
        .updateTable('vouchers')
        .set({ redeemed_by: userId, redeemed_at: new Date(now) })
        .where('id', '=', voucher.id)
        .where('redeemed_by', 'is', null)
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) !== 1) throw conflict('voucher_used', 'This voucher has already been redeemed.');
      const results = await this.ledger.apply(
        [{ id: redeemTransferId(voucher.id), debit: VOUCHERS_OUTSTANDING.id, credit: wallet.id, amount: voucher.amount, reason: 'topup', ref: voucher.id }],
        { trx },
      );
      expectCreated(results);
    });
    const balance = await this.ledger.balance(wallet.id);
    return { voucherId: voucher.id, amount: voucher.amount, balance: balance.posted };
  }
}

/** Every transfer must be new: an 'exists' here would mean a voucher ID was reused, a bug. */
function expectCreated(results: TransferResult[]) {
  const failed = results.find((r) => r.status === 'failed');
  if (failed) throw transferError(failed);
  const existing = results.find((r) => r.status !== 'created');
  if (existing) throw new Error(`voucher transfer ${existing.id} already exists`);
}

