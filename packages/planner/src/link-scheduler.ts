/**
 * One link, many volumes: each tick's byte budget is divided by deadline, not first come
 * first served. A volume with a closed snapshot waiting (deadline passed) goes before one
 * whose close is still ahead, and among those the soonest close goes first. So that a
 * volume far from its deadline is never starved (its pre-send window would otherwise vanish
 * and its own close would then find a backlog), every volume with work first gets a small
 * guaranteed share of the budget; the rest goes by deadline.
 */
import type { SendItem } from './types';
import type { VolumePlanner } from './volume-planner';

export interface VolumeShare {
  readonly id: string;
  readonly items: SendItem[];
}

export class LinkScheduler {
  private readonly volumes = new Map<string, VolumePlanner>();

  constructor(
    /** Share of each tick's budget reserved, split evenly, for every volume with work. */
    private readonly reserve = 0.1,
  ) {}

  add(id: string, planner: VolumePlanner): void {
    this.volumes.set(id, planner);
  }

  remove(id: string): void {
    this.volumes.delete(id);
  }

  /** The tick's sends, volume by volume, in the order they should go on the link. */
  next(now: number, budgetBytes: number): VolumeShare[] {
    const waiting = [...this.volumes.entries()]
      .filter(([, p]) => !p.idle)
      .sort(([ia, a], [ib, b]) => a.deadline() - b.deadline() || (ia < ib ? -1 : ia > ib ? 1 : 0));
    const byId = new Map<string, SendItem[]>();
    let budget = budgetBytes;
    if (waiting.length > 0) {
      const floor = (budgetBytes * this.reserve) / waiting.length;
      for (const [id, p] of waiting) {
        if (this.reserve <= 0) break;
        const share = Math.max(floor, p.blockSize);
        if (budget < p.blockSize) break;
        const items = p.next(now, Math.min(share, budget));
        budget -= items.length * p.blockSize;
        byId.set(id, items);
      }
      for (const [id, p] of waiting) {
        if (budget < p.blockSize) continue;
        const items = p.next(now, budget);
        budget -= items.length * p.blockSize;
        const mine = byId.get(id);
        if (mine === undefined) byId.set(id, items);
        else mine.push(...items);
      }
    }
    return waiting.map(([id]) => ({ id, items: byId.get(id) ?? [] })).filter((s) => s.items.length > 0);
  }
}
