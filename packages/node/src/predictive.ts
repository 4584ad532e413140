/**
 * The engine's side of the predictive planner: adapts @headstart/planner (pure, times in
 * seconds) to the replication shipper's PresendPolicy (which blocks of the open snapshot to
 * send now). The planner sees every write of the volume, every close and the link
 * throughput the engine measures; the shipper asks it what to pre-send.
 *
 * - Closed points: the shipper sends them itself, at full rate, from the volume's dirty
 *   sets; the planner runs with `shipsClosed`, so it only keeps their size as a backlog
 *   for its start rule.
 * - Link throughput: the engine measures it (the shipper's meter over acknowledged bytes)
 *   and states it with `setThroughput`; see LinkGauge for which measurements count.
 * - Planner clock: `timeScale` planner seconds per wall-clock second (1 in production). A
 *   time-compressed replay (bench:replay runs a trace 60x faster) sets its speedup, so the
 *   planner sees the workload's own time: its time constants (replan cadence, the start
 *   rule's slack L, the model's exposure credits and decay) then mean what they mean on the
 *   real volume and in the trace evaluator, instead of 60 times as much workload time.
 * - Restarts: the planner starts from what the volume's last planner learnt (`learnt`, saved
 *   by the node) and first hears the open snapshot's writes from the write log, at their
 *   own times; writes the saved state already covers only make their blocks dirty again.
 * - Zeroes (trim, write-zeroes) are not the planner's: they go on the wire as a flag, not
 *   their bytes, so they are neither a resend risk nor link time, and the evaluator drops
 *   them too. Handed to it, `mkfs.ext4` (which discards the whole device) made every block
 *   of the volume dirty in its per-block state: 359 MiB and a 2.5 s replan every 2.5 s for
 *   a 16 GiB volume, with D counting 16 GiB that move in seconds. They are kept here as
 *   ranges and offered after the planner's own blocks, whenever the link has room.
 */
import { isHeadstartError } from '@headstart/errors';
import { createPlanner, defaults, type PlannerOptions, type PlannerStatus, type SendItem, type VolumePlanner } from '@headstart/planner';
import type { PresendPolicy, PresendView } from '@headstart/replication';
import type { Volume } from '@headstart/volume';

export interface PredictivePolicy extends PresendPolicy {
  /** The open snapshot's close was (re)scheduled. */
  schedule(closeAtMs: number): void;
  onClose(n: number, closedAtMs: number, nextCloseAtMs: number | null): void;
  /** What the planner sees, in wall-clock units (seconds, epoch seconds, bytes per second). */
  status(nowMs: number): PlannerStatus;
  /** What the planner has learnt, for `learnt` of the next policy of this volume (see the node). */
  exportLearnt(): Uint8Array;
  dispose(): void;
}

/**
 * The shipper's throughput meter counts acknowledged bytes over a window: that is the
 * link's capacity only while the sender kept it busy. So a reading lowers the estimate only
 * after the planner has filled every budget the shipper offered for a whole window (the link,
 * not the planner, was the limit); otherwise it can only raise it. Never above what the
 * configured rate limit lets through: it is a hard cap on the bytes the link carries, which
 * are the payload times the link's wire ratio (a compressed link carries more payload than
 * its cap; capped at the cap itself, its planner took it for a link 4x slower than it was).
 */
export class LinkGauge {
  private estimate: number | null;
  private busySince: number | null = null;
  private lastCall = -Infinity;

  constructor(
    private readonly cap: number | undefined,
    /** The meter's window (ms): a reading covers this much past time. */
    private readonly windowMs = 5000,
    /** A gap between the shipper's calls longer than this means the link may have idled. */
    private readonly gapMs = 250,
  ) {
    this.estimate = cap !== undefined && cap > 0 ? cap : null;
  }

  /**
   * Starts from a throughput measured before (a restart's saved planner state) while there
   * is no estimate: readings then raise it, or lower it after a saturated window, as usual.
   */
  seed(bytesPerSecond: number): void {
    if (this.estimate !== null || !(bytesPerSecond > 0)) return;
    this.estimate = this.cap !== undefined && this.cap > 0 ? Math.min(this.cap, bytesPerSecond) : bytesPerSecond;
  }

  /** Bytes per wall-clock second, or null while unknown. */
  get bytesPerSecond(): number | null {
    return this.estimate;
  }

  /**
   * One call of the shipper at `nowMs`: `measured` is its meter, `saturated` whether the
   * planner filled the budget, `wireRatio` the link's wire bytes per payload byte.
   */
  observe(nowMs: number, measured: number, saturated: boolean, wireRatio = 1): void {
    if (nowMs - this.lastCall > this.gapMs) this.busySince = null;
    this.lastCall = nowMs;
    if (!saturated) this.busySince = null;
    else if (this.busySince === null) this.busySince = nowMs;
    const ceiling = this.cap !== undefined && this.cap > 0 && wireRatio > 0 ? this.cap / wireRatio : Infinity;
    if (!(measured > 0) || !Number.isFinite(measured)) {
      if (this.estimate !== null && this.estimate > ceiling) this.estimate = ceiling;
      return;
    }
    const capacity = this.busySince !== null && nowMs - this.busySince >= this.windowMs;
    const next = this.estimate === null || capacity ? measured : Math.max(this.estimate, measured);
    this.estimate = Math.min(next, ceiling);
  }
}

export function predictivePolicy(o: {
  volume: Volume;
  K?: number;
  L?: number;
  PT?: number;
  /** Most dirty blocks of an open point the planner tracks to pre-send (DEFAULT_MAX_OPEN_BLOCKS). */
  maxOpenBlocks?: number;
  /** Open point n got more dirty blocks than that: the rest ship at its close. Once per point. */
  onUntracked?: (n: number, limit: number) => void;
  /** The link's configured rate limit (bytes/s), if any. */
  linkHint?: number;
  /** Planner seconds per wall-clock second (a time-compressed replay: its speedup). Default 1. */
  timeScale?: number;
  nextCloseAt: () => number | null;
  /** What an earlier policy of this volume learnt (its exportLearnt), to start warm. */
  learnt?: Uint8Array;
  /** `learnt` could not be used (damaged, another version): the planner starts cold. */
  onLearntRefused?: (err: unknown) => void;
}): PredictivePolicy {
  const v = o.volume;
  const scale = o.timeScale ?? 1;
  if (!(scale > 0) || !Number.isFinite(scale)) throw new RangeError(`predictive policy timeScale ${scale} must be a positive number`);
  const originMs = Date.now();
  /** Wall-clock ms -> planner seconds (the wall clock itself when scale is 1). */
  const sec = (ms: number) => (scale === 1 ? ms / 1000 : originMs / 1000 + ((ms - originMs) / 1000) * scale);
  /** Planner seconds -> wall-clock ms. */
  const wallMs = (s: number) => (scale === 1 ? s * 1000 : originMs + ((s - originMs / 1000) / scale) * 1000);
  const firstClose = o.nextCloseAt();
  const lastClose = v.latestClosed?.closedAt;
  const gauge = new LinkGauge(o.linkHint);
  const options: PlannerOptions = {
    volumeSize: v.size,
    blockSize: v.blockSize,
    policy: 'predictive',
    K: o.K,
    L: o.L,
    PT: o.PT,
    linkHint: o.linkHint === undefined ? undefined : o.linkHint / scale,
    openSnapshot: v.openSnapshot,
    closeAt: firstClose === null ? Infinity : sec(firstClose),
    // Its interval (and so its replan cadence) starts at the last close, if the volume had one.
    openedAt: lastClose === undefined || lastClose > Date.now() ? undefined : sec(lastClose),
    shipsClosed: true,
    maxOpenBlocks: o.maxOpenBlocks,
  };
  // A time-compressed replay's planner clock starts at this process's start: times saved by
  // an earlier process mean nothing on it.
  const learnt = scale === 1 ? o.learnt : undefined;
  let planner: VolumePlanner;
  try {
    planner = createPlanner({ ...options, learnt });
  } catch (err) {
    if (learnt === undefined || !isHeadstartError(err) || err.code !== 'PLANNER_BAD_STATE') throw err;
    o.onLearntRefused?.(err);
    planner = createPlanner(options);
  }
  let stated: number | null = null;
  const restoredB = planner.status(sec(Date.now())).B;
  if (learnt !== undefined && restoredB !== null) {
    gauge.seed(restoredB * scale);
    stated = gauge.bytesPerSecond;
  }
  let lastT = -Infinity;
  /** Planner time never goes back (events of one millisecond may arrive out of order). */
  const at = (ms: number) => (lastT = Math.max(lastT, sec(ms)));
  // The open snapshot's writes before this policy existed (a restart in mid-interval): from
  // the write log, at their own times, so the planner knows the whole dirty set (its D and
  // what it may pre-send) and each block's age. Without them it would see only the writes
  // after the restart, fire its start rule late and leave the rest for after the close.
  const zeroes = new ZeroRanges(v.blockSize);
  let toldOf = -1;
  /** The operator hears once per point that its planner stopped tracking (its lag grows). */
  const tellUntracked = () => {
    if (planner.untrackedBlocks === 0 || toldOf === planner.openSnapshot) return;
    toldOf = planner.openSnapshot;
    o.onUntracked?.(toldOf, o.maxOpenBlocks ?? defaults.DEFAULT_MAX_OPEN_BLOCKS);
  };
  for (const e of v.openWrites()) {
    if (e.kind === 'write') planner.onWrite({ time: at(e.time), offset: e.offset, length: e.length });
    else zeroes.add(v.openSnapshot, e.offset, e.length);
  }
  tellUntracked();
  at(Date.now());
  const unsubscribe = v.onWrite((e) => {
    if (e.kind === 'write') {
      planner.onWrite({ time: at(e.time), offset: e.offset, length: e.length });
      tellUntracked();
    } else zeroes.add(e.snapshot, e.offset, e.length);
  });

  return {
    name: 'predictive',
    next(nowMs: number, budgetBytes: number, view: PresendView): readonly number[] {
      const t = at(nowMs);
      if (view.snapshot !== planner.openSnapshot) return []; // a close is in progress: wait for onClose
      const items = planner.next(t, budgetBytes);
      const out: number[] = [];
      const back: SendItem[] = [];
      for (const item of items) {
        if (item.n === view.snapshot && view.pending.has(item.block)) out.push(item.block);
        else back.push(item);
      }
      // Not pending at the shipper (it holds no newer write of it): nothing goes, so the
      // planner must not count it as pre-sent.
      if (back.length > 0) planner.requeue(back);
      // Zeroed blocks with what room is left; one the planner knows as written since (data
      // over the zeroes) is its to send.
      const room = Math.floor(budgetBytes / view.blockSize) - out.length;
      if (room > 0) zeroes.take(view.snapshot, room, (b) => view.pending.has(b) && !planner.isDirty(b), out);
      gauge.observe(nowMs, view.throughput, (out.length + 1) * view.blockSize > budgetBytes, view.wireRatio);
      const B = gauge.bytesPerSecond;
      if (B !== null && B !== stated) {
        planner.setThroughput(B / scale, t);
        stated = B;
      }
      return out;
    },
    schedule(closeAtMs: number) {
      planner.schedule(sec(closeAtMs));
    },
    onClose(n: number, closedAtMs: number, nextCloseAtMs: number | null) {
      const t = at(closedAtMs);
      zeroes.closed(n);
      // A point closed before the planner existed. One above its open point: closes it was
      // not told of (see VolumePlanner.onClose), folded in. (Ignored, as before, they left
      // the planner on an old point for good: no pre-sends, a D that never drained.)
      if (n < planner.openSnapshot) return;
      planner.onClose(n, t, nextCloseAtMs === null ? undefined : sec(nextCloseAtMs));
    },
    status(nowMs: number) {
      const s = planner.status(Math.max(lastT, sec(nowMs)));
      if (scale === 1) return s;
      return {
        ...s,
        B: s.B === null ? null : s.B * scale,
        TS: s.TS / scale,
        predictedStartAt: wallMs(s.predictedStartAt) / 1000,
        newDirtyRate: s.newDirtyRate * scale,
      };
    },
    exportLearnt() {
      return planner.exportLearnt();
    },
    dispose() {
      unsubscribe();
    },
  };
}

/**
 * The open snapshot's zeroed ranges (trim, write-zeroes), in the order they came, with a
 * cursor: each block is offered once per zeroing; the shipper sends those of a closed
 * snapshot itself.
 */
export class ZeroRanges {
  private ranges: { n: number; first: number; end: number }[] = [];
  private next = 0;

  constructor(private readonly blockSize: number) {}

  add(n: number, offset: number, length: number): void {
    if (length <= 0) return;
    this.ranges.push({ n, first: Math.floor(offset / this.blockSize), end: Math.ceil((offset + length) / this.blockSize) });
  }

  /** Up to `count` blocks of snapshot `n` that `wanted` accepts, appended to `out`. */
  take(n: number, count: number, wanted: (block: number) => boolean, out: number[]): void {
    let left = count;
    while (left > 0 && this.ranges.length > 0) {
      const r = this.ranges[0];
      if (r.n !== n) {
        if (r.n > n) return; // a later snapshot's: not yet
        this.ranges.shift();
        this.next = 0;
        continue;
      }
      if (this.next < r.first) this.next = r.first;
      while (left > 0 && this.next < r.end) {
        const b = this.next++;
        if (wanted(b)) {
          out.push(b);
          left--;
        }
      }
      if (this.next >= r.end) {
        this.ranges.shift();
        this.next = 0;
      }
    }
  }

  /** Snapshot `n` closed: its ranges (and older ones) are the shipper's now. */
  closed(n: number): void {
    const before = this.ranges.length;
    this.ranges = this.ranges.filter((r) => r.n > n);
    if (this.ranges.length !== before) this.next = 0;
  }
}
