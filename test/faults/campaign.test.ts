/**
 * A short fault campaign (campaign.ts) on every CI run: every kind of fault at least once,
 * against real processes, real sockets and kill -9, for one volume and for a consistency
 * group of two. `npm run faults -- --quick [--group]` runs 50.
 */
import { describe, expect, it } from 'vitest';
import { DISK_FAULTS, FAULT_KINDS, runCampaign } from './campaign';

describe('fault campaign', () => {
  it('every kind of fault, no violation, no acknowledged byte lost', async () => {
    const r = await runCampaign({ faults: 20, seed: 1 + (Date.now() % 1000) });
    expect(r.problems, `seed ${r.seed}`).toEqual([]);
    expect(r.violations).toBe(0);
    expect(r.bytes_lost).toBe(0);
    // Every kind ran (the disk faults where a tmpfs can be mounted: as root, as on CI).
    const kinds = FAULT_KINDS.filter((k) => r.disk_faults || !DISK_FAULTS.includes(k));
    expect(Object.keys(r.by_kind).sort()).toEqual([...kinds].sort());
    if (r.disk_faults) expect(r.writes_refused, 'the full source disk refused writes').toBeGreaterThan(0);
    expect(r.points_checked, 'points compared with the source').toBeGreaterThanOrEqual(5);
    expect(r.writes_acked).toBeGreaterThan(100);
  }, 240_000);

  it('a consistency group under faults: after every replica restart both volumes hold one point', async () => {
    const r = await runCampaign({ faults: 16, seed: 1 + (Date.now() % 1000), group: true });
    expect(r.problems, `seed ${r.seed}`).toEqual([]);
    expect(r.bytes_lost).toBe(0);
    expect(r.group_restarts_checked, 'restarts where both held a point of the group').toBeGreaterThanOrEqual(1);
  }, 240_000);
});
