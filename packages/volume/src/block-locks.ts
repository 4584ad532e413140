/**
 * FIFO locks per block.
 *
 * Two requests touching the same block must not interleave: an unaligned write reads and
 * rewrites its edge blocks, and the copy-on-write of a closed snapshot's block must read
 * the content that every earlier write left there. Each request registers its block range
 * in one synchronous step (`enter`) and waits for every earlier, not yet released hold that
 * shares a block with it; holds only ever wait for earlier ones, so no cycle (deadlock) can
 * form, and overlapping requests run in arrival order.
 *
 * Ranges, not blocks: holds are filed under "granules" of GRANULE_BLOCKS blocks, each entry
 * keeping its exact range, so a 1 MiB write (256 blocks of 4 KiB) costs 4-5 map operations
 * instead of 256 on enter and again on leave; per-block entries were a tenth of the event
 * loop's time on 1 MiB sequential writes. Two holds in one granule that share no block do
 * not wait for each other.
 *
 * Cost: this sits on every write. Uncontended (the common case: a 4 KiB random-write load
 * rarely has two requests in one granule), a hold is one small object and one Map get/set
 * per granule; no promise, closure or array is made. Only a request that finds an earlier
 * overlapping hold gets a promise to wait on, and the earlier hold a list of its waiters.
 */
const GRANULE_BLOCKS = 64;

export class Hold {
  /** Earlier overlapping holds not yet released. */
  waitingOn = 0;
  released = false;
  /** Later holds waiting for this one (allocated only under contention). */
  successors: Hold[] | null = null;
  /** Resolves the promise of `BlockLocks.ready`, if someone waits. */
  wake: (() => void) | null = null;
  /** Resolvers of `drain()` calls waiting for this hold's release. */
  drainers: (() => void)[] | null = null;
  /** The last `enter` that counted this hold as a predecessor (counts a hold once). */
  mark = 0;

  constructor(
    readonly first: number,
    readonly count: number,
  ) {}
}

/** The holds filed under one granule: one hold alone, or several in arrival order. */
type Slot = Hold | Hold[];

export class BlockLocks {
  private readonly granules = new Map<number, Slot>();
  private stamp = 0;
  private live = 0;

  /**
   * Registers `[first, first + count)` now (synchronously: registration order is lock
   * order). The hold is granted when `waitingOn` is 0; else await `ready(hold)`. Every hold
   * must be given back with `leave`, granted or not yet.
   */
  enter(first: number, count: number): Hold {
    const hold = new Hold(first, count);
    const stamp = ++this.stamp;
    const end = first + count;
    this.live++;
    if (count <= 0) return hold;
    const last = Math.floor((end - 1) / GRANULE_BLOCKS);
    for (let g = Math.floor(first / GRANULE_BLOCKS); g <= last; g++) {
      const slot = this.granules.get(g);
      if (slot === undefined) {
        this.granules.set(g, hold);
      } else if (slot instanceof Hold) {
        this.follow(slot, hold, stamp, first, end);
        this.granules.set(g, [slot, hold]);
      } else {
        for (let i = 0; i < slot.length; i++) this.follow(slot[i], hold, stamp, first, end);
        slot.push(hold);
      }
    }
    return hold;
  }

  /** Makes `hold` wait for `prev` if their ranges share a block (once per pair). */
  private follow(prev: Hold, hold: Hold, stamp: number, first: number, end: number): void {
    if (prev.mark === stamp || prev.first >= end || first >= prev.first + prev.count) return;
    prev.mark = stamp;
    (prev.successors ??= []).push(hold);
    hold.waitingOn++;
  }

  /** Resolves once every earlier hold on the blocks of `hold` has been released. */
  ready(hold: Hold): Promise<void> {
    if (hold.waitingOn === 0) return Promise.resolve();
    return new Promise((resolve) => (hold.wake = resolve));
  }

  /** Releases `hold`: the next waiters on its blocks may go. */
  leave(hold: Hold): void {
    if (hold.released) return;
    hold.released = true;
    this.live--;
    if (hold.count > 0) {
      const last = Math.floor((hold.first + hold.count - 1) / GRANULE_BLOCKS);
      for (let g = Math.floor(hold.first / GRANULE_BLOCKS); g <= last; g++) {
        const slot = this.granules.get(g);
        if (slot === hold) {
          this.granules.delete(g);
        } else if (slot !== undefined && !(slot instanceof Hold)) {
          const i = slot.indexOf(hold);
          if (i >= 0) slot.splice(i, 1);
          if (slot.length === 1) this.granules.set(g, slot[0]);
        }
      }
    }
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

  /** Resolves once every hold taken before this call has been released. */
  async drain(): Promise<void> {
    const waits: Promise<void>[] = [];
    const seen = new Set<Hold>();
    for (const slot of this.granules.values()) {
      for (const hold of slot instanceof Hold ? [slot] : slot) {
        if (hold.released || seen.has(hold)) continue;
        seen.add(hold);
        waits.push(new Promise<void>((resolve) => (hold.drainers ??= []).push(resolve)));
      }
    }
    await Promise.all(waits);
  }

  /** Holds registered and not yet released. */
  get held(): number {
    return this.live;
  }
}
