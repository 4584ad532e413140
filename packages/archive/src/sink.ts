/**
 * DEV DOCS — the archive sink: archives snapshot points of a volume into an object store.
 *
 * Per point n (archivePoint):
 *   1. If manifest n already exists, n is archived: nothing to do (a crash after the
 *      manifest but before the volume's acknowledgement lands here).
 *   2. Base: manifest n-1. Without it (first point, or the archive lost it) the point is a
 *      full copy: every chunk of the volume as of n, zero blocks left out.
 *   3. A "pending" marker for n goes up first, so a rerun knows objects of n may already be
 *      there (it checks before re-uploading) and prune knows they are in flight.
 *   4. Every chunk holding blocks of n's dirty set gets one new object, keyed by (chunk, n):
 *      - a delta over the chunk's latest object (only the changed blocks: the cheap path
 *        for an immutable store), or
 *      - a full object, read whole as of n from the volume, when the chain would pass
 *        `maxChain` or its deltas would outweigh the chunk (compaction), when `mutate`
 *        is on (the store's objects are local, so rewriting the whole chunk is cheap and
 *        keeps every chain one object long), or when the chunk was all zero before.
 *      Objects go up through a bounded queue (p-queue) with retries and back-off.
 *   5. The manifest goes up last; the marker is removed. Only then may the caller
 *      acknowledge n on the volume (catchUp does).
 * So a crash at any instant leaves no manifest that names a missing object, and the next
 * run over the same point rewrites the same keys with the same bytes and finishes.
 */
import PQueue from 'p-queue';
import { HeadstartError, isHeadstartError } from '@headstart/errors';
import type { SnapshotPoint } from '@headstart/volume';
import { chunkBlocksOf, chunkCountOf, readManifest } from './catalog';
import { DEFAULT_CHUNK_BYTES, DEFAULT_CONCURRENCY, DEFAULT_MAX_CHAIN, DEFAULT_SINK_NAME } from './constants';
import { KIND_DELTA, KIND_FULL } from './format/envelope';
import { encodeChunkObject, type ChunkKind } from './format/chunk';
import { loadHasher, type Hasher } from './format/hash';
import { encodeManifest, type ChainEntry, type Manifest } from './format/manifest';
import { checkVolumeId, manifestKey, objectKey, pendingKey } from './layout';
import { withRetry, type RetryOptions } from './retry';
import type { ArchiveSinkSource, ArchiveSource } from './source';
import type { ObjectStore } from './store/types';

export interface ArchiveSinkOptions {
  readonly store: ObjectStore;
  readonly source: ArchiveSource;
  /** Name of the volume in the archive; default the source's id. */
  readonly volumeId?: string;
  /** Chunk size in bytes, a multiple of the block size (default 4 MiB). An archive that already holds the volume keeps its own. */
  readonly chunkBytes?: number;
  /** Fold a chain into a full object once it would pass this many objects (default 16), or once its deltas outweigh the chunk. */
  readonly maxChain?: number;
  /** Write every changed chunk as a whole new object instead of a delta (cheap where the store is local). */
  readonly mutate?: boolean;
  /** Parallel chunk reads + uploads (default 8). */
  readonly concurrency?: number;
  readonly retry?: Omit<RetryOptions, 'signal' | 'onRetry'>;
  readonly clock?: { now(): number };
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: { readonly n: number; readonly chunksDone: number; readonly chunksTotal: number; readonly uploadedBytes: number }) => void;
}

export interface ArchiveResult {
  readonly n: number;
  /** The manifest was already there; nothing was uploaded. */
  readonly alreadyArchived: boolean;
  /** Archived as a full copy (no base manifest). */
  readonly fullCopy: boolean;
  readonly changedBlocks: number;
  /** changedBlocks x block size: the minimum any incremental scheme must upload. */
  readonly changedBytes: number;
  /** Object, manifest and marker bytes actually sent to the store in this run. */
  readonly uploadedBytes: number;
  readonly objectsUploaded: number;
  /** Objects a previous, interrupted run had already stored. */
  readonly objectsSkipped: number;
  /** Chunks written as a full object although they had a chain (compaction or mutate). */
  readonly folded: number;
  /** Of those, chunks whose chain had an object missing or cut short in the store: stored whole again, so the point restores. */
  readonly repaired: number;
  readonly retries: number;
}

export class ArchiveSink {
  readonly #o: ArchiveSinkOptions;
  readonly #hasher: Hasher;
  readonly #volume: string;
  readonly #chunkBytes: number;
  /**
   * Chain objects this sink knows are in the store, whole (it stored them, or found them by
   * HEAD with the size their manifest recorded). A delta only extends a chain whose objects
   * are all there: one lost by hand or by the store would make every later point of that
   * chunk unrestorable, acknowledged all the same. Checked once per object per process.
   */
  readonly #present = new Set<string>();

  private constructor(options: ArchiveSinkOptions, hasher: Hasher) {
    this.#o = options;
    this.#hasher = hasher;
    this.#volume = checkVolumeId(options.volumeId ?? options.source.info.id);
    const bs = options.source.info.blockSize;
    this.#chunkBytes = options.chunkBytes ?? Math.max(DEFAULT_CHUNK_BYTES, bs);
    if (!Number.isSafeInteger(this.#chunkBytes) || this.#chunkBytes < bs || this.#chunkBytes % bs !== 0 || this.#chunkBytes / bs > 1 << 20) {
      throw new HeadstartError('ARCHIVE_CONFIG', `chunkBytes ${options.chunkBytes} must be a multiple of the block size ${bs}, at most 2^20 blocks`);
    }
    const maxChain = options.maxChain ?? DEFAULT_MAX_CHAIN;
    if (!Number.isSafeInteger(maxChain) || maxChain < 1) throw new HeadstartError('ARCHIVE_CONFIG', `maxChain must be a positive integer`);
    const c = options.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isSafeInteger(c) || c < 1 || c > 256) throw new HeadstartError('ARCHIVE_CONFIG', `concurrency must be 1..256`);
  }

  static async create(options: ArchiveSinkOptions): Promise<ArchiveSink> {
    return new ArchiveSink(options, await loadHasher());
  }

  get volumeId(): string {
    return this.#volume;
  }

  /**
   * Archives closed point `point` of the source (see the header for the steps). `full`
   * forces a full copy. Does not acknowledge anything on the volume: the caller does,
   * after this resolves.
   */
  async archivePoint(point: SnapshotPoint, options: { full?: boolean } = {}): Promise<ArchiveResult> {
    const { store, source } = this.#o;
    const n = point.n;
    const vol = this.#volume;
    const info = source.info;
    let retries = 0;
    const retry: RetryOptions = { ...this.#o.retry, signal: this.#o.signal, onRetry: () => void retries++ };
    const stats = { uploadedBytes: 0, objectsUploaded: 0, objectsSkipped: 0, folded: 0, repaired: 0 };
    const result = (extra: Partial<ArchiveResult>): ArchiveResult => ({ n, alreadyArchived: false, fullCopy: false, changedBlocks: 0, changedBytes: 0, ...stats, retries, ...extra });

    if ((await withRetry(() => store.head(manifestKey(vol, n)), retry)) !== null) {
      const existing = await readManifest(store, this.#hasher, vol, n, retry); // a damaged one must not pass for archived
      // Only this very point counts as archived: a manifest n written for another volume under
      // the same id (a second node archiving to the same prefix, a volume created anew, a
      // former primary's points after a failover) must not be acknowledged as this one's.
      if (!samePoint(existing.point, point)) throw foreignPoint(store.description, vol, existing.point, point);
      return result({ alreadyArchived: true });
    }

    let base: Manifest | null = null;
    if (options.full !== true && n > 0) {
      try {
        base = await readManifest(store, this.#hasher, vol, n - 1, retry);
      } catch (err) {
        if (!isHeadstartError(err, 'ARCHIVE_NOT_FOUND')) throw err;
      }
    }
    // A delta is only right over this volume's own point n-1: another volume's manifest n-1
    // (same id, another history) would make point n restore as a mix of both volumes.
    const prev = base === null ? undefined : source.snapshots().find((p) => p.n === n - 1);
    if (base !== null && prev !== undefined && !samePoint(base.point, prev)) throw foreignPoint(store.description, vol, base.point, prev);
    if (base !== null && (base.volume.size !== info.size || base.volume.blockSize !== info.blockSize)) {
      throw new HeadstartError('ARCHIVE_GEOMETRY', `archive of ${vol} holds a ${base.volume.size}-byte volume of ${base.volume.blockSize}-byte blocks; the source is ${info.size} / ${info.blockSize}`);
    }
    const geometry = { volume: { id: vol, size: info.size, blockSize: info.blockSize }, chunkBlocks: base?.chunkBlocks ?? this.#chunkBytes / info.blockSize };
    const chunkBlocks = geometry.chunkBlocks;
    const chunkCount = chunkCountOf(geometry);

    // Which chunks change, and which of their blocks.
    const changed = new Map<number, number[] | 'all'>();
    let changedBlocks = 0;
    if (base === null) {
      for (let c = 0; c < chunkCount; c++) changed.set(c, 'all');
      changedBlocks = info.size / info.blockSize;
    } else {
      for (const b of source.dirtyBlocks(n)) {
        const c = Math.floor(b / chunkBlocks);
        let list = changed.get(c) as number[] | undefined;
        if (list === undefined) changed.set(c, (list = []));
        list.push(b - c * chunkBlocks);
        changedBlocks++;
      }
    }

    const put = async (key: string, bytes: Buffer) => {
      await withRetry(() => store.put(key, bytes, { signal: this.#o.signal }), retry);
      stats.uploadedBytes += bytes.length;
    };
    const marker = pendingKey(vol, n);
    const resuming = (await withRetry(() => store.head(marker), retry)) !== null;
    if (!resuming) await put(marker, Buffer.alloc(0));

    const chains = new Map<number, readonly ChainEntry[]>(base?.chunks ?? []);
    const queue = new PQueue({ concurrency: this.#o.concurrency ?? DEFAULT_CONCURRENCY });
    const failed = new AbortController();
    let done = 0;
    const tasks = [...changed].map(([c, rel]) =>
      queue.add(async () => {
        if (failed.signal.aborted) return;
        if (this.#o.signal?.aborted) throw new HeadstartError('ARCHIVE_ABORTED', `archiving point ${n} of ${vol}: cancelled`);
        const entry = await this.#archiveChunk(point, c, rel, chunkBlocksOf(geometry, c), chunkBlocks, chains.get(c), resuming, put, stats, retry);
        if (entry === null) chains.delete(c);
        else chains.set(c, entry.kind === KIND_FULL ? [entry] : [...(chains.get(c) ?? []), entry]);
        done++;
        this.#o.onProgress?.({ n, chunksDone: done, chunksTotal: changed.size, uploadedBytes: stats.uploadedBytes });
      }),
    );
    try {
      await Promise.all(tasks);
    } catch (err) {
      // Queued tasks see the flag and return at once (clearing the queue would leave their promises pending).
      failed.abort();
      await Promise.allSettled(tasks);
      throw err;
    }

    const manifest: Manifest = {
      ...geometry,
      point: { n, scheduledAt: point.scheduledAt, closedAt: point.closedAt, lastSeq: point.lastSeq },
      createdAt: Math.round((this.#o.clock ?? Date).now()),
      base: base === null ? null : base.point.n,
      chunks: new Map([...chains].sort((a, b) => a[0] - b[0])),
    };
    await put(manifestKey(vol, n), encodeManifest(this.#hasher, manifest));
    await withRetry(() => store.delete(marker), retry).catch(() => undefined); // prune sweeps a leftover marker
    return result({ fullCopy: base === null, changedBlocks, changedBytes: changedBlocks * info.blockSize });
  }

  /** Builds and stores chunk c's object for point n; returns its chain entry, null if the chunk is now all zero. */
  async #archiveChunk(
    point: SnapshotPoint,
    c: number,
    rel: number[] | 'all',
    cb: number,
    chunkBlocks: number,
    chain: readonly ChainEntry[] | undefined,
    resuming: boolean,
    put: (key: string, bytes: Buffer) => Promise<void>,
    stats: { objectsUploaded: number; objectsSkipped: number; folded: number; repaired: number },
    retry: RetryOptions,
  ): Promise<ChainEntry | null> {
    const { source, store } = this.#o;
    const n = point.n;
    const bs = source.info.blockSize;
    const first = c * chunkBlocks;
    // Every block of the chunk changed: a full object costs the same as a delta and ends the chain.
    const whole = rel === 'all' || rel.length === cb;
    // Compaction: the chain would pass maxChain objects, or its deltas would outweigh the chunk.
    const deltaBytes = chain === undefined ? 0 : chain.reduce((s, e) => s + (e.kind === KIND_DELTA ? e.size : 0), 0) + rel.length * bs;
    const compact = chain !== undefined && (chain.length >= (this.#o.maxChain ?? DEFAULT_MAX_CHAIN) || deltaBytes >= cb * bs);
    const broken = chain !== undefined && !whole && !compact && !(await this.#chainIntact(c, chain, retry));
    if (broken) stats.repaired++;
    const fold = whole || compact || broken || (chain !== undefined && this.#o.mutate === true);
    let kind: ChunkKind;
    const blocks: { index: number; data: Uint8Array }[] = [];
    if (fold) {
      // The whole chunk as of n, straight from the volume (cheaper than reading the chain back).
      const data = await source.readBlocksAt(n, first, cb);
      for (let i = 0; i < cb; i++) blocks.push({ index: i, data: data.subarray(i * bs, (i + 1) * bs) });
      kind = KIND_FULL;
      if (chain !== undefined) stats.folded++;
    } else {
      // Only the changed blocks, read in contiguous runs.
      for (let i = 0; i < rel.length; ) {
        let j = i + 1;
        while (j < rel.length && rel[j] === rel[j - 1] + 1) j++;
        const data = await source.readBlocksAt(n, first + rel[i], j - i);
        for (let k = i; k < j; k++) blocks.push({ index: rel[k], data: data.subarray((k - i) * bs, (k - i + 1) * bs) });
        i = j;
      }
      // A chunk that was all zero has no chain: its first object is a full one, unlisted blocks zero.
      kind = chain === undefined ? KIND_FULL : KIND_DELTA;
    }
    const baseRef = kind === KIND_DELTA ? chain![chain!.length - 1] : null;
    const enc = encodeChunkObject(this.#hasher, { kind, volume: this.#volume, blockSize: bs, chunk: c, chunkBlocks: cb, point: n, base: baseRef === null ? null : { point: baseRef.point, kind: baseRef.kind }, blocks });
    if (kind === KIND_FULL && enc.payloadBytes === 0) return null; // all zero: the manifest leaves the chunk out
    const key = objectKey(this.#volume, c, { point: n, kind });
    // Keys of n are a function of (chunk, n, kind) and their bytes of the volume as of n, so an
    // object an interrupted run already stored is exactly this one.
    const existing = resuming ? await withRetry(() => store.head(key), retry) : null;
    if (existing !== null && existing.size === enc.bytes.length) stats.objectsSkipped++;
    else {
      await put(key, enc.bytes);
      stats.objectsUploaded++;
    }
    this.#present.add(key);
    return { point: n, kind, size: enc.bytes.length, hash: enc.hash };
  }

  /** Whether every object of chunk c's chain is in the store with the size its manifest recorded. */
  async #chainIntact(c: number, chain: readonly ChainEntry[], retry: RetryOptions): Promise<boolean> {
    for (const e of chain) {
      const key = objectKey(this.#volume, c, e);
      if (this.#present.has(key)) continue;
      const found = await withRetry(() => this.#o.store.head(key), retry);
      if (found === null || found.size !== e.size) return false;
      this.#present.add(key);
    }
    return true;
  }

  /**
   * Brings the archive up to date with the volume and acknowledges each point as soon as
   * its manifest is stored: a full copy of the sink's baseline if it has none yet, then
   * every closed point after the acknowledged one, in order.
   */
  async catchUp(volume: ArchiveSinkSource, sinkName = DEFAULT_SINK_NAME): Promise<ArchiveResult[]> {
    let state = volume.sinks().find((s) => s.name === sinkName) ?? (await volume.addSink(sinkName));
    const out: ArchiveResult[] = [];
    const points = () => volume.snapshots();
    if (state.acked === null) {
      const p = points().find((q) => q.n === state.baseline);
      if (p === undefined) return out; // the baseline point has not closed yet
      out.push(await this.archivePoint(p, { full: true }));
      await volume.acknowledge(sinkName, p.n);
      state = volume.sinks().find((s) => s.name === sinkName)!;
    }
    for (const p of points()) {
      if (p.n <= (state.acked ?? -1)) continue;
      out.push(await this.archivePoint(p));
      await volume.acknowledge(sinkName, p.n);
    }
    return out;
  }
}

type PointStamp = { readonly n: number; readonly scheduledAt: number; readonly closedAt: number; readonly lastSeq: number };

/** The same point of the same volume history (a replica's committed point carries its source's stamp). */
function samePoint(a: PointStamp, b: PointStamp): boolean {
  return a.n === b.n && a.scheduledAt === b.scheduledAt && a.closedAt === b.closedAt && a.lastSeq === b.lastSeq;
}

function foreignPoint(where: string, vol: string, archived: PointStamp, ours: PointStamp): HeadstartError {
  const t = (ms: number) => new Date(ms).toISOString();
  return new HeadstartError(
    'ARCHIVE_GEOMETRY',
    `${where} already holds a point ${archived.n} of volume ${vol} that this volume did not take (closed ${t(archived.closedAt)}, write ${archived.lastSeq}; this volume's point ${ours.n} closed ${t(ours.closedAt)}, write ${ours.lastSeq}): ` +
      'another volume archives under the same id, this volume was created anew, or this site was promoted and the archive holds points of the former primary that it never received (they are that primary\'s last points: keep them); archive under another prefix or volume id, or move those points aside',
  );
}

export function createArchiveSink(options: ArchiveSinkOptions): Promise<ArchiveSink> {
  return ArchiveSink.create(options);
}
