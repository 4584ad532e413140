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
    expect(sinkHealth({ state: 'connected', rpoAgeMs: 1000, rpoTargetMs: T }, [20_000, 24_000, 28_000, 32_000]).health).toBe('behind');
    expect(sinkHealth({ state: 'connected', rpoAgeMs: 1000, rpoTargetMs: T }, [20_000, 34_000, 28_000, 32_000]).health).toBe('healthy');
  });
  it('behind when the node says the sink is not converging, even inside the RPO target', () => {
    expect(sinkHealth({ state: 'connected', rpoAgeMs: 1000, rpoTargetMs: T, notConverging: true })).toEqual({ health: 'behind', reason: 'not converging: writes outrun the link' });
    expect(sinkHealth({ state: 'connected', rpoAgeMs: 1000, rpoTargetMs: T, notConverging: false }).health).toBe('healthy');
    expect(sinkHealth({ state: 'connected', rpoAgeMs: 1000, rpoTargetMs: T, notConverging: null }).health).toBe('healthy');
  });
});

describe('lagGrowing', () => {
  it('needs a steady rise worth a tenth of the target, up to half the target', () => {
    expect(lagGrowing([25_000, 25_100, 25_200, 31_000], T)).toBe(true);
    expect(lagGrowing([25_000, 25_100, 25_200, 25_300], T)).toBe(false); // rising, but by noise
    expect(lagGrowing([200, 500, 900, 1200], 5000)).toBe(false); // rising, but far inside the target
    expect(lagGrowing([200, 900, 1800, 2600], 5000)).toBe(true);
    expect(lagGrowing([25_000, 40_000, 50_000], T)).toBe(false); // three points are no trend yet
    expect(lagGrowing([25_000, 30_000, 30_000, 40_000], T)).toBe(false); // not strictly rising
    expect(lagGrowing([1000, 2000, 3000, 4000], null)).toBe(true);
  });
});

describe('worst', () => {
  it('picks the worst verdict', () => {
    expect(worst(['healthy', 'behind', 'healthy'])).toBe('behind');
    expect(worst(['healthy', 'broken', 'behind'])).toBe('broken');
    expect(worst([])).toBe(null);
  });
});
