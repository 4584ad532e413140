/**
 * Link discipline: a token bucket (rate limit in bytes/s, changeable while running) and
 * the throughput meter (B, from bytes the replica acknowledged as staged).
 */
import { RATE_BURST_MIN_BYTES, RATE_BURST_SECONDS, THROUGHPUT_WINDOW_MS } from './constants';

/**
 * What a bucket may save up while the link is idle: a quarter second at the rate, between
 * RATE_BURST_MIN_BYTES and `maxBurst`. A fixed burst of one whole frame (1 MiB) let a link
 * capped at 64 KiB/s run uncapped for 16 s after every pause. A frame larger than the tokens
 * still goes: the bucket goes into debt and the next send waits it off.
 */
export function burstFor(rate: number | null, maxBurst: number): number {
  if (rate === null) return maxBurst;
  return Math.min(maxBurst, Math.max(RATE_BURST_MIN_BYTES, rate * RATE_BURST_SECONDS));
}

/**
 * A shared cap's turns (DESIGN "Scale": one link's throughput is divided by deadline, not
 * first come first served): while several links wait for its tokens, the one whose point is
 * due soonest (the oldest closed point) sends its next frame first. So that a link with a
 * later deadline is never starved, every RESERVE_TURN-th turn goes to the link that has
 * waited longest instead.
 */
const RESERVE_TURN = 8;
/**
 * After a frame, a link whose deadline beats every waiter keeps the turn this long for its
 * next frame (being read and hashed meanwhile): passing it on at once would interleave the
 * links frame by frame, first come first served again. The bucket saves its tokens
 * meanwhile (up to its burst), so the wait costs the link little or nothing.
 */
const TURN_GRACE_MS = 20;

/** A link waiting for a shared cap's turn. */
interface Waiter {
  readonly deadline: number;
  readonly since: number;
  readonly grant: () => void;
}

export class TokenBucket {
  private tokens: number;
  private last: number;
  private burst: number;
  private readonly queue: Waiter[] = [];
  private held = false;
  private turns = 0;
  /** The link the turn is kept for after its frame (TURN_GRACE_MS), and the timer that passes it on. */
  private keptFor: object | null = null;
  private keepTimer: NodeJS.Timeout | null = null;

  /** `rate` bytes/s, or null for no limit; the burst follows the rate (burstFor), up to `maxBurst`. */
  constructor(private rate: number | null, private readonly maxBurst: number, private readonly now: () => number = () => performance.now()) {
    this.burst = burstFor(rate, maxBurst);
    this.tokens = this.burst;
    this.last = now();
  }

  get limit(): number | null {
    return this.rate;
  }

  setRate(rate: number | null): void {
    this.refill();
    this.rate = rate;
    this.burst = burstFor(rate, this.maxBurst);
    this.tokens = Math.min(this.tokens, this.burst);
  }

  private refill(): void {
    const t = this.now();
    if (this.rate !== null) this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
  }

  /** Takes `bytes` (going into debt if needed) and returns how long to wait before sending, ms. */
  take(bytes: number): number {
    if (this.rate === null) return 0;
    this.refill();
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.rate) * 1000;
  }

  /** What the bucket may save up (Infinity without a limit): the largest frame that waits at most a quarter second. */
  get burstBytes(): number {
    return this.rate === null ? Infinity : this.burst;
  }

  /** Bytes that may go now without waiting (Infinity without a limit). */
  available(): number {
    if (this.rate === null) return Infinity;
    this.refill();
    return Math.max(0, this.tokens);
  }

  /** A link holds the turn or waits for it: spare tokens are not for pre-sends then. */
  get contended(): boolean {
    return this.held || this.queue.length > 0;
  }

  /**
   * Waits for this cap's turn, by `deadline` (epoch ms; smaller first), and returns the
   * function that ends it: `used` false for a turn its holder sent nothing in, which then
   * neither counts toward the reserve turn nor is kept for its holder. `who` (the link) may
   * find the turn kept for it after its last frame. Without a limit there is no turn to wait for.
   */
  async turn(deadline: number, who: object = {}): Promise<(used?: boolean) => void> {
    if (this.rate === null) return () => {};
    const end = (used = true) => this.pass(deadline, who, used);
    if (this.keptFor === who) {
      clearTimeout(this.keepTimer!);
      this.keptFor = null;
      this.keepTimer = null;
      return end; // still held: it was kept for us
    }
    if (!this.held) {
      this.held = true;
      return end;
    }
    await new Promise<void>((grant) => this.queue.push({ deadline, since: performance.now(), grant }));
    return end;
  }

  /** The waiter to serve next: the earliest deadline (then the longest waiting), or on a reserve turn the longest waiting. */
  private next(reserve: boolean): Waiter {
    const before = (a: Waiter, b: Waiter) => (reserve ? a.since < b.since : a.deadline < b.deadline || (a.deadline === b.deadline && a.since < b.since));
    return this.queue.reduce((best, w) => (before(w, best) ? w : best));
  }

  private pass(deadline: number, who: object, used: boolean): void {
    if (this.queue.length === 0) {
      this.held = false;
      return;
    }
    if (used) this.turns++;
    const reserve = used && this.turns % RESERVE_TURN === 0;
    const best = this.next(reserve);
    if (used && !reserve && deadline < best.deadline) {
      // Kept a moment for the link that just sent: it is due sooner than every waiter.
      this.keptFor = who;
      this.keepTimer = setTimeout(() => {
        this.keptFor = null;
        this.keepTimer = null;
        this.grantNext(this.next(false));
      }, TURN_GRACE_MS);
      return;
    }
    this.grantNext(best);
  }

  private grantNext(next: Waiter): void {
    this.queue.splice(this.queue.indexOf(next), 1);
    next.grant(); // the turn passes on: still held
  }
}

/** What the shipper asks of a rate limit (one bucket, or several that must all agree). */
export interface RateGate {
  /** Takes `bytes` and returns how long to wait before sending them, ms. */
  take(bytes: number): number;
  /**
   * Waits until `bytes` may go: the link's turn on every shared cap (by `deadline`, epoch
   * ms, the soonest first), then the tokens.
   */
  acquire(bytes: number, deadline: number): Promise<void>;
  /** Bytes that may go now without waiting; none while another link waits for a shared cap. */
  available(): number;
  /** Whether a shared cap limits the link (then its pre-sends take turns too: see hold). */
  readonly sharedCapped: boolean;
  /**
   * Waits for the link's turn on every shared cap, by `deadline`, and returns the function
   * that ends it: acquire's first half, for a caller that sizes its frame once it holds the
   * turn (pre-sends) and then calls `spend`. Ended with `used` false, the turn does not count
   * (TokenBucket.turn).
   */
  hold(deadline: number): Promise<(used?: boolean) => void>;
  /** Takes `bytes` and waits off what they overdraw: acquire's second half, with the turn held. */
  spend(bytes: number): Promise<void>;
  /** The largest frame a turn should carry: the tightest limit's burst (a quarter second of it; Infinity without one). */
  frameBytes(): number;
}

/**
 * A link's own bucket together with buckets it shares with other links (a cap per peer, a
 * cap for the whole node): a send takes from each and waits as long as the slowest says.
 */
export class RateLimits implements RateGate {
  constructor(readonly own: TokenBucket, readonly shared: readonly TokenBucket[] = []) {}

  take(bytes: number): number {
    let wait = this.own.take(bytes);
    for (const b of this.shared) wait = Math.max(wait, b.take(bytes));
    return wait;
  }

  async acquire(bytes: number, deadline: number): Promise<void> {
    const release = await this.hold(deadline);
    try {
      await this.spend(bytes);
    } finally {
      release();
    }
  }

  async hold(deadline: number): Promise<(used?: boolean) => void> {
    const ends: ((used?: boolean) => void)[] = [];
    // Always in the same order (the links' shared caps are listed alike), so no two links
    // can each hold a turn the other waits for.
    for (const b of this.shared) ends.push(await b.turn(deadline, this));
    let ended = false;
    return (used = true) => {
      if (ended) return;
      ended = true;
      for (const end of ends.reverse()) end(used);
    };
  }

  async spend(bytes: number): Promise<void> {
    const wait = this.take(bytes);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }

  get sharedCapped(): boolean {
    return this.shared.some((b) => b.limit !== null);
  }

  frameBytes(): number {
    let f = this.own.burstBytes;
    for (const b of this.shared) f = Math.min(f, b.burstBytes);
    return f;
  }

  available(): number {
    let a = this.own.available();
    for (const b of this.shared) a = Math.min(a, b.contended ? 0 : b.available());
    return a;
  }

  /** The tightest configured rate, bytes/s, or null when nothing limits the link. */
  get limit(): number | null {
    let l: number | null = this.own.limit;
    for (const b of this.shared) if (b.limit !== null) l = l === null ? b.limit : Math.min(l, b.limit);
    return l;
  }
}

export class ThroughputMeter {
  private readonly samples: { t: number; bytes: number }[] = [];
  private total = 0;
  /** The last sample that left the window: where the span of the samples in it begins. */
  private anchor: number | null = null;
  constructor(private readonly now: () => number = () => performance.now(), private readonly windowMs = THROUGHPUT_WINDOW_MS) {}

  add(bytes: number): void {
    const t = this.now();
    this.samples.push({ t, bytes });
    this.total += bytes;
    this.prune(t);
  }

  private prune(t: number): void {
    while (this.samples.length > 0 && this.samples[0].t < t - this.windowMs) {
      const gone = this.samples.shift()!;
      this.total -= gone.bytes;
      this.anchor = gone.t;
    }
  }

  /** Bytes/s over the window (0 until two samples span some time). */
  get bytesPerSecond(): number {
    const t = this.now();
    this.prune(t);
    if (this.samples.length < 2) return 0;
    const span = Math.max(t - this.samples[0].t, 1);
    return ((this.total - this.samples[0].bytes) / span) * 1000;
  }

  /**
   * Bytes/s as an operator reads it (status, dashboard, metrics). On a slow link each
   * acknowledgement is a whole batch seconds apart, so the window above often holds one
   * sample and says 0 while the link is busy: here the window's bytes count from the sample
   * before them (when it is at most ANCHOR_WINDOWS windows old), and a link that idles
   * longer reads 0. The planner keeps bytesPerSecond (its gauge skips the zeroes).
   */
  get shownBytesPerSecond(): number {
    const t = this.now();
    this.prune(t);
    const windowed = this.bytesPerSecond;
    if (windowed > 0 || this.samples.length === 0 || this.anchor === null || t - this.anchor > ANCHOR_WINDOWS * this.windowMs) return windowed;
    return (this.total / Math.max(t - this.anchor, 1)) * 1000;
  }
}

/** How many windows back the sample before the window still counts as the start of its span. */
const ANCHOR_WINDOWS = 4;
