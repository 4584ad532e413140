/** Per-run summaries of the DESIGN's figures: redundancy (mean, p99) and lag (mean, p50, p99). */
import type { SnapshotFigures } from './simulate';

export interface PolicyFigures {
  readonly redundancy_mean: number;
  readonly redundancy_p99: number;
  readonly lag_mean_s: number;
  readonly lag_p50_s: number;
  readonly lag_p99_s: number;
}

/** Nearest-rank percentile of a sorted list. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

const mean = (xs: readonly number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);

/** Snapshots with no dirty block have no redundancy (0/0) but still a lag. */
export function summarise(snapshots: readonly SnapshotFigures[]): PolicyFigures {
  const red = snapshots.filter((s) => s.M > 0).map((s) => s.S / s.M).sort((a, b) => a - b);
  const lag = snapshots.map((s) => s.lag).sort((a, b) => a - b);
  return {
    redundancy_mean: red.length === 0 ? 1 : mean(red),
    redundancy_p99: red.length === 0 ? 1 : percentile(red, 99),
    lag_mean_s: mean(lag),
    lag_p50_s: percentile(lag, 50),
    lag_p99_s: percentile(lag, 99),
  };
}
