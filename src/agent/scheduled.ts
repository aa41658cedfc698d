import { setTimeout as sleep } from 'node:timers/promises';
import { createParser } from 'eventsource-parser';
import type { Logger } from 'pino';
import { request } from 'undici';
import type { Api } from '../core/http-client.ts';
import { every, type WaitClock } from '../core/clock.ts';
import { AppError } from '../core/errors.ts';
import { decodeToken } from '../core/signed-token.ts';
import type { CheckIn, DeliveryOrder, ReportState, StreamEvent } from '../schedule/runner.ts';
import { ORDER_TOKEN_TYPE } from '../schedule/push.ts';
import type { DownloadOptions, DownloadResult } from '../transfer/downloader.ts';
import { ORIGIN_SOURCE_ID } from '../transfer/grant-token.ts';

/*
 * The agent's side of scheduled distribution (#5). The terminal's schedules live at the
 * origin (`cascade schedule add`); this module gets the deliveries they lead to:
 *
 *   pull    (S0.3) sleeps until its next window opens (the origin says when), calls in
 *           (`POST /schedules/check-in`) and fetches what it is given; while the window
 *           is open it calls in again as the origin asks, and after each delivery;
 *   stream  (S0.4) holds `GET /schedules/orders` open; the origin sends orders down it
 *           at the opening (and `stop` when it ends one); reconnects with back-off;
 *   address (S0.4) registers `<agent url>/schedule/orders` with the origin, which POSTs
 *           origin-signed orders there (`acceptPushed` checks them).
 *
 * Every order is fetched with the ordinary transfer (peers and the origin, receipts,
 * billing), capped at the admitted rate, and paused when the window closes — by this
 * terminal's own clock, so a lost connection cannot keep it fetching out of its window.
 * The next window resumes from the verified pieces. Progress goes to the origin every
 * `reportMs`, and once at the end (done, paused, failed).
 */

export type ScheduleMode = 'pull' | 'stream' | 'address';
export const SCHEDULE_MODES: readonly ScheduleMode[] = ['pull', 'stream', 'address'];

export interface ScheduledEvent {
  event: 'order' | 'delivered' | 'paused' | 'failed' | 'check-in';
  contentId?: string;
  bytes?: number;
  reason?: string;
  nextCheckInAt?: string | null;
  /** delivered: who delivered most of it. */
  source?: 'origin' | 'peer';
  sourceId?: string;
}

export interface ScheduledOptions {
  mode: ScheduleMode;
  terminalId: string;
  /** An API client with the device session. */
  api: () => Api;
  /** The origin's public key: pushed orders must carry its signature. */
  originKey: string;
  /** Fetches a content into the agent's store (agent.fetch). */
  fetch: (contentId: string, extra: Partial<DownloadOptions>) => Promise<DownloadResult>;
  /** Tells the origin the content is held whole (the agent's claim after every download); false if that failed (logged). */
  claimWhole: (contentId: string) => Promise<boolean>;
  /** The size of piece `index` of a content being fetched (for byte counts). */
  pieceLength: (contentId: string, index: number) => number;
  /** Pieces of a content already in the store (a resumed delivery does not count them again). */
  heldPieces: (contentId: string) => ReadonlySet<number>;
  clock: WaitClock;
  logger: Logger;
  /** address mode: the URL the origin is to POST orders to. */
  pushUrl?: string;
  reportMs?: number;
  /** Back-off after the origin could not be reached, ms (doubles up to 16×). */
  retryMs?: number;
  /** pull: call in at least this often, so schedules added meanwhile are seen (default 15 min). */
  maxSleepMs?: number;
  onEvent?: (e: ScheduledEvent) => void;
}

interface Active {
  order: DeliveryOrder;
  stop: AbortController;
  /** Why it was stopped, when it was. */
  stopReason?: 'window_closed' | 'origin_stopped' | 'agent_closing';
}

export class ScheduledDeliveries {
  private readonly active = new Map<string, Active>();
  private readonly closing = new AbortController();
  private wake = new AbortController();
  private loop: Promise<void> | null = null;

  constructor(private readonly opts: ScheduledOptions) {}

  start(): void {
    if (this.opts.mode === 'pull') this.loop = this.pullLoop();
    else if (this.opts.mode === 'stream') this.loop = this.streamLoop();
    else this.loop = this.register();
  }

  async close(): Promise<void> {
    this.closing.abort();
    this.wake.abort();
    for (const a of this.active.values()) {
      a.stopReason ??= 'agent_closing';
      a.stop.abort();
    }
    await this.loop?.catch(() => {});
  }

  /** pull: call in now rather than at the next opening (a schedule was just added). */
  wakeUp(): void {
    this.wake.abort();
  }

  /** Contents being fetched on schedule now. */
  running(): string[] {
    return [...this.active.keys()];
  }

  /** address mode: an order POSTed by the origin. Refuses (`invalid_order`, 400) one without the origin's signature or for another terminal. */
  acceptPushed(token: unknown): DeliveryOrder {
    if (typeof token !== 'string') throw new AppError('invalid_order', 'The body is { token }: an origin-signed delivery order.', 400);
    const decoded = decodeToken<DeliveryOrder & { typ: string }>(token, this.opts.originKey, ORDER_TOKEN_TYPE);
    if (!decoded.ok) throw new AppError('invalid_order', `The order is not signed by this terminal's origin (${decoded.reason}).`, 400);
    const { typ: _, ...order } = decoded.payload;
    if (order.terminalId !== this.opts.terminalId) throw new AppError('invalid_order', 'The order is for another terminal.', 400);
    this.run(order);
    return order;
  }

  // ---- modes ----

  private async pullLoop(): Promise<void> {
    let failures = 0;
    while (!this.closing.signal.aborted) {
      try {
        const view = await this.opts.api().post<CheckIn>('/schedules/check-in');
        failures = 0;
        this.emit({ event: 'check-in', nextCheckInAt: view.nextCheckInAt });
        for (const o of view.orders) this.run(o);
        // Never later than maxSleepMs: a schedule added meanwhile may open sooner.
        const latest = this.opts.clock.now() + (this.opts.maxSleepMs ?? 900_000);
        const next = view.nextCheckInAt ? Math.min(Date.parse(view.nextCheckInAt), latest) : latest;
        await this.opts.clock.sleepUntil(next, this.wake.signal);
        if (this.wake.signal.aborted) this.wake = new AbortController();
      } catch (err) {
        failures++;
        this.opts.logger.warn({ code: (err as AppError).code, err: (err as Error).message }, 'check-in failed');
        await this.backoff(failures);
      }
    }
  }

  private async streamLoop(): Promise<void> {
    let failures = 0;
    while (!this.closing.signal.aborted) {
      try {
        const api = this.opts.api();
        const res = await request(`${api.origin}/schedules/orders`, {
          headers: { authorization: `Bearer ${api.token}`, accept: 'text/event-stream' },
          signal: this.closing.signal,
          bodyTimeout: 0,
        });
        if (res.statusCode !== 200) {
          const text = await res.body.text();
          throw new AppError('stream_refused', `GET /schedules/orders answered ${res.statusCode}: ${text.slice(0, 200)}`, res.statusCode);
        }
        failures = 0;
        const parser = createParser({
          onEvent: (m) => {
            const e = { event: m.event, data: JSON.parse(m.data) } as StreamEvent;
            if (e.event === 'order') this.run(e.data);
            else if (e.event === 'stop') this.stopOne(e.data.contentId, 'origin_stopped');
          },
        });
        const text = new TextDecoder();
        for await (const chunk of res.body) parser.feed(text.decode(chunk as Buffer, { stream: true }));
        throw new AppError('stream_ended', 'The origin closed the order stream.', 503);
      } catch (err) {
        if (this.closing.signal.aborted) return;
        failures++;
        this.opts.logger.warn({ code: (err as AppError).code, err: (err as Error).message }, 'order stream lost; reconnecting');
        await this.backoff(failures);
      }
    }
  }

  private async register(): Promise<void> {
    let failures = 0;
    while (!this.closing.signal.aborted) {
      try {
        await this.opts.api().request('PUT', '/schedules/push-address', { json: { url: this.opts.pushUrl } });
        return;
      } catch (err) {
        failures++;
        this.opts.logger.warn({ code: (err as AppError).code, err: (err as Error).message }, 'registering the push address failed');
        await this.backoff(failures);
      }
    }
  }

  // ---- one delivery ----

  /** Starts fetching an order unless it is already being fetched (a re-sent order changes nothing). */
  private run(order: DeliveryOrder): void {
    if (this.active.has(order.contentId) || this.closing.signal.aborted) return;
    const a: Active = { order, stop: new AbortController() };
    this.active.set(order.contentId, a);
    this.emit({ event: 'order', contentId: order.contentId });
    void this.deliver(a).finally(() => {
      this.active.delete(order.contentId);
      this.wake.abort(); // pull: call in again, more may be due
    });
  }

  private stopOne(contentId: string, reason: Active['stopReason']): void {
    const a = this.active.get(contentId);
    if (!a) return;
    a.stopReason ??= reason;
    a.stop.abort();
  }

  private async deliver(a: Active): Promise<void> {
    const { order } = a;
    const { clock } = this.opts;
    let bytes = 0;
    const had = new Set(this.opts.heldPieces(order.contentId));
    // Pause when the window closes, by this terminal's clock.
    void clock.sleepUntil(Date.parse(order.windowEnd), a.stop.signal).then(() => {
      if (!a.stop.signal.aborted) {
        a.stopReason = 'window_closed';
        a.stop.abort();
      }
    });
    // Progress every reportMs by the same clock; stopped (and waited for) before the final word, which must come last.
    const reporting = new AbortController();
    const reporter = every(clock, this.opts.reportMs ?? 5000, reporting.signal, async () => {
      await this.report(a, bytes, 'running');
    });
    const stopReporting = () => {
      reporting.abort();
      return reporter;
    };
    try {
      const result = await this.opts.fetch(order.contentId, {
        downRate: order.rateBytesPerSecond,
        signal: a.stop.signal,
        onPiece: (i) => {
          if (!had.has(i)) bytes += this.opts.pieceLength(order.contentId, i);
        },
      });
      await stopReporting();
      const via = mainSource(result.bySource);
      const refused = await this.report(a, bytes, 'done', undefined, via);
      // The origin missed our whole claim (the call failed on the way): claim it again, then say done again.
      if (refused === 'not_held' && (await this.opts.claimWhole(order.contentId))) await this.report(a, bytes, 'done', undefined, via);
      this.emit({ event: 'delivered', contentId: order.contentId, bytes, ...via });
    } catch (err) {
      await stopReporting();
      if (a.stop.signal.aborted) {
        // The origin ended it itself (it knows), or we are shutting down (it learns when its window closes).
        if (a.stopReason === 'window_closed') await this.report(a, bytes, 'paused', 'window_closed');
        this.emit({ event: 'paused', contentId: order.contentId, bytes, reason: a.stopReason });
      } else {
        const reason = (err as AppError).code ?? 'fetch_failed';
        await this.report(a, bytes, 'failed', reason);
        this.emit({ event: 'failed', contentId: order.contentId, bytes, reason });
      }
    } finally {
      a.stop.abort(); // ends the window timer
    }
  }

  /** Sends one progress report; answers the refusal's code, if it was refused. */
  private async report(a: Active, bytes: number, state: ReportState, reason?: string, via?: { source: 'origin' | 'peer'; sourceId?: string }): Promise<string | undefined> {
    try {
      const res = await this.opts.api().post<{ continue: boolean }>('/schedules/deliveries/report', { contentId: a.order.contentId, bytes, state, ...(reason ? { reason } : {}), ...via });
      if (!res.continue && state === 'running') this.stopOne(a.order.contentId, 'origin_stopped');
      return undefined;
    } catch (err) {
      const code = (err as AppError).code;
      if (code === 'unknown_order' && state === 'running') this.stopOne(a.order.contentId, 'origin_stopped');
      else this.opts.logger.warn({ contentId: a.order.contentId, state, code, err: (err as Error).message }, 'delivery report failed');
      return code ?? 'report_failed';
    }
  }

  /** Waits before trying the origin again: real time (a network matter, not a schedule), doubling up to 16×. */
  private async backoff(failures: number): Promise<void> {
    const ms = (this.opts.retryMs ?? 5000) * 2 ** Math.min(failures - 1, 4);
    await sleep(ms, undefined, { signal: this.closing.signal }).catch(() => {});
  }

  private emit(e: ScheduledEvent): void {
    this.opts.onEvent?.(e);
  }
}

/** Who delivered most of a download (S0.7 records one source per attempt): the origin, or the peer with the most bytes. */
export function mainSource(bySource: Record<string, number>): { source: 'origin' | 'peer'; sourceId?: string } | undefined {
  let best: [string, number] | null = null;
  for (const [id, n] of Object.entries(bySource)) if (n > 0 && (!best || n > best[1])) best = [id, n];
  if (!best) return undefined;
  return best[0] === ORIGIN_SOURCE_ID ? { source: 'origin' } : { source: 'peer', sourceId: best[0] };
}
