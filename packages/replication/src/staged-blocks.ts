import { HeadstartError } from '@headstart/errors';

/** Slots are doubled when more than this share is taken (linear probing stays short below it). */
const MAX_LOAD = 0.7;
const FIRST_CAPACITY = 1024;
/** 2^30 slots (24 GiB of arrays) hold ~750 M blocks, a 2.8 TiB point at 4 KiB: past any memory here. */
const MAX_CAPACITY = 2 ** 30;

/**
 * The live staged blocks of one point: block -> the gen of the record holding its live copy,
 * and that copy's hash. An open-addressing table (linear probing) over three typed arrays,
 * 24 bytes a slot.
 *
 * Why not two JS Maps, as before: V8 caps a Map at 2^24 entries, so a point of more than
 * 16,777,216 blocks (64 GiB at 4 KiB: the initial sync of a larger volume) threw on the
 * replica once staged that far; and a Map entry with its BigInt hash took about four
 * times the memory of a slot here.
 */
export class StagedBlocks {
  /** block + 1; 0 marks a free slot (a fresh typed array is all zeroes). */
  private keys = new Float64Array(FIRST_CAPACITY);
  private gens = new Float64Array(FIRST_CAPACITY);
  private hashes = new BigUint64Array(FIRST_CAPACITY);
  private mask = FIRST_CAPACITY - 1;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Bytes held by the table (the dashboard's and the tests' measure of its cost). */
  get bytes(): number {
    return this.keys.byteLength + this.gens.byteLength + this.hashes.byteLength;
  }

  /** The gen of the record holding block's live copy, or undefined if it is not staged. */
  gen(block: number): number | undefined {
    const i = this.find(block);
    return i < 0 ? undefined : this.gens[i];
  }

  /** The hash of block's live copy, or undefined if it is not staged. */
  hash(block: number): bigint | undefined {
    const i = this.find(block);
    return i < 0 ? undefined : this.hashes[i];
  }

  /** Records block's live copy (replacing any earlier one). */
  put(block: number, gen: number, hash: bigint): void {
    let i = this.home(block);
    const key = block + 1;
    while (this.keys[i] !== 0 && this.keys[i] !== key) i = (i + 1) & this.mask;
    if (this.keys[i] === 0) {
      if (this.count + 1 > (this.mask + 1) * MAX_LOAD) {
        this.grow();
        this.put(block, gen, hash);
        return;
      }
      this.keys[i] = key;
      this.count++;
    }
    this.gens[i] = gen;
    this.hashes[i] = hash;
  }

  /** Forgets block; false if it was not staged. */
  delete(block: number): boolean {
    let i = this.find(block);
    if (i < 0) return false;
    // Backward-shift deletion: every entry after the freed slot in its probe run moves back
    // if its home is not between the hole and itself, so no lookup meets a false "free".
    for (let j = (i + 1) & this.mask; this.keys[j] !== 0; j = (j + 1) & this.mask) {
      const k = this.home(this.keys[j] - 1);
      const stays = i < j ? i < k && k <= j : i < k || k <= j;
      if (stays) continue;
      this.keys[i] = this.keys[j];
      this.gens[i] = this.gens[j];
      this.hashes[i] = this.hashes[j];
      i = j;
    }
    this.keys[i] = 0;
    this.count--;
    return true;
  }

  /** Calls fn for every staged block, in no particular order; fn returns false to stop. */
  forEach(fn: (block: number, gen: number, hash: bigint) => boolean | void): void {
    for (let i = 0; i <= this.mask; i++) {
      if (this.keys[i] !== 0 && fn(this.keys[i] - 1, this.gens[i], this.hashes[i]) === false) return;
    }
  }

  private find(block: number): number {
    const key = block + 1;
    for (let i = this.home(block); ; i = (i + 1) & this.mask) {
      const k = this.keys[i];
      if (k === key) return i;
      if (k === 0) return -1;
    }
  }

  /** The slot a block's probe starts at: both 32-bit halves of the block mixed (murmur3's finalizer). */
  private home(block: number): number {
    let h = (block >>> 0) ^ Math.imul(Math.floor(block / 2 ** 32) >>> 0, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) & this.mask;
  }

  private grow(): void {
    const capacity = (this.mask + 1) * 2;
    if (capacity > MAX_CAPACITY) {
      throw new HeadstartError('REPL_INTERNAL', `a staged point of more than ${Math.floor(MAX_CAPACITY * MAX_LOAD)} blocks does not fit in the replica's staging index`);
    }
    const { keys, gens, hashes } = this;
    this.keys = new Float64Array(capacity);
    this.gens = new Float64Array(capacity);
    this.hashes = new BigUint64Array(capacity);
    this.mask = capacity - 1;
    this.count = 0;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== 0) this.put(keys[i] - 1, gens[i], hashes[i]);
  }
}
