import type { WaitClock } from '../core/clock.ts';

// A background job on the injected clock (tests move a ManualClock; nothing sleeps in real
// time): it runs a round, sleeps until the time the round says is next due (at most `maxSleepMs`
// of clock time, so work made by another origin process is seen), and runs again early when
// woken. The deadline job (S3.6) and the recording job (S3.15) are rounds of it.

export class ClockJob {
  private readonly stopping = new AbortController();
  private nap: AbortController | null = null;
  private loop: Promise<void> | null = null;
  /** Set by wake(): look again before sleeping. */
  private dirty = false;
  /** When the job next looks by itself (clock ms). */
  private sleepingUntil = -Infinity;
  /** Resolves after the next completed round (tests wait on it). */
  private rounds: (() => void)[] = [];

  constructor(
    private readonly o: {
      clock: WaitClock;
      maxSleepMs: number;
      /** One round; answers when something is next due (null: nothing known). */
      round: () => Promise<number | null>;
      /** A round threw (it is tried again after the sleep). */
      failed: (err: unknown) => void;
    },
  ) {}

  start() {
    this.loop ??= this.run();
  }

  /** Look again now. */
  wake() {
    this.dirty = true;
    this.nap?.abort();
  }

  /** Something is due at `t`: look again only if that is before the job would look anyway. */
  wakeFor(t: number) {
    if (t < this.sleepingUntil) this.wake();
  }

  /** Resolves once a round has run after this call. */
  nextRound(): Promise<void> {
    return new Promise((resolve) => {
      this.rounds.push(resolve);
      this.wake();
    });
  }

  async stop() {
    this.stopping.abort();
    this.nap?.abort();
    await this.loop;
    this.loop = null;
  }

  private async run() {
    const { clock } = this.o;
    while (!this.stopping.signal.aborted) {
      let next = clock.now() + this.o.maxSleepMs;
      this.dirty = false;
      const waiting = this.rounds.splice(0); // only waits that began before this round
      try {
        const due = await this.o.round();
        if (due !== null) next = Math.min(next, due);
      } catch (err) {
        if (this.stopping.signal.aborted) break;
        this.o.failed(err);
      }
      for (const done of waiting) done();
      if (this.dirty) continue;
      this.nap = new AbortController();
      this.sleepingUntil = next;
      await clock.sleepUntil(next, AbortSignal.any([this.nap.signal, this.stopping.signal]));
      this.sleepingUntil = -Infinity; // awake: anything new is seen by the next round
    }
    for (const done of this.rounds.splice(0)) done();
  }
}
