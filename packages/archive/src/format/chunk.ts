/**
 * Chunk objects: the blocks of one chunk (a run of `chunkBlocks` contiguous blocks, 4 MiB
 * by default) as of one snapshot point.
 *
 * - full (kind 1): the chunk's whole content; blocks not listed are zero (so a mostly
 *   empty chunk stays small).
 * - delta (kind 2): overlays `base`, the chunk's previous object: listed `blocks` replace
 *   theirs with the payload, `zeros` became zero (trim / write-zeroes), every other block
 *   is the base's. This is what lets an immutable object store take incremental points.
 *
 * Header (msgpack): volume, blockSize, chunk, chunkBlocks, point, blocks (ascending
 * relative indexes with payload), zeros (delta only), hashes (xxh64 per payload block,
 * u64 LE each), base ({point, kind} of the overlaid object, delta only).
 * Payload: the listed blocks' bytes, in list order.
 */
import { HeadstartError } from '@headstart/errors';
import { checkAscending, decodeEnvelope, encodeEnvelope, KIND_DELTA, KIND_FULL, Shape } from './envelope';
import type { Hasher } from './hash';

export type ChunkKind = typeof KIND_FULL | typeof KIND_DELTA;

export interface ObjectRef {
  readonly point: number;
  readonly kind: ChunkKind;
}

export interface ChunkObjectInput {
  readonly kind: ChunkKind;
  readonly volume: string;
  readonly blockSize: number;
  readonly chunk: number;
  /** Blocks in this chunk (the last chunk of a volume may be short). */
  readonly chunkBlocks: number;
  readonly point: number;
  /** The overlaid object, for a delta. */
  readonly base: ObjectRef | null;
  /** Changed blocks, ascending relative index; all-zero data becomes a `zeros` entry (delta) or is left out (full). */
  readonly blocks: readonly { readonly index: number; readonly data: Uint8Array }[];
}

export interface ChunkObject {
  readonly kind: ChunkKind;
  readonly volume: string;
  readonly blockSize: number;
  readonly chunk: number;
  readonly chunkBlocks: number;
  readonly point: number;
  readonly base: ObjectRef | null;
  readonly blocks: readonly number[];
  readonly zeros: readonly number[];
  readonly payload: Buffer;
  /** xxh64 of the whole object (its trailer). */
  readonly hash: bigint;
}

export const MAX_BLOCK_SIZE = 1024 * 1024;
export const MAX_CHUNK_BLOCKS = 1 << 20;

const ZEROES = Buffer.alloc(MAX_BLOCK_SIZE);

/** Whether a block (at most MAX_BLOCK_SIZE bytes) is all zero: one native memcmp. */
export function isZero(data: Uint8Array): boolean {
  if (data.byteLength > ZEROES.length) return data.every((b) => b === 0);
  return ZEROES.compare(data, 0, data.byteLength, 0, data.byteLength) === 0;
}

export function encodeChunkObject(hasher: Hasher, input: ChunkObjectInput): { bytes: Buffer; hash: bigint; payloadBytes: number } {
  if (input.kind === KIND_DELTA && input.base === null) throw new HeadstartError('ARCHIVE_CONFIG', 'a delta object needs a base');
  const blocks: number[] = [];
  const zeros: number[] = [];
  const payload: Uint8Array[] = [];
  const hashes = Buffer.alloc(8 * input.blocks.length);
  let prev = -1;
  for (const b of input.blocks) {
    if (b.index <= prev || b.index >= input.chunkBlocks || b.data.length !== input.blockSize) {
      throw new HeadstartError('ARCHIVE_CONFIG', `chunk ${input.chunk}: block ${b.index} out of order, out of range or of the wrong size`);
    }
    prev = b.index;
    if (isZero(b.data)) {
      if (input.kind === KIND_DELTA) zeros.push(b.index);
      continue;
    }
    hashes.writeBigUInt64LE(hasher.h64(b.data), 8 * blocks.length);
    blocks.push(b.index);
    payload.push(b.data);
  }
  const header = {
    volume: input.volume,
    blockSize: input.blockSize,
    chunk: input.chunk,
    chunkBlocks: input.chunkBlocks,
    point: input.point,
    blocks,
    zeros,
    hashes: hashes.subarray(0, 8 * blocks.length),
    base: input.base === null ? null : { point: input.base.point, kind: input.base.kind },
  };
  const { bytes, hash } = encodeEnvelope(hasher, input.kind, header, payload);
  return { bytes, hash, payloadBytes: blocks.length * input.blockSize };
}

/**
 * Decodes and verifies: the envelope checksum (which covers every byte) and the header's
 * shape always; each block's own checksum too unless `verifyBlocks` is false (restore
 * skips that second pass over the payload: the envelope checksum already proves it).
 */
export function decodeChunkObject(hasher: Hasher, bytes: Uint8Array, what: string, options: { verifyBlocks?: boolean } = {}): ChunkObject {
  const env = decodeEnvelope(hasher, bytes, what);
  if (env.kind !== KIND_FULL && env.kind !== KIND_DELTA) throw new HeadstartError('ARCHIVE_CORRUPT', `${what}: a manifest where a chunk object was expected`);
  const s = Shape.of(what, env.header);
  const volume = s.str('volume', 128);
  const blockSize = s.int('blockSize', 512, MAX_BLOCK_SIZE);
  if ((blockSize & (blockSize - 1)) !== 0) throw s.fail('block size is not a power of two');
  const chunk = s.int('chunk');
  const chunkBlocks = s.int('chunkBlocks', 1, MAX_CHUNK_BLOCKS);
  const point = s.int('point');
  const blocks = checkAscending(s.array('blocks', chunkBlocks), chunkBlocks, () => s.fail('blocks must be ascending indexes inside the chunk'));
  const zeros = checkAscending(s.array('zeros', chunkBlocks), chunkBlocks, () => s.fail('zeros must be ascending indexes inside the chunk'));
  const hashes = s.bytes('hashes', 8 * blocks.length);
  let base: ObjectRef | null = null;
  if (env.kind === KIND_DELTA) {
    const b = s.sub('base');
    const kind = b.int('kind', KIND_FULL, KIND_DELTA) as ChunkKind;
    base = { point: b.int('point', 0, point - 1), kind };
    // A block cannot be both replaced and zeroed by one delta.
    const set = new Set(blocks);
    if (zeros.some((z) => set.has(z))) throw s.fail('a block is listed both as data and as zero');
  } else {
    if (s.has('base')) throw s.fail('a full object has no base');
    if (zeros.length > 0) throw s.fail('a full object lists no zeros');
  }
  if (env.payload.length !== blocks.length * blockSize) throw s.fail(`payload is ${env.payload.length} bytes, ${blocks.length} blocks of ${blockSize} need ${blocks.length * blockSize}`);
  for (let i = 0; options.verifyBlocks !== false && i < blocks.length; i++) {
    if (hasher.h64(env.payload.subarray(i * blockSize, (i + 1) * blockSize)) !== hashes.readBigUInt64LE(8 * i)) {
      throw s.fail(`block ${blocks[i]} fails its checksum`);
    }
  }
  return { kind: env.kind, volume, blockSize, chunk, chunkBlocks, point, base, blocks, zeros, payload: env.payload, hash: env.hash };
}

/** Lays one object over a chunk buffer (chunkBlocks x blockSize bytes). A full object resets the chunk first. */
export function applyChunkObject(target: Buffer, obj: ChunkObject): void {
  const bs = obj.blockSize;
  // A full object resets the chunk; one that lists every block overwrites all of it anyway.
  if (obj.kind === KIND_FULL && obj.blocks.length * bs !== target.length) target.fill(0);
  for (let i = 0; i < obj.blocks.length; i++) obj.payload.copy(target, obj.blocks[i] * bs, i * bs, (i + 1) * bs);
  for (const z of obj.zeros) target.fill(0, z * bs, (z + 1) * bs);
}
