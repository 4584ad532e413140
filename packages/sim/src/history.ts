/**
 * Every block's write times, from the whole trace: what the oracle is told (the next write
 * to a block) and what the simulator judges with (a snapshot's dirty set, and whether a
 * block sent at time t carried the version that snapshot closed with).
 */
import type { OracleFuture } from '@headstart/planner';
import type { Workload } from './workload';

export class BlockHistory implements OracleFuture {
  private readonly times = new Map<number, number[]>();

  constructor(w: Workload, blockSize: number, until: number) {
    for (let i = 0; i < w.count; i++) {
      const t = w.time[i];
      if (t > until) break;
      const first = Math.floor(w.offset[i] / blockSize);
      const end = Math.ceil((w.offset[i] + w.length[i]) / blockSize);
      for (let b = first; b < end; b++) {
        const list = this.times.get(b);
        if (list === undefined) this.times.set(b, [t]);
        else if (list[list.length - 1] !== t) list.push(t);
      }
    }
  }

  get blocks(): number {
    return this.times.size;
  }

  entries(): IterableIterator<[number, number[]]> {
    return this.times.entries();
  }

  nextWriteAfter(block: number, time: number): number {
    const list = this.times.get(block);
    if (list === undefined) return Infinity;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid] <= time) lo = mid + 1;
      else hi = mid;
    }
    return lo < list.length ? list[lo] : Infinity;
  }

  /** Whether `block` was written in `(from, to]`. */
  writtenIn(block: number, from: number, to: number): boolean {
    return this.nextWriteAfter(block, from) <= to;
  }
}
