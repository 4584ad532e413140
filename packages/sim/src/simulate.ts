/**
 * The trace evaluator's simulator: replays a workload through the planner (the same
 * VolumePlanner the engine runs) over a link model, and judges each snapshot with the
 * DESIGN's figures: M(n), S(n), redundancy S/M, completion lag (commit - T(n)).
 *
 * Time advances event by event (writes, closes) and by planner ticks; the link is a fluid
 * FIFO: a block handed over at t finishes at max(t, link free) + size / rate. The judge is
 * independent of the planner's own bookkeeping: it knows every block's write times, so a
 * block sent for snapshot n counts only if it carried n's final version, and snapshot n
 * commits (in order) once every block of its dirty set arrived in its final version.
 */
import { HeadstartError } from '@headstart/errors';
import { VolumePlanner, defaults, type PlannerOptions, type Policy } from '@headstart/planner';
import { BlockHistory } from './history';
import type { LinkModel } from './link';
import { PlainPlanner } from './plain';
import type { Workload } from './workload';

/** The engine's policies, plus `plain`: the reference planner (plain.ts), a yardstick. */
export type SimPolicy = Policy | 'plain';

export interface SimOptions {
  /** Snapshot interval (s): closes at interval, 2 x interval, ... while within the trace. */
  readonly interval: number;
  readonly link: LinkModel;
  readonly policy: SimPolicy;
  readonly blockSize?: number;
  /** Planner overrides (K, L, PT...); not applied to `plain`. */
  readonly planner?: Partial<PlannerOptions>;
  /** Reuse one history across the policies of a run (it is the expensive part). */
  readonly history?: BlockHistory;
  /** Tell the planner the link's mean throughput up front (as an engine knows its configured cap). */
  readonly hintLink?: boolean;
  /** Seconds between the simulator's calls of the planner (default: its replan cadence). */
  readonly tickSeconds?: number;
  /**
   * The engine restarts every `every` s (at the first tick from then on with every closed
   * snapshot sent: the simulator's planner holds their queue, the engine's shipper does): a
   * new planner takes over, starting from what the old one learnt (`warm`, as a node does
   * from its saved state) or cold; it hears the open snapshot's writes so far, as the
   * engine's does from its write log, and offers them anew; those the old one had sent
   * and nobody wrote since do not move again (the engine's replica says it has them).
   * Not for `plain`.
   */
  readonly restart?: { readonly every: number; readonly warm: boolean };
  /** Called after every planner tick (diagnostics; not for `plain`). */
  readonly onTick?: (now: number, planner: VolumePlanner) => void;
  /** Called after every tick, any policy: how far into the judged span (`until` s) the run is. */
  readonly onProgress?: (now: number, until: number) => void;
}

export interface SnapshotFigures {
  readonly n: number;
  readonly T: number;
  /** Minimal bytes: block size x |dirty set|. */
  readonly M: number;
  /** Payload bytes sent for n, resends included. */
  readonly S: number;
  readonly commitAt: number;
  readonly lag: number;
}

export interface SimResult {
  readonly policy: SimPolicy;
  readonly snapshots: SnapshotFigures[];
  readonly plannerMemoryBytes: number;
  readonly totals: { presentBytes: number; expectedResendBytes: number; collidedBytes: number };
  /** How many times the planner was restarted (SimOptions.restart). */
  readonly restarts: number;
}

const TOTALS = ['presentBytes', 'expectedResendBytes', 'collidedBytes'] as const;

export function snapshotCount(w: Workload, interval: number): number {
  return Math.floor(w.duration / interval + 1e-9);
}

export function historyFor(w: Workload, interval: number, blockSize = 4096): BlockHistory {
  return new BlockHistory(w, blockSize, snapshotCount(w, interval) * interval);
}

export function simulate(w: Workload, options: SimOptions): SimResult {
  const I = options.interval;
  const bs = options.blockSize ?? 4096;
  const N = snapshotCount(w, I);
  if (N < 1) throw new HeadstartError('PLANNER_BAD_INPUT', `trace ${w.name} (${w.duration.toFixed(0)} s) is shorter than one ${I} s interval`);
  const until = N * I;
  const history = options.history ?? new BlockHistory(w, bs, until);
  const T = (n: number) => n * I;
  const from = (n: number) => (n === 1 ? -Infinity : T(n - 1));

  // The judge's view: |dirty set| of each snapshot.
  const need = new Float64Array(N + 2);
  for (const [, times] of history.entries()) {
    let prev = -1;
    for (const t of times) {
      const n = Math.max(1, Math.ceil(t / I - 1e-12));
      if (n !== prev && n <= N) need[n]++;
      prev = n;
    }
  }

  const plannerFrom = (n: number, learnt?: Uint8Array) =>
    new VolumePlanner({
      volumeSize: Math.ceil(w.volumeSize / bs) * bs,
      blockSize: bs,
      policy: options.policy as Policy,
      openSnapshot: n,
      closeAt: T(n),
      // Snapshot n spans [T(n - 1), T(n)): the planner's replan cadence (a share of the
      // interval, its default, the same the engine runs with) is then the simulator's tick.
      openedAt: T(n - 1),
      future: history,
      ...(options.hintLink === false ? {} : { linkHint: options.link.mean }),
      ...options.planner,
      learnt,
    });
  let planner = options.policy === 'plain' ? new PlainPlanner({ blockSize: bs, interval: I, closeAt: T(1), bytesPerSecond: options.link.mean }) : plannerFrom(1);
  const restart = options.restart;
  if (restart !== undefined && !(restart.every > 0)) throw new HeadstartError('PLANNER_BAD_OPTION', `restart interval ${restart.every} must be a positive number of seconds`);
  let nextRestart = restart?.every ?? Infinity;
  let restarts = 0;
  /** With restarts: per snapshot, when each block was last sent (see the send loop). */
  const sentAt: Map<number, Map<number, number>> | null = restart === undefined ? null : new Map();
  /** Totals of the planners a restart replaced. */
  const carried = { presentBytes: 0, expectedResendBytes: 0, collidedBytes: 0 };

  // One tick per planner replan (DEFAULT_REPLAN_SHARE of the interval, within its bounds).
  const dt = options.tickSeconds ?? defaults.replanSeconds(I);
  const sent = new Float64Array(N + 2);
  const got = new Float64Array(N + 2);
  const lastFinish = new Float64Array(N + 2);
  const commitAt = new Float64Array(N + 2);
  const satisfied = new Map<number, Set<number>>();
  let committed = 0;
  let linkFree = 0;
  // Acks in flight: finish times and bytes, FIFO.
  const ackTime: number[] = [];
  const ackBytes: number[] = [];
  let ackHead = 0;
  let wi = 0;
  let k = 1;
  let nextTick = 0;

  const tryCommit = (closedUpTo: number) => {
    while (committed < closedUpTo && got[committed + 1] >= need[committed + 1]) {
      const n = committed + 1;
      commitAt[n] = Math.max(T(n), lastFinish[n], committed > 0 ? commitAt[committed] : 0);
      satisfied.delete(n);
      sentAt?.delete(n);
      committed = n;
    }
  };

  let guard = 0;
  while (committed < N) {
    const tw = wi < w.count && w.time[wi] <= until ? w.time[wi] : Infinity;
    const tc = k <= N ? T(k) : Infinity;
    if (tw <= tc && tw <= nextTick) {
      planner.onWrite({ time: tw, offset: w.offset[wi], length: w.length[wi] });
      wi++;
      continue;
    }
    if (tc <= nextTick) {
      planner.onClose(k, tc, T(k + 1));
      k++;
      nextTick = tc;
      tryCommit(k - 1);
      continue;
    }
    const now = nextTick;
    if (now >= nextRestart && planner instanceof VolumePlanner && k <= N && planner.status(now).closedBytes === 0) {
      // The restart: a new planner for the open snapshot k, which (like the engine's, from
      // its write log) first hears the writes k had so far and offers them anew (the send
      // loop below moves only those the replica does not hold yet).
      for (const key of TOTALS) carried[key] += planner.totals[key];
      planner = plannerFrom(k, restart!.warm ? planner.exportLearnt() : undefined);
      let first = wi;
      while (first > 0 && w.time[first - 1] > T(k - 1)) first--;
      for (let j = first; j < wi; j++) planner.onWrite({ time: w.time[j], offset: w.offset[j], length: w.length[j] });
      nextRestart = now + restart!.every;
      restarts++;
    }
    let acked = 0;
    while (ackHead < ackTime.length && ackTime[ackHead] <= now) acked += ackBytes[ackHead++];
    if (acked > 0) planner.onAcked(acked, now);
    if (ackHead > 4096 && ackHead * 2 > ackTime.length) {
      ackTime.splice(0, ackHead);
      ackBytes.splice(0, ackHead);
      ackHead = 0;
    }
    const rate = options.link.rateAt(now);
    // A rate limiter with a burst allowance (a token bucket) lets an idle link catch up on
    // up to `burstBytes` at once: its idle time counts as credit, at most burst / rate s.
    const credit = (options.link.burstBytes ?? 0) / rate;
    if (linkFree < now - credit) linkFree = now - credit;
    const start = linkFree;
    // Keep the link busy until the next tick: hand over every block that would start before
    // it. A block may outlast the tick (a slow link): it still starts the moment the link
    // frees up, as on a real link with a send queue. (Counting only blocks that also finish
    // within the tick left a link slower than a block per tick idle for up to a tick per
    // block: 1.67 s per block instead of 1 s at 1 block/s and 0.83 s ticks.)
    const ahead = now + dt - start;
    const budget = ahead > 0 ? Math.ceil((rate * ahead) / bs - 1e-9) * bs : 0;
    const items = budget >= bs ? planner.next(now, budget) : [];
    for (const { n, block } of items) {
      if (sentAt !== null && n <= N) {
        // The engine's shipper never sends a block whose content the replica already holds
        // for n (the hashes it learns at RESUME): after a restart, the new planner offers
        // again what the old one pre-sent, and unless it was written since, nothing moves.
        let at = sentAt.get(n);
        if (at === undefined) sentAt.set(n, (at = new Map()));
        const prev = at.get(block);
        if (prev !== undefined && history.nextWriteAfter(block, prev) > now) {
          ackTime.push(now); // done at once, as far as the planner can tell
          ackBytes.push(bs);
          continue;
        }
        at.set(block, now);
      }
      linkFree += bs / rate;
      const finish = Math.max(now, linkFree);
      ackTime.push(finish);
      ackBytes.push(bs);
      if (n < 1 || n > N + 1) throw new HeadstartError('PLANNER_BAD_INPUT', `planner sent block ${block} for unknown snapshot ${n}`);
      if (n > N) continue; // beyond the judged range
      sent[n] += bs;
      if (!history.writtenIn(block, from(n), T(n))) throw new HeadstartError('PLANNER_BAD_INPUT', `planner sent block ${block} for snapshot ${n}, which did not write it`);
      // Closed snapshots are read as of their close (preserved copies): always final.
      const final = n < k ? true : history.nextWriteAfter(block, now) > T(n);
      if (!final) continue;
      let set = satisfied.get(n);
      if (set === undefined) satisfied.set(n, (set = new Set()));
      if (set.has(block)) continue;
      set.add(block);
      got[n]++;
      if (finish > lastFinish[n]) lastFinish[n] = finish;
    }
    if (planner instanceof VolumePlanner) options.onTick?.(now, planner);
    options.onProgress?.(now, until);
    tryCommit(k - 1);
    if (committed >= N) break;
    const nextEvent = Math.min(wi < w.count && w.time[wi] <= until ? w.time[wi] : Infinity, k <= N ? T(k) : Infinity);
    if (planner.idle && items.length === 0 && linkFree <= now) {
      if (nextEvent === Infinity) {
        if (++guard > 2) throw new HeadstartError('PLANNER_BAD_INPUT', `${options.policy} planner stopped with snapshot ${committed + 1} incomplete (${got[committed + 1]} of ${need[committed + 1]} blocks)`);
        nextTick = now + dt;
      } else nextTick = Math.max(now + dt, nextEvent);
    } else {
      nextTick = now + dt;
    }
  }

  const snapshots: SnapshotFigures[] = [];
  for (let n = 1; n <= N; n++) snapshots.push({ n, T: T(n), M: need[n] * bs, S: sent[n], commitAt: commitAt[n], lag: commitAt[n] - T(n) });
  const totals = { ...carried };
  for (const key of TOTALS) totals[key] += planner.totals[key];
  return { policy: options.policy, snapshots, plannerMemoryBytes: planner.memoryBytes, totals, restarts };
}
