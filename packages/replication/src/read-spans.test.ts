/**
 * readSpans: how the source reads a closed point's scattered dirty blocks, a span at a time.
 * Pure; the end-to-end proof that only dirty blocks are taken is every replication test.
 */
import { describe, expect, it } from 'vitest';
import { readSpans } from './source-session';

const spans = (runs: [number, number][], max: number, gap: number) => [...readSpans(runs, max, gap)].map((s) => ({ ...s, runs: s.runs.map((r) => [...r]) }));

describe('readSpans', () => {
  it('joins runs whose gap is at most the limit, and keeps each run to take', () => {
    expect(spans([[0, 1], [3, 2], [20, 1]], 256, 16)).toEqual([
      { first: 0, count: 21, runs: [[0, 1], [3, 2], [20, 1]] },
    ]);
    // a gap of 17 > 16 starts a new span
    expect(spans([[0, 1], [18, 1]], 256, 16)).toEqual([
      { first: 0, count: 1, runs: [[0, 1]] },
      { first: 18, count: 1, runs: [[18, 1]] },
    ]);
  });

  it('never makes a span longer than the read size', () => {
    const runs: [number, number][] = Array.from({ length: 100 }, (_, i) => [i * 3, 1]);
    const out = spans(runs, 32, 16);
    for (const s of out) expect(s.count).toBeLessThanOrEqual(32);
    // every run is in exactly one span, in order, inside it
    expect(out.flatMap((s) => s.runs)).toEqual(runs);
    for (const s of out) for (const [f, c] of s.runs) expect(f >= s.first && f + c <= s.first + s.count).toBe(true);
    // 11 runs a span (blocks 0-30, 33-63, ...): 100 runs in 10 reads instead of 100
    expect(out.map((s) => s.runs.length)).toEqual([11, 11, 11, 11, 11, 11, 11, 11, 11, 1]);
  });

  it('with a gap of 0 joins only touching runs; nothing in, nothing out', () => {
    expect(spans([[0, 2], [2, 2], [5, 1]], 256, 0)).toEqual([
      { first: 0, count: 4, runs: [[0, 2], [2, 2]] },
      { first: 5, count: 1, runs: [[5, 1]] },
    ]);
    expect(spans([], 256, 16)).toEqual([]);
  });
});
