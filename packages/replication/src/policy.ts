/**
 * Pre-send policies: WHICH blocks of the open snapshot to send, WHEN. The shipper asks
 * `next(now, budgetBytes, view)` whenever it has link budget (window and rate limit) and
 * sends what comes back; blocks it is not given stay pending. After the snapshot closes,
 * the shipper sends everything left at full rate whatever the policy (DESIGN: "after
 * close, everything left is sent at full link rate"). The predictive planner
 * (@headstart/planner) implements this same interface.
 */

export interface PresendView {
  /** The open snapshot's number. */
  readonly snapshot: number;
  readonly blockSize: number;
  /** Blocks of the open snapshot written and not sent since their last write, oldest write first. */
  readonly pending: ReadonlySet<number>;
  /** Link throughput B measured from acknowledged bytes, bytes/s (0 until measured). */
  readonly throughput: number;
  /**
   * The link's wire bytes per payload byte, as measured (1 until then; below 1 on a
   * compressed link with compressible data). A rate cap limits wire bytes: it lets
   * cap / wireRatio payload bytes a second through.
   */
  readonly wireRatio?: number;
}

export interface PresendPolicy {
  readonly name: string;
  /** Blocks to send now: a subset of view.pending worth at most budgetBytes. */
  next(now: number, budgetBytes: number, view: PresendView): readonly number[];
}

/** Journal mirroring (DRBD protocol A, RBD journal mirroring): every write as soon as possible. */
export function continuousPolicy(): PresendPolicy {
  return {
    name: 'continuous',
    next(_now, budgetBytes, view) {
      const max = Math.floor(budgetBytes / view.blockSize);
      const out: number[] = [];
      for (const b of view.pending) {
        if (out.length >= max) break;
        out.push(b);
      }
      return out;
    },
  };
}

/** Snapshot shipping (ZFS incremental send, RBD snapshot mirroring): nothing before the close. */
export function atSnapshotPolicy(): PresendPolicy {
  return { name: 'at-snapshot', next: () => [] };
}

export function policyByName(name: 'continuous' | 'at-snapshot'): PresendPolicy {
  return name === 'continuous' ? continuousPolicy() : atSnapshotPolicy();
}
