/**
 * FIFO locks per block.
 *
 * Two requests touching the same block must not interleave: an unaligned write reads and
 * rewrites its edge blocks, and the copy-on-write of a closed snapshot's block must read
 * the content that every earlier write left there. Each request registers on all its blocks
 * in one synchronous step (`enter`), so whoever registers first is ahead on every block both
 * share and no cycle (deadlock) can form.
 *
 * Cost: this sits on every write. Uncontended (the common case: a 4 KiB random write load
 * rarely has two requests on one block), a hold is one small object and one Map get/set per
 * block; no promise, closure or array is made. Only a request that finds an earlier hold on
 * one of its blocks gets a promise to wait on, and the earlier hold a list of its waiters.
 */
export class Hold {
  /** Earlier holds on shared blocks not yet released. */
  waitingOn = 0;
  released = false;
  /** Later holds waiting for this one (allocated only under contention). */
  successors: Hold[] | null = null;
  /** Resolves the promise of `BlockLocks.ready`, if someone waits. */
  wake: (() => void) | null = null;
  /** Resolvers of `drain()` calls waiting for this hold's release. */
  drainers: (() => void)[] | null = null;

  constructor(
    readonly first: number,
    readonly count: number,
  ) {}
}

export class BlockLocks {
  private readonly tails = new Map<number, Hold>();

  /**
   * Registers `[first, first + count)` now (synchronously: registration order is lock
   * order). The hold is granted when `waitingOn` is 0; else await `ready(hold)`. Every hold
   * must be given back with `leave`, granted or not yet.
   */
  enter(first: number, count: number): Hold {
    const hold = new Hold(first, count);
    for (let b = first; b < first + count; b++) {
      const prev = this.tails.get(b);
      if (prev !== undefined) {
        // A hold registers on all its blocks in one go: if `prev` already lists it, it was
        // through another shared block just now.
        const list = (prev.successors ??= []);
        if (list[list.length - 1] !== hold) {
          list.push(hold);
          hold.waitingOn++;
        }
      }
      this.tails.set(b, hold);
    }
    return hold;
  }

  /** Resolves once every earlier hold on the blocks of `hold` has been released. */
  ready(hold: Hold): Promise<void> {
    if (hold.waitingOn === 0) return Promise.resolve();
    return new Promise((resolve) => (hold.wake = resolve));
  }

  /** Releases `hold`: the next waiter on each of its blocks may go. */
  leave(hold: Hold): void {
    if (hold.released) return;
    hold.released = true;
    for (let b = hold.first; b < hold.first + hold.count; b++) if (this.tails.get(b) === hold) this.tails.delete(b);
    const next = hold.successors;
    if (next !== null) {
      hold.successors = null;
      for (const s of next) {
        if (--s.waitingOn === 0 && s.wake !== null) {
          const wake = s.wake;
          s.wake = null;
          wake();
        }
      }
    }
    const drainers = hold.drainers;
    if (drainers !== null) {
      hold.drainers = null;
      for (const d of drainers) d();
    }
  }

  /** Waits until `[first, first + count)` is free, then holds it until `release()` is called. */
  async acquire(first: number, count: number): Promise<() => void> {
    const hold = this.enter(first, count);
    if (hold.waitingOn > 0) await this.ready(hold);
    return () => this.leave(hold);
  }

  /**
   * Resolves once every hold taken before this call has been released. The latest hold on
   * each block is released only after every earlier one there, so waiting for those is enough.
   */
  async drain(): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const hold of new Set(this.tails.values())) {
      if (!hold.released) waits.push(new Promise<void>((resolve) => (hold.drainers ??= []).push(resolve)));
    }
    await Promise.all(waits);
  }

  get held(): number {
    return this.tails.size;
  }
}
