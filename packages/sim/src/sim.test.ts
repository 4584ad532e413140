import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TraceRecorder } from '@headstart/traces';
import { compactWorkload, constantLink, evaluate, loadWorkloads, simulate, type Workload } from './index';

const BS = 4096;

function workload(writes: [number, number, number][], duration: number): Workload {
  return {
    name: 'hand',
    count: writes.length,
    time: Float64Array.from(writes.map((w) => w[0])),
    offset: Float64Array.from(writes.map((w) => w[1] * BS)),
    length: Float64Array.from(writes.map((w) => w[2] * BS)),
    duration,
    writtenBytes: writes.reduce((a, w) => a + w[2] * BS, 0),
    volumeSize: 1 << 20,
  };
}

describe('simulator figures on a hand-checked workload', () => {
  // Block 0 at 1 s and 5 s, block 1 at 2 s; interval 10 s; link 1 block/s.
  const w = workload(
    [
      [1, 0, 1],
      [2, 1, 1],
      [5, 0, 1],
    ],
    20,
  );
  const link = constantLink(BS);

  it('at-snapshot sends the dirty set once, after the close', () => {
    const r = simulate(w, { interval: 10, link, policy: 'at-snapshot' });
    expect(r.snapshots[0]).toMatchObject({ n: 1, T: 10, M: 2 * BS, S: 2 * BS, commitAt: 12, lag: 2 });
    expect(r.snapshots[1]).toMatchObject({ n: 2, M: 0, S: 0, lag: 0 });
  });

  it('continuous sends every write, so a rewrite costs a resend', () => {
    const r = simulate(w, { interval: 10, link, policy: 'continuous' });
    expect(r.snapshots[0].S).toBe(3 * BS);
    expect(r.snapshots[0].lag).toBe(0);
  });

  it('the oracle sends each block once, right after its last write', () => {
    const r = simulate(w, { interval: 10, link, policy: 'oracle' });
    expect(r.snapshots[0]).toMatchObject({ S: 2 * BS, lag: 0 });
  });

  it('a link with a burst allowance (a token bucket) takes that much at once after idling', () => {
    // At-snapshot: the 2 blocks go at the close, 10 s. A fluid link needs 2 s for them; a
    // bucket holding 1 block of credit passes the first at once and the second 1 s later.
    const r = simulate(w, { interval: 10, link: constantLink(BS, BS), policy: 'at-snapshot' });
    expect(r.snapshots[0]).toMatchObject({ S: 2 * BS, commitAt: 11, lag: 1 });
    const big = simulate(w, { interval: 10, link: constantLink(BS, 100 * BS), policy: 'at-snapshot' });
    expect(big.snapshots[0].lag).toBe(0);
  });

  it('a link slower than a block per tick is still kept busy', () => {
    // Interval 100 s: ticks of 0.83 s, a block takes 1 s. 22 blocks closed at 100 s must
    // take 22 s, not a tick and a block each.
    const many = workload(
      Array.from({ length: 22 }, (_, i) => [50, i, 1] as [number, number, number]),
      100,
    );
    const r = simulate(many, { interval: 100, link, policy: 'at-snapshot' });
    expect(r.snapshots[0].lag).toBeCloseTo(22, 9);
  });

  it('a backlog that outlasts the next close delays its commit too', () => {
    // 30 blocks at 9 s over a 1 block/s link: snapshot 1 commits at 9 + 30 = 39 s at best.
    const burst = workload(
      Array.from({ length: 30 }, (_, i) => [9, i, 1] as [number, number, number]),
      20,
    );
    for (const policy of ['at-snapshot', 'oracle', 'predictive', 'continuous'] as const) {
      const r = simulate(burst, { interval: 10, link, policy });
      expect(r.snapshots[0].lag, policy).toBeGreaterThanOrEqual(29 - 1e-9);
      expect(r.snapshots[0].S, policy).toBe(30 * BS);
    }
  });
});

describe('the plain reference planner (the issue\'s yardstick)', () => {
  // Interval 100 s, link 1 block/s. Block 0 is written once at 1 s; block 1 every 2 s up to
  // 98 s. Blocks 10-29 are written once at 50 s.
  const writes: [number, number, number][] = [[1, 0, 1], [50, 10, 20]];
  for (let t = 2; t <= 98; t += 2) writes.push([t, 1, 1]);
  const w = workload(writes.sort((a, b) => a[0] - b[0]), 100);

  it('pre-sends the cold blocks once the start rule fires, and holds the hot one until the close', () => {
    const r = simulate(w, { interval: 100, link: constantLink(BS), policy: 'plain' });
    const s = r.snapshots[0];
    expect(s.M).toBe(22 * BS);
    // K = 1, L = 0: D = 22 blocks at 1 block/s fires at TS < 22 s, i.e. 78 s. The 21 cold
    // blocks (P = 1 - exp(-ln2 x TS / 100) < 0.3) go from then; block 1, written every 2 s
    // (decayed count ~ 34, P ~ 1), waits for the close, so it alone is sent after it.
    expect(s.S).toBe(22 * BS);
    expect(s.lag).toBeGreaterThan(0.5);
    expect(s.lag).toBeLessThanOrEqual(1 + 1e-9);
    expect(r.totals.presentBytes).toBe(21 * BS);
    expect(r.totals.collidedBytes).toBe(0);
  });

  it('a block pre-sent and then written again is a collision and is sent again', () => {
    // Block 5 written at 1 s, then again at 95 s: by 78 s its P is low, so it is pre-sent
    // and collides.
    const c = workload([[1, 0, 1], [1, 5, 1], [50, 10, 20], [95, 5, 1]], 100);
    const r = simulate(c, { interval: 100, link: constantLink(BS), policy: 'plain' });
    expect(r.totals.collidedBytes).toBe(BS);
    expect(r.snapshots[0].S).toBe(r.snapshots[0].M + BS);
  });
});

/**
 * A small recorded workload of the kinds the DESIGN names: a hot set rewritten all the time,
 * a log appended sequentially (never rewritten), and a database-like checkpoint rewriting a
 * pool of pages every 120 s. Written with the NBD recorder's format and read back through
 * the trace reader, like a real recording.
 */
describe('evaluator quick run on a generated recording (CI)', () => {
  let dir: string;
  let w: Workload;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-sim-'));
    const path = join(dir, 'gen.csv');
    const rec = await TraceRecorder.open(path);
    let x = 42;
    const rnd = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const events: [number, number, number][] = [];
    const D = 1800;
    for (let t = 0; t < D; t += 0.1) {
      if (rnd() < 0.5) events.push([t, 1000 + Math.floor(rnd() * 200), 1]); // hot set
    }
    let head = 100_000;
    for (let t = 0; t < D; t += 0.05) {
      events.push([t, head, 2]); // the log
      head += 2;
    }
    for (let c = 60; c < D; c += 120) {
      for (let i = 0; i < 1500; i++) events.push([c + rnd() * 10, 20_000 + Math.floor(rnd() * 4000), 1]); // checkpoint
    }
    events.sort((a, b) => a[0] - b[0]);
    for (const [t, b, n] of events) rec.record({ time: 1_700_000_000_000 + t * 1000, op: 'write', offset: b * BS, length: n * BS });
    await rec.close();
    [w] = await loadWorkloads(path, 'generated');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('meets the targets at 60 s intervals with a 5x link', () => {
    const e = evaluate(w, 60, 5);
    const { predictive, oracle, continuous } = e.policies;
    expect(e.policies['at-snapshot'].redundancy_mean).toBe(1);
    expect(oracle.redundancy_mean).toBe(1);
    expect(predictive.redundancy_mean).toBeLessThanOrEqual(1.01);
    expect(predictive.lag_mean_s).toBeLessThanOrEqual(1.05 * oracle.lag_mean_s + 1);
    expect(predictive.lag_mean_s).toBeLessThan(e.policies['at-snapshot'].lag_mean_s);
    expect(predictive.redundancy_mean).toBeLessThan(continuous.redundancy_mean);
  });

  it('packing the address space into the regions it touches changes no decision', () => {
    // Spread the generated writes over a 64 GiB address space, 1 MiB regions far apart.
    const spread: Workload = { ...w, offset: w.offset.map((o) => Math.floor(o / (1 << 20)) * 37 * (1 << 20) + (o % (1 << 20))), volumeSize: 64 * 2 ** 30 };
    const packed = compactWorkload(spread);
    expect(packed.volumeSize).toBeLessThan(spread.volumeSize / 16);
    const figures = (x: Workload) => simulate(x, { interval: 300, link: constantLink(2 * (x.writtenBytes / x.duration)), policy: 'predictive' }).snapshots;
    expect(figures(packed)).toEqual(figures(spread));
  });

  it('a planner restarted from its saved state plans like one never restarted; a cold one does not', () => {
    const link = constantLink(5 * (w.writtenBytes / w.duration));
    const run = (restart?: { every: number; warm: boolean }) => simulate(w, { interval: 60, link, policy: 'predictive', restart });
    const never = run();
    const warm = run({ every: 300, warm: true });
    const cold = run({ every: 300, warm: false });
    const sum = (r: ReturnType<typeof run>, f: 'S' | 'lag') => r.snapshots.reduce((a, s) => a + s[f], 0);
    // Every 5 minutes a new planner; the warm one starts from what the last one learnt.
    expect(warm.restarts).toBeGreaterThanOrEqual(5);
    expect(cold.restarts).toBeGreaterThanOrEqual(5);
    expect(sum(warm, 'S')).toBeLessThanOrEqual(1.01 * sum(never, 'S'));
    expect(sum(warm, 'lag')).toBeLessThan(1.25 * sum(never, 'lag') + 5);
    // A cold one re-learns the workload after each restart: about 4x the lag here. (The
    // warm one plans exactly as if never restarted on this recording.)
    expect(sum(cold, 'lag')).toBeGreaterThan(2 * sum(warm, 'lag'));
  });

  it('beats both baselines at 300 s intervals with a 2x link', () => {
    // Known gap (see the bench notes): here the lag target is missed (about 10 s against the
    // oracle's 1 s): the checkpoint rewrites a random 37 % of its pool every 120 s at a fixed
    // phase, so pool pages stay risky by age until the last checkpoint before the close, and
    // the 0.5 % resend allowance will not pay for the hot set's last-second sends.
    const e = evaluate(w, 300, 2);
    const { predictive, continuous } = e.policies;
    expect(predictive.redundancy_mean).toBeLessThanOrEqual(1.01);
    expect(predictive.lag_mean_s).toBeLessThan(e.policies['at-snapshot'].lag_mean_s / 5);
    expect(predictive.redundancy_mean).toBeLessThan(continuous.redundancy_mean);
  });
});

describe('loading a trace', () => {
  it('keeps the writes and leaves out reads and trims (zeroes ship as a flag: they cost the link next to nothing)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-sim-load-'));
    try {
      const path = join(dir, 'fs.trace');
      const rec = await TraceRecorder.open(path);
      rec.record({ time: 1_700_000_000_000, op: 'trim', offset: 0, length: 1 << 30 }); // mkfs discards the device
      rec.record({ time: 1_700_000_001_000, op: 'write', offset: 8192, length: 4096 });
      rec.record({ time: 1_700_000_002_000, op: 'read', offset: 0, length: 4096 });
      rec.record({ time: 1_700_000_003_000, op: 'write', offset: 0, length: 8192 });
      await rec.close();
      const [w] = await loadWorkloads(path, 'fs');
      expect([...w.offset]).toEqual([8192, 0]);
      expect(w.writtenBytes).toBe(12288);
      expect(w.duration).toBe(3); // the trace's span counts every record
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('loading one disk of a multi-disk trace', () => {
  it('keeps its writes, its number in the name, and the whole trace\'s duration (so the same link)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-sim-disks-'));
    try {
      const path = join(dir, 'two.csv');
      // MSR Cambridge layout; disk 1's last record is 10 s before the trace's end (a read on disk 0).
      const tick = (s: number) => 128166372003061629 + s * 1e7;
      await writeFile(path, [`${tick(0)},hm,0,Write,0,4096,1`, `${tick(5)},hm,1,Write,8192,8192,1`, `${tick(10)},hm,1,Write,0,4096,1`, `${tick(20)},hm,0,Read,0,4096,1`].join('\n') + '\n');
      const all = await loadWorkloads(path, 'two.csv');
      expect(all.map((w) => [w.name, w.count, w.duration])).toEqual([['two.csv#0', 1, 20], ['two.csv#1', 2, 20]]);
      const [one] = await loadWorkloads(path, 'two.csv', { volume: '1' });
      expect([one.name, one.count, one.duration, one.writtenBytes]).toEqual(['two.csv#1', 2, 20, 12288]);
      // A disk the trace does not write: the ones it does are named (a typo in --disk).
      await expect(loadWorkloads(path, 'two.csv', { volume: '7' })).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: `${path} has no writes on disk 7; disks with writes: 0, 1` });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
