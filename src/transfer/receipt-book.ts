import type { Api } from '../core/http-client.ts';
import { pieceLength, type SignedManifest } from '../content/manifest.ts';
import type { DeliveredGroup, DownloadJournal } from './download-journal.ts';
import { encodeRanges } from './piece-ranges.ts';
import { makeReceipt, RETRYABLE_REFUSALS, type ReceiptsAnswer, type SignedReceipt } from './receipt.ts';

/**
 * Receipts by default (#19): a group of pieces from one source under one grant closes into a
 * receipt once it holds RECEIPT_MIN_PIECES and has been open RECEIPT_SPAN_MS, or when it reaches
 * RECEIPT_MAX_PIECES. Each receipt costs the origin a transaction (checked, recorded, settled),
 * so at hundreds of MB/s a fixed 32 pieces meant a dozen a second (~25 % of the origin's time in
 * the transfer bench); a receipt a second keeps settlement as current as a person can see.
 */
export const RECEIPT_MIN_PIECES = 32;
export const RECEIPT_SPAN_MS = 1000;
export const RECEIPT_MAX_PIECES = 512;
/** Whether a group of `size` pieces, open for `openMs`, closes into a receipt now (`batch`: exactly that many). */
export function receiptFull(size: number, openMs: number, batch?: number): boolean {
  if (batch !== undefined) return size >= batch;
  return size >= RECEIPT_MAX_PIECES || (size >= RECEIPT_MIN_PIECES && openMs >= RECEIPT_SPAN_MS);
}

/** The origin takes at most this many receipts per request. */
const MAX_PER_REQUEST = 1000;
/** At the end of a download, receipts waiting for their source's report are sent this many more times (≈ 15 s in all). */
const END_RETRIES = 10;
import type { KeyPair } from '../core/crypto.ts';
import type { Clock } from '../core/clock.ts';

// Receipts (ARCHITECTURE.md): every verified piece ends up in exactly one signed
// receipt naming the grant and source that delivered it. Receipts are journaled
// before they are sent, so a crash between the two loses nothing.

export interface ReceiptBookOptions {
  api: Api;
  contentId: string;
  device: { terminalId: string; keys: KeyPair };
  /** Pieces per receipt, exactly; absent: the default rule (RECEIPT_MIN_PIECES…). */
  batch?: number;
  /** When groups opened (the default rule's span). */
  clock: Clock;
  onReceipt?: (id: string, receipt: SignedReceipt) => void;
}

/** Turns verified pieces into signed receipts and hands them to the origin. */
export class ReceiptBook {
  /** Groups not yet made into receipts, with when each opened (the default rule's span). */
  private readonly pending = new Map<string, DeliveredGroup & { openedAt: number }>();
  private sending: Promise<void> = Promise.resolve();
  /** Receipts the origin refused for good this run (shown to the user). */
  readonly refusals: { receiptId: string; code: string; message: string }[] = [];
  /** Receipts still waiting, at the end, for their source's served report (kept in the journal). */
  notYetServed = 0;

  constructor(
    private readonly opts: ReceiptBookOptions,
    private readonly journal: DownloadJournal,
    private readonly body: SignedManifest['body'],
  ) {}

  /** Piece `index` was verified; `served` is the source's signed statement that it served it. */
  delivered(grant: string, source: string, index: number, served: string) {
    const key = `${grant}|${source}`;
    if (!this.pending.has(key)) this.pending.set(key, { grant, source, pieces: new Map(), openedAt: this.opts.clock.now() });
    const group = this.pending.get(key)!;
    group.pieces.set(index, served);
    if (receiptFull(group.pieces.size, this.opts.clock.now() - group.openedAt, this.opts.batch)) {
      this.pending.delete(key);
      this.make(group);
      void this.send({ final: false }); // best effort now; the end of the download waits for all
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

  /**
   * Sends unacknowledged receipts: best effort during the download; at the end (`final`)
   * a receipt refused for now (`receipt_not_served`: the source's report has not
   * arrived) is sent again a few times over some seconds, then left in the journal for
   * later, and with `mustSucceed` an origin out of reach is an error. A receipt the
   * origin refuses for good is marked so in the journal (and listed in `refusals`).
   */
  send(opts: { final: boolean; mustSucceed?: boolean }): Promise<void> {
    const { final, mustSucceed = false } = opts;
    this.sending = this.sending.then(async () => {
      for (let attempt = 0; ; attempt++) {
        const unacked = [...this.journal.state.receipts.entries()].filter(([, r]) => !r.acked && !r.refused);
        if (unacked.length === 0) return;
        let waiting = 0;
        try {
          for (let i = 0; i < unacked.length; i += MAX_PER_REQUEST) {
            const part = unacked.slice(i, i + MAX_PER_REQUEST);
            const res = await this.opts.api.post<ReceiptsAnswer>('/receipts', { receipts: part.map(([, r]) => r.receipt) });
            for (const id of [...res.accepted, ...res.duplicates]) this.journal.ack(id);
            for (const r of res.refused ?? []) {
              const id = r.receiptId ?? part[r.index]?.[0];
              if (!id) continue;
              if (RETRYABLE_REFUSALS.has(r.code)) waiting++;
              else {
                this.journal.refuse(id, r.code);
                this.refusals.push({ receiptId: id, code: r.code, message: r.message });
              }
            }
          }
        } catch (err) {
          if (mustSucceed) throw err;
          return;
        }
        if (waiting === 0 || !final) return;
        if (attempt >= END_RETRIES) {
          this.notYetServed = waiting;
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** attempt, 2000)));
      }
    });
    return this.sending;
  }
}
