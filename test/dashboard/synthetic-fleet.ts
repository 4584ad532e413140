/**
 * Load for the page at fleet scale: N volumes x M sinks whose figures change every second,
 * with a snapshot closed and committed per sink per second (a record and events each).
 * Only the page's speed is judged with it; what the figures mean is checked over real
 * replication in dashboard.test.ts. Deterministic (seeded), so runs compare.
 */
import type { FeedEvent, FeedSink, FeedSource, FeedStatus, FeedVolume } from './types';

export class SyntheticFleet implements FeedSource {
  private readonly listeners = new Set<(e: FeedEvent) => void>();
  private readonly timer: NodeJS.Timeout;
  private n = 1;
  private seed = 42;
  private readonly start = Date.now();
  /** Sinks forced to a link state (to time how fast a change shows under load). */
  readonly forced = new Map<string, FeedSink['state']>();
  /** Sinks forced to an RPO age (ms), to see behind and broken by age. */
  readonly forcedRpo = new Map<string, number>();

  constructor(readonly volumes: number, readonly sinksPer: number, periodMs = 1000) {
    this.timer = setInterval(() => this.step(), periodMs);
  }

  private rand(): number {
    this.seed = (this.seed * 1103515245 + 12345) & 0x7fffffff;
    return this.seed / 0x7fffffff;
  }

  subscribe(l: (e: FeedEvent) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private step(): void {
    const now = Date.now();
    this.n++;
    const scheduledAt = now - 300;
    for (let v = 0; v < this.volumes; v++) {
      const volume = `vol-${String(v).padStart(2, '0')}`;
      for (let s = 0; s < this.sinksPer; s++) {
        const lag = 200 + Math.floor(this.rand() * 600);
        const record = { volume, sink: `site-${s}`, n: this.n - 1, scheduledAt: scheduledAt - 1000, presendStartAt: scheduledAt - 1600, closedAt: scheduledAt - 1000, committedAt: scheduledAt - 1000 + lag, lagMs: lag, sentBytes: 1 << 20, minimalBytes: 1 << 20 };
        for (const l of this.listeners) {
          l({ type: 'snapshot', time: now, record });
          l({ type: 'snapshot-acked', time: now, volume, sink: `site-${s}`, n: this.n - 1, lagMs: lag, sentBytes: 1 << 20, minimalBytes: 1 << 20 });
        }
      }
    }
  }

  status(): FeedStatus {
    const now = Date.now();
    const volumes: FeedVolume[] = [];
    for (let v = 0; v < this.volumes; v++) {
      const id = `vol-${String(v).padStart(2, '0')}`;
      const sinks: FeedSink[] = [];
      for (let s = 0; s < this.sinksPer; s++) {
        const name = `site-${s}`;
        const phase = (now - this.start) / 1000 + v + s;
        sinks.push({
          name, state: this.forced.get(`${id}/${name}`) ?? 'connected', acked: this.n - 1, ackedScheduledAt: now - 1300, throughput: 50e6 + 20e6 * Math.sin(phase), inFlightBytes: 0, rateLimit: null, lastError: null,
          policy: 'predictive', committedPoint: { n: this.n - 1, scheduledAt: now - 1300, closedAt: now - 1300, committedAt: now - 800 }, lagMs: 500, rpoAgeMs: this.forcedRpo.get(`${id}/${name}`) ?? 1300, rpoTargetMs: 60_000,
          dirtyBytes: Math.floor((1 + Math.sin(phase / 3)) * 64 * 1048576), secondsToClose: 0.7, presendStartAt: now - 200, presentBytes: 12 * 1048576, collidedBytes: 4096 * (v % 7), notConverging: false,
          staging: { n: this.n, stagedBlocks: (this.n * 37) % 400, totalBlocks: 400 },
        });
      }
      volumes.push({
        id, name: id, role: 'primary', epoch: 1, size: 1 << 30, blockSize: 4096, openSnapshot: this.n, latestClosed: this.n - 1, committed: null,
        latestClosedPoint: { n: this.n - 1, scheduledAt: now - 1300, closedAt: now - 1300, committedAt: null }, committedPoint: null, nextCloseAt: now + 700, sinks,
      });
    }
    return { time: now, node: 'fleet', volumes };
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
