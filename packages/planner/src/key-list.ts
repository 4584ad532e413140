/** A growable list of block numbers in a Float64Array (block numbers can exceed 2^32). */
export class KeyList {
  data: Float64Array;
  length = 0;

  constructor(initial = 1024) {
    this.data = new Float64Array(initial);
  }

  push(key: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = key;
  }

  /** A trimmed copy of the keys. */
  toArray(): Float64Array {
    return this.data.slice(0, this.length);
  }

  clear(): void {
    this.length = 0;
    // Do not keep a huge array after a burst: a TiB volume's planner must stay small.
    if (this.data.length > 1 << 16) this.data = new Float64Array(1024);
  }

  get memoryBytes(): number {
    return this.data.byteLength;
  }
}
