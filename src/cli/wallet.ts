import type { Command } from 'commander';
import { badRequest } from '../core/errors.ts';
import type { WalletHistory, WalletRecord } from '../ledger/records.ts';
import type { Earnings, WalletView } from '../ledger/wallet-routes.ts';
import { apiFromProfile } from './profile.ts';
import { table, timeToSecond } from './table.ts';
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

/** The records as a text table, newest first: what happened in words, with the event ID last (S1.12). */
export function formatRecords(entries: WalletRecord[]): string[] {
  const rows = entries.map((e) => [timeToSecond(e.at), signed(e.amount), String(e.balanceAfter), e.reason, e.description, e.id]);
  return table(['time', 'amount', 'balance', 'reason', 'what', 'event'], rows, [1, 2]);
}

/** The earnings lines under the balance: as a source, and as a publisher (its royalty account, not the wallet). */
export function formatEarnings(e: Earnings): string[] {
  const lines = [`earned serving others: ${e.uploads} (credited to this wallet as it was earned)`];
  if (e.royalties) {
    const r = e.royalties;
    lines.push(`royalties: ${r.earned} earned, ${r.paidOut} paid out, ${r.balance} owed by the platform (kept in royalty account, paid out by an operator; see cascade statement)`);
  }
  return lines;
}

const historyQuery = (o: { limit: string; user?: string; before?: string; royalties?: boolean }) =>
  new URLSearchParams({
    limit: o.limit,
    ...(o.user ? { user: o.user } : {}),
    ...(o.before ? { before: o.before } : {}),
    ...(o.royalties ? { account: 'royalties' } : {}),
  });

export function registerWallet(program: Command) {
  const wallet = program
    .command('wallet')
    .description('your prepaid wallet: balance, earnings (as a source and as a publisher) and the last 20 records; `wallet history` for more, `wallet topup CODE` to redeem a voucher')
    .option('--user <userId>', 'another user’s wallet (operators)')
    .action(async (opts: { user?: string }, cmd: Command) => {
      const g = root(cmd).opts();
      const api = apiFromProfile({ origin: g.origin });
      const query = opts.user ? `?user=${encodeURIComponent(opts.user)}` : '';
      const w = await api.get<WalletView>(`/wallet${query}`);
      const h = await api.get<WalletHistory>(`/wallet/history?${historyQuery({ limit: '20', user: opts.user })}`);
      // A publisher's royalties are records of their own account (#12): shown below the wallet's.
      const r = w.earnings.royalties ? await api.get<WalletHistory>(`/wallet/history?${historyQuery({ limit: '20', user: opts.user, royalties: true })}`) : null;
      if (g.json) return write(JSON.stringify({ account: w.account, balance: w.balance, earnings: w.earnings, entries: h.entries, nextCursor: h.nextCursor, royalties: r }));
      const b = w.balance;
      write(`${w.account}: balance ${b.posted}, available ${b.available}${b.pending ? ` (${-b.pending} reserved)` : ''}`);
      for (const l of formatEarnings(w.earnings)) write(l);
      if (h.entries.length === 0) write('no records yet');
      else for (const l of formatRecords(h.entries)) write(l);
      if (h.nextCursor) write(`older records: cascade wallet history --before ${h.nextCursor}`);
      if (r) {
        write(`${r.account}: royalty records`);
        if (r.entries.length === 0) write('no royalties yet');
        else for (const l of formatRecords(r.entries)) write(l);
        if (r.nextCursor) write(`older royalties: cascade wallet history --royalties --before ${r.nextCursor}`);
      }
    });

  wallet
    .command('history')
    .description('your wallet’s records (or with --royalties your royalty records), newest first (S1.12)')
    .option('--limit <n>', 'how many records (1–1000)', '20')
    .option('--before <cursor>', 'start after the previous page (the cursor it printed)')
    .option('--royalties', 'a publisher’s royalty records instead of the wallet’s')
    .action(async (opts: { limit: string; before?: string; royalties?: boolean }, cmd: Command) => {
      const g = root(cmd).opts();
      const user = cmd.parent?.opts().user as string | undefined;
      const query = historyQuery({ limit: String(limitOf(opts.limit)), before: opts.before, user, royalties: opts.royalties });
      const h = await apiFromProfile({ origin: g.origin }).get<WalletHistory>(`/wallet/history?${query}`);
      if (g.json) return write(JSON.stringify(h));
      if (h.entries.length === 0) return write('no records');
      for (const l of formatRecords(h.entries)) write(l);
      if (h.nextCursor) write(`older records: cascade wallet history${opts.royalties ? ' --royalties' : ''} --before ${h.nextCursor}`);
    });

  addTopupCommand(wallet);
}
