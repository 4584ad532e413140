/**
 * The health rule, one place for the page, the node's metrics and the tests:
 *   broken  = the link is not connected (disconnected, connecting, error, fenced), the
 *             recovery point is older than twice its target, the source cannot close
 *             points (a close keeps failing), or its disk is full (writes are refused);
 *   behind  = the recovery point is older than its target, the source's disk is nearly
 *             full (under its warning level, four times its reserve), the sink is not converging (the
 *             points waiting for it grow with every close: the node says so), the completion
 *             lag is growing point after point towards the target, or the sink has no
 *             committed point yet;
 *   healthy = otherwise.
 * RPO age (now minus the scheduled time of the newest committed point) is the honest
 * recovery-point signal: it keeps growing on a silent stall, where throughput looks fine.
 */
import type { FeedSink, FeedVolume } from '@headstart/protocol';
import { BETWEEN_POINTS_BROKEN_MS, LAG_TREND_MIN_SHARE, LAG_TREND_NEAR_SHARE, LAG_TREND_POINTS } from './constants';

export type Health = 'healthy' | 'behind' | 'broken';

export interface HealthVerdict {
  readonly health: Health;
  /** Why, in a few words for the operator ("link disconnected", "RPO 3.1 min > 1 min target"). */
  readonly reason: string;
}

export type HealthInput = Pick<FeedSink, 'state' | 'rpoAgeMs' | 'rpoTargetMs'> & Partial<Pick<FeedSink, 'notConverging'>> & {
  /** The source volume's own trouble, which every sink of it shares. */
  readonly volume?: Pick<FeedVolume, 'disk' | 'closeFailing'>;
};


/**
 * Whether the newest LAG_TREND_POINTS lags (oldest first) rise each time, by a share of the
 * target in all, up to at least half the target (constants.ts says why).
 */
export function lagGrowing(lagsOldestFirst: readonly number[], targetMs: number | null): boolean {
  if (lagsOldestFirst.length < LAG_TREND_POINTS) return false;
  const tail = lagsOldestFirst.slice(-LAG_TREND_POINTS);
  for (let i = 1; i < tail.length; i++) if (!(tail[i] > tail[i - 1])) return false;
  const last = tail[tail.length - 1];
  const rise = last - tail[0];
  if (targetMs === null) return rise >= Math.max(1000, tail[0] * LAG_TREND_MIN_SHARE); // no target: a clear rise of 1 s or a tenth
  return rise >= targetMs * LAG_TREND_MIN_SHARE && last >= targetMs * LAG_TREND_NEAR_SHARE;
}

/**
 * `rpoAgeMs` is taken as given; a caller that shows an older status adds the time since
 * (the page ages it by its own clock between updates).
 */
export function sinkHealth(s: HealthInput, lagsOldestFirst: readonly number[] = []): HealthVerdict {
  if (s.state !== 'connected') return { health: 'broken', reason: `link ${s.state}` };
  const cf = s.volume?.closeFailing;
  if (cf) return { health: 'broken', reason: `closes failing (${cf.code}), retried` };
  const disk = s.volume?.disk;
  const free = disk?.freeBytes ?? null;
  if (disk && free !== null && free < disk.reserveBytes) return { health: 'broken', reason: 'source disk full: writes refused' };
  const age = s.rpoAgeMs;
  const target = s.rpoTargetMs;
  if (age === null) return { health: 'behind', reason: 'no committed point yet' };
  if (target !== null && age > 2 * target) return { health: 'broken', reason: 'RPO age over 2x target' };
  if (target !== null && age > target) return { health: 'behind', reason: 'RPO age over target' };
  if (disk && free !== null && free < disk.warnBytes) return { health: 'behind', reason: 'source disk nearly full' };
  if (s.notConverging === true) return { health: 'behind', reason: 'not converging: writes outrun the link' };
  if (lagGrowing(lagsOldestFirst, target)) return { health: 'behind', reason: 'lag growing' };
  return { health: 'healthy', reason: 'within target' };
}

/**
 * A replica volume's own verdict (its row has no sink): broken while a commit that stopped
 * half-way leaves its image between two points (a full disk most often; reads of the
 * replica wait), once that has lasted BETWEEN_POINTS_BROKEN_MS; by the age of the point it
 * holds against the volume's RPO target as a sink's (behind over it, broken over twice it):
 * with its primary's site lost, the replica's own page is the one an operator has, and a
 * point that stopped ageing well is the one signal left. Else none. A large commit still
 * writing is no fault. `sinceStatusMs` ages the stall's figure; `now` is the server's clock.
 */
export function replicaHealth(v: Pick<FeedVolume, 'betweenPoints' | 'committedPoint' | 'rpoTargetMs'> & Partial<Pick<FeedVolume, 'primaryLink'>>, now: number, sinceStatusMs = 0): HealthVerdict | null {
  const bp = v.betweenPoints;
  const ms = bp?.stalled ? bp.forMs + sinceStatusMs : 0;
  if (bp?.stalled && ms >= BETWEEN_POINTS_BROKEN_MS) return { health: 'broken', reason: `between points: the commit of #${bp.n} (begun ${Math.round(ms / 1000)} s ago) stopped half-way` };
  const target = v.rpoTargetMs ?? null;
  const cp = v.committedPoint;
  if (target === null || cp === null) return null;
  // On the primary's clock (the point's scheduled time is), when this node's differs from it.
  const age = now - (v.primaryLink?.clockAheadMs ?? 0) - cp.scheduledAt;
  if (age > 2 * target) return { health: 'broken', reason: 'RPO age over 2x target' };
  if (age > target) return { health: 'behind', reason: 'RPO age over target' };
  return null;
}

/** Worst of several verdicts (a volume is as healthy as its worst sink). */
export function worst(healths: Iterable<Health>): Health | null {
  let w: Health | null = null;
  for (const h of healths) {
    if (h === 'broken') return 'broken';
    if (h === 'behind' || w === null) w = h;
  }
  return w;
}
