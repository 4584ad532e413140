/**
 * Retention: which archived points to keep (pure: `planRetention`) and the deletion that
 * follows (`prune`).
 *
 * Kept, whatever else happens: the newest point (the base of the next delta — losing it
 * would force a full copy, DESIGN.md pain 2) and every protected point. Then grandfather-
 * father-son: the newest point of each of the last `daily` UTC days, `weekly` ISO weeks and
 * `monthly` months that have points, plus the `keepLast` newest points. A byte cap then
 * drops kept points, least valuable first (kept only as a daily before a weekly before a
 * monthly; oldest first within a tier), until the objects the kept points need fit.
 *
 * A consistency group's volumes are planned together (`planGroupRetention`): the calendar,
 * keepLast and the byte cap pick the group's common times, so a kept time is there for every
 * member and the group can be restored as one; each member deletes only its own points.
 *
 * Deletion never removes an object a kept point needs: an object goes only if no kept
 * manifest names it. Manifests go first, then their objects, so a crash mid-prune leaves
 * at worst unreferenced objects, which the next prune sweeps (with stale markers).
 */
import PQueue from 'p-queue';
import { HeadstartError, isHeadstartError } from '@headstart/errors';
import { manifestPoints, protectedPoints, readManifest } from './catalog';
import { loadHasher } from './format/hash';
import type { Manifest } from './format/manifest';
import { checkVolumeId, manifestKey, objectKey, objectsPrefix, parseObjectKey, pendingPrefix, pointOfKey, protectedKey } from './layout';
import { withRetry, type RetryOptions } from './retry';
import type { ObjectStore } from './store/types';

export interface RetentionPolicy {
  /** Newest point of each of the last N UTC days that have points. */
  readonly daily?: number;
  /** ... of the last N ISO weeks (Monday to Sunday, UTC). */
  readonly weekly?: number;
  /** ... of the last N calendar months (UTC). */
  readonly monthly?: number;
  /** The N newest points (default 1: the newest is always kept anyway). */
  readonly keepLast?: number;
  /** Cap on the bytes of all objects the kept points need. */
  readonly maxBytes?: number;
}

export interface RetentionInput {
  readonly n: number;
  /** When the point was scheduled (epoch ms): the GFS calendar looks at this. */
  readonly time: number;
  readonly protected: boolean;
  /** Keys and sizes of every object the point needs. */
  readonly objects: ReadonlyMap<string, number>;
}

/** 'ahead': a group member's point newer than the group's newest common time (the others are still uploading it). */
export type KeepReason = 'newest' | 'protected' | 'last' | 'daily' | 'weekly' | 'monthly' | 'ahead' | 'damaged';

export interface RetentionPlan {
  /** Kept points, ascending, with why. */
  readonly keep: ReadonlyMap<number, readonly KeepReason[]>;
  /** Points to delete, ascending. */
  readonly drop: readonly number[];
  /** Bytes the kept points' objects take. */
  readonly keptBytes: number;
  /** The cap could not be met without dropping the newest or a protected point. */
  readonly capExceeded: boolean;
}

const DAY = 86_400_000;

function checkCount(v: number | undefined, name: string): number {
  if (v === undefined) return 0;
  if (!Number.isSafeInteger(v) || v < 0) throw new HeadstartError('ARCHIVE_CONFIG', `retention.${name} must be a non-negative integer`);
  return v;
}

export function planRetention(points: readonly RetentionInput[], policy: RetentionPolicy): RetentionPlan {
  const daily = checkCount(policy.daily, 'daily');
  const weekly = checkCount(policy.weekly, 'weekly');
  const monthly = checkCount(policy.monthly, 'monthly');
  const keepLast = Math.max(1, checkCount(policy.keepLast ?? 1, 'keepLast'));
  if (policy.maxBytes !== undefined && (!Number.isSafeInteger(policy.maxBytes) || policy.maxBytes < 0)) throw new HeadstartError('ARCHIVE_CONFIG', 'retention.maxBytes must be a non-negative integer');
  const sorted = [...points].sort((a, b) => a.n - b.n);
  const keep = new Map<number, KeepReason[]>();
  const tag = (n: number, r: KeepReason) => {
    const list = keep.get(n) ?? [];
    if (!list.includes(r)) list.push(r);
    keep.set(n, list);
  };
  if (sorted.length === 0) return { keep, drop: [], keptBytes: 0, capExceeded: false };
  tag(sorted[sorted.length - 1].n, 'newest');
  for (const p of sorted) if (p.protected) tag(p.n, 'protected');
  for (const p of sorted.slice(-keepLast)) tag(p.n, 'last');
  // Newest point per calendar bucket, newest buckets first.
  const gfs = (count: number, reason: KeepReason, bucket: (t: number) => number) => {
    const seen = new Set<number>();
    for (let i = sorted.length - 1; i >= 0 && seen.size < count; i--) {
      const b = bucket(sorted[i].time);
      if (seen.has(b)) continue;
      seen.add(b);
      tag(sorted[i].n, reason);
    }
  };
  gfs(daily, 'daily', (t) => Math.floor(t / DAY));
  // ISO weeks start on Monday; 1970-01-01 was a Thursday, so shift by 3 days.
  gfs(weekly, 'weekly', (t) => Math.floor((Math.floor(t / DAY) + 3) / 7));
  gfs(monthly, 'monthly', (t) => {
    const d = new Date(t);
    return d.getUTCFullYear() * 12 + d.getUTCMonth();
  });

  const byN = new Map(sorted.map((p) => [p.n, p]));
  const bytesOf = (kept: Iterable<number>) => {
    const objects = new Map<string, number>();
    for (const n of kept) for (const [k, s] of byN.get(n)!.objects) objects.set(k, s);
    let sum = 0;
    for (const s of objects.values()) sum += s;
    return sum;
  };
  let keptBytes = bytesOf(keep.keys());
  let capExceeded = false;
  if (policy.maxBytes !== undefined) {
    const tier = (reasons: readonly KeepReason[]) => Math.max(...reasons.map((r) => ({ newest: 9, protected: 9, ahead: 9, damaged: 9, monthly: 3, weekly: 2, daily: 1, last: 0 })[r]));
    while (keptBytes > policy.maxBytes) {
      const candidates = [...keep].filter(([, r]) => !r.includes('newest') && !r.includes('protected'));
      if (candidates.length === 0) {
        capExceeded = true;
        break;
      }
      candidates.sort((a, b) => tier(a[1]) - tier(b[1]) || a[0] - b[0]);
      keep.delete(candidates[0][0]);
      keptBytes = bytesOf(keep.keys());
    }
  }
  const drop = sorted.filter((p) => !keep.has(p.n)).map((p) => p.n);
  return { keep: new Map([...keep].sort((a, b) => a[0] - b[0])), drop, keptBytes, capExceeded };
}

/**
 * Retention for the volumes of one consistency group (their points share scheduled times),
 * one plan per member. Planned alone, a time that one member protects, or that its own byte
 * cap keeps, can be gone from another, and the group cannot be restored at it.
 *
 * A time is common once every member that has archived anything as old holds a point at it
 * (a volume added to the group later does not void the group's older history). The policy
 * is applied to the common times as if they were one volume's points: protected if any
 * member protected it, and the byte cap, which is each volume's, caps the members' objects
 * together at the sum of their caps. Each member keeps its points at the kept common times,
 * its own newest and protected points, and every point newer than the newest common time
 * ('ahead': the other members have not uploaded that time yet). Its points at older times
 * that are not common (restorable only alone) go.
 */
export function planGroupRetention(members: ReadonlyMap<string, readonly RetentionInput[]>, policy: RetentionPolicy): Map<string, RetentionPlan> {
  const oldest = new Map<string, number>();
  const byTime = new Map<number, Map<string, RetentionInput>>();
  for (const [id, pts] of members) {
    oldest.set(id, pts.reduce((t, p) => Math.min(t, p.time), Infinity));
    for (const p of pts) {
      const at = byTime.get(p.time) ?? new Map<string, RetentionInput>();
      at.set(id, p);
      byTime.set(p.time, at);
    }
  }
  const common = [...byTime.keys()].sort((a, b) => a - b).filter((t) => [...members.keys()].every((id) => oldest.get(id)! > t || byTime.get(t)!.has(id)));
  const joint = planRetention(
    common.map((t, i) => {
      const objects = new Map<string, number>();
      let prot = false;
      for (const [id, p] of byTime.get(t)!) {
        prot ||= p.protected;
        for (const [k, size] of p.objects) objects.set(`${id}\0${k}`, size);
      }
      return { n: i, time: t, protected: prot, objects };
    }),
    policy.maxBytes === undefined ? policy : { ...policy, maxBytes: policy.maxBytes * members.size },
  );
  const keptAt = new Map(common.map((t, i) => [t, joint.keep.get(i)] as const).filter((e): e is [number, readonly KeepReason[]] => e[1] !== undefined));
  const newestCommon = common.length > 0 ? common[common.length - 1] : -Infinity;
  const plans = new Map<string, RetentionPlan>();
  for (const [id, pts] of members) {
    const sorted = [...pts].sort((a, b) => a.n - b.n);
    const keep = new Map<number, KeepReason[]>();
    sorted.forEach((p, i) => {
      const reasons = new Set<KeepReason>(keptAt.get(p.time) ?? []);
      if (i === sorted.length - 1) reasons.add('newest');
      if (p.protected) reasons.add('protected');
      if (p.time > newestCommon) reasons.add('ahead');
      if (reasons.size > 0) keep.set(p.n, [...reasons]);
    });
    const objects = new Map<string, number>();
    for (const p of sorted) if (keep.has(p.n)) for (const [k, size] of p.objects) objects.set(k, size);
    let keptBytes = 0;
    for (const size of objects.values()) keptBytes += size;
    plans.set(id, { keep, drop: sorted.filter((p) => !keep.has(p.n)).map((p) => p.n), keptBytes, capExceeded: joint.capExceeded });
  }
  return plans;
}

export interface PruneOptions {
  readonly store: ObjectStore;
  readonly volumeId: string;
  readonly policy: RetentionPolicy;
  /**
   * The other volumes of its consistency group, archived in the same store: retention is
   * planned for the group (planGroupRetention); only this volume's points are deleted.
   */
  readonly group?: readonly string[];
  /** Report what would go, delete nothing. */
  readonly dryRun?: boolean;
  readonly concurrency?: number;
  readonly retry?: Omit<RetryOptions, 'signal' | 'onRetry'>;
}

export interface PruneReport {
  readonly dryRun: boolean;
  readonly kept: readonly { readonly n: number; readonly reasons: readonly KeepReason[] }[];
  readonly deletedPoints: readonly number[];
  /** Object keys deleted (or that would be): those of dropped points no kept point needs, and unreferenced leftovers. */
  readonly deletedObjects: readonly string[];
  readonly freedBytes: number;
  readonly bytesBefore: number;
  readonly bytesAfter: number;
  readonly capExceeded: boolean;
  /**
   * Points that cannot be restored (a manifest that does not decode, an object it names
   * missing or of another size than it recorded): never deleted by retention, and never
   * counted as the newest or one of the last points, so older restorable points are kept
   * in their place. `headstart archive verify` says more.
   */
  readonly damaged: readonly { readonly n: number; readonly why: string }[];
}

/**
 * One volume's archived points as retention sees them: scheduled time, protection, the
 * objects each needs. `other`: a group member whose own archiver may be pruning it right
 * now, so a manifest listed but gone by the time it is read is skipped, not an error.
 */
async function retentionInputs(store: ObjectStore, hasher: Awaited<ReturnType<typeof loadHasher>>, vol: string, retry: PruneOptions['retry'], other = false) {
  const listed = await manifestPoints(store, vol, retry);
  const prot = await protectedPoints(store, vol, retry);
  const manifests = new Map<number, Manifest>();
  const unreadable = new Map<number, string>();
  for (const n of listed) {
    try {
      manifests.set(n, await readManifest(store, hasher, vol, n, retry));
    } catch (err) {
      if (other && isHeadstartError(err, 'ARCHIVE_NOT_FOUND')) continue;
      // One damaged manifest must not stop retention for good: that point is set aside (kept).
      if (!other && isHeadstartError(err, 'ARCHIVE_CORRUPT')) unreadable.set(n, err.message);
      else throw err;
    }
  }
  const points = listed.filter((n) => manifests.has(n));
  const inputs: RetentionInput[] = points.map((n) => {
    const m = manifests.get(n)!;
    const objects = new Map<string, number>();
    for (const [c, chain] of m.chunks) for (const e of chain) objects.set(objectKey(vol, c, e), e.size);
    return { n, time: m.point.scheduledAt, protected: prot.has(n), objects };
  });
  return { points, prot, manifests, inputs, unreadable };
}

export async function prune(options: PruneOptions): Promise<PruneReport> {
  const { store, policy } = options;
  const vol = checkVolumeId(options.volumeId);
  const hasher = await loadHasher();
  const retry = options.retry;
  const { points: readable, prot, manifests, inputs: all, unreadable } = await retentionInputs(store, hasher, vol, retry);
  const points = [...readable, ...unreadable.keys()].sort((a, b) => a - b);

  // Everything stored for the volume: what no kept point needs goes, and a point whose
  // objects are not all there (with the size its manifest recorded) cannot be restored.
  const stored = await withRetry(() => store.list(objectsPrefix(vol)), retry);
  const sizes = new Map(stored.map((o) => [o.key, o.size]));
  const damaged = new Map<number, string>(unreadable);
  for (const p of all) {
    for (const [k, size] of p.objects) {
      const have = sizes.get(k);
      if (have === size) continue;
      damaged.set(p.n, have === undefined ? `${k} is missing` : `${k} is ${have} bytes, the manifest recorded ${size}`);
      break;
    }
  }
  // Retention plans over the restorable points only: a damaged newest point must not make
  // it delete the last one that restores. Damaged points themselves are left in place.
  const inputs = all.filter((p) => !damaged.has(p.n));
  let plan: RetentionPlan;
  if (options.group === undefined || options.group.length === 0) plan = planRetention(inputs, policy);
  else {
    const members = new Map([[vol, inputs]]);
    for (const other of options.group) {
      const id = checkVolumeId(other);
      if (id !== vol) members.set(id, (await retentionInputs(store, hasher, id, retry, true)).inputs);
    }
    plan = planGroupRetention(members, policy).get(vol)!;
  }
  const keep = new Map(plan.keep);
  for (const n of damaged.keys()) keep.set(n, ['damaged']);
  plan = { ...plan, keep: new Map([...keep].sort((a, b) => a[0] - b[0])), drop: plan.drop.filter((n) => !damaged.has(n)) };
  const needed = new Set<string>();
  for (const p of all) if (plan.keep.has(p.n)) for (const k of p.objects.keys()) needed.add(k);

  // Objects of a point newer than the newest manifest belong to an upload in flight: never touch them.
  const newest = points.length > 0 ? points[points.length - 1] : -1;
  const bytesBefore = stored.reduce((s, o) => s + o.size, 0);
  const deleteObjects: string[] = [];
  for (const o of stored) {
    const parsed = parseObjectKey(vol, o.key);
    if (parsed === null || needed.has(o.key) || parsed.point > newest) continue;
    deleteObjects.push(o.key);
  }
  const markers: string[] = [];
  for (const o of await withRetry(() => store.list(pendingPrefix(vol)), retry)) {
    const n = pointOfKey(o.key, pendingPrefix(vol));
    if (n !== null && n <= newest) markers.push(o.key); // that upload finished or was abandoned
  }
  for (const n of prot) if (!manifests.has(n) && !unreadable.has(n)) markers.push(protectedKey(vol, n));
  const freedBytes = deleteObjects.reduce((s, k) => s + (sizes.get(k) ?? 0), 0);

  if (options.dryRun !== true) {
    const q = new PQueue({ concurrency: options.concurrency ?? 8 });
    // Manifests first: once a point is gone from the listing, its objects can go.
    await Promise.all(plan.drop.map((n) => q.add(() => withRetry(() => store.delete(manifestKey(vol, n)), retry))));
    await Promise.all([...deleteObjects, ...markers].map((k) => q.add(() => withRetry(() => store.delete(k), retry))));
  }
  return {
    dryRun: options.dryRun === true,
    kept: [...plan.keep].map(([n, reasons]) => ({ n, reasons })),
    deletedPoints: plan.drop,
    deletedObjects: deleteObjects,
    freedBytes,
    bytesBefore,
    bytesAfter: bytesBefore - freedBytes,
    capExceeded: plan.capExceeded,
    damaged: [...damaged].map(([n, why]) => ({ n, why })),
  };
}
