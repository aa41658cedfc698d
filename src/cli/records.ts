import type { Command } from 'commander';
import type { PayoutOverview, PayoutResult, Statement } from '../ledger/statements.ts';
import { apiFromProfile } from './profile.ts';
import { table, timeToSecond } from './table.ts';
import { isoTime, wholeNumber } from './voucher.ts';

// Records on the command line (S1.11, S1.12, #12 point 2): `cascade statement` (a
// publisher's royalties and payouts; the current month unless told otherwise),
// `cascade payout` (operators: what each publisher is owed, and recording a payout),
// `cascade receipts` (the receipts your terminals signed, and what each cost).

/** The root program: global options (--origin, --json) live there. */
function root(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

const write = (line: string): void => void process.stdout.write(line + '\n');

/** `from`/`to` for the query: each bound not given is the origin's (the current month, UTC). */
function periodQuery(opts: { from?: string; to?: string }): URLSearchParams {
  return new URLSearchParams({
    ...(opts.from !== undefined ? { from: isoTime('--from', opts.from) } : {}),
    ...(opts.to !== undefined ? { to: isoTime('--to', opts.to) } : {}),
  });
}


interface ReceiptItem {
  id: string;
  contentId: string;
  contentTitle: string | null;
  source: string;
  receiverId: string;
  bytes: number;
  receivedAt: string;
  status: string;
  charge: number;
  why: string;
}

export function registerRecords(program: Command) {
  program
    .command('statement')
    .description('a publisher’s royalty statement: opening balance, royalties by content, payouts, closing balance; the current month (UTC) unless --from/--to')
    .option('--publisher <userId>', 'whose statement (operators; default: yours)')
    .option('--from <time>', 'start of the period, included (default: the start of the current month, UTC)')
    .option('--to <time>', 'end of the period, excluded (default: the start of next month, UTC)')
    .action(async (opts: { publisher?: string; from?: string; to?: string }, cmd: Command) => {
      const g = root(cmd).opts();
      const query = periodQuery(opts);
      const api = apiFromProfile({ origin: g.origin });
      const publisher = opts.publisher ?? (await api.get<{ id: string }>('/auth/me')).id;
      const s = await api.get<Statement>(`/publishers/${encodeURIComponent(publisher)}/statement?${query}`);
      if (g.json) return write(JSON.stringify(s));
      write(`statement for ${s.publisherId}, ${s.from} to ${s.to}: ${s.period}`);
      write(`  opening balance  ${s.openingBalance}`);
      write(`  royalties        +${s.royalties.total} (${s.royalties.transfers} transfers)`);
      for (const r of s.royalties.byContent) {
        const plays = r.plays.count ? `; ${r.plays.count} play${r.plays.count === 1 ? '' : 's'}: +${r.plays.amount}` : '';
        write(`    ${r.title ?? r.contentId ?? '(no content)'}: +${r.amount} (${r.transfers}${plays})`);
      }
      write(`  payouts          -${s.payouts.total}`);
      for (const p of s.payouts.items) write(`    ${p.at} ${p.ref ?? ''}: ${p.amount}`);
      if (s.other.items.length) {
        write(`  other            ${s.other.total}`);
        for (const o of s.other.items) write(`    ${o.at} ${o.reason}: ${o.amount}`);
      }
      write(`  closing balance  ${s.closingBalance}`);
    });

  const payout = program
    .command('payout')
    .description('operators: what the platform owes each publisher, with royalties and payouts in a period (the current month, UTC, unless --from/--to); `payout pay` records one')
    .option('--from <time>', 'start of the period, included')
    .option('--to <time>', 'end of the period, excluded')
    .action(async (opts: { from?: string; to?: string }, cmd: Command) => {
      const g = root(cmd).opts();
      const o = await apiFromProfile({ origin: g.origin }).get<PayoutOverview>(`/payouts?${periodQuery(opts)}`);
      if (g.json) return write(JSON.stringify(o));
      write(`payouts, ${o.from} to ${o.to}: ${o.period}`);
      if (o.publishers.length === 0) write('no publisher has earned royalties yet');
      else {
        const rows = o.publishers.map((p) => [p.name ?? '', p.publisherId, `+${p.royalties}`, `-${p.paidOut}`, String(p.owed)]);
        rows.push(['total', '', `+${o.totals.royalties}`, `-${o.totals.paidOut}`, String(o.totals.owed)]);
        for (const l of table(['publisher', 'id', 'royalties', 'paid out', 'owed now'], rows, [2, 3, 4])) write(l);
      }
      write(o.note);
    });

  payout
    .command('pay')
    .description('record that the platform paid a publisher (outside the system): moves the amount out of its royalties; the same command again pays nothing more')
    .requiredOption('--publisher <userId>', 'who was paid')
    .requiredOption('--amount <minor units>', 'how much')
    .requiredOption('--reference <text>', 'the bank transfer’s reference')
    .option('--id <id>', 'the payout’s ID, unique forever (default: from the publisher and the reference)')
    .action(async (opts: { publisher: string; amount: string; reference: string; id?: string }, cmd: Command) => {
      const g = root(cmd).opts();
      // Derived from the reference by default, so that running the same command twice is a retry.
      const id = opts.id ?? `${opts.publisher}:${opts.reference}`.replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 100);
      const body = { id, publisherId: opts.publisher, amount: wholeNumber('--amount', opts.amount), reference: opts.reference };
      const r = await apiFromProfile({ origin: g.origin }).post<PayoutResult>('/payouts', body);
      if (g.json) return write(JSON.stringify(r));
      write(r.created ? `paid out ${r.amount} to ${r.publisherId} (${r.reference}); still owed: ${r.balance}` : `payout ${id} was already recorded: nothing more paid; still owed: ${r.balance}`);
    });

  program
    .command('receipts')
    .description('the receipts your terminals signed (or one terminal’s): what came from which source, and what each cost')
    .option('--terminal <terminalId>', 'one terminal (yours; operators: any)')
    .action(async (opts: { terminal?: string }, cmd: Command) => {
      const g = root(cmd).opts();
      const query = opts.terminal ? `?receiver=${encodeURIComponent(opts.terminal)}` : '';
      const { items } = await apiFromProfile({ origin: g.origin }).get<{ items: ReceiptItem[] }>(`/receipts${query}`);
      if (g.json) return write(JSON.stringify({ items }));
      if (items.length === 0) return write('no receipts');
      const rows = items.map((r) => [timeToSecond(r.receivedAt), r.contentTitle ?? r.contentId, r.source, String(r.bytes), String(r.charge), r.status, r.why, r.id]);
      for (const l of table(['time', 'content', 'source', 'bytes', 'charge', 'status', 'why', 'receipt'], rows, [3, 4])) write(l);
    });
}
