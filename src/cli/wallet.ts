import type { Command } from 'commander';
import { badRequest } from '../core/errors.ts';
import type { Balance } from '../ledger/ledger.ts';
import type { WalletHistory, WalletRecord } from '../ledger/wallet-routes.ts';
import { apiFromProfile } from './profile.ts';
import { addTopupCommand } from './voucher.ts';

// `cascade wallet`: balance and the last records (S1.12); `cascade wallet history` to
// page through older ones; `cascade wallet topup CODE` (src/cli/voucher.ts) to redeem
// a voucher.

/** The root program: global options (--origin, --json) live there. */
function root(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

const write = (line: string): void => void process.stdout.write(line + '\n');

function limitOf(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 1000) throw badRequest('invalid_argument', `--limit is a whole number from 1 to 1000, got "${v}".`);
  return n;
}

const signed = (n: number) => (n > 0 ? `+${n}` : String(n));

/** The records as a text table, newest first. */
export function formatRecords(entries: WalletRecord[]): string[] {
  const rows = entries.map((e) => [
    e.at.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
    signed(e.amount),
    String(e.balanceAfter),
    e.reason,
    e.counterpartName ? `${e.counterpartName} (${e.counterpart})` : e.counterpart,
    e.contentTitle ?? (e.contentId ? e.contentId.slice(0, 12) : ''),
    e.id,
  ]);
  const head = ['time', 'amount', 'balance', 'reason', 'counterpart', 'content', 'event'];
  const right = new Set([1, 2]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)];
}

export function registerWallet(program: Command) {
  const wallet = program
    .command('wallet')
    .description('your prepaid wallet: balance and the last 20 records; `wallet history` for more, `wallet topup CODE` to redeem a voucher')
    .option('--user <userId>', 'another user’s wallet (operators)')
    .action(async (opts: { user?: string }, cmd: Command) => {
      const g = root(cmd).opts();
      const api = apiFromProfile({ origin: g.origin });
      const query = opts.user ? `?user=${encodeURIComponent(opts.user)}` : '';
      const w = await api.get<{ account: string; userId: string; balance: Balance }>(`/wallet${query}`);
      const h = await api.get<WalletHistory>(`/wallet/history?${new URLSearchParams({ limit: '20', ...(opts.user ? { user: opts.user } : {}) })}`);
      if (g.json) return write(JSON.stringify({ account: w.account, balance: w.balance, entries: h.entries, nextCursor: h.nextCursor }));
      const b = w.balance;
      write(`${w.account}: balance ${b.posted}, available ${b.available}${b.pending ? ` (${-b.pending} reserved)` : ''}`);
      if (h.entries.length === 0) return write('no records yet');
      for (const l of formatRecords(h.entries)) write(l);
      if (h.nextCursor) write(`older records: cascade wallet history --before ${h.nextCursor}`);
    });

  wallet
    .command('history')
    .description('your wallet’s records, newest first (S1.12)')
    .option('--limit <n>', 'how many records (1–1000)', '20')
    .option('--before <id>', 'start after this record (the cursor printed by the previous page)')
    .action(async (opts: { limit: string; before?: string }, cmd: Command) => {
      const g = root(cmd).opts();
      const user = cmd.parent?.opts().user as string | undefined;
      const query = new URLSearchParams({ limit: String(limitOf(opts.limit)), ...(opts.before ? { before: opts.before } : {}), ...(user ? { user } : {}) });
      const h = await apiFromProfile({ origin: g.origin }).get<WalletHistory>(`/wallet/history?${query}`);
      if (g.json) return write(JSON.stringify(h));
      if (h.entries.length === 0) return write('no records');
      for (const l of formatRecords(h.entries)) write(l);
      if (h.nextCursor) write(`older records: cascade wallet history --before ${h.nextCursor}`);
    });

  addTopupCommand(wallet);
}
