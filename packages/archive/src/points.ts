/** Listing, protecting and verifying archived points: the programmatic side of `headstart archive list|verify`. */
import PQueue from 'p-queue';
import { HeadstartError, isHeadstartError } from '@headstart/errors';
import { manifestPoints, protectedPoints, readChainObject, readManifest } from './catalog';
import { DEFAULT_CONCURRENCY } from './constants';
import { loadHasher } from './format/hash';
import type { ChainEntry, Manifest } from './format/manifest';
import { checkVolumeId, manifestKey, objectKey, protectedKey, volumesOfKeys } from './layout';
import type { RetryOptions } from './retry';
import type { ObjectStore } from './store/types';

export interface PointInfo {
  readonly volumeId: string;
  readonly n: number;
  readonly scheduledAt: number;
  readonly closedAt: number;
  /** When the manifest was written (epoch ms). */
  readonly archivedAt: number;
  readonly protected: boolean;
  /** Archived as a full copy rather than on top of point n-1. */
  readonly fullCopy: boolean;
  readonly size: number;
  readonly blockSize: number;
  /** Objects the point needs, and their bytes (shared objects counted in every point that needs them). */
  readonly objects: number;
  readonly bytes: number;
  /** Bytes of objects no other archived point needs: what deleting just this point would free. */
  readonly uniqueBytes: number;
}

type Common = { readonly store: ObjectStore; readonly retry?: Omit<RetryOptions, 'signal' | 'onRetry'> };

/** Volume ids with at least one archived point. Lists the whole store: an operator command, not a hot path. */
export async function listVolumes(options: Common): Promise<string[]> {
  return volumesOfKeys((await options.store.list('')).map((o) => o.key));
}

/**
 * Every archived point of a volume, oldest first. A manifest that does not decode fails the
 * listing (ARCHIVE_CORRUPT), unless `onDamaged` is given: then that point is left out and
 * told there, and the others are listed (one damaged point must not hide the good ones).
 */
export async function listPoints(options: Common & { readonly volumeId: string; readonly onDamaged?: (n: number, why: string) => void }): Promise<PointInfo[]> {
  const vol = checkVolumeId(options.volumeId);
  const hasher = await loadHasher();
  const prot = await protectedPoints(options.store, vol, options.retry);
  const manifests: Manifest[] = [];
  for (const n of await manifestPoints(options.store, vol, options.retry)) {
    try {
      manifests.push(await readManifest(options.store, hasher, vol, n, options.retry));
    } catch (err) {
      if (options.onDamaged === undefined || !isHeadstartError(err, 'ARCHIVE_CORRUPT')) throw err;
      options.onDamaged(n, err.message);
    }
  }
  const users = new Map<string, number>();
  const keysOf = (m: Manifest) => {
    const out = new Map<string, number>();
    for (const [c, chain] of m.chunks) for (const e of chain) out.set(objectKey(vol, c, e), e.size);
    return out;
  };
  const perPoint = manifests.map(keysOf);
  for (const keys of perPoint) for (const k of keys.keys()) users.set(k, (users.get(k) ?? 0) + 1);
  return manifests.map((m, i) => {
    let bytes = 0;
    let uniqueBytes = 0;
    for (const [k, s] of perPoint[i]) {
      bytes += s;
      if (users.get(k) === 1) uniqueBytes += s;
    }
    return {
      volumeId: vol,
      n: m.point.n,
      scheduledAt: m.point.scheduledAt,
      closedAt: m.point.closedAt,
      archivedAt: m.createdAt,
      protected: prot.has(m.point.n),
      fullCopy: m.base === null,
      size: m.volume.size,
      blockSize: m.volume.blockSize,
      objects: perPoint[i].size,
      bytes,
      uniqueBytes,
    };
  });
}

/** Marks point n as protected (retention never deletes it) or lifts that. */
export async function protectPoint(options: Common & { readonly volumeId: string; readonly n: number; readonly protect?: boolean }): Promise<void> {
  const vol = checkVolumeId(options.volumeId);
  if (options.protect === false) return options.store.delete(protectedKey(vol, options.n));
  if ((await options.store.head(manifestKey(vol, options.n))) === null) throw new HeadstartError('ARCHIVE_NOT_FOUND', `volume ${vol} has no archived point ${options.n} to protect`);
  await options.store.put(protectedKey(vol, options.n), Buffer.alloc(0));
}

export interface VerifyProblem {
  /** The point whose manifest or object is at fault. */
  readonly n: number;
  readonly key: string;
  readonly code: string;
  readonly message: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly points: number;
  readonly objects: number;
  readonly bytes: number;
  readonly problems: readonly VerifyProblem[];
}

/**
 * Checks that every archived point (or the listed ones) can be restored: its manifest
 * decodes, every object it names exists with the recorded size, and (deep, the default)
 * every object passes its checksums and is the very object the manifest pinned. Objects
 * shared by several points are read once.
 */
export async function verifyArchive(options: Common & { readonly volumeId: string; readonly points?: readonly number[]; readonly deep?: boolean; readonly concurrency?: number; readonly onProgress?: (p: { objectsDone: number }) => void }): Promise<VerifyReport> {
  const vol = checkVolumeId(options.volumeId);
  const hasher = await loadHasher();
  const problems: VerifyProblem[] = [];
  const push = (n: number, key: string, err: unknown) =>
    problems.push({ n, key, code: isHeadstartError(err) ? err.code : 'ARCHIVE_STORE_IO', message: (err as Error)?.message ?? String(err) });
  const points = options.points ?? (await manifestPoints(options.store, vol, options.retry));
  const seen = new Map<string, ChainEntry>();
  // Objects found damaged or missing, by key: every later point that needs one is damaged too.
  const bad = new Map<string, { code: string; message: string }>();
  let objects = 0;
  let bytes = 0;
  for (const n of points) {
    let m: Manifest;
    try {
      m = await readManifest(options.store, hasher, vol, n, options.retry);
    } catch (err) {
      push(n, manifestKey(vol, n), err);
      continue;
    }
    const checks: (() => Promise<void>)[] = [];
    for (const [c, chain] of m.chunks) {
      chain.forEach((e, i) => {
        const key = objectKey(vol, c, e);
        const prior = seen.get(key);
        if (prior !== undefined) {
          if (prior.hash !== e.hash || prior.size !== e.size) push(n, key, new HeadstartError('ARCHIVE_CORRUPT', `${key}: points disagree about this object's size or hash`));
          else {
            const b = bad.get(key);
            if (b !== undefined) problems.push({ n, key, code: b.code, message: `${b.message} (also needed by point ${n})` });
          }
          return;
        }
        seen.set(key, e);
        checks.push(async () => {
            try {
              if (options.deep === false) {
                const head = await options.store.head(key);
                if (head === null) throw new HeadstartError('ARCHIVE_NOT_FOUND', `${key} (needed by point ${n}) is missing`);
                if (head.size !== e.size) throw new HeadstartError('ARCHIVE_CORRUPT', `${key} is ${head.size} bytes, the manifest recorded ${e.size}`);
              } else {
                await readChainObject(options.store, hasher, m, c, chain, i, options.retry);
              }
              objects++;
              bytes += e.size;
              options.onProgress?.({ objectsDone: objects });
            } catch (err) {
              push(n, key, err);
              bad.set(key, problems[problems.length - 1]);
            }
        });
      });
    }
    // Bounded: a large volume has hundreds of thousands of objects per point.
    const q = new PQueue({ concurrency: options.concurrency ?? DEFAULT_CONCURRENCY });
    await Promise.all(checks.map((f) => q.add(f)));
  }
  return { ok: problems.length === 0, points: points.length, objects, bytes, problems };
}
