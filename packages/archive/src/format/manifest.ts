/**
 * Manifests: one per archived snapshot point, written last, naming every object the
 * point needs. Per chunk that is not all zero, the chain of objects to lay over each
 * other: a full object first, then deltas in point order. Each entry pins the object's
 * size and whole-object xxh64, so a restore detects a missing, truncated or replaced
 * object rather than rebuilding something else.
 *
 * Header (msgpack): volume {id, size, blockSize}, chunkBlocks, point {n, scheduledAt,
 * closedAt, lastSeq}, createdAt, base (n of the manifest this one was built on, or null
 * for a full copy), chunks: [[chunk, [[point, kind, size, hash(8 bytes LE)], ...]], ...]
 * ascending by chunk. No payload.
 */
import { HeadstartError } from '@headstart/errors';
import { checkInt, decodeEnvelope, encodeEnvelope, KIND_DELTA, KIND_FULL, KIND_MANIFEST, Shape } from './envelope';
import { MAX_BLOCK_SIZE, MAX_CHUNK_BLOCKS, type ChunkKind } from './chunk';
import type { Hasher } from './hash';

export interface ChainEntry {
  readonly point: number;
  readonly kind: ChunkKind;
  /** Bytes of the stored object. */
  readonly size: number;
  /** xxh64 of the whole stored object. */
  readonly hash: bigint;
}

export interface ArchivedPoint {
  readonly n: number;
  readonly scheduledAt: number;
  readonly closedAt: number;
  readonly lastSeq: number;
}

export interface Manifest {
  readonly volume: { readonly id: string; readonly size: number; readonly blockSize: number };
  readonly chunkBlocks: number;
  readonly point: ArchivedPoint;
  readonly createdAt: number;
  readonly base: number | null;
  /** Chunk index -> chain, in ascending chunk order. Absent chunks are all zero. */
  readonly chunks: ReadonlyMap<number, readonly ChainEntry[]>;
}

export function encodeManifest(hasher: Hasher, m: Manifest): Buffer {
  const chunks: unknown[] = [];
  for (const c of [...m.chunks.keys()].sort((a, b) => a - b)) {
    chunks.push([c, m.chunks.get(c)!.map((e) => { const h = Buffer.alloc(8); h.writeBigUInt64LE(e.hash); return [e.point, e.kind, e.size, h]; })]);
  }
  const header = { volume: { ...m.volume }, chunkBlocks: m.chunkBlocks, point: { ...m.point }, createdAt: m.createdAt, base: m.base, chunks };
  return encodeEnvelope(hasher, KIND_MANIFEST, header).bytes;
}

export function decodeManifest(hasher: Hasher, bytes: Uint8Array, what: string): Manifest {
  const env = decodeEnvelope(hasher, bytes, what);
  if (env.kind !== KIND_MANIFEST) throw new HeadstartError('ARCHIVE_CORRUPT', `${what}: a chunk object where a manifest was expected`);
  if (env.payload.length !== 0) throw new HeadstartError('ARCHIVE_CORRUPT', `${what}: a manifest carries no payload`);
  const s = Shape.of(what, env.header);
  const v = s.sub('volume');
  const blockSize = v.int('blockSize', 512, MAX_BLOCK_SIZE);
  if ((blockSize & (blockSize - 1)) !== 0) throw v.fail('block size is not a power of two');
  const size = v.int('size', blockSize);
  if (size % blockSize !== 0) throw v.fail('size is not a multiple of the block size');
  const volume = { id: v.str('id', 128), size, blockSize };
  const chunkBlocks = s.int('chunkBlocks', 1, MAX_CHUNK_BLOCKS);
  const p = s.sub('point');
  const point = { n: p.int('n'), scheduledAt: p.int('scheduledAt'), closedAt: p.int('closedAt'), lastSeq: p.int('lastSeq') };
  const createdAt = s.int('createdAt');
  const base = s.has('base') ? s.int('base', 0, point.n - 1) : null;
  const chunkCount = Math.ceil(size / blockSize / chunkBlocks);
  const list = s.array('chunks', chunkCount);
  const chunks = new Map<number, ChainEntry[]>();
  const bad = (why: string) => s.fail(`chunks: ${why}`);
  let prevChunk = -1;
  for (const item of list) {
    if (!Array.isArray(item) || item.length !== 2 || !Array.isArray(item[1])) throw bad('each entry must be [chunk, chain]');
    const chunk = checkInt(item[0], prevChunk + 1, chunkCount - 1, () => bad('chunk indexes must ascend inside the volume'));
    prevChunk = chunk;
    const chain: ChainEntry[] = [];
    let prevPoint = -1;
    for (const e of item[1] as unknown[]) {
      if (!Array.isArray(e) || e.length !== 4) throw bad(`chunk ${chunk}: each chain entry must be [point, kind, size, hash]`);
      const entryPoint = checkInt(e[0], prevPoint + 1, point.n, () => bad(`chunk ${chunk}: chain points must ascend and not pass the manifest's point`));
      prevPoint = entryPoint;
      const kind = checkInt(e[1], KIND_FULL, KIND_DELTA, () => bad(`chunk ${chunk}: bad object kind`)) as ChunkKind;
      if ((chain.length === 0) !== (kind === KIND_FULL)) throw bad(`chunk ${chunk}: a chain is one full object then deltas`);
      const objSize = checkInt(e[2], 20, Number.MAX_SAFE_INTEGER, () => bad(`chunk ${chunk}: bad object size`));
      if (!(e[3] instanceof Uint8Array) || e[3].length !== 8) throw bad(`chunk ${chunk}: bad object hash`);
      chain.push({ point: entryPoint, kind, size: objSize, hash: Buffer.from(e[3]).readBigUInt64LE(0) });
    }
    if (chain.length === 0) throw bad(`chunk ${chunk}: empty chain`);
    chunks.set(chunk, chain);
  }
  return { volume, chunkBlocks, point, createdAt, base, chunks };
}
