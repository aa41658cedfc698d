import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { Clock } from '../core/clock.ts';
import type { SignedReceipt } from '../transfer/receipt.ts';

// S1.10: the terminal's own accounting record, kept whether or not the origin can be
// reached. Append-only JSON lines, each written and fsynced before it counts:
//   receipt  — this terminal signed a receipt (it owes what the origin will charge for it)
//   charge   — the origin's record of a receipt: settled with this charge, or unpaid
//   synced   — a reconciliation finished: the wallet balance the origin reported, and
//              the conflicts it found between the two records
// A line cut short by a crash is ignored (it was not acknowledged to anyone yet).

type Line =
  | { t: 'receipt'; id: string; receipt: SignedReceipt; at: string }
  | { t: 'charge'; id: string; status: 'settled' | 'unpaid'; charge: number }
  | { t: 'synced'; at: string; balance: number; conflicts: Conflict[] };

export interface Conflict {
  receiptId: string | null;
  code: string;
  message: string;
}

export interface JournalEntry {
  receipt: SignedReceipt;
  at: string;
  /** The origin's record, once reconciled. */
  status?: 'settled' | 'unpaid';
  charge?: number;
}

export class LedgerJournal {
  readonly entries = new Map<string, JournalEntry>();
  lastSync: { at: string; balance: number; conflicts: Conflict[] } | null = null;
  private fd: number;

  constructor(file: string, private readonly clock: Clock) {
    if (existsSync(file)) {
      for (const text of readFileSync(file, 'utf8').split('\n')) {
        if (!text) continue;
        try {
          this.apply(JSON.parse(text));
        } catch {
          // a torn last line: it was never fsynced, so nobody relied on it
        }
      }
    }
    this.fd = openSync(file, 'a');
  }

  /** Records a receipt this terminal signed (durably, before it is handed to anyone). */
  receipt(id: string, receipt: SignedReceipt) {
    if (this.entries.has(id)) return;
    this.append({ t: 'receipt', id, receipt, at: new Date(this.clock.now()).toISOString() });
  }

  /** Receipts the origin has not confirmed yet, and the charges this terminal believes in. */
  unsettled(): { id: string; receipt: SignedReceipt }[] {
    return [...this.entries].filter(([, e]) => e.status !== 'settled').map(([id, e]) => ({ id, receipt: e.receipt }));
  }

  /** Takes the origin's record as this terminal's view (S1.10: the bill follows the origin's verified record). */
  adopt(record: { receiptId: string; status: 'settled' | 'unpaid'; charge: number }[], balance: number, conflicts: Conflict[]) {
    for (const r of record) {
      const e = this.entries.get(r.receiptId);
      if (e && e.status === r.status && e.charge === r.charge) continue;
      this.append({ t: 'charge', id: r.receiptId, status: r.status, charge: r.charge });
    }
    this.append({ t: 'synced', at: new Date(this.clock.now()).toISOString(), balance, conflicts });
  }

  close() {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1; // never close a number the system may have handed to someone else since
  }

  private append(line: Line) {
    writeSync(this.fd, JSON.stringify(line) + '\n');
    fsyncSync(this.fd);
    this.apply(line);
  }

  private apply(line: Line) {
    if (line.t === 'receipt') this.entries.set(line.id, { receipt: line.receipt, at: line.at });
    else if (line.t === 'charge') {
      const e = this.entries.get(line.id);
      if (e) Object.assign(e, { status: line.status, charge: line.charge });
    } else if (line.t === 'synced') this.lastSync = { at: line.at, balance: line.balance, conflicts: line.conflicts };
  }
}
