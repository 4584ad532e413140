/**
 * One volume's planner: the open snapshot's dirty set with each block's state, the closed
 * snapshots' remainders, the rewrite model and the link estimate; it decides which blocks
 * go on the link now. Pure: every input carries its time, nothing reads a clock.
 */
import { HeadstartError } from '@headstart/errors';
import { BlockTable, CLEAN, DIRTY, FREE_SENT, SENT, UNTRACKED, type Forget } from './block-table';
import { COUNT_LOW, HazardModel, contextOf, withNeighbourhood } from './hazard';
import { KeyList } from './key-list';
import { decodeLearnt, encodeLearnt } from './learnt';
import { ThroughputEstimator } from './throughput';
import * as C from './constants';
import type { OracleFuture, PlannerOptions, PlannerStatus, PlannerWrite, Policy, SendItem } from './types';

interface ClosedRemainder {
  readonly n: number;
  /** When it closed: its deadline, for sharing a link among volumes. */
  readonly closedAt: number;
  readonly keys: Float64Array;
  pos: number;
}

const PACK = 2 ** 26;
/** What one entry of a Map of numbers costs V8, about: cohorts are at most one per second of the interval. */
const COHORT_ENTRY_BYTES = 64;

function bad(message: string): never {
  throw new HeadstartError('PLANNER_BAD_INPUT', message);
}

function option(name: string, value: number | undefined, fallback: number, ok: (v: number) => boolean): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !ok(value)) throw new HeadstartError('PLANNER_BAD_OPTION', `planner option ${name} = ${String(value)} is out of range`);
  return value;
}

export class VolumePlanner {
  readonly policy: Policy;
  readonly blockSize: number;
  readonly volumeSize: number;
  readonly K: number;
  readonly L: number;
  readonly PT: number;
  readonly redundancyBudget: number;
  /** Explicit replan cadence (s), or null: derived from the open snapshot's interval. */
  private readonly replanSeconds: number | null;
  private readonly shipsClosed: boolean;
  /** Most dirty blocks of the open snapshot tracked (and so pre-sendable); see DEFAULT_MAX_OPEN_BLOCKS. */
  private readonly maxOpenBlocks: number;
  /** shipsClosed: bytes of closed snapshots the engine still had to send at `backlogAt`, and when the oldest closed. */
  private backlogBytes = 0;
  private backlogAt = 0;
  private backlogSince = Infinity;
  private readonly pFree: number;
  private readonly freeLead: number;
  private readonly regionShare: number;
  private readonly lateBoost: number;
  private readonly lateFloor: number;
  /** The start rule and the free-send window, as decided at the last replan. */
  private planFired = false;
  private freeOpen = false;
  private planAllowance = 0;
  private readonly regionContext: boolean;
  private readonly calibrate: boolean;
  private readonly adapt: boolean;
  /** Multiplier of the redundancy allowance, steered by realized resends (adaptBudget). */
  private budgetGain = 1;
  /** Whether the allowance held a block back in the open snapshot. */
  private allowanceBound = false;
  private readonly pace: boolean;
  private readonly cohortShare: number;
  /** The most bytes one cohort may have pre-sent, as a share of the allowance (off: Infinity). */
  private readonly cohortExposure: number;
  /** The open snapshot's blocks pre-sent per cohort (for cohortExposure). */
  private readonly cohortSent = new Map<number, number>();
  /**
   * The allowance the open snapshot's pre-sends bet per cohort (blocks last written in the
   * same COHORT_SECONDS), at their price when sent, like regionSpent.
   */
  private readonly cohortSpent = new Map<number, number>();
  /** TS when the start rule first fired for the open snapshot (pacing), or null. */
  private firedTS: number | null = null;
  private readonly future: OracleFuture | undefined;

  private readonly table: BlockTable;
  private readonly model: HazardModel;
  private readonly link: ThroughputEstimator;
  private readonly forget: Forget;

  /**
   * The heat map: per region, the last write time and decayed counts of block writes and of
   * rewrites (writes to a block it had written before); their ratio is a context of P.
   */
  private readonly regionLast: Float64Array;
  private readonly regionWrites: Float32Array;
  private readonly regionRewrites: Float32Array;
  private readonly regionShift: number;
  /** Regions per block (blockSize / region bytes, a power of two): regionOf without a division. */
  private readonly regionPerBlock: number;
  /**
   * The open snapshot's dirty blocks and the allowance its pre-sends bet, per region (see
   * REGION_ALLOWANCE_SHARE): each pre-send counts at its price when sent, not re-priced as
   * it survives (unlike `charged`), since a group rewrite is what the per-block price
   * cannot see. Zeroed at each close for the regions the snapshot touched.
   */
  private readonly regionDirty: Uint16Array;
  private readonly regionSpent: Float32Array;
  /** The whole allowance of the open snapshot at the last replan (before pacing). */
  private fullAllowance = 0;
  /** Calibration of P: resend bytes observed vs expected over recent snapshots. */
  private calExpected = 0;
  private calActual = 0;

  private now = -Infinity;
  /** Restored state's save time: writes up to it are already learnt from (see onWrite). */
  private knownUpTo = -Infinity;
  private open: number;
  private readonly firstSnapshot: number;
  private closeAt: number;
  private openedAt: number | null = null;

  /** Blocks that became dirty in the open snapshot (each once), up to maxOpenBlocks. */
  private readonly openDirty = new KeyList();
  /**
   * Each openDirty block's table slot, valid while the table's generation is `slotsOf` (a
   * rehash moves them; the next ranking finds them all again). A ranking visits every dirty
   * block each replan: without it, a hash probe per block was a good part of a long trace's
   * evaluation. The table never forgets a dirty block, so a slot once valid stays the block's.
   */
  private openSlots = new Int32Array(1024);
  private slotsOf = 0;
  /** Dirty blocks of the open snapshot beyond maxOpenBlocks (UNTRACKED): they ship at the close. */
  private untracked = 0;
  /** Dirty blocks of the open snapshot not pre-sent (untracked ones included). */
  private unsent = 0;
  private present = 0;
  private collided = 0;
  /** Expected resend bytes spent so far on this snapshot's pre-sends. */
  private spent = 0;
  /**
   * Allowance used: the resends so far of blocks the allowance paid for, plus the expected
   * resends of those still current, re-priced at each replan (see replan); between
   * replans, advanced by each such pre-send's expected cost and each collision's bytes.
   * Free sends (FREE_SENT) are outside it: their collisions only steer the gain.
   */
  private charged = 0;
  /** Resend bytes of near-certain blocks sent outside the allowance (not charged to it). */
  private freeCollided = 0;

  /** continuous / oracle: blocks in the order they became sendable. */
  private readonly fifo = new KeyList();
  private fifoPos = 0;

  /**
   * predictive: the current plan, ascending P. Each entry packs a block's P (quantized to
   * 1/PACK) and its index in openDirty as P * PACK * PACK + index, so sorting the numbers
   * sorts by P: 8 bytes a planned block.
   */
  private plan = new Float64Array(0);
  private planLen = 0;
  private planPos = 0;
  private planAt = -Infinity;

  private readonly closed: ClosedRemainder[] = [];
  private closedBlocks = 0;

  private newDirtyBytes = 0;
  private newDirtyAt: number | null = null;
  private newDirtyRate = 0;
  private creditedAt = -Infinity;
  private inflight = 0;
  /** Run totals, for the evaluator's calibration check: expected vs actual resend bytes. */
  readonly totals = { presentBytes: 0, expectedResendBytes: 0, collidedBytes: 0 };

  constructor(options: PlannerOptions) {
    this.blockSize = option('blockSize', options.blockSize, C.DEFAULT_BLOCK_SIZE, (v) => Number.isInteger(v) && v >= 512 && v <= 1 << 20 && (v & (v - 1)) === 0);
    this.volumeSize = option('volumeSize', options.volumeSize, NaN, (v) => Number.isSafeInteger(v) && v > 0 && v % this.blockSize === 0);
    this.policy = options.policy ?? 'predictive';
    if (!['continuous', 'at-snapshot', 'predictive', 'oracle'].includes(this.policy)) throw new HeadstartError('PLANNER_BAD_OPTION', `unknown planner policy ${String(this.policy)}`);
    this.K = option('K', options.K, C.DEFAULT_K, (v) => v > 0 && Number.isFinite(v));
    this.L = option('L', options.L, C.DEFAULT_L, Number.isFinite);
    this.PT = option('PT', options.PT, C.DEFAULT_PT, (v) => v > 0 && v <= 1);
    this.redundancyBudget = option('redundancyBudget', options.redundancyBudget, C.DEFAULT_REDUNDANCY_BUDGET, (v) => v >= 0 && v <= 1);
    this.replanSeconds = options.replanSeconds === undefined ? null : option('replanSeconds', options.replanSeconds, 0, (v) => v > 0 && Number.isFinite(v));
    this.shipsClosed = options.shipsClosed ?? false;
    // Only an engine that ships closed snapshots itself can leave blocks untracked: the
    // planner would otherwise have to hand out their numbers after the close.
    if (options.maxOpenBlocks !== undefined && !this.shipsClosed) throw new HeadstartError('PLANNER_BAD_OPTION', 'planner option maxOpenBlocks needs shipsClosed (the engine then ships the untracked blocks at the close)');
    this.maxOpenBlocks = this.shipsClosed ? option('maxOpenBlocks', options.maxOpenBlocks, C.DEFAULT_MAX_OPEN_BLOCKS, (v) => Number.isSafeInteger(v) && v >= 1 && v < PACK) : PACK - 1;
    this.regionContext = options.regionContext ?? true;
    this.calibrate = options.calibrate ?? false;
    this.adapt = options.adaptBudget ?? true;
    this.pace = options.pace ?? true;
    this.cohortExposure = option('cohortExposure', options.cohortExposure, C.COHORT_EXPOSURE_SHARE, (v) => v > 0);
    this.cohortShare = option('cohortShare', options.cohortShare, C.COHORT_ALLOWANCE_SHARE, (v) => v > 0 && v <= 1);
    this.lateBoost = option('lateBoost', options.lateBoost, C.DEFAULT_LATE_BOOST, (v) => v >= 1);
    this.lateFloor = option('lateFloor', options.lateFloor, C.DEFAULT_LATE_FLOOR, (v) => v >= 0 && v < 1);
    this.freeLead = option('freeLead', options.freeLead, C.DEFAULT_FREE_LEAD, (v) => v >= 1);
    this.pFree = option('pFree', options.pFree, C.DEFAULT_P_FREE, (v) => v >= 0 && v < 1);
    this.regionShare = option('regionShare', options.regionShare, C.REGION_ALLOWANCE_SHARE, (v) => v > 0 && v <= 1);
    const maxSlots = option('maxTableSlots', options.maxTableSlots, C.DEFAULT_MAX_TABLE_SLOTS, (v) => Number.isInteger(v) && v >= 1024 && (v & (v - 1)) === 0);
    this.open = option('openSnapshot', options.openSnapshot, 1, (v) => Number.isSafeInteger(v) && v >= 0);
    this.firstSnapshot = this.open;
    this.closeAt = options.closeAt ?? Infinity;
    if (options.openedAt !== undefined) {
      if (!Number.isFinite(options.openedAt)) throw new HeadstartError('PLANNER_BAD_OPTION', `planner option openedAt = ${String(options.openedAt)} is not a finite time`);
      this.openedAt = options.openedAt;
    }
    if (this.policy === 'oracle' && options.future === undefined) throw new HeadstartError('PLANNER_BAD_OPTION', 'the oracle policy needs the future writes (options.future)');
    this.future = options.future;
    this.table = new BlockTable(Math.min(4096, maxSlots), maxSlots);
    this.model = new HazardModel({
      halfLife: option('modelHalfLife', options.modelHalfLife, C.DEFAULT_MODEL_HALF_LIFE, (v) => v > 0),
      cellPrior: C.DEFAULT_CELL_PRIOR,
    });
    this.link = new ThroughputEstimator(options.linkHint, 30);
    // Regions: 1 MiB, or larger so that a huge volume has at most 2^20 of them (8 MiB).
    let shift = 20;
    while (this.volumeSize / 2 ** shift > 1 << 20) shift++;
    this.regionShift = shift;
    this.regionPerBlock = this.blockSize / 2 ** shift;
    const regions = Math.ceil(this.volumeSize / 2 ** shift);
    this.regionLast = new Float64Array(regions).fill(-Infinity);
    this.regionWrites = new Float32Array(regions);
    this.regionRewrites = new Float32Array(regions);
    this.regionDirty = new Uint16Array(regions);
    this.regionSpent = new Float32Array(regions);
    this.forget = (_key, last, ctx, credited) => this.model.expose(ctx, credited, this.now - last);
    if (options.learnt !== undefined) this.restore(options.learnt);
  }

  /** Starts from what an earlier planner of this volume learnt (exportLearnt). */
  private restore(bytes: Uint8Array): void {
    const l = decodeLearnt(bytes, { blockSize: this.blockSize, volumeSize: this.volumeSize, regionShift: this.regionShift });
    this.model.restore(l.events, l.exposure, l.decayedAt);
    this.budgetGain = Math.min(C.MAX_BUDGET_GAIN, Math.max(C.MIN_BUDGET_GAIN, l.budgetGain));
    // A measured throughput beats a configured hint, but never above it (a hint is a cap).
    const hint = this.link.bytesPerSecond;
    if (l.bytesPerSecond !== null) this.link.set(hint === null ? l.bytesPerSecond : Math.min(hint, l.bytesPerSecond));
    this.newDirtyRate = l.newDirtyRate;
    this.calExpected = l.calExpected;
    this.calActual = l.calActual;
    this.table.restoreHistory(l.blocks);
    const r = l.regions;
    for (let j = 0; j < r.index.length; j++) {
      this.regionLast[r.index[j]] = r.last[j];
      this.regionWrites[r.index[j]] = r.writes[j];
      this.regionRewrites[r.index[j]] = r.rewrites[j];
    }
    this.creditedAt = l.creditedAt ?? -Infinity;
    this.knownUpTo = l.savedAt;
  }

  /**
   * What this planner has learnt of the volume's workload (the rewrite model, the blocks'
   * and regions' history, the allowance gain, the link throughput, the growth forecast), as
   * bytes for `options.learnt` of a later planner of the same volume: the engine saves it,
   * so a restart does not start cold. See learnt.ts for what is and is not kept.
   */
  exportLearnt(): Uint8Array {
    const { events, exposure, decayedAt } = this.model.counts();
    let nr = 0;
    for (let k = 0; k < this.regionLast.length; k++) if (this.regionLast[k] > -Infinity) nr++;
    const regions = { index: new Float64Array(nr), last: new Float64Array(nr), writes: new Float32Array(nr), rewrites: new Float32Array(nr) };
    for (let k = 0, j = 0; k < this.regionLast.length; k++) {
      if (!(this.regionLast[k] > -Infinity)) continue;
      regions.index[j] = k;
      regions.last[j] = this.regionLast[k];
      regions.writes[j] = this.regionWrites[k];
      regions.rewrites[j] = this.regionRewrites[k];
      j++;
    }
    return encodeLearnt({
      blockSize: this.blockSize,
      volumeSize: this.volumeSize,
      regionShift: this.regionShift,
      // Not before what a restored state had learnt up to: a planner restored and saved again
      // before any event (an idle volume stopped soon after its start or promotion) holds
      // block times up to then, and "saved at 0" would make the file unreadable.
      savedAt: Math.max(0, ...[this.now, this.knownUpTo].filter(Number.isFinite)),
      decayedAt,
      creditedAt: Number.isFinite(this.creditedAt) ? this.creditedAt : null,
      budgetGain: this.budgetGain,
      bytesPerSecond: this.link.bytesPerSecond,
      newDirtyRate: this.newDirtyRate,
      calExpected: this.calExpected,
      calActual: this.calActual,
      events,
      exposure,
      blocks: this.table.history(),
      regions,
    });
  }

  private regionOf(block: number): number {
    // blockSize / 2^regionShift is a power of two: the product is exact.
    return Math.floor(block * this.regionPerBlock);
  }

  /**
   * A block's recent writes `age` s after its last write, from the count as of that write:
   * decayed with a half-life of the open snapshot's interval, so it counts the writes of
   * about one interval (the span a rewrite would cost a resend in).
   */
  private recentWrites(recentAtLast: number, age: number, span = this.recentSpan()): number {
    return recentAtLast * Math.pow(2, -age / span);
  }

  private recentSpan(): number {
    return Number.isFinite(this.closeAt) && this.openedAt !== null ? Math.max(1, this.closeAt - this.openedAt) : 600;
  }

  private contextAt(block: number, gap: number, recent: number): number {
    return contextOf(gap, this.regionContext ? this.regionShareOf(block) : 1, recent);
  }

  /** The block's region's decayed share of rewrites among its writes. */
  private regionShareOf(block: number): number {
    const r = this.regionOf(block);
    // A small prior: an unknown region counts as "medium" until a few writes say otherwise.
    return (this.regionRewrites[r] + 0.1) / (this.regionWrites[r] + 0.2);
  }

  /** Counts a block write in its region's heat map (decayed with a 1 h half-life); returns the region. */
  private heat(block: number, rewrite: boolean, t: number): number {
    const r = this.regionOf(block);
    const last = this.regionLast[r];
    if (last > -Infinity && t > last) {
      const f = Math.exp(((last - t) * Math.LN2) / 3600);
      this.regionWrites[r] *= f;
      this.regionRewrites[r] *= f;
    }
    this.regionLast[r] = t;
    this.regionWrites[r] += 1;
    if (rewrite) this.regionRewrites[r] += 1;
    return r;
  }

  /**
   * Steers the allowance by what pre-sending really cost: the model prices blocks by P, but
   * where it is too cautious (on CloudPhysics, blocks priced at 0.2-0.7 were rewritten a
   * third as often) the allowance buys too few of them and the link idles before a deadline.
   * After a snapshot whose allowance held blocks back but whose resends stayed under the
   * budget, the gain grows; after one whose resends exceeded it, the gain falls, faster the
   * further over, below 1 too (where the model is optimistic, see MIN_BUDGET_GAIN).
   * Snapshots the allowance did not limit and did not overspend say nothing and leave it.
   */
  private adaptBudget(): void {
    const dirtyBytes = this.dirtyCount * this.blockSize;
    const budget = this.redundancyBudget * dirtyBytes;
    if (!(budget > 0)) return;
    const realized = this.collided / budget;
    if (realized <= 1 && !this.allowanceBound) return;
    const g = this.budgetGain * Math.exp(C.BUDGET_GAIN_STEP * (1 - realized));
    this.budgetGain = Math.min(C.MAX_BUDGET_GAIN, Math.max(C.MIN_BUDGET_GAIN, g));
  }

  /** The calibration factor applied to the model's P (observed / expected resends). */
  get calibration(): number {
    const prior = 16 * this.blockSize;
    const f = (this.calActual + prior) / (this.calExpected + prior);
    return this.calibrate ? Math.min(5, Math.max(0.3, f)) : 1;
  }

  private clock(time: number): void {
    if (!Number.isFinite(time)) bad(`planner time ${time} is not finite`);
    if (time < this.now) bad(`planner time went backwards: ${time} after ${this.now}`);
    this.now = time;
  }

  /** Sets (or moves) the open snapshot's scheduled close. */
  schedule(closeAt: number): void {
    if (Number.isNaN(closeAt)) bad('close time is not a number');
    this.closeAt = closeAt;
  }

  onWrite(w: PlannerWrite): void {
    if (!Number.isSafeInteger(w.offset) || !Number.isSafeInteger(w.length) || w.offset < 0 || w.length < 0) bad(`write ${w.offset}+${w.length}: offset and length must be whole non-negative bytes`);
    if (w.offset + w.length > this.volumeSize) bad(`write ${w.offset}+${w.length} is beyond the volume (${this.volumeSize} bytes)`);
    this.clock(w.time);
    if (w.length === 0) return;
    if (this.openedAt === null) this.openedAt = w.time;
    const first = Math.floor(w.offset / this.blockSize);
    const end = Math.ceil((w.offset + w.length) / this.blockSize);
    if (w.time <= this.knownUpTo) {
      // A write the restored state has learnt from already (the engine re-reads the open
      // point's writes after a restart): it only makes its blocks dirty again.
      for (let b = first; b < end; b++) this.markDirty(b);
      return;
    }
    for (let b = first; b < end; b++) this.writeBlock(b, w.time);
  }

  private markDirty(b: number): void {
    const tb = this.table;
    const i = tb.upsert(b, this.forget);
    if (tb.state[i] !== CLEAN) return;
    tb.state[i] = this.addDirty(b, this.regionOf(b), i);
    if (tb.state[i] === DIRTY) this.queueFifo(b, CLEAN, this.now);
  }

  /**
   * A clean block joins the open snapshot's dirty set (and its region's count); returns its
   * state: DIRTY, or UNTRACKED once the set holds maxOpenBlocks.
   */
  private addDirty(b: number, region: number, slot: number): number {
    this.unsent++;
    if (this.openDirty.length >= this.maxOpenBlocks) {
      // Not the engine's planner (shipsClosed): it must hand out every block itself, and the
      // replan's sort keys hold a dirty-list index below PACK.
      if (!this.shipsClosed) bad(`the open snapshot has more than ${PACK - 1} dirty blocks: only an engine that ships closed snapshots itself (shipsClosed) can plan it`);
      this.untracked++;
      return UNTRACKED;
    }
    if (this.openSlots.length <= this.openDirty.length) {
      const grown = new Int32Array(this.openSlots.length * 2);
      grown.set(this.openSlots);
      this.openSlots = grown;
    }
    this.openSlots[this.openDirty.length] = slot;
    this.openDirty.push(b);
    if (this.regionDirty[region] < 65535) this.regionDirty[region]++;
    return DIRTY;
  }

  /** openDirty's table slots (openSlots), found again if the table moved them since. */
  private dirtySlots(): Int32Array {
    const tb = this.table;
    if (this.slotsOf !== tb.generation) {
      for (let j = 0; j < this.openDirty.length; j++) this.openSlots[j] = tb.find(this.openDirty.data[j]);
      this.slotsOf = tb.generation;
    }
    return this.openSlots;
  }

  /** Dirty blocks of the open snapshot, tracked or not. */
  private get dirtyCount(): number {
    return this.openDirty.length + this.untracked;
  }

  /** The FIFO policies' queue: continuous sends a block each time it becomes due, the oracle right after its last write before the close. */
  private queueFifo(b: number, previousState: number, t: number): void {
    if (this.policy === 'continuous') {
      if (previousState !== DIRTY) this.fifo.push(b);
    } else if (this.policy === 'oracle') {
      if (this.future!.nextWriteAfter(b, t) > this.closeAt) this.fifo.push(b);
    }
  }

  private writeBlock(b: number, t: number): void {
    const tb = this.table;
    const i = tb.upsert(b, this.forget);
    if (tb.count[i] > 0) {
      const age = t - tb.last[i];
      // The context the block was last seen in (at its write or the last credit): a rewrite
      // is attributed where its exposure was, so contexts that change as neighbours get
      // written (a sequential pass) do not bias the hazard.
      const c = tb.ctx[i];
      this.model.expose(c, tb.credited[i], age);
      this.model.event(c, age);
      tb.gap[i] = age;
    }
    const region = this.heat(b, tb.count[i] > 0, t);
    tb.recent[i] = (tb.count[i] > 0 ? this.recentWrites(tb.recent[i], t - tb.last[i]) : 0) + 1;
    tb.ctx[i] = this.contextAt(b, tb.count[i] > 0 ? tb.gap[i] : 0, tb.recent[i]);
    tb.last[i] = t;
    tb.credited[i] = 0;
    if (tb.count[i] < 65535) tb.count[i]++;
    const state = tb.state[i];
    let next = state === UNTRACKED ? UNTRACKED : DIRTY;
    if (state === CLEAN) {
      next = this.addDirty(b, region, i);
      this.newDirtyBytes += this.blockSize;
    } else if (state === SENT || state === FREE_SENT) {
      // A collision: the pre-sent version is stale, the block is queued again.
      this.present--;
      this.unsent++;
      this.collided += this.blockSize;
      this.totals.collidedBytes += this.blockSize;
      // A near-certain block sent outside the allowance does not charge it: what it cost
      // was not the allowance's bet (its collisions still steer the gain, via collided).
      // Charging it stopped the allowance's sends for the rest of the snapshot after a
      // correlated group of "near-certain" blocks was rewritten: CloudPhysics 1 h / 2x lag
      // 111 s against 18 s without (full sweep 30 -> 31 of 45 on target).
      if (state === SENT) this.charged += this.blockSize;
      else this.freeCollided += this.blockSize;
      this.newDirtyBytes += this.blockSize;
    }
    tb.state[i] = next;
    if (next === DIRTY) this.queueFifo(b, state, t);
  }

  /** Closes the open snapshot `n` at `time`; `nextCloseAt` schedules the next one. */
  onClose(n: number, time: number, nextCloseAt?: number): void {
    // n above the open one: the engine closed points it was not told of (a sink's first
    // copy closes one itself; a consistency group's close finished at start). What this
    // planner holds as dirty was written before n closed, so all of it is closed now: fold
    // those closes into this one rather than ignore every close from then on.
    if (n < this.open) bad(`close of snapshot ${n}, but ${this.open} is the open one (${n} closed already)`);
    this.clock(time);
    const tb = this.table;
    const keys = new KeyList(Math.max(16, this.unsent));
    const slots = this.dirtySlots();
    for (let j = 0; j < this.openDirty.length; j++) {
      const b = this.openDirty.data[j];
      const r = this.regionOf(b);
      this.regionDirty[r] = 0;
      this.regionSpent[r] = 0;
      const i = slots[j];
      if (i < 0) continue;
      if (tb.state[i] === DIRTY) keys.push(b);
      tb.state[i] = CLEAN;
    }
    if (this.untracked > 0) {
      for (let i = 0; i < tb.capacity; i++) if (tb.state[i] === UNTRACKED) tb.state[i] = CLEAN;
    }
    if (this.shipsClosed) {
      // The engine sends these itself, at full rate from now on.
      const left = this.closedBacklog(time);
      if (left === 0) this.backlogSince = time;
      this.backlogBytes = left + (keys.length + this.untracked) * this.blockSize;
      this.backlogAt = time;
    } else if (keys.length > 0) {
      this.closed.push({ n, closedAt: time, keys: keys.toArray(), pos: 0 });
      this.closedBlocks += keys.length;
    }
    // What this snapshot's pre-sends were expected to cost in resends, and what they did.
    // The first snapshot's model is cold (its P is mostly prior): it says little about
    // how well the learnt model is calibrated, so it is left out.
    if (n > this.firstSnapshot) {
      this.calExpected = this.calExpected * 0.7 + this.spent;
      this.calActual = this.calActual * 0.7 + this.collided;
    }
    if (this.adapt && this.policy === 'predictive' && this.openDirty.length > 0) this.adaptBudget();
    this.openDirty.clear();
    this.slotsOf = tb.generation;
    if (this.openSlots.length > 1 << 16) this.openSlots = new Int32Array(1024);
    this.untracked = 0;
    this.fifo.clear();
    this.fifoPos = 0;
    this.planLen = this.planPos = 0;
    this.planAt = -Infinity;
    this.unsent = this.present = this.collided = this.spent = this.charged = this.freeCollided = 0;
    this.allowanceBound = false;
    this.cohortSpent.clear();
    this.cohortSent.clear();
    this.firedTS = null;
    this.open = n + 1;
    this.openedAt = time;
    this.closeAt = nextCloseAt ?? Infinity;
  }

  /**
   * Bytes of closed snapshots not yet sent: the planner's own queue, or (shipsClosed) the
   * engine's backlog as of its closes, drained at B since.
   */
  private closedBacklog(now: number): number {
    if (!this.shipsClosed) return this.closedBlocks * this.blockSize;
    if (this.backlogBytes <= 0) return 0;
    const B = this.link.bytesPerSecond;
    if (B === null || B <= 0) return this.backlogBytes;
    return Math.max(0, this.backlogBytes - B * Math.max(0, now - this.backlogAt));
  }

  /**
   * The engine measured the link's throughput (bytes/s) itself, at `time`: B from now on,
   * until it says otherwise (or acknowledgements move it, for an engine that reports them).
   */
  setThroughput(bytesPerSecond: number, time: number): void {
    if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) bad(`link throughput ${bytesPerSecond} must be a finite positive number of bytes/s`);
    this.clock(time);
    this.link.set(bytesPerSecond);
  }

  /** `bytes` of payload acknowledged by the peer at `time`. */
  onAcked(bytes: number, time: number): void {
    if (!(bytes >= 0) || !Number.isFinite(bytes)) bad(`acked bytes ${bytes} must be a finite non-negative number`);
    this.clock(time);
    this.inflight = Math.max(0, this.inflight - bytes);
    this.link.ack(bytes, time, this.inflight > 0);
    if (this.inflight === 0) this.link.idle();
  }

  /**
   * The blocks to put on the link now, in order, at most `budgetBytes` of payload. The
   * planner counts them as sent (its current version); hand back with `requeue` whatever the
   * link could not take.
   */
  next(now: number, budgetBytes: number): SendItem[] {
    this.clock(now);
    const out: SendItem[] = [];
    const bs = this.blockSize;
    let budget = budgetBytes;
    // Closed snapshots first, oldest first: their deadline has passed.
    while (budget >= bs && this.closed.length > 0) {
      const head = this.closed[0];
      out.push({ n: head.n, block: head.keys[head.pos++] });
      budget -= bs;
      this.closedBlocks--;
      if (head.pos === head.keys.length) this.closed.shift();
    }
    if (budget >= bs) {
      if (this.policy === 'continuous' || this.policy === 'oracle') this.drainFifo(budget, out);
      else if (this.policy === 'predictive') this.predictive(now, budget, out);
    }
    this.inflight += out.length * bs;
    return out;
  }

  /** Items returned by `next` that never reached the link: they are due again. */
  requeue(items: readonly SendItem[]): void {
    for (let j = items.length - 1; j >= 0; j--) {
      const { n, block } = items[j];
      this.inflight = Math.max(0, this.inflight - this.blockSize);
      if (n === this.open) {
        const i = this.table.find(block);
        if (i >= 0 && (this.table.state[i] === SENT || this.table.state[i] === FREE_SENT)) {
          this.table.state[i] = DIRTY;
          this.present--;
          this.unsent++;
          if (this.policy !== 'predictive') this.fifo.push(block);
        }
      } else if (!this.shipsClosed) {
        this.closed.unshift({ n, closedAt: this.now, keys: Float64Array.of(block), pos: 0 });
        this.closed.sort((a, b) => a.n - b.n);
        this.closedBlocks++;
      }
    }
  }

  private markSent(i: number, b: number, out: SendItem[], state = SENT): void {
    this.table.state[i] = state;
    this.unsent--;
    this.present++;
    out.push({ n: this.open, block: b });
  }

  private drainFifo(budget: number, out: SendItem[]): void {
    const tb = this.table;
    while (budget >= this.blockSize && this.fifoPos < this.fifo.length) {
      const b = this.fifo.data[this.fifoPos++];
      const i = tb.find(b);
      if (i < 0 || tb.state[i] !== DIRTY) continue;
      this.markSent(i, b, out);
      budget -= this.blockSize;
    }
  }

  /** Bytes the open snapshot is still expected to gain before its close. */
  private futureBytes(now: number): number {
    const ts = this.closeAt - now;
    return ts > 0 && Number.isFinite(ts) ? this.newDirtyRate * ts : 0;
  }

  private startRule(now: number): { fired: boolean; startAt: number; lead: number } {
    const B = this.link.bytesPerSecond;
    const D = this.closedBacklog(now) + this.unsent * this.blockSize + this.futureBytes(now);
    if (!Number.isFinite(this.closeAt)) return { fired: false, startAt: Infinity, lead: 0 };
    if (B === null || B <= 0) return { fired: true, startAt: now, lead: Infinity };
    const lead = (this.K * D) / B + this.L;
    return { fired: this.closeAt - now < lead, startAt: this.closeAt - lead, lead };
  }

  private predictive(now: number, budget: number, out: SendItem[]): void {
    // On the cadence only (an exhausted plan waits too), on a grid anchored at the snapshot's
    // opening: the engine asks every few ms, the simulator once a tick, and both must re-rank
    // at the same points of the schedule (the last replan before a close decides a lot).
    const bs = this.blockSize;
    if (this.replanDue(now)) {
      this.learn(now);
      // The start rule, the free-send window and the allowance are decided on the same grid
      // as the plan, so that an engine asking every few ms and the simulator (once a tick)
      // send the same blocks.
      const rule = this.startRule(now);
      this.planFired = rule.fired;
      // Free sends wait until the close is near: earlier they buy no lag, only risk.
      this.freeOpen = this.closeAt - now < this.freeLead * rule.lead;
      // Neither open, nothing goes on the link before the next replan: a ranking would be
      // thrown away (on a long trace, most of the evaluator's time went into those).
      if (rule.fired || this.freeOpen) this.rank(now);
      else this.dropPlan(now);
      // Pacing: a block's P falls as the close nears, so the same allowance buys more blocks
      // later. From the moment the rule fires, release the allowance in step with the time
      // elapsed (a fifth at once), instead of spending it all on the first tick.
      const ts = this.closeAt - now;
      if (rule.fired && this.firedTS === null) this.firedTS = ts;
      const share = this.pace && this.firedTS !== null && this.firedTS > 0 ? Math.min(1, 0.2 + 0.8 * (1 - ts / this.firedTS)) : 1;
      // Late by more than a tenth of the interval (the link can no longer drain D by the
      // close): every idle second is lag for sure, so the allowance grows with how late,
      // up to lateBoost times (DEFAULT_LATE_BOOST, DEFAULT_LATE_FLOOR).
      const span = this.openedAt !== null ? this.closeAt - this.openedAt : 0;
      const late = rule.fired && ts > 0 ? Math.min(this.lateBoost, Math.max(1, (rule.lead - this.lateFloor * span) / ts)) : 1;
      this.fullAllowance = late * this.budgetGain * this.redundancyBudget * (this.dirtyCount * bs + this.futureBytes(now));
      this.planAllowance = share * this.fullAllowance;
    }
    const fired = this.planFired;
    const freeOpen = this.freeOpen;
    let allowance = this.planAllowance - this.charged;
    const tb = this.table;
    while (budget >= bs && this.planPos < this.planLen) {
      const packed = this.plan[this.planPos];
      const b = this.openDirty.data[packed % PACK];
      const p = Math.floor(packed / PACK) / PACK;
      const i = tb.find(b);
      if (i < 0 || tb.state[i] !== DIRTY || tb.last[i] > this.planAt) {
        this.planPos++;
        continue;
      }
      if (p >= this.PT) break;
      const cost = p * bs;
      // The queue-delay rule: hold a block back unless it is near-certain, or the start rule
      // says the link can no longer drain everything by the close and the snapshot's
      // resend allowance still covers this block's expected cost.
      if (!((p < this.pFree && freeOpen) || (fired && cost <= allowance))) {
        if (fired) this.allowanceBound = true;
        break;
      }
      const free = p < this.pFree && freeOpen;
      // Its cohort's cap (COHORT_ALLOWANCE_SHARE): blocks written together are rewritten
      // together. Held back, the allowance did bind: the gain may grow, widening every
      // cohort's share.
      const cohort = free || this.cohortShare >= 1 ? null : Math.floor(tb.last[i] / C.COHORT_SECONDS);
      const cohortBet = cohort === null ? 0 : (this.cohortSpent.get(cohort) ?? 0);
      // And, if set, its bytes at stake (COHORT_EXPOSURE_SHARE): priced low, a cohort's
      // expected cost stays small while the whole of it can be rewritten at once. Off (the
      // default), nothing is counted.
      const exposed = cohort !== null && this.cohortExposure < Infinity;
      const cohortBlocks = exposed ? (this.cohortSent.get(cohort) ?? 0) : 0;
      if (cohort !== null && (cohortBet + cost > this.cohortShare * this.fullAllowance || (exposed && (cohortBlocks + 1) * bs > this.cohortExposure * this.fullAllowance))) {
        if (fired) this.allowanceBound = true;
        this.planPos++;
        continue;
      }
      if (!free && this.regionShare < 1) {
        // Its region's cap on the allowance (REGION_ALLOWANCE_SHARE): skip it, not stop,
        // so that blocks of other regions still go.
        const r = this.regionOf(b);
        const dirtyShare = this.regionDirty[r] / Math.max(1, this.openDirty.length);
        if (this.regionSpent[r] + cost > Math.max(this.regionShare, C.REGION_ALLOWANCE_SPREAD * dirtyShare) * this.fullAllowance) {
          this.planPos++;
          continue;
        }
        this.regionSpent[r] += cost;
      }
      if (cohort !== null) this.cohortSpent.set(cohort, cohortBet + cost);
      if (exposed) this.cohortSent.set(cohort, cohortBlocks + 1);
      this.planPos++;
      this.markSent(i, b, out, free ? FREE_SENT : SENT);
      this.spent += cost;
      if (!free) {
        allowance -= cost;
        this.charged += cost;
      }
      this.totals.expectedResendBytes += cost;
      this.totals.presentBytes += bs;
      budget -= bs;
    }
  }

  private replanDue(now: number): boolean {
    const every = this.replanEvery();
    if (this.planAt === -Infinity) return true;
    if (this.openedAt === null || this.planAt < this.openedAt) return now - this.planAt >= every - 1e-9;
    const slot = (t: number) => Math.floor((t - this.openedAt!) / every + 1e-9);
    return slot(now) > slot(this.planAt);
  }

  /** Seconds between replans: the option, else a share of the open snapshot's interval. */
  private replanEvery(): number {
    if (this.replanSeconds !== null) return this.replanSeconds;
    const span = Number.isFinite(this.closeAt) && this.openedAt !== null ? this.closeAt - this.openedAt : Infinity;
    return C.replanSeconds(span);
  }

  /** Credits every tracked block's time at risk, so blocks that survive count too. */
  private creditAll(now: number): void {
    const tb = this.table;
    // Every tracked block, every CREDIT_SECONDS: on a week-long trace of a million blocks
    // this loop is most of the evaluator's time, so it does no more than it must. A block's
    // rhythm (its last gap) is fixed until its next write, so it is kept from its context;
    // its recent writes only decay, so one at most COUNT_LOW as of its last write stays in
    // the lowest class without the power.
    const span = this.recentSpan();
    for (let i = 0; i < tb.capacity; i++) {
      if (tb.keys[i] < 0 || tb.count[i] === 0) continue;
      const age = now - tb.last[i];
      const ctx = tb.ctx[i];
      this.model.expose(ctx, tb.credited[i], age);
      tb.credited[i] = age;
      const atLast = tb.recent[i];
      const recent = atLast <= COUNT_LOW ? atLast : this.recentWrites(atLast, age, span);
      tb.ctx[i] = withNeighbourhood(ctx, this.regionContext ? this.regionShareOf(tb.keys[i]) : 1, recent);
    }
    this.model.decay(now);
    this.creditedAt = now;
  }

  /** What a replan learns first: survivors' exposure (creditAll) and the forecast of bytes still to come. */
  private learn(now: number): void {
    if (now - this.creditedAt >= C.CREDIT_SECONDS) this.creditAll(now);
    // Forecast of the bytes the snapshot still gains, for the start rule.
    if (this.newDirtyAt !== null && now > this.newDirtyAt) {
      const dt = now - this.newDirtyAt;
      const span = Number.isFinite(this.closeAt) && this.openedAt !== null ? Math.max(60, this.closeAt - this.openedAt) : 600;
      const a = 1 - Math.exp(-dt / span);
      this.newDirtyRate += (this.newDirtyBytes / dt - this.newDirtyRate) * a;
      this.newDirtyBytes = 0;
      this.newDirtyAt = now;
    } else if (this.newDirtyAt === null) {
      this.newDirtyAt = now;
      this.newDirtyBytes = 0;
    }
  }

  /** A replan whose ranking nothing would use; the allowance is re-priced at the next rank. */
  private dropPlan(now: number): void {
    this.planLen = this.planPos = 0;
    this.planAt = now;
  }

  /** Re-ranks the open snapshot's unsent blocks by P (rewrite before the close), ascending. */
  private rank(now: number): void {
    const horizon = this.closeAt - now;
    const f = this.calibration;
    const tb = this.table;
    const n = this.openDirty.length;
    if (this.plan.length < n || this.plan.length > 4 * n + 4096) this.plan = new Float64Array(Math.ceil(n * 1.25) + 1024);
    const packed = this.plan;
    let m = 0;
    // The allowance bounds the snapshot's expected resends on the blocks it paid for: those
    // that happened plus the risk its pre-sent, still current blocks carry from now to the
    // close. That risk falls as they survive (on a slow link pre-sending starts long before
    // the close), so it is re-priced here instead of keeping each block's price at its send.
    // Measured on the full sweep: 27 -> 28 of 45 runs on target (CloudPhysics 1 h / 2x lag
    // 187 -> 55 s, pgbench 15 min / 1.2x 82 -> 72 s).
    let sentRisk = 0;
    const slots = this.dirtySlots();
    for (let j = 0; j < n; j++) {
      const i = slots[j];
      if (i < 0) continue;
      if (tb.state[i] === SENT) {
        sentRisk += Math.min(1, f * this.model.probability(tb.ctx[i], now - tb.last[i], horizon));
        continue;
      }
      if (tb.state[i] !== DIRTY) continue;
      const age = now - tb.last[i];
      // The stored context (as of the last credit), the same view the model learnt from.
      const p = Math.min(1, f * this.model.probability(tb.ctx[i], age, horizon));
      if (p >= this.PT) continue;
      packed[m++] = Math.floor(p * PACK) * PACK + j;
    }
    packed.subarray(0, m).sort();
    this.planLen = m;
    this.planPos = 0;
    this.planAt = now;
    this.charged = this.collided - this.freeCollided + sentRisk * this.blockSize;
  }

  /** Whether `block` was written in the open snapshot, as far as the planner was told (sent or not). */
  isDirty(block: number): boolean {
    const i = this.table.find(block);
    return i >= 0 && this.table.state[i] !== CLEAN;
  }

  status(now: number): PlannerStatus {
    const { fired, startAt } = this.policy === 'predictive' ? this.startRule(now) : { fired: this.policy !== 'at-snapshot', startAt: this.policy === 'at-snapshot' ? this.closeAt : now };
    return {
      policy: this.policy,
      open: this.open,
      D: this.closedBacklog(now) + this.unsent * this.blockSize,
      B: this.link.bytesPerSecond,
      TS: this.closeAt - now,
      predictedStartAt: startAt,
      started: fired,
      presentBytes: this.present * this.blockSize,
      collidedBytes: this.collided,
      expectedResendBytes: this.spent,
      calibration: this.calibration,
      budgetGain: this.budgetGain,
      dirtyBytes: this.dirtyCount * this.blockSize,
      untrackedBytes: this.untracked * this.blockSize,
      closedBytes: this.closedBacklog(now),
      newDirtyRate: this.newDirtyRate,
      memoryBytes: this.memoryBytes,
      // 0: saved by a planner that had seen nothing yet (nothing learnt, not "resumed from 1970").
      restoredFrom: Number.isFinite(this.knownUpTo) && this.knownUpTo > 0 ? this.knownUpTo : null,
    };
  }

  /** Dirty blocks of the open snapshot beyond maxOpenBlocks: never pre-sent, they ship at the close. */
  get untrackedBlocks(): number {
    return this.untracked;
  }

  /** Whether anything is left to send (for a simulator skipping idle time). */
  get idle(): boolean {
    return this.closedBlocks === 0 && this.unsent === 0;
  }

  /**
   * The deadline of what this volume has to send: the close time of its oldest unfinished
   * closed snapshot, else the open snapshot's scheduled close (Infinity when idle).
   */
  deadline(): number {
    if (this.closed.length > 0) return this.closed[0].closedAt;
    if (this.closedBacklog(this.now) > 0) return this.backlogSince;
    return this.unsent > 0 ? this.closeAt : Infinity;
  }

  /** The open snapshot and the scheduled close. */
  get openSnapshot(): number {
    return this.open;
  }

  get memoryBytes(): number {
    let closed = 0;
    for (const c of this.closed) closed += c.keys.byteLength;
    return this.table.memoryBytes + this.model.memoryBytes + this.openDirty.memoryBytes + this.openSlots.byteLength + this.fifo.memoryBytes + this.plan.byteLength + this.regionLast.byteLength * 2 + this.regionDirty.byteLength + this.regionSpent.byteLength + closed + COHORT_ENTRY_BYTES * (this.cohortSpent.size + this.cohortSent.size);
  }
}
