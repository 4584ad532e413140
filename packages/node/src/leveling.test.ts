import { describe, expect, it } from 'vitest';
import { levelOffsets, modelledPeak, type LevelUnit } from './leveling';

const MIN = 60_000;
const aligned = (units: readonly LevelUnit[]) => new Map(units.map((u) => [u.id, 0]));

describe('load leveling of capture times', () => {
  it('spreads equal volumes evenly over their interval, the first on the clock', () => {
    const units = ['a', 'b', 'c', 'd'].map((id) => ({ id, everyMs: 15 * MIN, weightBytes: 100e6 }));
    const plan = levelOffsets(units, null);
    const offsets = [...plan.offsets.values()].sort((x, y) => x - y);
    expect(offsets[0]).toBe(0);
    // 15 min over four volumes: a close every 3.75 min
    expect(offsets.map((o, i) => (i === 0 ? 0 : o - offsets[i - 1]))).toEqual([0, 225_000, 225_000, 225_000]);
    // four bursts apart instead of one burst four times as high
    expect(plan.peakBytesPerSecond).toBeCloseTo(modelledPeak(units, aligned(units), null) / 4, 3);
  });

  it('keeps the heavy volumes apart and shares a slot between light ones', () => {
    const link = 10e6; // 10 MB/s: 600 MB drains in 60 s
    const units: LevelUnit[] = [
      { id: 'big1', everyMs: 5 * MIN, weightBytes: 600e6 },
      { id: 'big2', everyMs: 5 * MIN, weightBytes: 600e6 },
      { id: 'small1', everyMs: 5 * MIN, weightBytes: 50e6 },
      { id: 'small2', everyMs: 5 * MIN, weightBytes: 50e6 },
    ];
    const { offsets, peakBytesPerSecond } = levelOffsets(units, link);
    const gap = Math.abs(offsets.get('big1')! - offsets.get('big2')!);
    expect(Math.min(gap, 5 * MIN - gap)).toBeGreaterThanOrEqual(60_000); // their drains do not overlap
    for (const s of ['small1', 'small2']) {
      for (const b of ['big1', 'big2']) {
        const d = (offsets.get(s)! - offsets.get(b)! + 5 * MIN) % (5 * MIN);
        expect(d >= 60_000 || d < 0).toBe(true); // a small one does not start inside a big one's drain
      }
    }
    // the link never carries more than its rate in the model: every burst drains on its own
    expect(peakBytesPerSecond).toBeLessThanOrEqual(link * 1.0001);
    // aligned: both big drains at the link's rate plus the small ones (50 MB over their
    // minimum burst, half of an even share of 5 min over four: 37.5 s)
    expect(modelledPeak(units, aligned(units), link)).toBeCloseTo(2 * link + (2 * 50e6) / 37.5, -3);
  });

  it('levels volumes of different intervals on their common period', () => {
    const units: LevelUnit[] = [
      { id: 'hourly', everyMs: 60 * MIN, weightBytes: 200e6 },
      { id: 'quarter', everyMs: 15 * MIN, weightBytes: 200e6 },
      { id: 'five', everyMs: 5 * MIN, weightBytes: 200e6 },
    ];
    const { offsets, peakBytesPerSecond } = levelOffsets(units, 20e6); // 10 s drains
    for (const u of units) expect(offsets.get(u.id)!).toBeGreaterThanOrEqual(0), expect(offsets.get(u.id)!).toBeLessThan(u.everyMs);
    // the five-minute volume's closes never coincide with the others'
    const five = offsets.get('five')!;
    for (const other of ['hourly', 'quarter']) expect((offsets.get(other)! - five) % (5 * MIN)).not.toBe(0);
    // each burst lasts at least half an even share of 5 min over three (50 s): 4 MB/s; none overlap once leveled
    expect(peakBytesPerSecond).toBeCloseTo(4e6, -3);
    expect(modelledPeak(units, aligned(units), 20e6)).toBeCloseTo(12e6, -3);
  });

  it('weighs a volume not measured yet as a typical one, and is deterministic', () => {
    const units: LevelUnit[] = [
      { id: 'x', everyMs: 10 * MIN, weightBytes: 100e6 },
      { id: 'new', everyMs: 10 * MIN, weightBytes: null }, // counts as 200e6, the median
      { id: 'y', everyMs: 10 * MIN, weightBytes: 300e6 },
      { id: 'z', everyMs: 10 * MIN, weightBytes: 200e6 },
    ];
    const a = levelOffsets(units, 5e6);
    const b = levelOffsets([...units].reverse(), 5e6);
    expect([...a.offsets.entries()].sort()).toEqual([...b.offsets.entries()].sort());
    expect(a.offsets.get('y')).toBe(0); // the heaviest stays on the clock's marks
    expect(new Set(a.offsets.values()).size).toBe(4);
  });

  it('one volume stays on the clock; nothing to level is no plan; a bad interval is refused', () => {
    expect(levelOffsets([{ id: 'only', everyMs: MIN, weightBytes: 5e6 }], null).offsets.get('only')).toBe(0);
    expect(levelOffsets([], null).offsets.size).toBe(0);
    expect(() => levelOffsets([{ id: 'bad', everyMs: 0, weightBytes: 1 }], null)).toThrow(/every must be a positive/);
  });

  it('gives seconds-scale schedules offsets on whole milliseconds inside the interval', () => {
    const units = Array.from({ length: 7 }, (_, i) => ({ id: `v${i}`, everyMs: 3000, weightBytes: (i + 1) * 1e6 }));
    const { offsets, peakBytesPerSecond } = levelOffsets(units, 8e6);
    for (const o of offsets.values()) expect(Number.isInteger(o) && o >= 0 && o < 3000).toBe(true);
    // 28 MB per 3 s on an 8 MB/s link: the drains must overlap somewhere, but far less than all at once
    expect(peakBytesPerSecond).toBeLessThan(modelledPeak(units, aligned(units), 8e6) / 2);
  });
});
