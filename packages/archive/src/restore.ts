/**
 * Restore: rebuilds any archived point into a raw image file (sparse: zero blocks are
 * never written) or into a block device such as a new Volume. Every object is verified on
 * the way (checksums, and that it is exactly the object the manifest pinned), so a
 * restore either produces the archived point byte for byte or fails with a code; a raw
 * image is written under a temporary name and renamed only once complete and fsynced.
 */
import { open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { HeadstartError } from '@headstart/errors';
import { createVolume, type BlockDevice, type Volume } from '@headstart/volume';
import { chunkBlocksOf, chunkCountOf, readChunk, readManifest, type ChunkData } from './catalog';
import { DEFAULT_CONCURRENCY } from './constants';
import { loadHasher } from './format/hash';
import type { Manifest } from './format/manifest';
import { checkVolumeId } from './layout';
import type { RetryOptions } from './retry';
import type { ObjectStore } from './store/types';

export interface RestoreProgress {
  readonly chunksDone: number;
  readonly chunksTotal: number;
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

export interface RestoreOptions {
  readonly store: ObjectStore;
  readonly volumeId: string;
  /** The archived point to restore. */
  readonly n: number;
  /** Chunks fetched ahead of the writer (default 2 for a local store, 8 for a remote one). */
  readonly concurrency?: number;
  readonly onProgress?: (p: RestoreProgress) => void;
  readonly retry?: Omit<RetryOptions, 'signal' | 'onRetry'>;
  readonly signal?: AbortSignal;
}

export interface RestoreResult {
  readonly n: number;
  readonly size: number;
  readonly blockSize: number;
  /** Bytes written to the target (zero blocks are skipped). */
  readonly bytesWritten: number;
  readonly chunks: number;
  readonly point: Manifest['point'];
}

type Sink = (offset: number, data: Buffer) => Promise<void>;

async function restoreInto(options: RestoreOptions, m: Manifest, write: Sink): Promise<RestoreResult> {
  const hasher = await loadHasher();
  const bs = m.volume.blockSize;
  const total = chunkCountOf(m);
  const retry = { ...options.retry, signal: options.signal };
  let chunksDone = 0;
  let bytesDone = 0;
  let bytesWritten = 0;
  const report = (bytes: number) => {
    chunksDone++;
    bytesDone += bytes;
    options.onProgress?.({ chunksDone, chunksTotal: total, bytesDone, bytesTotal: m.volume.size });
  };
  // Absent chunks are zero: nothing to write, only progress to report.
  for (let c = 0; c < total; c++) if (!m.chunks.has(c)) report(chunkBlocksOf(m, c) * bs);
  // Reads run ahead (up to `concurrency` chunks fetched and verified at once) while writes
  // go out one at a time in chunk order: the target sees one sequential writer, as a file
  // copy does, and the store's latency hides behind the writes.
  // A local store needs little read-ahead (more only queues reads in front of the writes in
  // Node's small thread pool); a remote one needs enough to cover its round trips.
  const ahead = options.concurrency ?? (options.store.localReads ? 2 : DEFAULT_CONCURRENCY);
  const order = [...m.chunks.keys()].sort((a, b) => a - b);
  // Chunk-sized object buffers are recycled once their chunk is written: fresh 4 MiB
  // allocations cost page faults, kernel zeroing and GC pressure on every chunk.
  const slab = m.chunkBlocks * bs + 64 * 1024;
  const free: ArrayBuffer[] = [];
  const alloc = (size: number) => (size >= slab / 2 && size <= slab ? Buffer.from(free.pop() ?? new ArrayBuffer(slab), 0, size) : Buffer.allocUnsafe(size));
  const reads: Promise<ChunkData | null>[] = [];
  const fetch = (i: number) => {
    const p = readChunk(options.store, hasher, m, order[i], retry, alloc);
    p.catch(() => undefined); // observed below, in order; never an unhandled rejection
    reads[i] = p;
  };
  const writeChunk = async (c: number, chunk: ChunkData | null) => {
    const cb = chunkBlocksOf(m, c);
    // Write runs of blocks that hold data; zero blocks stay holes.
    for (let b = 0; chunk !== null && b < cb; ) {
      if (chunk.nonZero[b] === 0) {
        b++;
        continue;
      }
      let e = b + 1;
      while (e < cb && chunk.nonZero[e] === 1) e++;
      await write((c * m.chunkBlocks + b) * bs, chunk.data.subarray(b * bs, e * bs));
      bytesWritten += (e - b) * bs;
      b = e;
    }
    if (chunk !== null && chunk.data.buffer.byteLength === slab && free.length < ahead + 1) free.push(chunk.data.buffer as ArrayBuffer);
    report(cb * bs);
  };
  try {
    for (let i = 0; i < order.length; i++) {
      if (options.signal?.aborted) throw new HeadstartError('ARCHIVE_ABORTED', `restore of point ${m.point.n}: cancelled`);
      if (reads[i] === undefined) fetch(i);
      const chunk = await reads[i];
      delete reads[i];
      // Start this chunk's write before queueing the next reads: Node's thread pool is
      // first come first served, and the writer must not wait behind read-ahead.
      const writing = writeChunk(order[i], chunk);
      for (let j = i + 1; j < Math.min(order.length, i + 1 + ahead); j++) if (reads[j] === undefined) fetch(j);
      await writing;
    }
  } finally {
    // Let reads still in flight settle before the caller closes or removes anything.
    await Promise.allSettled(reads.filter((r) => r !== undefined));
  }
  return { n: m.point.n, size: m.volume.size, blockSize: bs, bytesWritten, chunks: total, point: m.point };
}

async function manifestFor(options: RestoreOptions): Promise<Manifest> {
  checkVolumeId(options.volumeId);
  return readManifest(options.store, await loadHasher(), options.volumeId, options.n, options.retry);
}

/**
 * Restores point n into a new raw image at `path` (refuses to overwrite an existing file).
 * The image is sparse: zero blocks are holes.
 */
export async function restorePoint(options: RestoreOptions & { readonly path: string }): Promise<RestoreResult> {
  const m = await manifestFor(options);
  if (await stat(options.path).then(() => true, () => false)) {
    throw new HeadstartError('ARCHIVE_CONFIG', `restore target ${options.path} exists; restore never overwrites, choose a new path`);
  }
  const tmp = `${options.path}.partial`;
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(tmp, 'w');
  } catch (err) {
    // The target, not the store: a missing directory, no permission, a read-only file system.
    throw mapLocal(err, `cannot write the restore target ${tmp}`);
  }
  try {
    await fh.truncate(m.volume.size);
    const result = await restoreInto(options, m, async (offset, data) => {
      let off = 0;
      while (off < data.length) off += (await fh.write(data, off, data.length - off, offset + off)).bytesWritten;
    });
    await fh.sync();
    await fh.close();
    await rename(tmp, options.path);
    return result;
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw mapLocal(err, `restore to ${options.path}`);
  }
}

/** Restores point n into a block device that reads all zero (e.g. a freshly created Volume) of the archived size. */
export async function restoreToDevice(options: RestoreOptions & { readonly device: BlockDevice }): Promise<RestoreResult> {
  const m = await manifestFor(options);
  if (options.device.size !== m.volume.size) throw new HeadstartError('ARCHIVE_GEOMETRY', `target device is ${options.device.size} bytes; point ${m.point.n} is ${m.volume.size}`);
  const result = await restoreInto(options, m, (offset, data) => options.device.write(offset, data));
  await options.device.flush();
  return result;
}

/**
 * Restores point n into a new Volume at `dir` (same size and block size). With role
 * 'replica' the volume records the point as committed, so replication can seed a DR
 * replica from the archive and then ship only what the source wrote after n. A node finds
 * a replica's source by volume id (its configured name): pass `id` for that.
 */
export async function restoreToNewVolume(options: RestoreOptions & { readonly dir: string; readonly role?: 'primary' | 'replica'; readonly name?: string; readonly id?: string }): Promise<{ result: RestoreResult; volume: Volume }> {
  const m = await manifestFor(options);
  const role = options.role ?? 'primary';
  // Into a new or empty directory only: a volume's files would replace what is there (an
  // image.raw of something else truncated), and a failed restore removes what it made.
  const present = await readdir(options.dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(mapLocal(err, `restore to volume ${options.dir}`))));
  if (present.length > 0) throw new HeadstartError('ARCHIVE_CONFIG', `restore target ${options.dir} is not empty (${present.slice(0, 3).join(', ')}${present.length > 3 ? ', ...' : ''}); restore never overwrites, choose a new directory`);
  const volume = await createVolume(options.dir, { size: m.volume.size, blockSize: m.volume.blockSize, role, ...(options.name !== undefined ? { name: options.name } : {}), ...(options.id !== undefined ? { id: options.id } : {}) });
  const bs = m.volume.blockSize;
  try {
    // A replica's image changes only through applyBlocks (no write log); a primary takes plain writes.
    const write: Sink =
      role === 'replica'
        ? (offset, data) => volume.applyBlocks([{ block: offset / bs, data }])
        : (offset, data) => volume.write(offset, data);
    const result = await restoreInto(options, m, write);
    await volume.flush();
    if (role === 'replica') await volume.setCommitted({ ...m.point });
    return { result, volume };
  } catch (err) {
    await volume.shutdown().catch(() => undefined);
    // Never leave a half-restored volume behind: it would open (and a retry would find it,
    // VOLUME_EXISTS) though it holds neither the point nor a committed state.
    await rm(join(options.dir, 'image.raw'), { force: true }).catch(() => undefined);
    await rm(join(options.dir, 'meta.lmdb'), { force: true }).catch(() => undefined);
    await rm(join(options.dir, 'meta.lmdb-lock'), { force: true }).catch(() => undefined);
    await rmdir(options.dir).catch(() => undefined); // only if now empty: a directory we were given keeps its other files
    throw mapLocal(err, `restore to volume ${options.dir}`);
  }
}

/**
 * A local failure while writing the restore target: the target's problem (its disk full, a
 * directory unwritable), not the archive store's, which says "retried with backoff".
 */
function mapLocal(err: unknown, what: string): unknown {
  if (err instanceof HeadstartError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new HeadstartError('EXPORT_OUTPUT', `${what}: no space left on the target's device`, { cause: err });
  return new HeadstartError('EXPORT_OUTPUT', `${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}
