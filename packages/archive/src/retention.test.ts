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
import { HeadstartError } from '@headstart/errors';
import { planGroupRetention, planRetention, prune, type RetentionInput } from './retention';
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

describe('planGroupRetention', () => {
  /** A member's points on the given days (one a day from T0), each object `size` bytes. */
  const member = (days: number[], size: number, prot: number[] = []): RetentionInput[] =>
    days.map((d, n) => ({ n, time: T0 + d * DAY, protected: prot.includes(d), objects: new Map([[`o${n}`, size]]) }));
  const keptDays = (pts: RetentionInput[], keep: ReadonlyMap<number, unknown>) => pts.filter((p) => keep.has(p.n)).map((p) => Math.round((p.time - T0) / DAY));
  const days = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  it('keeps the same times in every member: a time one protects, the byte cap, points ahead of the others', () => {
    // a's day 3 is protected; b's points are ten times a's; a has uploaded day 20, b not yet.
    const a = member(days(0, 20), 100, [3]);
    const b = member(days(0, 19), 1000);
    const policy = { daily: 15, maxBytes: 8000 };
    // Alone, b would drop day 3 (a's protection is a's) and cap itself harder than a.
    expect(keptDays(b, planRetention(b, policy).keep)).not.toContain(3);
    const plans = planGroupRetention(new Map([['a', a], ['b', b]]), policy);
    const ka = keptDays(a, plans.get('a')!.keep);
    const kb = keptDays(b, plans.get('b')!.keep);
    expect(kb).toContain(3);
    expect(ka.filter((d) => d !== 20)).toEqual(kb);
    expect(plans.get('a')!.keep.get(20)).toEqual(['newest', 'ahead']);
    // The cap is each member's: the two together within twice it, common times only.
    expect(plans.get('a')!.keptBytes + plans.get('b')!.keptBytes - 100).toBeLessThanOrEqual(2 * policy.maxBytes);
    expect(kb.length).toBeLessThan(15);
    expect(plans.get('b')!.drop.length + plans.get('b')!.keep.size).toBe(b.length);
  });

  it('a volume that joined the group later does not void its older history', () => {
    const a = member(days(0, 19), 100);
    const c = member(days(10, 19), 100);
    const plans = planGroupRetention(new Map([['a', a], ['c', c]]), { daily: 30 });
    expect(keptDays(a, plans.get('a')!.keep)).toEqual(days(0, 19));
    expect(keptDays(c, plans.get('c')!.keep)).toEqual(days(10, 19));
  });

  it('drops a time that a member lacks, since the group cannot be restored at it', () => {
    const a = member(days(0, 9), 100);
    const b = member([0, 1, 2, 3, 4, 6, 7, 8, 9], 100);
    const plans = planGroupRetention(new Map([['a', a], ['b', b]]), { daily: 30 });
    expect(plans.get('a')!.drop).toEqual([5]);
    expect(keptDays(b, plans.get('b')!.keep)).toEqual([0, 1, 2, 3, 4, 6, 7, 8, 9]);
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

  it('prunes a consistency group to common times: a point one volume protects stays in the other, and restores', async () => {
    const BS = 4096;
    const CHUNK = 8 * BS;
    const path = await dirs.make();
    const store = await openDirectoryStore({ path });
    const vols = [await newVolume(dirs, 4 * CHUNK, BS), await newVolume(dirs, 4 * CHUNK, BS)];
    const sinks = await Promise.all(vols.map((v) => createArchiveSink({ store, source: v, chunkBytes: CHUNK })));
    const images = vols.map(() => new Map<number, Buffer>());
    for (let i = 0; i < 2; i++) await sinks[i].catchUp(vols[i]);
    // Six points a day apart, closed at the same scheduled times in both (as a group closes
    // them), after point 0 (each volume's own, scheduled when it was made).
    const T1 = (Math.floor(Date.now() / DAY) + 1) * DAY;
    for (let d = 1; d <= 6; d++) {
      for (let i = 0; i < 2; i++) {
        await vols[i].write(((d * 3 + i) % 32) * BS, Buffer.alloc(BS, d * 16 + i));
        const p = await vols[i].closeSnapshot({ scheduledAt: T1 + d * DAY });
        images[i].set(p.n, await vols[i].read(0, vols[i].size));
        await sinks[i].catchUp(vols[i]);
      }
    }
    const [a, b] = vols.map((v) => v.info.id);
    const pointAt = async (id: string, d: number) => (await listPoints({ store, volumeId: id })).find((p) => p.scheduledAt === T1 + d * DAY)!.n;
    await protectPoint({ store, volumeId: b, n: await pointAt(b, 2) });
    // Alone, a would let day 2 go: b's protection is b's.
    const alone = await prune({ store, volumeId: a, policy: { daily: 2 }, dryRun: true });
    expect(alone.deletedPoints).toContain(await pointAt(a, 2));
    const na2 = await pointAt(a, 2);
    const grouped = await prune({ store, volumeId: a, policy: { daily: 2 }, group: [b] });
    expect(grouped.kept.map((k) => k.n)).toEqual([na2, await pointAt(a, 5), await pointAt(a, 6)]);
    await prune({ store, volumeId: b, policy: { daily: 2 }, group: [a] });
    for (const id of [a, b]) expect((await listPoints({ store, volumeId: id })).map((p) => (p.scheduledAt - T1) / DAY)).toEqual([2, 5, 6]);
    // The group restores at day 2: both volumes, each equal to what it held then.
    for (let i = 0; i < 2; i++) {
      const n = await pointAt(vols[i].info.id, 2);
      const out = join(path, `g${i}`);
      await restorePoint({ store, volumeId: vols[i].info.id, n, path: out });
      expect((await readFile(out)).equals(images[i].get(n)!), `volume ${i} day 2`).toBe(true);
    }
    // b's own archiver pruning while a plans: a manifest of b listed but gone when read is
    // skipped (a's own are not: those are an error).
    const gone = manifestKey(b, await pointAt(b, 5));
    const racing = new Proxy(store, {
      get: (target, prop) => {
        if (prop === 'get') return async (key: string) => (key === gone ? Promise.reject(new HeadstartError('ARCHIVE_NOT_FOUND', `${key} is gone`)) : target.get(key));
        const v = Reflect.get(target, prop);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const during = await prune({ store: racing, volumeId: a, policy: { daily: 2 }, group: [b], dryRun: true });
    // Day 5 is then no common time: a would let it go.
    expect(during.kept.map((k) => k.n)).toEqual([na2, await pointAt(a, 6)]);
    for (const v of vols) await v.shutdown();
  });
});

describe('prune with damaged points', () => {
  const dirs = new TempDirs();
  afterEach(() => dirs.cleanup());

  async function archived(points: number) {
    const BS = 4096;
    const CHUNK = 8 * BS;
    const v = await newVolume(dirs, 8 * CHUNK, BS);
    const path = await dirs.make();
    const store = await openDirectoryStore({ path });
    const sink = await createArchiveSink({ store, source: v, chunkBytes: CHUNK });
    await sink.catchUp(v);
    const images = new Map<number, Buffer>();
    for (let d = 1; d <= points; d++) {
      await v.write(d * CHUNK, Buffer.alloc(CHUNK, d)); // each point writes a chunk of its own: a full object only it needs
      const p = await v.closeSnapshot({ scheduledAt: T0 + d * 3_600_000 });
      images.set(p.n, await v.read(0, v.size));
      await sink.catchUp(v);
    }
    await v.shutdown();
    return { store, path, id: v.info.id, images };
  }

  it('never deletes the last restorable point because the newest one lost an object', async () => {
    const { store, path, id, images } = await archived(3);
    const own = (await store.list(`${id}/objects/0000000003/`)).map((o) => o.key);
    expect(own).toHaveLength(1);
    await store.delete(own[0]); // point 3 (the newest) can no longer be restored
    const report = await prune({ store, volumeId: id, policy: { keepLast: 1 } });
    expect(report.damaged.map((d) => d.n)).toEqual([3]);
    expect(report.deletedPoints).not.toContain(2);
    await restorePoint({ store, volumeId: id, n: 2, path: join(path, 'r2') });
    expect((await readFile(join(path, 'r2'))).equals(images.get(2)!)).toBe(true);
    expect((await listPoints({ store, volumeId: id })).map((p) => p.n)).toContain(3); // left for verify to report
  });

  it('one damaged manifest does not stop retention for good, and is left in place', async () => {
    const { store, id } = await archived(4);
    const key = manifestKey(id, 1);
    const bytes = await store.get(key);
    bytes[bytes.length >> 1] ^= 0xff;
    await store.put(key, bytes);
    await protectPoint({ store, volumeId: id, n: 2 });
    const report = await prune({ store, volumeId: id, policy: { keepLast: 1 } });
    expect(report.damaged.map((d) => d.n)).toEqual([1]);
    expect(report.deletedPoints).toEqual([0, 3]);
    expect(await store.head(key)).not.toBeNull();
    expect(await store.head(`${id}/protected/${String(2).padStart(16, '0')}`)).not.toBeNull();
  });
});
