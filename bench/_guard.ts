// The regression guard's rules (bench/all.ts): which figure of each benchmark is watched, which
// way is better, and when a change is flagged. Not a benchmark itself (run-bench skips "_" files).

export type Json = Record<string, any>;
interface Figure {
  name: string;
  /** The figure from the bench's last line; undefined if the line lacks it. */
  of(last: Json): number | undefined;
  better: 'higher' | 'lower';
}

const byBackend = (last: Json, backend: string) => (last.results as Json[] | undefined)?.find((r) => r.backend === backend);
const per = (a: unknown, b: unknown) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? a / b : undefined);

/** What each benchmark is judged by. */
export const FIGURES: Record<string, Figure[]> = {
  transfer: [{ name: 'transfer.ratio', of: (j) => j.ratio, better: 'higher' }],
  swarm: [
    { name: 'swarm.ratio_to_bound', of: (j) => j.ratio_to_bound, better: 'lower' },
    // Until the last fetch also settled with the origin (receipts, end report, holdings), #19.
    { name: 'swarm.settled_ratio_to_bound', of: (j) => per(j.settled_seconds, j.bound_seconds), better: 'lower' },
    { name: 'swarm.origin_bytes_over_file', of: (j) => j.origin_bytes_over_file, better: 'lower' },
  ],
  settle: [
    { name: 'settle.pglite.ratio', of: (j) => byBackend(j, 'pglite')?.ratio, better: 'higher' },
    { name: 'settle.postgres.ratio', of: (j) => byBackend(j, 'postgres')?.ratio, better: 'higher' },
  ],
  schedule: [
    { name: 'schedule.plan_vs_baseline', of: (j) => j.plan_vs_baseline, better: 'lower' },
    { name: 'schedule.dispatch_vs_sort', of: (j) => j.dispatch_vs_sort, better: 'higher' },
  ],
  'schedule-live': [{ name: 'schedule-live.opening_vs_plans', of: (j) => per(j.opening_step_ms, j.baseline_plan_ms), better: 'lower' }],
  cli: [
    { name: 'cli.help_vs_node', of: (j) => per(j.help_ms, j.node_ms), better: 'lower' },
    { name: 'cli.wallet_vs_node', of: (j) => per(j.wallet_ms, j.node_ms), better: 'lower' },
    { name: 'cli.origin_start_vs_node', of: (j) => per(j.origin_start_ms, j.node_ms), better: 'lower' },
  ],
  reservations: [{ name: 'reservations.ratio', of: (j) => j.ratio, better: 'higher' }],
  live: [
    { name: 'live.admit_ratio', of: (j) => j.admit_ratio, better: 'higher' },
    { name: 'live.p95_vs_ffmpeg', of: (j) => per(j.latency_p95_s, j.baseline_ffmpeg_p95_s), better: 'lower' },
  ],
  watermark: [
    { name: 'watermark.ab_serve_ratio', of: (j) => j.ab_serve_ratio, better: 'higher' },
    { name: 'watermark.image_psnr_db', of: (j) => j.image_psnr_db, better: 'higher' },
  ],
  memory: [
    { name: 'memory.pglite_idle_vs_node', of: (j) => per(j.pglite_idle_mb, j.node_baseline_mb), better: 'lower' },
    { name: 'memory.postgres_idle_vs_node', of: (j) => per(j.postgres_idle_mb, j.node_baseline_mb), better: 'lower' },
    // The heap kept after a full collection: the resident-set delta per terminal is too noisy to judge.
    { name: 'memory.per_terminal_heap_bytes', of: (j) => j.per_terminal_heap_bytes, better: 'lower' },
  ],
};

/** Worse by more than this fraction is flagged. */
export const TOLERANCE = 0.15;

/** current against recorded, oriented so that below 1 is worse; flagged under 1 − TOLERANCE. */
export function judge(current: number, recorded: number, better: 'higher' | 'lower'): { change: number; flagged: boolean } {
  const change = better === 'higher' ? current / recorded : recorded / current;
  return { change, flagged: !(change >= 1 - TOLERANCE) };
}

