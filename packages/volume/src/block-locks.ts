/**
 * FIFO locks per block.
 *
 * Two requests touching the same block must not interleave: an unaligned write reads and
 * rewrites its edge blocks, and the copy-on-write of a closed snapshot's block must read
 * the content that every earlier write left there. Each request registers on all its blocks
 * in one synchronous step, so whoever registers first is ahead on every block both share
 * and no cycle (deadlock) can form. Uncontended, a lock costs one Map lookup per block.
 */
export class BlockLocks {
  private readonly tails = new Map<number, Promise<void>>();

  /** Waits until `[first, first + count)` is free, then holds it until `release()` is called. */
  async acquire(first: number, count: number): Promise<() => void> {
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const waits: Promise<void>[] = [];
    for (let b = first; b < first + count; b++) {
      const prev = this.tails.get(b);
      if (prev !== undefined) waits.push(prev);
      this.tails.set(b, mine);
    }
    if (waits.length > 0) await Promise.all(waits);
    return () => {
      for (let b = first; b < first + count; b++) if (this.tails.get(b) === mine) this.tails.delete(b);
      release();
    };
  }

  /** Resolves once every lock taken before this call has been released. */
  async drain(): Promise<void> {
    await Promise.all([...new Set(this.tails.values())]);
  }

  get held(): number {
    return this.tails.size;
  }
}
