import type { Command } from 'commander';
import { badRequest } from '../core/errors.ts';
import type { IssuedVoucher, Redemption } from '../ledger/vouchers.ts';
import { apiFromProfile } from './profile.ts';

// Prepaid money on the command line (S1.11): `cascade voucher issue` (a store),
// `cascade wallet topup CODE` (anyone signed in). Statements, payouts and receipts:
// src/cli/records.ts.

/** The root program: global options (--origin, --json) live there. */
function root(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

const write = (line: string): void => void process.stdout.write(line + '\n');

export function wholeNumber(name: string, v: string): number {
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw badRequest('invalid_argument', `${name} is a whole number, got "${v}".`);
  return Number(v);
}

export function isoTime(name: string, v: string): string {
  const t = new Date(v);
  if (Number.isNaN(t.getTime())) throw badRequest('invalid_argument', `${name} is a date or time such as 2026-01-01 or 2026-01-01T12:00:00Z, got "${v}".`);
  return t.toISOString();
}

/** `cascade voucher issue`; `wallet topup` is added by src/cli/wallet.ts through addTopupCommand. */
export function registerVoucher(program: Command) {
  const voucher = program.command('voucher').description('prepaid vouchers (S1.11)');
  voucher
    .command('issue')
    .description('issue vouchers to sell (needs the store role); prints the codes, which are shown only this once')
    .requiredOption('--amount <minor units>', 'face value of each voucher, in minor units (e.g. cents)')
    .option('--count <n>', 'how many vouchers (1–1000)', '1')
    .option('--expires <time>', 'expiry, e.g. 2027-01-01 (default: never)')
    .action(async (opts: { amount: string; count: string; expires?: string }, cmd: Command) => {
      const g = root(cmd).opts();
      const body = {
        amount: wholeNumber('--amount', opts.amount),
        count: wholeNumber('--count', opts.count),
        ...(opts.expires !== undefined ? { expiresAt: isoTime('--expires', opts.expires) } : {}),
      };
      const { vouchers } = await apiFromProfile({ origin: g.origin }).post<{ vouchers: IssuedVoucher[] }>('/vouchers', body);
      if (g.json) return write(JSON.stringify({ vouchers }));
      process.stderr.write(`issued ${vouchers.length} voucher(s) of ${body.amount} each; keep the codes now, they are not shown again:\n`);
      for (const v of vouchers) write(v.code);
    });
}

/** `cascade wallet topup CODE`: redeems a voucher into the signed-in account's wallet. */
export function addTopupCommand(wallet: Command) {
  wallet
    .command('topup')
    .description('redeem a voucher code into your wallet (S1.11)')
    .argument('<code>', 'the voucher code; case, dashes and spaces do not matter')
    .action(async (code: string, _opts: unknown, cmd: Command) => {
      const g = root(cmd).opts();
      const r = await apiFromProfile({ origin: g.origin }).post<Redemption>('/wallet/topup', { code });
      if (g.json) write(JSON.stringify({ amount: r.amount, balance: r.balance, voucherId: r.voucherId }));
      else write(`credited ${r.amount}; your balance is now ${r.balance}`);
    });
}
