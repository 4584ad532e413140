/**
 * Link throughput `B` from acknowledged bytes, smoothed. An interval between two acks only
 * measures the link's capacity if the sender kept it busy throughout (bytes in flight the
 * whole time); an interval with the sender idle only proves a lower bound. So busy samples
 * move the estimate both ways, idle ones can only raise it.
 */
export class ThroughputEstimator {
  private estimate: number | null;
  private lastAt: number | null = null;

  constructor(
    hint: number | undefined,
    /** Smoothing time constant (s) of busy link time. */
    private readonly tau: number,
  ) {
    this.estimate = hint !== undefined && hint > 0 ? hint : null;
  }

  /** Bytes/s, or null while unknown. */
  get bytesPerSecond(): number | null {
    return this.estimate;
  }

  /** `bytes` acked at `time`; `busy` says the link had bytes queued since the previous ack. */
  ack(bytes: number, time: number, busy: boolean): void {
    const prev = this.lastAt;
    this.lastAt = time;
    if (prev === null || !(time > prev) || bytes <= 0) return;
    const dt = time - prev;
    const rate = bytes / dt;
    if (this.estimate === null) {
      this.estimate = rate;
      return;
    }
    if (!busy && rate <= this.estimate) return;
    const a = 1 - Math.exp(-dt / this.tau);
    this.estimate += (rate - this.estimate) * a;
  }

  /**
   * The engine measured the link itself (it sees the wire: window, rate limit, acks) and
   * states the throughput: taken as is, and the next ack starts a fresh interval.
   */
  set(bytesPerSecond: number): void {
    this.estimate = bytesPerSecond;
    this.lastAt = null;
  }

  /** A quiet spell: the next ack starts a fresh interval. */
  idle(): void {
    this.lastAt = null;
  }
}
