import type { Principal } from '../core/http.ts';
import { AppError } from '../core/errors.ts';
import type { Carrier, Detection } from './detect.ts';
import type { PayloadSecrets } from './payload.ts';

// S2.7: anyone signed in may check a copy — is it genuine (does it carry a valid mark of this
// origin, naming a delivery this origin made)? Whose copy it is (the user, edge and origin of the
// delivery) is told only to the operators and to the content's publisher; everyone else learns
// genuine or not, and why. The figure of confidence is 1 − the chance that an unmarked file would
// have matched as well (payload.ts falseMatch: the hypotheses tried count against it).

/** A delivery as the origin resolves a mark's serial (edge domain and accounts, composed in server.ts). */
export interface TracedDelivery {
  serial: number;
  deliveryId: string;
  kind: string;
  userId: string;
  username: string | null;
  edgeId: string;
  edgeLabel: string | null;
  contentId: string;
  title: string | null;
  publisher: string | null;
  deliveredAt: string;
}

export interface TraceAnswer {
  genuine: boolean;
  carrier: Carrier | null;
  /** Why, in a sentence. */
  message: string;
  /** 1 − falseMatch; null when nothing was found. */
  confidence: number | null;
  falseMatch: number | null;
  bitErrors: number | null;
  bits: number | null;
  /** The synchronisation the detector settled on (scale, offset, delay). */
  where: string | null;
  hypotheses: number;
  /** Whose copy: only for operators and the content's publisher. */
  copy: null | {
    serial: number;
    deliveryId: string;
    kind: string;
    user: { id: string; username: string | null };
    edge: { id: string; label: string | null };
    origin: { id: string };
    content: { id: string; title: string | null };
    deliveredAt: string;
  };
  /** True when the copy's owner is withheld from this caller. */
  restricted: boolean;
}

export interface TraceDeps {
  secrets: PayloadSecrets;
  originId: string;
  resolve(serial: number): Promise<TracedDelivery | null>;
  ffmpeg?: string;
  /** Detections run one at a time (they are CPU-heavy); this many more may wait, the rest are refused. */
  maxWaiting?: number;
}

export class TraceService {
  private running: Promise<unknown> = Promise.resolve();
  private waiting = 0;

  constructor(private readonly deps: TraceDeps) {}

  /** One detection at a time; `trace_busy` (503) past the queue's bound. */
  private serialised<T>(job: () => Promise<T>): Promise<T> {
    if (this.waiting >= (this.deps.maxWaiting ?? 3) + 1) throw new AppError('trace_busy', 'The origin is checking other copies; try again in a minute.', 503, { retryAfterSeconds: 60 });
    this.waiting++;
    const next = this.running.then(job, job).finally(() => this.waiting--);
    this.running = next.catch(() => {});
    return next;
  }

  async trace(file: string, who: Principal): Promise<TraceAnswer> {
    // The carriers (sharp, the FFT and Reed–Solomon libraries: ~50 MB) load with the first trace,
    // not with every origin (#19 memory).
    const { detectFile } = await import('./detect.ts');
    const d: Detection = await this.serialised(() => detectFile(file, this.deps.secrets, { ffmpeg: this.deps.ffmpeg }));
    const none = { confidence: null, falseMatch: null, bitErrors: null, bits: null, where: null, copy: null, restricted: false };
    if (!d.found) {
      const message = d.carrier ? `No mark of this origin found in this ${d.carrier}: ${d.reason}.` : `No mark can be looked for: ${d.reason}.`;
      return { genuine: false, carrier: d.carrier, message, hypotheses: d.hypotheses, ...none };
    }
    const figures = { confidence: 1 - d.falseMatch, falseMatch: d.falseMatch, bitErrors: d.payload.bitErrors, bits: d.payload.bits, where: d.where, hypotheses: d.hypotheses };
    const delivery = await this.deps.resolve(d.payload.serial);
    if (!delivery) {
      return { genuine: false, carrier: d.carrier, message: `The mark is well formed but names no delivery of this origin (serial ${d.payload.serial}): not a genuine copy.`, ...figures, copy: null, restricted: false };
    }
    const mayKnow = who.roles.includes('operator') || (delivery.publisher !== null && delivery.publisher === who.username);
    const copy = mayKnow
      ? {
          serial: delivery.serial,
          deliveryId: delivery.deliveryId,
          kind: delivery.kind,
          user: { id: delivery.userId, username: delivery.username },
          edge: { id: delivery.edgeId, label: delivery.edgeLabel },
          origin: { id: this.deps.originId },
          content: { id: delivery.contentId, title: delivery.title },
          deliveredAt: delivery.deliveredAt,
        }
      : null;
    const message = mayKnow
      ? `A genuine copy of “${delivery.title ?? delivery.contentId}”, delivered to ${delivery.username ?? delivery.userId} by edge ${delivery.edgeLabel ?? delivery.edgeId} of origin ${this.deps.originId}.`
      : 'A genuine copy: it carries a valid mark of this origin. Only the operators and the content’s publisher see whose copy it is.';
    return { genuine: true, carrier: d.carrier, message, ...figures, copy, restricted: !mayKnow };
  }
}
