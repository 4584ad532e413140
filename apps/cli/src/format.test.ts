import { describe, expect, it } from 'vitest';
import type { NodeStatus, VolumeView } from '@headstart/node';
import { formatStatus } from './format';

const now = Date.parse('2026-12-06T10:00:00Z');
const volume = (extra: Partial<VolumeView>): VolumeView =>
  ({
    name: 'db', group: null, groupWait: null, betweenPoints: null, role: 'primary', epoch: 1, size: 1 << 30, blockSize: 4096, openSnapshot: 7, latestClosed: 6,
    nextCloseAt: now + 40_000, levelOffsetMs: null, committed: null, primaryLink: null, rpoTargetMs: null, dirtyBytes: 0, policy: 'predictive', planner: null,
    sinks: [], history: [], lastVerify: null, verifyDeferred: 0, closeFailing: null, disk: { freeBytes: null, reserveBytes: 1 << 20, warnBytes: 4 << 20 }, ...extra,
  }) as VolumeView;
const status = (v: VolumeView): NodeStatus => ({ node: 'site-a', time: now, listen: { nbd: null, peers: null }, linkCaps: [], volumes: [v] });

describe('headstart status', () => {
  it('says where a leveled volume\'s points fall, and nothing for one on the clock', () => {
    expect(formatStatus(status(volume({ levelOffsetMs: 225_000 })))).toContain("next close in 40 s (leveled: 225 s after the clock's marks)");
    expect(formatStatus(status(volume({ levelOffsetMs: 1_500 })))).toContain('(leveled: 1.5 s after');
    expect(formatStatus(status(volume({})))).toMatch(/next close in 40 s, policy/);
  });

  it('says how much of the open point is over the planner\'s tracked blocks', () => {
    const planner = { D: 5 * 2 ** 30, untrackedBytes: 4 * 2 ** 30, restoredFrom: null } as VolumeView['planner'];
    expect(formatStatus(status(volume({ planner })))).toContain('D 5.0 GiB (4.0 GiB of it over the planner\'s tracked blocks: ships at the close), planner model new since start');
    expect(formatStatus(status(volume({ planner: { ...planner!, untrackedBytes: 0 } })))).not.toContain('tracked blocks');
  });

  it('gives sizes in the unit that reads best (1 GiB is not "1024.0 MiB")', () => {
    expect(formatStatus(status(volume({ size: 2 ** 30 })))).toContain('epoch 1, 1.0 GiB,');
    expect(formatStatus(status(volume({ size: 2 ** 40 })))).toContain('epoch 1, 1.0 TiB,');
    expect(formatStatus(status(volume({ size: 100 * 2 ** 20 })))).toContain('epoch 1, 100.0 MiB,');
  });

  it('names the away sink a nearly full disk keeps points for, and what to do', () => {
    const sink = (name: string, state: string, acked: number) => ({ name, state, acked, lastLagMs: null, lastCommitMs: null, rpoAgeMs: null, throughput: 0, notConverging: false, lastError: null }) as unknown as VolumeView['sinks'][number];
    const low = { freeBytes: 3 << 20, reserveBytes: 1 << 20, warnBytes: 4 << 20 };
    const out = formatStatus(status(volume({ latestClosed: 40, disk: low, sinks: [sink('site-c', 'connected', 39), sink('site-b', 'disconnected', 12)] })));
    expect(out).toContain('DISK NEARLY FULL');
    expect(out).toContain("28 point(s) are kept for sink site-b (link disconnected, last committed 12): if it stays away, take it out of the volume's sinks and restart");
    expect(formatStatus(status(volume({ latestClosed: 40, disk: low, sinks: [sink('site-c', 'connected', 12)] })))).not.toContain('are kept for sink');
    expect(formatStatus(status(volume({ latestClosed: 40, sinks: [sink('site-b', 'disconnected', 12)] })))).not.toContain('are kept for sink');
  });

  it('says a sink catches up, and counts only the points it still reads as kept for it', () => {
    const sink = (catchUpTo: number) => ({ name: 'site-b', state: 'disconnected', acked: 12, catchUpTo, lastLagMs: null, lastCommitMs: null, rpoAgeMs: null, throughput: 0, notConverging: false, lastError: null }) as unknown as VolumeView['sinks'][number];
    const low = { freeBytes: 3 << 20, reserveBytes: 1 << 20, warnBytes: 4 << 20 };
    const atLatest = formatStatus(status(volume({ latestClosed: 40, disk: low, sinks: [sink(40)] })));
    expect(atLatest).toContain('sink site-b: link disconnected, last committed 12 (catching up: next point 40, straight from 12), lag');
    expect(atLatest).not.toContain('are kept for sink');
    // A catch-up begun (to 30) is not moved: the points after it are kept as usual.
    expect(formatStatus(status(volume({ latestClosed: 40, disk: low, sinks: [sink(30)] })))).toContain('11 point(s) are kept for sink site-b');
  });

  it('says when scheduled verifications wait for a sink that is behind', () => {
    expect(formatStatus(status(volume({ verifyDeferred: 3 })))).toContain('verification: the last 3 scheduled one(s) deferred: a sink has not committed the latest point yet (a backlog)');
    expect(formatStatus(status(volume({})))).not.toContain('deferred');
  });

  it('says whether a replica\'s primary is connected, when it was last seen, or that it demoted', () => {
    const replica = (primaryLink: VolumeView['primaryLink']) => formatStatus(status(volume({ role: 'replica', committed: { n: 6, scheduledAt: now - 60_000 }, primaryLink })));
    expect(replica({ connected: 'site-a at 10.0.0.1:40112', lastSeenAt: now - 2_000, demotedAt: null })).toContain('committed point 6 (RPO age 60.0 s), primary connected (site-a at 10.0.0.1:40112)');
    expect(replica({ connected: null, lastSeenAt: now - 42_000, demotedAt: null })).toContain('primary not connected (last seen 42.0 s ago)');
    expect(replica({ connected: null, lastSeenAt: now - 5_000, demotedAt: now - 5_000 })).toContain('primary demoted 5.0 s ago');
    expect(replica({ connected: null, lastSeenAt: null, demotedAt: null })).toContain('primary not seen since this node started');
  });

  it("flags a replica's point older than the volume's RPO target, as a sink's", () => {
    const replica = (rpoTargetMs: number | null) => formatStatus(status(volume({ role: 'replica', committed: { n: 6, scheduledAt: now - 60_000 }, rpoTargetMs })));
    expect(replica(30_000)).toContain('committed point 6 (RPO age 60.0 s, over target!)');
    expect(replica(90_000)).toContain('committed point 6 (RPO age 60.0 s),');
    expect(replica(null)).toContain('committed point 6 (RPO age 60.0 s),');
  });

  it("says that the replica's clock differs from its primary's, and reads the RPO age on the primary's clock", () => {
    // The point was scheduled 60 s ago by site-a's clock; this node's clock is 5 min behind
    // site-a's (its own reading would be -240 s), or 90 s ahead (150 s: a false alarm).
    const replica = (clockAheadMs: number | null) =>
      formatStatus(status(volume({ role: 'replica', committed: { n: 6, scheduledAt: now - clockAheadMs! - 60_000 }, primaryLink: { connected: 'site-a at 10.0.0.1:40112', lastSeenAt: now, demotedAt: null, clockAheadMs, clockOf: 'site-a' } })));
    expect(replica(-300_000)).toContain("committed point 6 (RPO age 60.0 s), primary connected (site-a at 10.0.0.1:40112); CLOCKS DIFFER: this node's clock is 300.0 s behind site-a's");
    expect(replica(90_000)).toContain("committed point 6 (RPO age 60.0 s), primary connected (site-a at 10.0.0.1:40112); CLOCKS DIFFER: this node's clock is 90.0 s ahead of site-a's");
    expect(replica(null)).not.toContain('CLOCKS DIFFER');
  });

  it("names a group member's committed point by its time too (members number their points apart)", () => {
    const member = formatStatus(status(volume({ role: 'replica', group: 'app', committed: { n: 6, scheduledAt: now - 60_000 }, primaryLink: null })));
    expect(member).toContain('committed point 6 of 2026-12-06T09:59:00.000Z (RPO age 60.0 s)');
    expect(formatStatus(status(volume({ role: 'replica', committed: { n: 6, scheduledAt: now - 60_000 }, primaryLink: null })))).toContain('committed point 6 (RPO age 60.0 s)');
  });

  it("says that a group member's commit includes its wait for the group (not only the replica's disk)", () => {
    const sink = { name: 'site-b', state: 'connected', acked: 6, lastLagMs: 11_400, lastCommitMs: 7_300, rpoAgeMs: 13_000, throughput: 160_000, notConverging: false, lastError: null } as unknown as VolumeView['sinks'][number];
    expect(formatStatus(status(volume({ group: 'app', sinks: [sink] })))).toContain('lag 11.4 s (its commit 7.3 s, with its wait for group app), RPO age 13.0 s');
    expect(formatStatus(status(volume({ sinks: [sink] })))).toContain('lag 11.4 s (its commit 7.3 s), RPO age 13.0 s');
  });

  it('says when a replica is stuck between two points, and when a long commit is only writing', () => {
    const replica = (since: number, stalled: boolean) => volume({ role: 'replica', committed: { n: 6, scheduledAt: now - 60_000 }, betweenPoints: { n: 7, since, stalled } });
    expect(formatStatus(status(replica(now - 95_000, true)))).toContain('BETWEEN POINTS: the commit of point 7 (begun 95.0 s ago) stopped half-way; reads of the export wait');
    expect(formatStatus(status(replica(now - 95_000, false)))).toContain('committing point 7: writing the image for 95.0 s; reads of the export wait until it is done');
    expect(formatStatus(status(replica(now - 95_000, false)))).not.toContain('BETWEEN POINTS');
    expect(formatStatus(status(replica(now - 200, false)))).not.toContain('committing point');
  });
});
