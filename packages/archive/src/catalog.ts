/**
 * Reading the archive back: manifests and the chunk chains they name, every object
 * verified (envelope checksum, header shape, per-block checksums) and matched against
 * what the manifest pinned (size, whole-object hash, chunk, point, kind, delta base), so
 * a restore either rebuilds exactly the archived point or fails with ARCHIVE_CORRUPT /
 * ARCHIVE_NOT_FOUND.
 */
import { HeadstartError, isHeadstartError } from '@headstart/errors';
import { applyChunkObject, decodeChunkObject } from './format/chunk';
import { KIND_FULL } from './format/envelope';
import type { Hasher } from './format/hash';
import { decodeManifest, type ChainEntry, type Manifest } from './format/manifest';
import { manifestKey, manifestPrefix, objectKey, pointOfKey, protectedPrefix } from './layout';
import { withRetry, type RetryOptions } from './retry';
import type { ObjectStore } from './store/types';

export async function manifestPoints(store: ObjectStore, volume: string, retry?: RetryOptions): Promise<number[]> {
  const listed = await withRetry(() => store.list(manifestPrefix(volume)), retry);
  return listed.map((o) => pointOfKey(o.key, manifestPrefix(volume))).filter((n): n is number => n !== null).sort((a, b) => a - b);
}

export async function protectedPoints(store: ObjectStore, volume: string, retry?: RetryOptions): Promise<Set<number>> {
  const listed = await withRetry(() => store.list(protectedPrefix(volume)), retry);
  return new Set(listed.map((o) => pointOfKey(o.key, protectedPrefix(volume))).filter((n): n is number => n !== null));
}

/** Rejects with ARCHIVE_NOT_FOUND if point n has no manifest, ARCHIVE_CORRUPT if it is damaged or not point n of this volume. */
export async function readManifest(store: ObjectStore, hasher: Hasher, volume: string, n: number, retry?: RetryOptions): Promise<Manifest> {
  const key = manifestKey(volume, n);
  let bytes: Buffer;
  try {
    bytes = await withRetry(() => store.get(key), retry);
  } catch (err) {
    if (isHeadstartError(err, 'ARCHIVE_NOT_FOUND')) throw new HeadstartError('ARCHIVE_NOT_FOUND', `volume ${volume} has no archived point ${n} in ${store.description}`, { cause: err });
    throw err;
  }
  const m = decodeManifest(hasher, bytes, key);
  if (m.volume.id !== volume || m.point.n !== n) throw new HeadstartError('ARCHIVE_CORRUPT', `${key} describes point ${m.point.n} of volume ${m.volume.id}`);
  return m;
}

/** Fetches one chain entry's object and checks it is exactly the object the manifest pinned. */
export async function readChainObject(store: ObjectStore, hasher: Hasher, m: Manifest, chunk: number, chain: readonly ChainEntry[], i: number, retry?: RetryOptions, verifyBlocks = true, alloc?: (size: number) => Buffer) {
  const e = chain[i];
  const key = objectKey(m.volume.id, chunk, e);
  const bytes = await withRetry(() => store.get(key, { sizeHint: e.size, alloc }), retry);
  const fail = (why: string) => new HeadstartError('ARCHIVE_CORRUPT', `${key} (needed by point ${m.point.n}): ${why}`);
  if (bytes.length !== e.size) throw fail(`is ${bytes.length} bytes, the manifest recorded ${e.size}`);
  const obj = decodeChunkObject(hasher, bytes, key, { verifyBlocks });
  if (obj.hash !== e.hash) throw fail('is not the object the manifest recorded (hash differs)');
  if (obj.volume !== m.volume.id || obj.chunk !== chunk || obj.point !== e.point || obj.kind !== e.kind || obj.blockSize !== m.volume.blockSize) throw fail('header names another volume, chunk, point or kind');
  if (obj.chunkBlocks !== chunkBlocksOf(m, chunk)) throw fail(`holds ${obj.chunkBlocks} blocks, chunk ${chunk} has ${chunkBlocksOf(m, chunk)}`);
  if (i > 0 && (obj.base === null || obj.base.point !== chain[i - 1].point || obj.base.kind !== chain[i - 1].kind)) throw fail('overlays another object than the one before it in the chain');
  return obj;
}

export interface ChunkData {
  /** chunkBlocks x blockSize bytes: the chunk as of the manifest's point. */
  readonly data: Buffer;
  /** 1 where a block holds data, 0 where it is zero (known from the objects' block lists, no scan). */
  readonly nonZero: Uint8Array;
}

/**
 * Rebuilds one chunk as of the manifest's point, or null if the chunk is all zero. The
 * objects of the chain are fetched together (one round trip of latency, not one per
 * link) and laid in order. Where the chain's full object holds every block, its payload
 * becomes the chunk buffer and deltas patch it in place: no extra copy of 4 MiB per chunk.
 */
export async function readChunk(store: ObjectStore, hasher: Hasher, m: Manifest, chunk: number, retry?: RetryOptions, alloc?: (size: number) => Buffer): Promise<ChunkData | null> {
  const chain = m.chunks.get(chunk);
  if (chain === undefined) return null;
  // The envelope checksum covers every byte, so the per-block pass is skipped here (verify does it).
  const objects = await Promise.all(chain.map((_, i) => readChainObject(store, hasher, m, chunk, chain, i, retry, false, alloc)));
  const cb = chunkBlocksOf(m, chunk);
  const bs = m.volume.blockSize;
  const nonZero = new Uint8Array(cb);
  const first = objects[0];
  const data = first.blocks.length === cb ? first.payload : Buffer.alloc(cb * bs);
  for (const obj of objects) {
    if (obj !== first || data !== first.payload) applyChunkObject(data, obj);
    if (obj.kind === KIND_FULL) nonZero.fill(0);
    for (const b of obj.blocks) nonZero[b] = 1;
    for (const z of obj.zeros) nonZero[z] = 0;
  }
  return { data, nonZero };
}

export function chunkCountOf(m: { volume: { size: number; blockSize: number }; chunkBlocks: number }): number {
  return Math.ceil(m.volume.size / m.volume.blockSize / m.chunkBlocks);
}

export function chunkBlocksOf(m: { volume: { size: number; blockSize: number }; chunkBlocks: number }, chunk: number): number {
  const total = m.volume.size / m.volume.blockSize;
  return Math.min(m.chunkBlocks, total - chunk * m.chunkBlocks);
}
