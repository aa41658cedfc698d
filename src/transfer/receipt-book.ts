import type { Api } from '../cli/api.ts';
import { pieceLength, type SignedManifest } from '../content/manifest.ts';
import type { DeliveredGroup, DownloadJournal } from './download-journal.ts';
import { encodeRanges } from './piece-ranges.ts';
import { makeReceipt, type SignedReceipt } from './receipt.ts';
import type { KeyPair } from '../core/crypto.ts';

// Receipts (ARCHITECTURE.md): every verified piece ends up in exactly one signed
// receipt naming the grant and source that delivered it. Receipts are journaled
// before they are sent, so a crash between the two loses nothing.

export interface ReceiptBookOptions {
  api: Api;
  contentId: string;
  device: { terminalId: string; keys: KeyPair };
  /** Pieces per receipt. */
  batch: number;
  onReceipt?: (id: string, receipt: SignedReceipt) => void;
}

/** Turns verified pieces into signed receipts and hands them to the origin. */
export class ReceiptBook {
  private readonly pending = new Map<string, DeliveredGroup>();
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly opts: ReceiptBookOptions,
    private readonly journal: DownloadJournal,
    private readonly body: SignedManifest['body'],
  ) {}

  /** Piece `index` was verified; `served` is the source's signed statement that it served it. */
  delivered(grant: string, source: string, index: number, served: string) {
    const key = `${grant}|${source}`;
    if (!this.pending.has(key)) this.pending.set(key, { grant, source, pieces: new Map() });
    const group = this.pending.get(key)!;
    group.pieces.set(index, served);
    if (group.pieces.size >= this.opts.batch) {
      this.pending.delete(key);
      this.make(group);
      void this.send(false); // best effort now; the end of the download waits for all
    }
  }

  /** Receipts for every journaled piece not yet covered (after a restart, or at the end). */
  async receiptUnreceipted() {
    this.pending.clear();
    for (const group of this.journal.unreceipted()) this.make(group);
  }

  private make(group: DeliveredGroup) {
    const indices = [...group.pieces.keys()].sort((a, b) => a - b);
    const bytes = indices.reduce((s, i) => s + pieceLength(this.body, i), 0);
    const receipt = makeReceipt(
      {
        grant: group.grant,
        content: this.opts.contentId,
        source: group.source,
        receiver: this.opts.device.terminalId,
        pieces: encodeRanges(indices),
        bytes,
        served: indices.map((i) => group.pieces.get(i)!),
      },
      this.opts.device.keys.privateKey,
    );
    const id = JSON.parse(receipt.body).id;
    this.journal.receipt(receipt, id, group.grant, group.source, indices);
    this.opts.onReceipt?.(id, receipt);
  }

  /** Sends unacknowledged receipts; `mustSucceed` at the end, best effort before. */
  send(mustSucceed: boolean): Promise<void> {
    this.sending = this.sending.then(async () => {
      const unacked = [...this.journal.state.receipts.entries()].filter(([, r]) => !r.acked);
      if (unacked.length === 0) return;
      try {
        const res = await this.opts.api.post<{ accepted: string[]; duplicates: string[] }>('/receipts', { receipts: unacked.map(([, r]) => r.receipt) });
        for (const id of [...res.accepted, ...res.duplicates]) this.journal.ack(id);
      } catch (err) {
        if (mustSucceed) throw err;
      }
    });
    return this.sending;
  }
}
