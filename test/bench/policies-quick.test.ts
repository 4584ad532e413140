/**
 * bench:policies in CI, cut short: the suite runs end to end on the real engine and prints
 * the JSON the acceptance check reads. Only its shape and what does not depend on the
 * machine's speed are checked here (the peak and the targets are the benchmark's to report).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');

describe('npm run bench:policies -- --quick --json', () => {
  it('runs aligned and leveled, capped and not, and prints the figures', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(root, 'bench', 'run.ts'), 'policies', '--quick', '--json', '--volumes', '3', '--intervals', '3'], { cwd: root, maxBuffer: 1 << 24 });
    const j = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown> & { uncapped: Record<string, Record<string, unknown>>; capped: Record<string, Record<string, unknown>> };
    expect(j).toMatchObject({ volumes: 3, interval_s: 4, intervals: 3, policy: 'predictive' });
    expect(typeof j.peak_load_ratio).toBe('number');
    expect(typeof j.targets_missed).toBe('number');
    for (const pair of [j.uncapped, j.capped]) {
      for (const run of [pair.aligned, pair.leveled]) {
        expect(run.points_committed as number).toBeGreaterThanOrEqual(6); // 3 volumes x 3 intervals, less the first
        expect(run.peak_bytes_per_s as number).toBeGreaterThan(0);
      }
      // Aligned volumes stay on the clock; leveled ones get three different offsets.
      expect(Object.values(pair.aligned.offsets_ms as object)).toEqual([null, null, null]);
      expect(new Set(Object.values(pair.leveled.offsets_ms as object)).size).toBe(3);
    }
  }, 180_000);
});
