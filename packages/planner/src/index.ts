/**
 * @headstart/planner — when to send what (DESIGN "The planner").
 *
 * DEV DOCS
 * Pure and deterministic: every call carries its time (seconds, any fixed origin); nothing
 * reads a clock, a file or the network. The engine's shipper and the trace simulator
 * (@headstart/sim) drive the same object:
 *
 *   const p = createPlanner({ volumeSize, blockSize, policy: 'predictive', closeAt, openedAt?, K?, L?, PT?, linkHint?, shipsClosed? });
 *   p.onWrite({ time, offset, length })   // every write whose bytes go on the link, in time order
 *                                         // (zeroes go as a flag: the engine and the simulator keep them out)
 *   p.isDirty(block)                      // written in the open snapshot, as far as the planner was told
 *   p.untrackedBlocks                     // shipsClosed: dirty blocks over maxOpenBlocks, never pre-sent
 *   p.onClose(n, time, nextCloseAt)       // snapshot n closed; the next one is scheduled
 *   p.schedule(closeAt)                   // move the open snapshot's close
 *   p.next(now, budgetBytes) -> SendItem[] // blocks to put on the link now, in order; counted as sent
 *   p.requeue(items)                      // the link could not take them after all: due again
 *   p.onAcked(bytes, time)                // acknowledged payload: the planner measures B (the simulator)
 *   p.setThroughput(bytesPerSecond, time) // or the engine measured B itself and says so
 *   p.status(now) -> { D, B, TS, predictedStartAt, started, presentBytes, collidedBytes, ... }
 *   p.exportLearnt() -> bytes             // what it learnt; createPlanner({ ..., learnt }) starts from it
 *
 * Two ways to drive it. The simulator hands the planner's whole output to its link model
 * and reports acks (`onAcked`); closed snapshots come out of `next` first. The engine's
 * shipper sends closed snapshots itself and measures the link: it creates the planner with
 * `shipsClosed: true` (a closed snapshot's unsent bytes then count for the start rule as a
 * backlog draining at B, and never come out of `next`) and calls `setThroughput`. Its
 * planner tracks at most `maxOpenBlocks` dirty blocks of the open snapshot one by one
 * (DEFAULT_MAX_OPEN_BLOCKS): those written beyond count in D but are never pre-sent, and
 * the engine ships them at the close, so the planner's memory stays bounded whatever is
 * written. The simulator's planner must hand out every block, so it tracks them all. The
 * planner re-ranks, and decides the start rule, the free-send window and the allowance, on
 * a grid of 1/120 of the interval anchored at the snapshot's opening, however often it is
 * asked, so a shipper asking every 20 ms and a simulator ticking every few seconds send the
 * same blocks.
 *
 * Rules (claims of the seed patent in brackets): closed snapshots are sent first, oldest
 * first, at full rate. For the open one, `predictive` ranks unsent dirty blocks by `P`, the
 * probability of a rewrite before the close, ascending [5, 25], never sending `P >= PT`.
 * Blocks wait (queue delay [11]) until the start rule `TS < K * D / B + L` [1, 26] fires,
 * where D counts the bytes still to send plus the bytes the snapshot is forecast to gain
 * before its close (so K = 1 means "just in time" even while writes continue). Once fired,
 * blocks go in P order while the snapshot's expected resends (those that happened, plus the
 * risk its pre-sent blocks still carry to the close, re-priced at each replan) fit its
 * redundancy budget (0.5 % of its bytes, released gradually from the moment the rule fires,
 * times a gain steered by the resends that pre-sending really caused in earlier snapshots,
 * and up to 8 times more once the snapshot is late by more than a tenth of its interval),
 * spread over regions: no 1 MiB region takes more than a tenth of it, or twice its share of
 * the dirty blocks (rewrites come in groups that a per-block P cannot see). Blocks
 * with P < 0.003 go outside that budget whenever the link is free, but only from
 * 1.25 start-rule leads before the close: earlier they buy no lag and risk a correlated
 * group of rewrites. A
 * pre-sent block that is written again is a collision: it is queued again and only its
 * latest version is ever sent [1, 10]. `P` comes from hazard.ts (empirical rewrite hazard
 * by age, rhythm, region and recent writes, learnt online); per-block state lives in
 * block-table.ts (bounded: a 1 TiB volume's engine planner stays under 64 MiB). `LinkScheduler`
 * shares one link among many volumes' planners by deadline.
 */
import { VolumePlanner } from './volume-planner';
import type { PlannerOptions } from './types';

export { VolumePlanner } from './volume-planner';
export { LinkScheduler, type VolumeShare } from './link-scheduler';
export { HazardModel, ageBucket, contextOf } from './hazard';
export { ThroughputEstimator } from './throughput';
export * as defaults from './constants';
export { POLICIES, type Policy, type PlannerOptions, type PlannerWrite, type PlannerStatus, type SendItem, type OracleFuture } from './types';

export function createPlanner(options: PlannerOptions): VolumePlanner {
  return new VolumePlanner(options);
}
