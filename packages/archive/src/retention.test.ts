/**
 * Retention: the pure plan (grandfather-father-son, protected, newest, byte cap) and prune
 * on a real archive, where every kept point must still restore byte for byte.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { manifestKey, objectKey } from './layout';
import { listPoints, protectPoint, verifyArchive } from './points';
import { restorePoint } from './restore';
import { planRetention, prune, type RetentionInput } from './retention';
import { createArchiveSink } from './sink';
import { openDirectoryStore } from './store/directory';
import { newVolume, rng, TempDirs } from './testing/fixture';
import { KIND_DELTA, KIND_FULL } from './format/envelope';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1, 0, 0); // a Thursday

/** One point every `stepH` hours from T0; each owns one unique object plus a shared one. */
function points(count: number, stepH: number, prot: number[] = []): RetentionInput[] {
  return Array.from({ length: count }, (_, n) => ({ n, time: T0 + n * stepH * 3_600_000, protected: prot.includes(n), objects: new Map([[`o${n}`, 100], ['shared', 1000]]) }));
}

describe('planRetention', () => {
  it('keeps the newest point of each of the last N days, weeks and months', () => {
    const pts = points(400, 6); // 100 days, 4 points a day
    const plan = planRetention(pts, { daily: 7, weekly: 4, monthly: 3 });
    const reasons = (r: string) => [...plan.keep].filter(([, rs]) => rs.includes(r as never)).map(([n]) => n);
    expect(reasons('daily')).toEqual([375, 379, 383, 387, 391, 395, 399]);
    // Every daily pick is the last point (18:00) of its UTC day.
    for (const n of reasons('daily')) expect(new Date(pts[n].time).getUTCHours()).toBe(18);
    expect(reasons('weekly').length).toBe(4);
    for (const n of reasons('weekly')) {
      const d = new Date(pts[n].time);
      // The newest point of an ISO week is Sunday 18:00, except the current (unfinished) week.
      if (n !== pts.length - 1) expect([d.getUTCDay(), d.getUTCHours()]).toEqual([0, 18]);
    }
    expect(reasons('monthly').map((n) => new Date(pts[n].time).getUTCMonth())).toEqual([1, 2, 3]);
    expect(plan.keep.get(pts.length - 1)).toContain('newest');
    expect(plan.drop.length + plan.keep.size).toBe(pts.length);
  });

  it('never drops protected points or the newest one; keepLast keeps the last N', () => {
    const plan = planRetention(points(50, 1, [3, 17]), { keepLast: 5 });
    expect([...plan.keep.keys()]).toEqual([3, 17, 45, 46, 47, 48, 49]);
    expect(plan.keep.get(3)).toEqual(['protected']);
  });

  it('a byte cap drops least valuable points first: daily-only before weekly before monthly, oldest first', () => {
    const pts = points(60, 24); // one point a day for 60 days
    const full = planRetention(pts, { daily: 7, weekly: 4, monthly: 2 });
    const kept = [...full.keep.keys()];
    // Each kept point costs 100 unique bytes, plus 1000 shared once.
    const capped = planRetention(pts, { daily: 7, weekly: 4, monthly: 2, maxBytes: 1000 + 100 * (kept.length - 3) });
    const gone = kept.filter((n) => !capped.keep.has(n));
    expect(gone.length).toBe(3);
    for (const n of gone) expect(full.keep.get(n)).toEqual(['daily']);
    expect(gone).toEqual(kept.filter((n) => full.keep.get(n)!.join() === 'daily').slice(0, 3));
    expect(capped.capExceeded).toBe(false);
    expect(capped.keptBytes).toBeLessThanOrEqual(1000 + 100 * (kept.length - 3));
  });

  it('reports a cap it cannot meet without touching protected or newest points', () => {
    const plan = planRetention(points(10, 24, [2]), { daily: 10, maxBytes: 10 });
    expect([...plan.keep.keys()]).toEqual([2, 9]);
    expect(plan.capExceeded).toBe(true);
  });

  it('invariants hold for any points and policy', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ gapH: fc.integer({ min: 0, max: 24 * 40 }), prot: fc.boolean(), size: fc.integer({ min: 1, max: 1000 }) }), { minLength: 1, maxLength: 60 }),
        fc.record({ daily: fc.nat(10), weekly: fc.nat(6), monthly: fc.nat(6), keepLast: fc.nat(4), maxBytes: fc.option(fc.nat(20_000), { nil: undefined }) }),
        (spec, policy) => {
          let t = T0;
          const pts: RetentionInput[] = spec.map((s, n) => ({ n, time: (t += s.gapH * 3_600_000), protected: s.prot, objects: new Map([[`o${n}`, s.size], [`s${n >> 2}`, 50]]) }));
          const plan = planRetention(pts, policy);
          expect(plan.keep.has(pts.length - 1)).toBe(true);
          for (const p of pts) if (p.protected) expect(plan.keep.has(p.n)).toBe(true);
          expect(new Set([...plan.keep.keys(), ...plan.drop]).size).toBe(pts.length);
          if (policy.maxBytes !== undefined && !plan.capExceeded) expect(plan.keptBytes).toBeLessThanOrEqual(policy.maxBytes);
          if (policy.maxBytes === undefined) expect(plan.capExceeded).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('prune on a real archive', () => {
  const dirs = new TempDirs();
  afterEach(() => dirs.cleanup());

  it('deletes only what no kept point needs; kept points restore exactly; dry run deletes nothing', async () => {
    const BS = 4096;
    const CHUNK = 8 * BS;
    const v = await newVolume(dirs, 8 * CHUNK, BS);
    const path = await dirs.make();
    const store = await openDirectoryStore({ path });
    const sink = await createArchiveSink({ store, source: v, chunkBytes: CHUNK });
    await sink.catchUp(v);
    const random = rng(3);
    const images = new Map<number, Buffer>([[0, await v.read(0, v.size)]]);
    // Eight points, one a day, each rewriting a few blocks (chains share older objects).
    for (let d = 1; d <= 8; d++) {
      for (let i = 0; i < 6; i++) await v.write(Math.floor(random() * 64) * BS, Buffer.alloc(BS, d * 16 + i));
      const p = await v.closeSnapshot({ scheduledAt: T0 + d * DAY });
      images.set(p.n, await v.read(0, v.size));
      await sink.catchUp(v);
    }
    await protectPoint({ store, volumeId: v.info.id, n: 2 });
    // Leftovers: an abandoned object of an old point, and an upload in flight for point 9.
    const orphan = objectKey(v.info.id, 7, { point: 0, kind: KIND_DELTA }); // point 0 is a full copy: no deltas
    const inflight = objectKey(v.info.id, 7, { point: 9, kind: KIND_FULL });
    await store.put(orphan, Buffer.alloc(10));
    await store.put(inflight, Buffer.alloc(10));

    const before = await store.list('');
    const dry = await prune({ store, volumeId: v.info.id, policy: { daily: 3 }, dryRun: true });
    expect(dry.kept.map((k) => k.n)).toEqual([2, 6, 7, 8]);
    expect(dry.deletedPoints).toEqual([0, 1, 3, 4, 5]);
    expect(dry.deletedObjects).toContain(orphan);
    expect(dry.deletedObjects).not.toContain(inflight);
    expect(await store.list('')).toEqual(before);

    const done = await prune({ store, volumeId: v.info.id, policy: { daily: 3 } });
    expect(done.deletedObjects).toEqual(dry.deletedObjects);
    expect(done.freedBytes).toBeGreaterThan(0);
    expect((await listPoints({ store, volumeId: v.info.id })).map((p) => [p.n, p.protected])).toEqual([[2, true], [6, false], [7, false], [8, false]]);
    expect(await store.head(manifestKey(v.info.id, 0))).toBeNull();
    expect(await store.head(orphan)).toBeNull();
    expect(await store.head(inflight)).not.toBeNull();
    expect((await verifyArchive({ store, volumeId: v.info.id })).ok).toBe(true);
    for (const n of [2, 6, 7, 8]) {
      const out = join(path, `r${n}`);
      await restorePoint({ store, volumeId: v.info.id, n, path: out });
      expect((await readFile(out)).equals(images.get(n)!), `point ${n}`).toBe(true);
    }
    // A second prune has nothing left to do.
    const again = await prune({ store, volumeId: v.info.id, policy: { daily: 3 } });
    expect(again.deletedPoints).toEqual([]);
    expect(again.deletedObjects).toEqual([]);
    // The archive keeps going on top of the pruned history.
    await v.write(0, Buffer.alloc(BS, 0xab));
    const p = await v.closeSnapshot({ scheduledAt: T0 + 9 * DAY });
    await sink.catchUp(v);
    await restorePoint({ store, volumeId: v.info.id, n: p.n, path: join(path, 'last') });
    expect((await readFile(join(path, 'last'))).equals(await v.read(0, v.size))).toBe(true);
    await v.shutdown();
  });
});
