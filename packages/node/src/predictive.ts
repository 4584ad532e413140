/**
 * The engine's side of the predictive planner: adapts @headstart/planner (pure, times in
 * seconds) to the replication shipper's PresendPolicy (which blocks of the open snapshot to
 * send now). The planner sees every write of the volume, every close and the link
 * throughput the shipper measures; the shipper asks it what to pre-send.
 *
 * The shipper sends closed snapshots itself, at full rate, from the volume's dirty sets.
 * The planner also queues them (its simulator needs that), so at each close the adapter
 * hands the planner's closed queue over at once and counts it as delivered, without
 * letting that hand-over move the throughput estimate.
 */
import { createPlanner, type PlannerStatus } from '@headstart/planner';
import type { PresendPolicy, PresendView } from '@headstart/replication';
import type { Volume } from '@headstart/volume';

export interface PredictivePolicy extends PresendPolicy {
  /** The open snapshot's close was (re)scheduled. */
  schedule(closeAtMs: number): void;
  onClose(n: number, closedAtMs: number, nextCloseAtMs: number | null): void;
  status(nowMs: number): PlannerStatus;
  dispose(): void;
}

export function predictivePolicy(o: {
  volume: Volume;
  K?: number;
  L?: number;
  PT?: number;
  linkHint?: number;
  nextCloseAt: () => number | null;
}): PredictivePolicy {
  const v = o.volume;
  const sec = (ms: number) => ms / 1000;
  const planner = createPlanner({
    volumeSize: v.size,
    blockSize: v.blockSize,
    policy: 'predictive',
    K: o.K,
    L: o.L,
    PT: o.PT,
    linkHint: o.linkHint,
    openSnapshot: v.openSnapshot,
    closeAt: o.nextCloseAt() === null ? Infinity : sec(o.nextCloseAt()!),
  });
  let lastT = sec(Date.now());
  const unsubscribe = v.onWrite((e) => {
    lastT = Math.max(lastT, sec(e.time));
    planner.onWrite({ time: lastT, offset: e.offset, length: e.length });
  });
  let lastFeed: number | null = null;

  /** Tells the planner what the shipper measured: acknowledged bytes since the last call. */
  const feedThroughput = (t: number, view: PresendView) => {
    if (lastFeed !== null && view.throughput > 0 && t > lastFeed) planner.onAcked(view.throughput * (t - lastFeed), t);
    lastFeed = t;
  };

  return {
    name: 'predictive',
    next(nowMs: number, budgetBytes: number, view: PresendView): readonly number[] {
      const t = Math.max(lastT, sec(nowMs));
      lastT = t;
      feedThroughput(t, view);
      const items = planner.next(t, budgetBytes);
      const out: number[] = [];
      const back = [];
      for (const item of items) {
        if (item.n === view.snapshot && view.pending.has(item.block)) out.push(item.block);
        else if (item.n === view.snapshot) back.push(item);
      }
      // Blocks the shipper no longer holds as pending were sent already by it: nothing to do.
      void back;
      return out;
    },
    schedule(closeAtMs: number) {
      planner.schedule(sec(closeAtMs));
    },
    onClose(n: number, closedAtMs: number, nextCloseAtMs: number | null) {
      const t = Math.max(lastT, sec(closedAtMs));
      lastT = t;
      if (n !== planner.status(t).open) return; // a point closed before the planner existed
      planner.onClose(n, t, nextCloseAtMs === null ? undefined : sec(nextCloseAtMs));
      const closedBytes = planner.status(t).closedBytes;
      if (closedBytes > 0) {
        const handed = planner.next(t, closedBytes).length * v.blockSize;
        // Zero-length interval: the estimator ignores it, the in-flight count drops.
        planner.onAcked(0, t);
        planner.onAcked(handed, t);
        lastFeed = t;
      }
    },
    status(nowMs: number) {
      return planner.status(Math.max(lastT, sec(nowMs)));
    },
    dispose() {
      unsubscribe();
    },
  };
}
