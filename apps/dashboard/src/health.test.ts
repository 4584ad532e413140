import { describe, expect, it } from 'vitest';
import { lagGrowing, sinkHealth, worst } from './health';

const T = 60_000;

describe('sinkHealth', () => {
  it('broken when the link is not connected, whatever the figures', () => {
    for (const state of ['connecting', 'disconnected', 'fenced', 'error'] as const) {
      expect(sinkHealth({ state, rpoAgeMs: 1, rpoTargetMs: T }).health).toBe('broken');
    }
  });
  it('by RPO age against the target: within, over, over twice', () => {
    expect(sinkHealth({ state: 'connected', rpoAgeMs: T, rpoTargetMs: T }).health).toBe('healthy');
    expect(sinkHealth({ state: 'connected', rpoAgeMs: T + 1, rpoTargetMs: T }).health).toBe('behind');
    expect(sinkHealth({ state: 'connected', rpoAgeMs: 2 * T, rpoTargetMs: T }).health).toBe('behind');
    expect(sinkHealth({ state: 'connected', rpoAgeMs: 2 * T + 1, rpoTargetMs: T }).health).toBe('broken');
  });
  it('behind while nothing is committed yet, or when lag keeps growing', () => {
    expect(sinkHealth({ state: 'connected', rpoAgeMs: null, rpoTargetMs: T }).health).toBe('behind');
    expect(sinkHealth({ state: 'connected', rpoAgeMs: 1000, rpoTargetMs: T }, [1000, 5000, 9000]).health).toBe('behind');
    expect(sinkHealth({ state: 'connected', rpoAgeMs: 1000, rpoTargetMs: T }, [9000, 5000, 9000]).health).toBe('healthy');
  });
});

describe('lagGrowing', () => {
  it('needs a steady rise worth a tenth of the target', () => {
    expect(lagGrowing([100, 200, 300], T)).toBe(false); // rising, but by noise
    expect(lagGrowing([0, 3000, 6001], T)).toBe(true);
    expect(lagGrowing([0, 7000], T)).toBe(false); // two points are no trend
    expect(lagGrowing([0, 3000, 3000, 7000], T)).toBe(false); // the newest three are not strictly rising
    expect(lagGrowing([1000, 2000, 3000], null)).toBe(true);
  });
});

describe('worst', () => {
  it('picks the worst verdict', () => {
    expect(worst(['healthy', 'behind', 'healthy'])).toBe('behind');
    expect(worst(['healthy', 'broken', 'behind'])).toBe('broken');
    expect(worst([])).toBe(null);
  });
});
