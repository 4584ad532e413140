import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createVolume, openVolume, type Volume } from '@headstart/volume';
import type { PresendView } from '@headstart/replication';
import { LinkGauge, predictivePolicy } from './predictive';

const BS = 4096;

describe('LinkGauge: which throughput readings measure the link', () => {
  it('starts at the configured cap and never goes above it', () => {
    const g = new LinkGauge(1000, 5000, 250);
    expect(g.bytesPerSecond).toBe(1000);
    g.observe(0, 5000, true);
    expect(g.bytesPerSecond).toBe(1000);
  });

  it('counts the cap in wire bytes: a compressed link carries cap / wire ratio of payload', () => {
    const g = new LinkGauge(1000, 5000, 250);
    g.observe(0, 3500, false, 0.25); // payload at 3.5x the cap, a quarter of it on the wire
    expect(g.bytesPerSecond).toBe(3500);
    g.observe(100, 5000, false, 0.25);
    expect(g.bytesPerSecond).toBe(4000);
    // The data stopped compressing: the ceiling comes down with the ratio, reading or not.
    g.observe(200, 0, false, 1);
    expect(g.bytesPerSecond).toBe(1000);
    // A plain link's framing costs a little: a little less payload than the cap.
    g.observe(300, 1000, false, 1.25);
    expect(g.bytesPerSecond).toBe(800);
  });

  it('a reading taken while the planner held back can only raise the figure', () => {
    const g = new LinkGauge(undefined, 5000, 250);
    g.observe(0, 800, false);
    expect(g.bytesPerSecond).toBe(800);
    g.observe(100, 200, false); // the link idled: not its capacity
    expect(g.bytesPerSecond).toBe(800);
    g.observe(200, 900, false);
    expect(g.bytesPerSecond).toBe(900);
  });

  it('a reading after a whole window of full budgets lowers it', () => {
    const g = new LinkGauge(1000, 5000, 250);
    for (let t = 0; t < 5000; t += 100) g.observe(t, 600, true);
    expect(g.bytesPerSecond).toBe(1000); // not a whole window yet
    g.observe(5000, 600, true);
    expect(g.bytesPerSecond).toBe(600);
    // A gap in the shipper's calls (nothing pending): the link may have idled; start over.
    g.observe(6000, 300, true);
    expect(g.bytesPerSecond).toBe(600);
  });
});

describe('predictivePolicy on a real volume', () => {
  const dirs: string[] = [];
  const volumes: Volume[] = [];
  afterEach(async () => {
    for (const v of volumes.splice(0)) await v.shutdown();
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  async function volume(): Promise<Volume> {
    const dir = await mkdtemp(join(tmpdir(), 'hs-predictive-'));
    dirs.push(dir);
    const v = await createVolume(join(dir, 'vol'), { id: 'vol', name: 'vol', size: 1 << 20, blockSize: BS });
    volumes.push(v);
    return v;
  }

  const view = (v: Volume, pending: Set<number>, throughput = 0): PresendView => ({ snapshot: v.openSnapshot, blockSize: BS, pending, throughput });

  it('plans in the workload\'s time when the replay is time-compressed, and reports in wall time', async () => {
    const v = await volume();
    const now = Date.now();
    // A close 10 wall seconds away at 60x is 600 s of workload time.
    const p = predictivePolicy({ volume: v, linkHint: 60 * BS, timeScale: 60, nextCloseAt: () => now + 10_000 });
    // Asked after it exists (its clock never goes back to before then: on a loaded CI machine
    // creating it took 195 ms, and a bound of 0.1 s failed): the wall seconds left, not 60x them.
    const asked = Date.now();
    const s = p.status(asked);
    expect(s.TS).toBeCloseTo((now + 10_000 - asked) / 1000, 3);
    expect(s.B).toBeCloseTo(60 * BS, 6); // bytes per wall second, as configured
    expect(() => predictivePolicy({ volume: v, timeScale: 0, nextCloseAt: () => null })).toThrow(RangeError);
    p.dispose();
  });

  it('takes a compressed link for what it carries in payload, not for its cap', async () => {
    const v = await volume();
    const start = Date.now();
    const p = predictivePolicy({ volume: v, linkHint: 100 * BS, nextCloseAt: () => start + 60_000 });
    await v.write(0, Buffer.alloc(BS, 1));
    expect(p.status(start).B).toBe(100 * BS);
    // The shipper measured 300 blocks a second of payload through the cap, at a wire ratio of 0.25.
    p.next(start + 1000, BS, { ...view(v, new Set([0]), 300 * BS), wireRatio: 0.25 });
    expect(p.status(start + 1000).B).toBe(300 * BS);
    p.dispose();
  });

  it('pre-sends only blocks the shipper holds as pending, and leaves closed points to it', async () => {
    const v = await volume();
    const start = Date.now();
    const p = predictivePolicy({ volume: v, linkHint: 1e9, nextCloseAt: () => start + 60_000 });
    await v.write(0, Buffer.alloc(4 * BS, 1));
    // A second before the close, nothing is likely to be rewritten in time: blocks 0-3 may
    // all go, but the shipper holds only 1 and 2.
    const picked = p.next(start + 59_000, 1 << 20, view(v, new Set([1, 2])));
    expect([...picked].sort()).toEqual([1, 2]);
    // 0 and 3 went back to the planner: offered again at its next replan (0.5 s: 1/120 of
    // the interval), now that the shipper holds them.
    expect(p.next(start + 59_010, 1 << 20, view(v, new Set([0, 3])))).toEqual([]);
    const again = p.next(start + 59_999, 1 << 20, view(v, new Set([0, 3])));
    expect([...again].sort()).toEqual([0, 3]);
    expect(p.status(start + 59_999).presentBytes).toBe(4 * BS);
    // The close: nothing of the closed point comes back from the policy, its backlog is 0
    // (everything was pre-sent) and the next point starts clean.
    const point = await v.closeSnapshot({ scheduledAt: Date.now() });
    p.onClose(point.n, point.closedAt, start + 120_000);
    const s = p.status(start + 60_000);
    expect(s.open).toBe(point.n + 1);
    expect(s.closedBytes).toBe(0);
    expect(s.presentBytes).toBe(0);
    expect(p.next(start + 61_000, 1 << 20, view(v, new Set()))).toEqual([]);
    p.dispose();
  });

  it('catches up with points closed without it (a sink\'s first copy closes one itself) at the next close it is told of', async () => {
    const v = await volume();
    const start = Date.now();
    const p = predictivePolicy({ volume: v, linkHint: 1e9, nextCloseAt: () => start + 60_000 });
    const first = p.status(start).open;
    await v.write(0, Buffer.alloc(2 * BS, 1));
    // Closed by the volume itself, as addSink does for a sink's full copy: no onClose.
    await v.addSink('fresh');
    expect(v.openSnapshot).toBe(first + 1);
    expect(p.status(start).open).toBe(first);
    await v.write(8 * BS, Buffer.alloc(BS, 2));
    const point = await v.closeSnapshot({ scheduledAt: Date.now() });
    p.onClose(point.n, point.closedAt, start + 120_000);
    const s = p.status(start + 1000);
    expect(s.open).toBe(point.n + 1);
    expect(s.dirtyBytes).toBe(0);
    // And it plans the new point: a block written now is offered before its close.
    await v.write(16 * BS, Buffer.alloc(BS, 3));
    expect(p.next(start + 119_999, 1 << 20, view(v, new Set([16])))).toEqual([16]);
    p.dispose();
  });

  it('keeps zeroes (trim, write-zeroes) out of the planner and offers them when the link has room', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-predictive-'));
    dirs.push(dir);
    const size = 256 << 20;
    const v = await createVolume(join(dir, 'big'), { id: 'big', name: 'big', size, blockSize: BS });
    volumes.push(v);
    // A device that held data (zeroes over zeroes are no write at all: volume.test.ts).
    for (let at = 0; at < size; at += 8 << 20) await v.write(at, Buffer.alloc(8 << 20, 1));
    await v.closeSnapshot({ scheduledAt: Date.now() });
    const start = Date.now();
    const p = predictivePolicy({ volume: v, linkHint: 1e9, nextCloseAt: () => start + 60_000 });
    // mkfs.ext4 discards the whole device first: 65,534 blocks that go as flags (all but
    // blocks 100-101, zeroed in the next point below).
    await v.trim(0, 100 * BS);
    await v.trim(102 * BS, size - 102 * BS);
    await v.write(10 * BS, Buffer.alloc(BS, 7)); // data over the zeroes: the planner's block
    const s = p.status(start + 1000);
    expect(s.D).toBe(BS);
    expect(s.dirtyBytes).toBe(BS);
    expect(s.memoryBytes).toBeLessThan(2 << 20);
    // Long before the close the planner holds its block back; the zeroed blocks go, in
    // order, as many as the budget has room for, each once, and only those still pending.
    const pending = new Set([...Array(64).keys()].filter((b) => b !== 3));
    const first = p.next(start + 1000, 16 * BS, view(v, pending));
    expect([...first]).toEqual([0, 1, 2, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17]);
    const second = p.next(start + 1010, 4 * BS, view(v, pending));
    expect([...second]).toEqual([18, 19, 20, 21]);
    // A zeroing after the close belongs to the next point; the closed one's are the shipper's.
    const point = await v.closeSnapshot({ scheduledAt: Date.now() });
    p.onClose(point.n, point.closedAt, start + 120_000);
    expect(p.next(start + 61_000, 4 * BS, view(v, pending))).toEqual([]);
    await v.writeZeroes(100 * BS, 2 * BS);
    expect([...p.next(start + 61_010, 4 * BS, view(v, new Set([100, 101, 102])))]).toEqual([100, 101]);
    p.dispose();
  });

  it('tracks maxOpenBlocks of the open point, says so once, and leaves the rest to the close', async () => {
    const v = await volume();
    const start = Date.now();
    const told: [number, number][] = [];
    const make = () => predictivePolicy({ volume: v, linkHint: 1e9, maxOpenBlocks: 16, onUntracked: (n, limit) => told.push([n, limit]), nextCloseAt: () => start + 60_000 });
    const p = make();
    await v.write(0, Buffer.alloc(20 * BS, 1));
    await v.write(30 * BS, Buffer.alloc(4 * BS, 2));
    await v.write(18 * BS, Buffer.alloc(BS, 3)); // a rewrite of an untracked block
    expect(told).toEqual([[v.openSnapshot, 16]]);
    let s = p.status(start + 1000);
    expect([s.dirtyBytes, s.untrackedBytes]).toEqual([24 * BS, 8 * BS]);
    // Just before the close everything tracked may go; nothing untracked does, pending or not.
    const all = new Set([...Array(64).keys()]);
    const picked = [...p.next(start + 59_990, 1 << 20, view(v, all))].sort((a, b) => a - b);
    expect(picked).toEqual([...Array(16).keys()]);
    p.dispose();
    // A restart in mid-interval hears the open point's writes from the write log: the same.
    const q = make();
    s = q.status(start + 1000);
    expect([s.dirtyBytes, s.untrackedBytes]).toEqual([24 * BS, 8 * BS]);
    expect(told).toEqual([[v.openSnapshot, 16], [v.openSnapshot, 16]]);
    const point = await v.closeSnapshot({ scheduledAt: Date.now() });
    q.onClose(point.n, point.closedAt, start + 120_000);
    expect(q.status(point.closedAt).closedBytes).toBe(24 * BS); // untracked ones included
    await v.write(0, Buffer.alloc(BS, 4));
    expect(told).toHaveLength(2); // the next point is within the limit: nothing to say
    q.dispose();
  });

  it("after a restart knows the open snapshot's earlier writes and starts from the saved model", async () => {
    const v = await volume();
    const start = Date.now();
    const before = predictivePolicy({ volume: v, nextCloseAt: () => start + 60_000 });
    before.next(start, 1 << 20, view(v, new Set(), 5000)); // the shipper measured 5,000 B/s
    await v.write(0, Buffer.alloc(4 * BS, 1));
    const point = await v.closeSnapshot({ scheduledAt: Date.now() });
    before.onClose(point.n, point.closedAt, start + 120_000);
    await v.write(10 * BS, Buffer.alloc(5 * BS, 2));
    await v.write(12 * BS, Buffer.alloc(BS, 3));
    await v.flush();
    const saved = before.exportLearnt();
    before.dispose();
    // The process ends; a new one opens the volume and its policy.
    volumes.splice(volumes.indexOf(v), 1);
    await v.shutdown();
    const reopened = await openVolume(v.dir);
    volumes.push(reopened);
    const next = () => start + 120_000;
    const warm = predictivePolicy({ volume: reopened, nextCloseAt: next, learnt: saved });
    const s = warm.status(Date.now());
    expect(s.open).toBe(point.n + 1);
    expect(s.dirtyBytes).toBe(5 * BS); // blocks 10-14, written before the restart
    expect(s.D).toBe(5 * BS);
    expect(s.B).toBe(5000);
    const cold = predictivePolicy({ volume: reopened, nextCloseAt: next });
    expect(cold.status(Date.now()).B).toBeNull();
    expect(cold.status(Date.now()).dirtyBytes).toBe(5 * BS);
    // A damaged save: reported, and the planner starts cold instead of failing.
    const refused: unknown[] = [];
    const damaged = saved.slice();
    damaged[damaged.length - 1] ^= 0xff;
    const fallback = predictivePolicy({ volume: reopened, nextCloseAt: next, learnt: damaged, onLearntRefused: (e) => refused.push(e) });
    expect(refused).toEqual([expect.objectContaining({ code: 'PLANNER_BAD_STATE' })]);
    expect(fallback.status(Date.now()).B).toBeNull();
    for (const p of [warm, cold, fallback]) p.dispose();
  });
});
