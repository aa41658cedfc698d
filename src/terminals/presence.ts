import type { TerminalState } from './tables.ts';

// S1.2 / S1.3: heartbeats are hot, high-rate state. They are kept in memory (the
// latest per terminal) and written to the database in one batch per flush
// (ARCHITECTURE "Storage and scale": never one write per heartbeat).

export class HeartbeatBuffer {
  /** Beats not yet handed to a flush. */
  private pending = new Map<string, TerminalState>();
  /** Beats being written by the flush in progress; still the freshest we know. */
  private inFlight = new Map<string, TerminalState>();

  record(terminalId: string, state: TerminalState): void {
    this.pending.set(terminalId, state);
  }

  /** The newest unflushed state of a terminal, if any. */
  latest(terminalId: string): TerminalState | undefined {
    return this.pending.get(terminalId) ?? this.inFlight.get(terminalId);
  }

  /** Terminals whose unflushed beat is at or after `cutoff` (ms): online even before the flush writes it. */
  beatSince(cutoff: number): string[] {
    const ids = new Set<string>();
    for (const m of [this.pending, this.inFlight]) for (const [id, s] of m) if (s.at >= cutoff) ids.add(id);
    return [...ids];
  }

  get size(): number {
    return this.pending.size;
  }

  /** Terminals with a beat not yet written (pending or being flushed). */
  ids(): string[] {
    return [...new Set([...this.pending.keys(), ...this.inFlight.keys()])];
  }

  /**
   * Hands the pending beats to `write` and clears them. If the write fails, the beats
   * go back (unless a newer one arrived meanwhile) so the next flush retries them.
   */
  async drain(write: (batch: Map<string, TerminalState>) => Promise<number>): Promise<number> {
    if (this.pending.size === 0) return 0;
    this.inFlight = this.pending;
    this.pending = new Map();
    try {
      return await write(this.inFlight);
    } catch (err) {
      for (const [id, s] of this.inFlight) if (!this.pending.has(id)) this.pending.set(id, s);
      throw err;
    } finally {
      this.inFlight = new Map();
    }
  }
}

/**
 * Keeps whichever of the stored state `a` (it may come from another origin process) and
 * this process's unflushed beat `b` is newer. On a tie the unflushed beat wins: it arrived
 * later, and the flush (`<=` on the time) will write it over the stored one too.
 */
export function newerState(a: TerminalState | null | undefined, b: TerminalState | null | undefined): TerminalState | null {
  if (!a) return b ?? null;
  if (!b) return a;
  return b.at >= a.at ? b : a;
}
