/** Link models for the simulator: throughput (bytes/s) as a function of time. */
export interface LinkModel {
  readonly name: string;
  /** Mean throughput, bytes/s. */
  readonly mean: number;
  /**
   * Bytes an idle link may take at once (a token bucket's burst): 0 for a plain link (the
   * default). The engine's rate limiter has one; a replay against the engine models it.
   */
  readonly burstBytes?: number;
  rateAt(time: number): number;
}

export function constantLink(bytesPerSecond: number, burstBytes = 0): LinkModel {
  return { name: burstBytes > 0 ? `constant(burst ${burstBytes} B)` : 'constant', mean: bytesPerSecond, burstBytes, rateAt: () => bytesPerSecond };
}

/**
 * A link whose throughput swings around its mean (a shared WAN: busy hours, cross traffic):
 * a square wave between `mean * (1 - depth)` and `mean * (1 + depth)` with the given period.
 */
export function varyingLink(bytesPerSecond: number, period = 600, depth = 0.5): LinkModel {
  return {
    name: `varying(${period}s,±${Math.round(depth * 100)}%)`,
    mean: bytesPerSecond,
    rateAt: (t) => bytesPerSecond * (Math.floor((2 * t) / period) % 2 === 0 ? 1 + depth : 1 - depth),
  };
}
