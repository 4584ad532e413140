/**
 * The `plain` reference planner: the baseline issue 10 names ("start rule with K = 1, L = 0,
 * per-block Poisson rates with a half-life of one interval, PT = 0.3, replanned every 10 s"),
 * written from that one line so the evaluator can show, run by run, what headstart's planner
 * adds over it. It is a yardstick, like the oracle: the engine never runs it.
 *
 * Per block: a count of writes decaying with a half-life of one snapshot interval, so its
 * rate is count x ln 2 / half-life and P(rewrite before the close) = 1 - exp(-rate x TS).
 * Closed snapshots go first, oldest first. The open snapshot's unsent dirty blocks wait until
 * `TS < K x D / B + L` fires (D: bytes still to send, B: the link's known mean), then go in
 * ascending P order, never with P >= PT; the ranking is redone every 10 s. A pre-sent block
 * written again is due again (a collision), like in the real planner.
 */
import type { SendItem } from '@headstart/planner';

const DIRTY = 1;
const SENT = 2;

export interface PlainOptions {
  readonly blockSize: number;
  /** Snapshot interval (s): the rate estimate's half-life. */
  readonly interval: number;
  /** The open snapshot 1's close (s). */
  readonly closeAt: number;
  /** The link's throughput (bytes/s). */
  readonly bytesPerSecond: number;
  readonly K?: number;
  readonly L?: number;
  readonly PT?: number;
  readonly replanSeconds?: number;
}

export class PlainPlanner {
  readonly totals = { presentBytes: 0, expectedResendBytes: 0, collidedBytes: 0 };
  private readonly bs: number;
  private readonly halfLife: number;
  private readonly B: number;
  private readonly K: number;
  private readonly L: number;
  private readonly PT: number;
  private readonly replanEvery: number;
  /** Per block ever written: decayed write count and last write time. */
  private readonly count = new Map<number, number>();
  private readonly last = new Map<number, number>();
  /** The open snapshot's dirty blocks and their state. */
  private readonly state = new Map<number, number>();
  private unsent = 0;
  private readonly closed: { n: number; keys: number[]; pos: number }[] = [];
  private closedBlocks = 0;
  private open = 1;
  private closeAt: number;
  private plan: number[] = [];
  private planPos = 0;
  private planAt = -Infinity;
  private started = false;

  constructor(o: PlainOptions) {
    this.bs = o.blockSize;
    this.halfLife = o.interval;
    this.closeAt = o.closeAt;
    this.B = o.bytesPerSecond;
    this.K = o.K ?? 1;
    this.L = o.L ?? 0;
    this.PT = o.PT ?? 0.3;
    this.replanEvery = o.replanSeconds ?? 10;
  }

  private decayed(b: number, t: number): number {
    const c = this.count.get(b);
    return c === undefined ? 0 : c * Math.pow(2, -(t - this.last.get(b)!) / this.halfLife);
  }

  onWrite(w: { time: number; offset: number; length: number }): void {
    const first = Math.floor(w.offset / this.bs);
    const end = Math.ceil((w.offset + w.length) / this.bs);
    for (let b = first; b < end; b++) {
      this.count.set(b, this.decayed(b, w.time) + 1);
      this.last.set(b, w.time);
      const s = this.state.get(b);
      if (s === SENT) this.totals.collidedBytes += this.bs;
      if (s !== DIRTY) this.unsent++;
      this.state.set(b, DIRTY);
    }
  }

  onClose(n: number, _time: number, nextCloseAt: number): void {
    const keys: number[] = [];
    for (const [b, s] of this.state) if (s === DIRTY) keys.push(b);
    if (keys.length > 0) {
      this.closed.push({ n, keys, pos: 0 });
      this.closedBlocks += keys.length;
    }
    this.state.clear();
    this.unsent = 0;
    this.plan = [];
    this.planPos = 0;
    this.planAt = -Infinity;
    this.started = false;
    this.open = n + 1;
    this.closeAt = nextCloseAt;
  }

  onAcked(_bytes: number, _time: number): void {
    // B is the link's known mean: nothing to measure.
  }

  private P(b: number, now: number): number {
    const rate = (this.decayed(b, now) * Math.LN2) / this.halfLife;
    return 1 - Math.exp(-rate * Math.max(0, this.closeAt - now));
  }

  next(now: number, budgetBytes: number): SendItem[] {
    const out: SendItem[] = [];
    let budget = budgetBytes;
    while (budget >= this.bs && this.closed.length > 0) {
      const head = this.closed[0];
      out.push({ n: head.n, block: head.keys[head.pos++] });
      budget -= this.bs;
      this.closedBlocks--;
      if (head.pos === head.keys.length) this.closed.shift();
    }
    if (budget < this.bs || this.unsent === 0) return out;
    // Once the rule fires, pre-sending has started for this snapshot (sending shrinks D as
    // fast as TS falls, so re-testing it would stop and restart on rounding).
    const D = (this.closedBlocks + this.unsent) * this.bs;
    if (!this.started && !(this.closeAt - now < (this.K * D) / this.B + this.L)) return out;
    this.started = true;
    if (now - this.planAt >= this.replanEvery) {
      const ranked: { b: number; p: number }[] = [];
      for (const [b, s] of this.state) {
        if (s !== DIRTY) continue;
        const p = this.P(b, now);
        if (p < this.PT) ranked.push({ b, p });
      }
      ranked.sort((x, y) => x.p - y.p);
      this.plan = ranked.map((r) => r.b);
      this.planPos = 0;
      this.planAt = now;
    }
    while (budget >= this.bs && this.planPos < this.plan.length) {
      const b = this.plan[this.planPos++];
      if (this.state.get(b) !== DIRTY) continue;
      this.state.set(b, SENT);
      this.unsent--;
      this.totals.presentBytes += this.bs;
      out.push({ n: this.open, block: b });
      budget -= this.bs;
    }
    return out;
  }

  get idle(): boolean {
    return this.closedBlocks === 0 && this.unsent === 0;
  }

  get memoryBytes(): number {
    // Two map entries per block ever written plus the open snapshot's states (estimate).
    return (this.count.size * 2 + this.state.size) * 48;
  }
}
