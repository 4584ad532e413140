import { describe, expect, it } from 'vitest';
import { lagGrowing, replicaHealth, sinkHealth, worst } from './health';

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

describe('the source volume in the verdict', () => {
  const ok = { state: 'connected', rpoAgeMs: 1000, rpoTargetMs: T } as const;
  const MiB = 1 << 20;
  it('broken while its closes keep failing or its disk is full; behind while the disk is nearly full', () => {
    expect(sinkHealth({ ...ok, volume: { closeFailing: { code: 'VOLUME_NO_SPACE', since: 0, attempts: 3 } } })).toEqual({ health: 'broken', reason: 'closes failing (VOLUME_NO_SPACE), retried' });
    expect(sinkHealth({ ...ok, volume: { disk: { freeBytes: MiB / 2, reserveBytes: MiB, warnBytes: 4 * MiB } } })).toEqual({ health: 'broken', reason: 'source disk full: writes refused' });
    expect(sinkHealth({ ...ok, volume: { disk: { freeBytes: 3 * MiB, reserveBytes: MiB, warnBytes: 4 * MiB } } })).toEqual({ health: 'behind', reason: 'source disk nearly full' });
    expect(sinkHealth({ ...ok, volume: { disk: { freeBytes: 4 * MiB, reserveBytes: MiB, warnBytes: 4 * MiB }, closeFailing: null } }).health).toBe('healthy');
    expect(sinkHealth({ ...ok, volume: { disk: { freeBytes: null, reserveBytes: MiB, warnBytes: 4 * MiB } } }).health).toBe('healthy'); // unknown: no verdict from it
    expect(sinkHealth({ ...ok, volume: {} }).health).toBe('healthy'); // an older node says nothing
  });
  it('a link down still names the link first', () => {
    expect(sinkHealth({ ...ok, state: 'disconnected', volume: { disk: { freeBytes: 0, reserveBytes: MiB, warnBytes: 4 * MiB } } }).reason).toBe('link disconnected');
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

describe('a replica volume on its own', () => {
  const none = { committedPoint: null, rpoTargetMs: null };
  it('broken once a commit that stopped half-way has left it between two points for 10 s; a commit still writing is no fault', () => {
    expect(replicaHealth({ ...none, betweenPoints: null }, 0)).toBeNull();
    expect(replicaHealth({ committedPoint: null }, 0)).toBeNull(); // an older node says nothing
    expect(replicaHealth({ ...none, betweenPoints: { n: 7, forMs: 300, stalled: true } }, 0)).toBeNull();
    expect(replicaHealth({ ...none, betweenPoints: { n: 7, forMs: 600_000, stalled: false } }, 0)).toBeNull(); // a large commit under way
    expect(replicaHealth({ ...none, betweenPoints: { n: 7, forMs: 9_000, stalled: true } }, 0, 2_000)).toEqual({ health: 'broken', reason: 'between points: the commit of #7 (begun 11 s ago) stopped half-way' });
  });
  it("by its point's age against the volume's RPO target, as a sink (the primary's site lost, this is what is left)", () => {
    const held = (ageMs: number, rpoTargetMs: number | null) => replicaHealth({ betweenPoints: null, committedPoint: { n: 9, scheduledAt: 1_000_000 - ageMs, closedAt: null, committedAt: null }, rpoTargetMs }, 1_000_000);
    expect(held(T, T)).toBeNull();
    expect(held(T + 1, T)).toEqual({ health: 'behind', reason: 'RPO age over target' });
    expect(held(2 * T + 1, T)).toEqual({ health: 'broken', reason: 'RPO age over 2x target' });
    expect(held(100 * T, null)).toBeNull(); // no target: nothing to judge by
    expect(replicaHealth({ betweenPoints: null, committedPoint: null, rpoTargetMs: T }, 1_000_000)).toBeNull(); // nothing held yet
  });
  it("reads that age on the primary's clock when this node's differs from it: no false alarm, no false calm", () => {
    // The point was scheduled T/2 ago by the primary's clock. This node's clock is 3 T ahead
    // (by it the point is 3.5 T old: "broken") or 3 T behind (-2.5 T: calm however old).
    const held = (clockAheadMs: number, trueAgeMs: number) =>
      replicaHealth({ betweenPoints: null, committedPoint: { n: 9, scheduledAt: 1_000_000 - clockAheadMs - trueAgeMs, closedAt: null, committedAt: null }, rpoTargetMs: T, primaryLink: { connected: null, lastSeenAt: null, demotedAt: null, clockAheadMs, clockOf: 'site-a' } }, 1_000_000);
    expect(held(3 * T, T / 2)).toBeNull();
    expect(held(-3 * T, 2 * T + 1)).toEqual({ health: 'broken', reason: 'RPO age over 2x target' });
  });
});
