/**
 * Link discipline: a token bucket (rate limit in bytes/s, changeable while running) and
 * the throughput meter (B, from bytes the replica acknowledged as staged).
 */
import { THROUGHPUT_WINDOW_MS } from './constants';

export class TokenBucket {
  private tokens: number;
  private last: number;

  /** `rate` bytes/s, or null for no limit. `burst` bytes may go at once (at least one frame). */
  constructor(private rate: number | null, private readonly burst: number, private readonly now: () => number = () => performance.now()) {
    this.tokens = burst;
    this.last = now();
  }

  get limit(): number | null {
    return this.rate;
  }

  setRate(rate: number | null): void {
    this.refill();
    this.rate = rate;
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
