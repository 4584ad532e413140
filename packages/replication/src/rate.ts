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

export class TokenBucket {
  private tokens: number;
  private last: number;
  private burst: number;

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

  /** Bytes that may go now without waiting (Infinity without a limit). */
  available(): number {
    if (this.rate === null) return Infinity;
    this.refill();
    return Math.max(0, this.tokens);
  }
}

/** What the shipper asks of a rate limit (one bucket, or several that must all agree). */
export interface RateGate {
  /** Takes `bytes` and returns how long to wait before sending them, ms. */
  take(bytes: number): number;
  /** Bytes that may go now without waiting. */
  available(): number;
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

  available(): number {
    let a = this.own.available();
    for (const b of this.shared) a = Math.min(a, b.available());
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
  constructor(private readonly now: () => number = () => performance.now(), private readonly windowMs = THROUGHPUT_WINDOW_MS) {}

  add(bytes: number): void {
    const t = this.now();
    this.samples.push({ t, bytes });
    this.total += bytes;
    this.prune(t);
  }

  private prune(t: number): void {
    while (this.samples.length > 0 && this.samples[0].t < t - this.windowMs) this.total -= this.samples.shift()!.bytes;
  }

  /** Bytes/s over the window (0 until two samples span some time). */
  get bytesPerSecond(): number {
    const t = this.now();
    this.prune(t);
    if (this.samples.length < 2) return 0;
    const span = Math.max(t - this.samples[0].t, 1);
    return ((this.total - this.samples[0].bytes) / span) * 1000;
  }
}
