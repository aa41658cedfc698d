import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { SignedManifest } from '../content/manifest.ts';
import type { SignedReceipt } from './receipt.ts';

// The receiver's append-only record of one download, kept beside the partial file.
// It is what makes a killed download resumable and its receipts exact:
//   start   — which content (and its signed manifest) the partial file belongs to
//   piece   — piece i was verified and written, delivered by source s under grant g,
//             with the source's signed statement a that it served it (for the receipt)
//   receipt — a signed receipt was made for some of those pieces
//   ack     — the origin stored that receipt
//   refused — the origin refused that receipt for good (its code); it is not sent again
// A line cut short by a crash is ignored; at worst a piece is fetched again.

type Line =
  | { t: 'start'; content: string; manifest: SignedManifest }
  | { t: 'piece'; i: number; g: string; s: string; a: string }
  | { t: 'receipt'; r: SignedReceipt; id: string; g: string; s: string; pieces: number[] }
  | { t: 'ack'; id: string }
  | { t: 'refused'; id: string; code: string };

export interface JournalState {
  /** Pieces the journal says were verified and written. */
  pieces: Map<number, { grant: string; source: string; served: string }>;
  /** Receipts made, by ID, with whether the origin acknowledged them. */
  receipts: Map<string, { receipt: SignedReceipt; grant: string; source: string; pieces: number[]; acked: boolean; refused?: string }>;
}

/** Pieces one source delivered under one grant, each with the source's served statement. */
export interface DeliveredGroup {
  grant: string;
  source: string;
  pieces: Map<number, string>;
}

export class DownloadJournal {
  private constructor(
    private fd: number,
    readonly state: JournalState,
  ) {}

  /** Opens the journal for `contentId`, or starts a new one (discarding one for another content). */
  static open(file: string, contentId: string, manifest: SignedManifest): { journal: DownloadJournal; resumed: boolean } {
    const state: JournalState = { pieces: new Map(), receipts: new Map() };
    let resumed = false;
    if (existsSync(file)) {
      const lines = readFileSync(file, 'utf8').split('\n');
      let first: Line | undefined;
      try {
        first = JSON.parse(lines[0]);
      } catch {}
      if (first?.t === 'start' && first.content === contentId) {
        resumed = true;
        for (const text of lines.slice(1)) {
          let line: Line;
          try {
            line = JSON.parse(text);
          } catch {
            continue;
          }
          apply(state, line);
        }
      }
    }
    const fd = openSync(file, resumed ? 'a' : 'w');
    const journal = new DownloadJournal(fd, state);
    if (!resumed) journal.append({ t: 'start', content: contentId, manifest });
    return { journal, resumed };
  }

  private append(line: Line) {
    writeSync(this.fd, JSON.stringify(line) + '\n');
    apply(this.state, line);
  }

  piece(i: number, grant: string, source: string, served: string) {
    this.append({ t: 'piece', i, g: grant, s: source, a: served });
  }
  receipt(r: SignedReceipt, id: string, grant: string, source: string, pieces: number[]) {
    this.append({ t: 'receipt', r, id, g: grant, s: source, pieces });
  }
  ack(id: string) {
    this.append({ t: 'ack', id });
  }
  refuse(id: string, code: string) {
    this.append({ t: 'refused', id, code });
  }

  /** Pieces verified but not yet covered by a receipt, grouped by grant and source. */
  unreceipted(): DeliveredGroup[] {
    const covered = new Set<number>();
    for (const r of this.state.receipts.values()) for (const p of r.pieces) covered.add(p);
    const groups = new Map<string, DeliveredGroup>();
    for (const [i, { grant, source, served }] of this.state.pieces) {
      if (covered.has(i)) continue;
      const key = `${grant}|${source}`;
      if (!groups.has(key)) groups.set(key, { grant, source, pieces: new Map() });
      groups.get(key)!.pieces.set(i, served);
    }
    return [...groups.values()];
  }

  /** Forgets a piece whose bytes turned out not to be on disk (it will be fetched again). */
  forget(i: number) {
    this.state.pieces.delete(i);
  }

  sync() {
    fsyncSync(this.fd);
  }

  close() {
    closeSync(this.fd);
  }
}

function apply(state: JournalState, line: Line) {
  switch (line.t) {
    case 'piece':
      // Lines from before served statements existed carry none; such a piece is fetched again.
      if (typeof line.a === 'string') state.pieces.set(line.i, { grant: line.g, source: line.s, served: line.a });
      break;
    case 'receipt':
      state.receipts.set(line.id, { receipt: line.r, grant: line.g, source: line.s, pieces: line.pieces, acked: false });
      break;
    case 'ack': {
      const r = state.receipts.get(line.id);
      if (r) r.acked = true;
      break;
    }
    case 'refused': {
      const r = state.receipts.get(line.id);
      if (r) r.refused = line.code;
      break;
    }
  }
}
