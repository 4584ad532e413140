/**
 * A set of block indices that stays small on huge, sparsely written volumes.
 *
 * A plain bitmap costs 32 MiB per TiB at 4 KiB blocks whatever is dirty, and a volume keeps
 * one set per closed-unacknowledged snapshot plus the open one. Instead, like a roaring
 * bitmap, the index space is cut into containers of 2^16 blocks: a container holds a sorted
 * Uint16Array while it has at most 4096 members (2 bytes each) and switches to an 8 KiB
 * bitmap beyond that, so memory follows the number of dirty blocks, not the volume size.
 *
 * Hand-written rather than a roaring library because it sits on the NBD write path (one
 * `add` per written block, no per-call FFI/wasm crossing) and needs only add/has/iterate.
 */

const CONTAINER_BITS = 16;
const CONTAINER_SPAN = 1 << CONTAINER_BITS;
const LOW_MASK = CONTAINER_SPAN - 1;
/** Past this many members an array container (2 B each) is larger than a bitmap (8 KiB). */
const ARRAY_MAX = 4096;

type Container = { kind: 'array'; values: Uint16Array; count: number } | { kind: 'bitmap'; words: Uint32Array; count: number };

export class BlockSet implements Iterable<number> {
  private readonly containers = new Map<number, Container>();
  private total = 0;

  static of(blocks: Iterable<number>): BlockSet {
    const set = new BlockSet();
    for (const b of blocks) set.add(b);
    return set;
  }

  get size(): number {
    return this.total;
  }

  /** Adds a block; returns true if it was not yet a member. */
  add(block: number): boolean {
    const key = Math.floor(block / CONTAINER_SPAN);
    const low = block & LOW_MASK;
    let c = this.containers.get(key);
    if (c === undefined) {
      c = { kind: 'array', values: new Uint16Array(4), count: 0 };
      this.containers.set(key, c);
    }
    if (c.kind === 'bitmap') {
      const word = low >>> 5;
      const bit = 1 << (low & 31);
      if ((c.words[word] & bit) !== 0) return false;
      c.words[word] |= bit;
      c.count++;
      this.total++;
      return true;
    }
    const at = lowerBound(c.values, c.count, low);
    if (at < c.count && c.values[at] === low) return false;
    if (c.count >= ARRAY_MAX) {
      const words = new Uint32Array(CONTAINER_SPAN / 32);
      for (let i = 0; i < c.count; i++) words[c.values[i] >>> 5] |= 1 << (c.values[i] & 31);
      words[low >>> 5] |= 1 << (low & 31);
      this.containers.set(key, { kind: 'bitmap', words, count: c.count + 1 });
      this.total++;
      return true;
    }
    if (c.count === c.values.length) {
      const grown = new Uint16Array(Math.min(ARRAY_MAX, c.values.length * 2));
      grown.set(c.values);
      c.values = grown;
    }
    c.values.copyWithin(at + 1, at, c.count);
    c.values[at] = low;
    c.count++;
    this.total++;
    return true;
  }

  /**
   * Adds `count` consecutive blocks from `first`, a container at a time (a 1 MiB write is
   * 256 blocks: one merge or a few word ORs instead of 256 searches and shifts).
   */
  addRange(first: number, count: number): void {
    const end = first + count;
    let b = first;
    while (b < end) {
      const key = Math.floor(b / CONTAINER_SPAN);
      const base = key * CONTAINER_SPAN;
      const stop = Math.min(end, base + CONTAINER_SPAN);
      this.addLowRange(key, b - base, stop - base);
      b = stop;
    }
  }

  /** Adds lows [lo, hi) to container `key`. */
  private addLowRange(key: number, lo: number, hi: number): void {
    let c = this.containers.get(key);
    if (c === undefined) {
      c = { kind: 'array', values: new Uint16Array(0), count: 0 };
      this.containers.set(key, c);
    }
    if (c.kind === 'array') {
      // Merge the run into the sorted array: members below it, the run, members above it.
      const from = lowerBound(c.values, c.count, lo);
      const to = lowerBound(c.values, c.count, hi);
      const count = from + (hi - lo) + (c.count - to);
      const added = count - c.count;
      if (added === 0) return;
      if (count > ARRAY_MAX) {
        const words = new Uint32Array(CONTAINER_SPAN / 32);
        for (let i = 0; i < c.count; i++) words[c.values[i] >>> 5] |= 1 << (c.values[i] & 31);
        c = { kind: 'bitmap', words, count: c.count };
        this.containers.set(key, c);
      } else {
        const values = c.values.length >= count ? c.values : new Uint16Array(Math.min(ARRAY_MAX, Math.max(count, c.values.length * 2, 4)));
        // Shift the members above the run first (set copies overlapping views of one buffer
        // correctly), then fill.
        values.set(c.values.subarray(to, c.count), from + (hi - lo));
        if (values !== c.values) values.set(c.values.subarray(0, from), 0);
        for (let i = 0; i < hi - lo; i++) values[from + i] = lo + i;
        c.values = values;
        c.count = count;
        this.total += added;
        return;
      }
    }
    const words = c.words;
    let at = lo;
    while (at < hi) {
      const word = at >>> 5;
      const bit = at & 31;
      const take = Math.min(32 - bit, hi - at);
      const mask = (take === 32 ? 0xffffffff : ((1 << take) - 1) << bit) >>> 0;
      const before = words[word];
      const fresh = popcount(mask & ~before);
      words[word] = before | mask;
      c.count += fresh;
      this.total += fresh;
      at += take;
    }
  }

  /** Removes a block; returns true if it was a member. A bitmap container stays a bitmap. */
  delete(block: number): boolean {
    const key = Math.floor(block / CONTAINER_SPAN);
    const c = this.containers.get(key);
    if (c === undefined) return false;
    const low = block & LOW_MASK;
    if (c.kind === 'bitmap') {
      const word = low >>> 5;
      const bit = 1 << (low & 31);
      if ((c.words[word] & bit) === 0) return false;
      c.words[word] &= ~bit;
    } else {
      const at = lowerBound(c.values, c.count, low);
      if (at >= c.count || c.values[at] !== low) return false;
      c.values.copyWithin(at, at + 1, c.count);
    }
    c.count--;
    this.total--;
    if (c.count === 0) this.containers.delete(key);
    return true;
  }

  has(block: number): boolean {
    const c = this.containers.get(Math.floor(block / CONTAINER_SPAN));
    if (c === undefined) return false;
    const low = block & LOW_MASK;
    if (c.kind === 'bitmap') return (c.words[low >>> 5] & (1 << (low & 31))) !== 0;
    const at = lowerBound(c.values, c.count, low);
    return at < c.count && c.values[at] === low;
  }

  /** Adds every member of `other`. */
  addAll(other: BlockSet): void {
    for (const b of other) this.add(b);
  }

  clear(): void {
    this.containers.clear();
    this.total = 0;
  }

  /** Members in ascending order. */
  *[Symbol.iterator](): IterableIterator<number> {
    const keys = [...this.containers.keys()].sort((a, b) => a - b);
    for (const key of keys) {
      const c = this.containers.get(key)!;
      const base = key * CONTAINER_SPAN;
      if (c.kind === 'array') {
        for (let i = 0; i < c.count; i++) yield base + c.values[i];
      } else {
        for (let w = 0; w < c.words.length; w++) {
          let word = c.words[w];
          while (word !== 0) {
            const bit = 31 - Math.clz32(word & -word);
            yield base + w * 32 + bit;
            word &= word - 1;
          }
        }
      }
    }
  }

  /** Runs of consecutive members, ascending: [first, count] pairs (for batched reads). */
  *runs(maxRun = Number.MAX_SAFE_INTEGER): IterableIterator<[number, number]> {
    let start = -1;
    let length = 0;
    for (const b of this) {
      if (start >= 0 && b === start + length && length < maxRun) {
        length++;
        continue;
      }
      if (start >= 0) yield [start, length];
      start = b;
      length = 1;
    }
    if (start >= 0) yield [start, length];
  }

  /** Approximate heap bytes held, for the memory figures. */
  byteSize(): number {
    let bytes = 0;
    for (const c of this.containers.values()) bytes += 48 + (c.kind === 'array' ? c.values.byteLength : c.words.byteLength);
    return bytes;
  }
}

function lowerBound(values: Uint16Array, count: number, x: number): number {
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

