/** The public shapes of the planner (see index.ts for the door and the DEV DOCS). */

/**
 * `continuous`: send every write as soon as the link allows (journal mirroring).
 * `at-snapshot`: send a snapshot's dirty set only after it closes (incremental send).
 * `predictive`: pre-send by the start rule and the rewrite model (headstart).
 * `oracle`: knows the future; sends each block right after its last write before the close.
 */
export type Policy = 'continuous' | 'at-snapshot' | 'predictive' | 'oracle';
export const POLICIES: readonly Policy[] = ['continuous', 'at-snapshot', 'predictive', 'oracle'];

/** What the oracle policy is told about the future (only a simulator can know it). */
export interface OracleFuture {
  /** Time of the first write to `block` strictly after `time`, or Infinity. */
  nextWriteAfter(block: number, time: number): number;
}

export interface PlannerOptions {
  /** Volume size in bytes (writes beyond it are refused). */
  readonly volumeSize: number;
  /** Bytes per block; a power of two, 512 B to 1 MiB. Default 4096. */
  readonly blockSize?: number;
  readonly policy?: Policy;
  /** Start rule `TS < K * D / B + L`. */
  readonly K?: number;
  /** Start rule slack, seconds. */
  readonly L?: number;
  /** Never pre-send a block with P >= PT. */
  readonly PT?: number;
  /** Expected resend bytes allowed per snapshot, as a share of its dirty bytes. */
  readonly redundancyBudget?: number;
  /** Blocks at most this likely to be rewritten are pre-sent whenever the link is free. */
  readonly pFree?: number;
  /**
   * Free sends (P < pFree) start only once the close is within this many start-rule leads,
   * `TS < freeLead * (K * D / B + L)`; at least 1 (Infinity: whenever the link is free).
   */
  readonly freeLead?: number;
  /** Link throughput (bytes/s) to assume until acknowledgements measure it (e.g. the configured cap). */
  readonly linkHint?: number;
  /**
   * Re-rank the dirty set this often (s). Default: the snapshot's interval / 120, within
   * 0.25-5 s (DEFAULT_REPLAN_SHARE), so the same trace replayed time-compressed or in real
   * time replans at the same points of its own schedule.
   */
  readonly replanSeconds?: number;
  /** When the open snapshot began (its predecessor's close), s; default: the first event's time. */
  readonly openedAt?: number;
  /**
   * The engine ships closed snapshots itself, from its own dirty sets (the replication
   * shipper does). Then `next` returns only pre-sends of the open snapshot, and a closed
   * snapshot's unsent bytes count, for the start rule's D, as a backlog that drains at B
   * from its close on, instead of a queue the engine would have to drain with fake acks.
   */
  readonly shipsClosed?: boolean;
  /** The open snapshot's number (default 1) and its scheduled close time (s). */
  readonly openSnapshot?: number;
  readonly closeAt?: number;
  /** Upper bound of per-block table slots (memory); see DEFAULT_MAX_TABLE_SLOTS. */
  readonly maxTableSlots?: number;
  /**
   * With shipsClosed only: the most dirty blocks of the open snapshot tracked one by one
   * (DEFAULT_MAX_OPEN_BLOCKS). Blocks written beyond are counted in D but never pre-sent:
   * the engine ships them at the close. Bounds the planner's memory whatever is written.
   */
  readonly maxOpenBlocks?: number;
  /** Required by the oracle policy. */
  readonly future?: OracleFuture;
  /**
   * Use the region heat map (the region's share of rewrites) as a context of P. On by
   * default: it separates logs and one-pass copies from hot spots (measured better).
   */
  readonly regionContext?: boolean;
  /** Scale P by observed / expected resends of recent snapshots. Off by default (measured worse). */
  readonly calibrate?: boolean;
  /** Steer the redundancy allowance by the resends pre-sending really caused (default on). */
  readonly adaptBudget?: boolean;
  /** Release the resend allowance gradually from the moment the start rule fires (default on). */
  readonly pace?: boolean;
  /** Half-life (s) of what the rewrite model learnt. */
  readonly modelHalfLife?: number;
  /**
   * Most of the resend allowance one region may take (see REGION_ALLOWANCE_SHARE); 1 lifts
   * the cap.
   */
  readonly regionShare?: number;
  /**
   * Most of the resend allowance one cohort (blocks last written in the same second) may
   * take (see COHORT_ALLOWANCE_SHARE); 1 lifts the cap.
   */
  readonly cohortShare?: number;
  /**
   * Most bytes one cohort may have pre-sent in a snapshot, as a share of its resend
   * allowance (see COHORT_EXPOSURE_SHARE): off by default. Lifted with the cohort cap
   * (cohortShare 1).
   */
  readonly cohortExposure?: number;
  /**
   * Most the allowance grows by once the snapshot is late (see DEFAULT_LATE_BOOST); 1 turns
   * the growth off.
   */
  readonly lateBoost?: number;
  /** How late, as a share of the interval, before the allowance grows (DEFAULT_LATE_FLOOR). */
  readonly lateFloor?: number;
  /**
   * What an earlier planner of this volume learnt (its `exportLearnt()`), to start from
   * instead of a cold model; refused with PLANNER_BAD_STATE if damaged or not for this
   * block size or planner version.
   */
  readonly learnt?: Uint8Array;
}

/** A write, times in seconds on any fixed origin (zeroes too if the caller wants them planned as data; the engine and the simulator keep them out). */
export interface PlannerWrite {
  readonly time: number;
  readonly offset: number;
  readonly length: number;
}

/** One block to put on the link now, for snapshot `n` (its current content, or preserved if n is closed). */
export interface SendItem {
  readonly n: number;
  readonly block: number;
}

export interface PlannerStatus {
  readonly policy: Policy;
  /** The open snapshot. */
  readonly open: number;
  /** Bytes still to send: closed snapshots' remainder plus the open snapshot's unsent dirty blocks. */
  readonly D: number;
  /** Measured link throughput (bytes/s), or null before any measurement or hint. */
  readonly B: number | null;
  /** Seconds to the open snapshot's scheduled close (Infinity if none is scheduled). */
  readonly TS: number;
  /** When the start rule fires (or fired) for the open snapshot, by the current figures. */
  readonly predictedStartAt: number;
  /** Whether pre-sending beyond near-certain blocks is on now. */
  readonly started: boolean;
  /** Bytes of the open snapshot pre-sent and still current. */
  readonly presentBytes: number;
  /** Bytes of the open snapshot pre-sent and then rewritten (to be sent again). */
  readonly collidedBytes: number;
  /** Resend bytes the open snapshot's pre-sends were expected to cost (sum of P x size). */
  readonly expectedResendBytes: number;
  /** Factor applied to the model's P after comparing expected and observed resends. */
  readonly calibration: number;
  /** Multiplier of the redundancy allowance, steered by the resends pre-sending really caused. */
  readonly budgetGain: number;
  /** Dirty bytes of the open snapshot so far. */
  readonly dirtyBytes: number;
  /** Of which over maxOpenBlocks: never pre-sent, they ship at the close. */
  readonly untrackedBytes: number;
  /** Bytes of closed snapshots not yet handed to the link. */
  readonly closedBytes: number;
  /** Forecast rate (bytes/s) at which the open snapshot gains bytes to send. */
  readonly newDirtyRate: number;
  readonly memoryBytes: number;
  /** When the saved state this planner started from was saved (options.learnt), or null: it started cold. */
  readonly restoredFrom: number | null;
}
