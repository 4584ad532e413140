/**
 * Checksums on the wire: xxhash64 per block (xxhash-wasm: fast, no native build) and a
 * per-snapshot digest that both ends compute independently over (block, block hash) of
 * every block of snapshot n. The digest is a sum mod 2^64 of a hash of each pair, so it
 * does not depend on the order blocks were sent in and a resent (collided) block just
 * replaces its term: the replica commits only when its staged set yields the same value.
 */
import xxhash, { type XXHashAPI } from 'xxhash-wasm';

let api: XXHashAPI | undefined;
let loading: Promise<XXHashAPI> | undefined;

/** Loads the wasm hasher once; every hash function below needs it loaded first. */
export async function loadHasher(): Promise<void> {
  if (api) return;
  loading ??= xxhash();
  api = await loading;
}

function hasher(): XXHashAPI {
  if (!api) throw new Error('xxhash not loaded: await loadHasher() first');
  return api;
}

/** xxhash64 of one block's content (an empty array stands for a zero block: see zeroAware). */
export function blockHash(data: Uint8Array): bigint {
  return hasher().h64Raw(data);
}

const zeroHashes = new Map<number, bigint>();
/** Hash of a block of zeroes of that size (how zero blocks are hashed, whatever their encoding). */
export function zeroBlockHash(blockSize: number): bigint {
  let h = zeroHashes.get(blockSize);
  if (h === undefined) {
    h = blockHash(new Uint8Array(blockSize));
    zeroHashes.set(blockSize, h);
  }
  return h;
}

const ZEROES = Buffer.alloc(64 * 1024);
/** True if every byte is zero (such blocks travel as empty data). Native memcmp per 64 KiB. */
export function isZero(data: Uint8Array): boolean {
  for (let at = 0; at < data.length; at += ZEROES.length) {
    const n = Math.min(ZEROES.length, data.length - at);
    if (Buffer.compare(data.subarray(at, at + n), ZEROES.subarray(0, n)) !== 0) return false;
  }
  return true;
}

const pair = Buffer.alloc(16);
function term(block: number, hash: bigint): bigint {
  pair.writeBigUInt64LE(BigInt(block), 0);
  pair.writeBigUInt64LE(hash, 8);
  return hasher().h64Raw(pair);
}

const MASK = (1n << 64n) - 1n;

/** Running digest of a snapshot's block set; add/replace/remove in any order. */
export class SnapshotDigest {
  private sum = 0n;
  private n = 0;
  add(block: number, hash: bigint): void {
    this.sum = (this.sum + term(block, hash)) & MASK;
    this.n++;
  }
  remove(block: number, hash: bigint): void {
    this.sum = (this.sum - term(block, hash)) & MASK;
    this.n--;
  }
  get value(): bigint {
    return this.sum;
  }
  get count(): number {
    return this.n;
  }
}

/** Hash of a range of blocks (initial sync compares these instead of moving the bytes). */
export function rangeHash(data: Uint8Array): bigint {
  return hasher().h64Raw(data);
}
