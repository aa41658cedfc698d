import { createReadStream, existsSync, mkdirSync } from 'node:fs';
import { open, rename, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import type { WaitClock } from '../core/clock.ts';
import { AppError, badRequest } from '../core/errors.ts';
import type { Api } from '../core/http-client.ts';
import { DELIVERY_LIMITS, type DeliveryReport } from './deliveries.ts';
import { MAX_REPORTS_PER_REQUEST, type ReportsAnswer } from './delivery-routes.ts';

// The edge's side of S2.4 (docs/edge.md "Deliveries, reports and billing"): every report is
// written to a journal and fsynced before it is sent, so a report survives a crash, a restart or
// an origin that cannot be reached; the reporter sends what the origin has not acknowledged, in
// batches, again and again until it is acknowledged (or refused with a code). The origin bills a
// delivery once whatever the number of copies it receives, so sending again is always safe.
//
// The journal is JSON lines in <dir>/deliveries.journal:
//   {"t":"base","recorded":n,"acknowledged":n,"refused":n,"next":seq}   first line after compaction
//   {"t":"report","seq":7,"at":ms,"report":{…}}                          recorded, not yet acknowledged
//   {"t":"ack","seqs":[7,8]}                                             the origin accepted them (or had them)
//   {"t":"refused","seq":9,"code":"…","message":"…"}                     the origin refused it: not sent again
// Opening reads it (at most `maxLines` lines), then rewrites it as a base line and the reports
// still to send (write to a temporary file, fsync, rename, fsync the directory), so it does not
// grow across restarts; it is compacted the same way while running every `compactEvery` lines.

export const JOURNAL_FILE = 'deliveries.journal';
export const MAX_JOURNAL_LINES = 1_000_000;
/** Refusals kept for `cascade edge status` (the latest). */
const KEPT_REFUSALS = 100;

export interface JournalCounts {
  /** Reports ever recorded. */
  recorded: number;
  /** Of them, acknowledged by the origin (accepted or duplicates). */
  acknowledged: number;
  /** Of them, refused by the origin (not sent again). */
  refused: number;
  /** Still to send. */
  pending: number;
}

export interface Refusal {
  seq: number;
  deliveryId: string;
  code: string;
  message: string;
}

type Line =
  | { t: 'base'; recorded: number; acknowledged: number; refused: number; next: number; refusals?: Refusal[] }
  | { t: 'report'; seq: number; at: number; report: DeliveryReport }
  | { t: 'ack'; seqs: number[] }
  | { t: 'refused'; seq: number; code: string; message: string };

/** The same bounds as the origin's route: a report the origin would refuse as malformed is never recorded. */
export function checkReport(r: DeliveryReport): DeliveryReport {
  const int = (v: unknown, max: number) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;
  if (typeof r?.deliveryId !== 'string' || !/^dlv_[A-Za-z0-9_-]{1,60}$/.test(r.deliveryId)) throw badRequest('invalid_delivery_report', 'A report names its delivery (dlv_…).');
  if (!int(r.fee, DELIVERY_LIMITS.maxFee)) throw badRequest('invalid_delivery_report', `fee is a whole number of minor units, 0 to ${DELIVERY_LIMITS.maxFee}.`);
  if (r.bytes !== undefined && !int(r.bytes, DELIVERY_LIMITS.maxBytes)) throw badRequest('invalid_delivery_report', 'bytes is a whole number.');
  if (r.viewedSeconds !== undefined && !int(r.viewedSeconds, DELIVERY_LIMITS.maxViewedSeconds)) throw badRequest('invalid_delivery_report', 'viewedSeconds is a whole number.');
  if (typeof r.final !== 'boolean') throw badRequest('invalid_delivery_report', 'final is true or false.');
  return { deliveryId: r.deliveryId, fee: r.fee, ...(r.bytes !== undefined ? { bytes: r.bytes } : {}), ...(r.viewedSeconds !== undefined ? { viewedSeconds: r.viewedSeconds } : {}), final: r.final };
}

export class DeliveryJournal {
  private fh: FileHandle | null = null;
  private readonly pendingReports = new Map<number, { report: DeliveryReport; at: number }>();
  private refusals: Refusal[] = [];
  private counters = { recorded: 0, acknowledged: 0, refused: 0 };
  private next = 1;
  private linesSinceCompaction = 0;
  /** Writes take turns: each line is whole and fsynced before the next. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly file: string,
    private readonly clock: { now(): number },
    private readonly compactEvery: number,
  ) {}

  /** Opens (creating) the journal in `dir`, loads it and compacts it. */
  static async open(dir: string, opts: { clock: { now(): number }; maxLines?: number; compactEvery?: number }): Promise<DeliveryJournal> {
    mkdirSync(dir, { recursive: true });
    const j = new DeliveryJournal(path.join(dir, JOURNAL_FILE), opts.clock, opts.compactEvery ?? 100_000);
    await j.load(opts.maxLines ?? MAX_JOURNAL_LINES);
    await j.compact();
    return j;
  }

  private async load(maxLines: number) {
    if (!existsSync(this.file)) return;
    const lines = createInterface({ input: createReadStream(this.file, { encoding: 'utf8' }), crlfDelay: Infinity });
    let n = 0;
    for await (const text of lines) {
      if (++n > maxLines) {
        lines.close();
        throw new AppError(
          'journal_too_large',
          `${this.file} has more than ${maxLines} lines: more reports than an edge should ever hold unsent. Is the origin unreachable? Move the file aside to start, and report it to the operator.`,
          500,
        );
      }
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        continue; // a line torn by a crash while it was written: it was never fsynced, so never counted as recorded
      }
      this.apply(line);
    }
  }

  private apply(line: Line) {
    switch (line.t) {
      case 'base':
        this.counters = { recorded: line.recorded, acknowledged: line.acknowledged, refused: line.refused };
        this.next = Math.max(this.next, line.next);
        this.refusals = line.refusals ?? [];
        break;
      case 'report':
        this.pendingReports.set(line.seq, { report: line.report, at: line.at });
        this.counters.recorded++;
        this.next = Math.max(this.next, line.seq + 1);
        break;
      case 'ack':
        for (const seq of line.seqs) if (this.pendingReports.delete(seq)) this.counters.acknowledged++;
        break;
      case 'refused': {
        const report = this.pendingReports.get(line.seq)?.report;
        if (!report) break;
        this.pendingReports.delete(line.seq);
        this.counters.refused++;
        this.refusals = [...this.refusals, { seq: line.seq, deliveryId: report.deliveryId, code: line.code, message: line.message }].slice(-KEPT_REFUSALS);
        break;
      }
    }
  }

  /** Appends lines and fsyncs them; applies them to the in-memory state once durable. */
  private write(lines: Line[]): Promise<void> {
    const run = this.queue.then(async () => {
      if (!this.fh) throw new Error('the delivery journal is closed');
      await this.fh.appendFile(lines.map((l) => JSON.stringify(l) + '\n').join(''));
      await this.fh.sync();
      for (const l of lines) this.apply(l);
      this.linesSinceCompaction += lines.length;
      if (this.linesSinceCompaction >= this.compactEvery) await this.rewrite();
    });
    this.queue = run.catch(() => {});
    return run;
  }

  /** Records a report (fsynced before this resolves); returns its sequence number. */
  async record(report: DeliveryReport): Promise<number> {
    const r = checkReport(report);
    let seq = 0;
    // In the write queue: sequence numbers follow the file's order.
    const run = this.queue.then(async () => {
      seq = this.next++;
      if (!this.fh) throw new Error('the delivery journal is closed');
      const line: Line = { t: 'report', seq, at: this.clock.now(), report: r };
      await this.fh.appendFile(JSON.stringify(line) + '\n');
      await this.fh.sync();
      this.apply(line);
      this.linesSinceCompaction++;
    });
    this.queue = run.catch(() => {});
    await run;
    return seq;
  }

  /** The oldest reports still to send, at most `limit`, in the order they were recorded. */
  pending(limit: number): { seq: number; report: DeliveryReport }[] {
    const out: { seq: number; report: DeliveryReport }[] = [];
    for (const [seq, { report }] of this.pendingReports) {
      if (out.length >= limit) break;
      out.push({ seq, report });
    }
    return out;
  }

  /** The origin acknowledged these reports: never sent again. */
  acknowledge(seqs: number[]): Promise<void> {
    return seqs.length ? this.write([{ t: 'ack', seqs }]) : Promise.resolve();
  }

  /** The origin refused these reports (with its code): kept for the status, never sent again. */
  refuse(items: { seq: number; code: string; message: string }[]): Promise<void> {
    return items.length ? this.write(items.map((i) => ({ t: 'refused' as const, ...i }))) : Promise.resolve();
  }

  counts(): JournalCounts {
    return { ...this.counters, pending: this.pendingReports.size };
  }

  /** The latest refusals (up to 100), oldest first. */
  latestRefusals(): Refusal[] {
    return [...this.refusals];
  }

  /** Rewrites the file as a base line and the reports still to send (crash-safe), and reopens it for appending. */
  private async compact(): Promise<void> {
    const run = this.queue.then(() => this.rewrite());
    this.queue = run.catch(() => {});
    await run;
  }

  private async rewrite(): Promise<void> {
    const tmp = `${this.file}.${process.pid}.tmp`;
    const out = await open(tmp, 'w');
    try {
      // The pending reports count as recorded again when their lines are read: the base counts the others.
      const base: Line = { t: 'base', ...this.counters, recorded: this.counters.recorded - this.pendingReports.size, next: this.next, refusals: this.refusals };
      const lines = [JSON.stringify(base), ...[...this.pendingReports].map(([seq, { report, at }]) => JSON.stringify({ t: 'report', seq, at, report }))];
      await out.writeFile(lines.join('\n') + '\n');
      await out.sync();
    } finally {
      await out.close();
    }
    await this.fh?.close();
    this.fh = null;
    await rename(tmp, this.file);
    const d = await open(path.dirname(this.file), 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
    this.fh = await open(this.file, 'a');
    this.linesSinceCompaction = 0;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.fh?.close();
    this.fh = null;
  }
}

export interface ReporterOptions {
  journal: DeliveryJournal;
  /** The origin API with the edge's terminal session. */
  api: () => Api;
  clock: WaitClock;
  logger?: Logger;
  /** Reports per request (at most the origin's 500); default 100. */
  batchSize?: number;
  /** How often to look for unsent reports when nothing wakes it; default 10 s. */
  intervalMs?: number;
  /** After a failed send: wait firstMs, doubling up to maxMs; default 1 s … 60 s. */
  backoff?: { firstMs: number; maxMs: number };
}

export interface FlushResult {
  /** Reports sent in this flush (acknowledged or refused). */
  sent: number;
  accepted: number;
  duplicates: number;
  refused: number;
  /** Why sending stopped before everything was sent (the origin failed or could not be reached); null if all was sent. */
  error: AppError | null;
}

/**
 * Sends the journal's unacknowledged reports to the origin (`POST /edges/me/deliveries/reports`)
 * in batches: at start (what a previous run left), whenever a report is recorded, and every
 * `intervalMs`; after a failure it backs off (1 s, 2 s, … 60 s by the clock) and tries again.
 */
export class DeliveryReporter {
  private readonly batchSize: number;
  private readonly intervalMs: number;
  private readonly backoff: { firstMs: number; maxMs: number };
  private running: Promise<FlushResult> | null = null;
  private loop: Promise<void> | null = null;
  private readonly stopping = new AbortController();
  private wakeUp: AbortController | null = null;
  private lastError: string | null = null;
  private lastSentAt: number | null = null;
  /** What the origin answered since this reporter started. */
  private readonly answered = { accepted: 0, duplicates: 0 };

  constructor(private readonly opts: ReporterOptions) {
    this.batchSize = Math.min(Math.max(1, opts.batchSize ?? 100), MAX_REPORTS_PER_REQUEST);
    this.intervalMs = opts.intervalMs ?? 10_000;
    this.backoff = opts.backoff ?? { firstMs: 1000, maxMs: 60_000 };
  }

  /** Records the report in the journal (fsynced) and wakes the sender; resolves once it is durable, not once sent. */
  async report(r: DeliveryReport): Promise<number> {
    const seq = await this.opts.journal.record(r);
    this.wakeUp?.abort();
    return seq;
  }

  /** Sends what is unacknowledged, batch after batch, until nothing is left or a send fails. One flush at a time. */
  flush(): Promise<FlushResult> {
    this.running ??= this.sendAll().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async sendAll(): Promise<FlushResult> {
    const { journal } = this.opts;
    const result: FlushResult = { sent: 0, accepted: 0, duplicates: 0, refused: 0, error: null };
    for (;;) {
      const batch = journal.pending(this.batchSize);
      if (batch.length === 0) return result;
      let answer: ReportsAnswer;
      try {
        answer = await this.opts.api().post<ReportsAnswer>('/edges/me/deliveries/reports', { reports: batch.map((b) => b.report) });
      } catch (err) {
        const e = err instanceof AppError ? err : new AppError('origin_unreachable', String((err as Error)?.message ?? err), 503);
        this.lastError = `${e.code}: ${e.message}`;
        this.opts.logger?.warn({ code: e.code, pending: journal.counts().pending }, 'delivery reports not sent; will retry');
        return { ...result, error: e };
      }
      const refusedAt = new Map(answer.refused.map((r) => [r.index, r]));
      const acks = batch.filter((_, i) => !refusedAt.has(i)).map((b) => b.seq);
      const refusals = [...refusedAt].filter(([i]) => i >= 0 && i < batch.length).map(([i, r]) => ({ seq: batch[i].seq, code: r.code, message: r.message }));
      await journal.acknowledge(acks);
      await journal.refuse(refusals);
      for (const r of refusals) this.opts.logger?.warn({ seq: r.seq, code: r.code }, `delivery report refused: ${r.message}`);
      this.lastError = null;
      this.lastSentAt = this.opts.clock.now();
      result.sent += batch.length;
      result.accepted += answer.accepted.length;
      result.duplicates += answer.duplicates.length;
      this.answered.accepted += answer.accepted.length;
      this.answered.duplicates += answer.duplicates.length;
      result.refused += refusals.length;
    }
  }

  /** Starts sending: at once (what a previous run left), then on every report, every interval, with backoff after failures. */
  start(): void {
    if (this.loop) return;
    const { clock } = this.opts;
    this.loop = (async () => {
      let delay = 0;
      while (!this.stopping.signal.aborted) {
        const r = await this.flush().catch((err) => ({ error: err instanceof AppError ? err : new AppError('internal', String(err), 500) }));
        delay = r.error ? Math.min(delay ? delay * 2 : this.backoff.firstMs, this.backoff.maxMs) : 0;
        if (this.stopping.signal.aborted) break;
        const wake = new AbortController();
        this.wakeUp = wake;
        const stop = () => wake.abort();
        this.stopping.signal.addEventListener('abort', stop, { once: true });
        // After a failure only the backoff ends the wait (a new report does not hammer a failing origin).
        await clock.sleepUntil(clock.now() + (delay || this.intervalMs), delay ? this.stopping.signal : wake.signal);
        this.stopping.signal.removeEventListener('abort', stop);
        this.wakeUp = null;
      }
    })();
  }

  /** Stops the loop and waits for a send in progress (its acknowledgement is journaled). */
  async stop(): Promise<void> {
    this.stopping.abort();
    this.wakeUp?.abort();
    await this.loop;
    await this.running;
  }

  /** For `cascade edge status`: the journal's counts, what the origin answered since start, the last failure and the last successful send. */
  status(): JournalCounts & { accepted: number; duplicates: number; lastError: string | null; lastSentAt: string | null; refusals: Refusal[] } {
    return {
      ...this.opts.journal.counts(),
      // Since this reporter started: reports the origin recorded now, and those it had already.
      ...this.answered,
      lastError: this.lastError,
      lastSentAt: this.lastSentAt === null ? null : new Date(this.lastSentAt).toISOString(),
      refusals: this.opts.journal.latestRefusals().slice(-10),
    };
  }
}

/**
 * The edge's delivery reporting, ready to use: the journal in `home` opened (and compacted), the
 * reporter started (it first sends what a previous run left). `close()` stops it and closes the journal.
 */
export async function openDeliveryReporting(opts: { home: string; api: () => Api; clock: WaitClock; logger?: Logger }): Promise<{
  reporter: DeliveryReporter;
  close(): Promise<void>;
}> {
  const journal = await DeliveryJournal.open(opts.home, { clock: opts.clock });
  const reporter = new DeliveryReporter({ journal, api: opts.api, clock: opts.clock, logger: opts.logger });
  reporter.start();
  return {
    reporter,
    async close() {
      await reporter.stop();
      await journal.close();
    },
  };
}
