/**
 * A FeedSource over real replication parts, for the browser tests: source volumes, their
 * SourceLinks and the replica server, all in this process. It reads what those parts
 * report (link status and events, the volume's points and dirty sets, the replica's
 * staging) and adds only bookkeeping the node will own later (when each point closed and
 * was acknowledged, bytes sent while a point was open). The node's own status replaces it.
 */
import type { FeedEvent, FeedPoint, FeedSink, FeedSource, FeedStatus, FeedVolume, SnapshotRecord } from './types';
import type { ReplicaServer, SourceEvent, SourceLink } from '@headstart/replication';
import type { SnapshotPoint, Volume } from '@headstart/volume';

export interface WatchedSink {
  readonly name: string;
  link: SourceLink;
  readonly policy: string;
  readonly rpoTargetMs: number;
}

interface SinkBook {
  readonly cfg: WatchedSink;
  /** Acknowledgement times and figures by point. */
  readonly acked: Map<number, { at: number; sentBytes: number | null; minimalBytes: number | null }>;
  /** Payload bytes counted so far and while which open point. */
  lastPayload: number;
  /** Whether, at the previous sample, nothing closed was waiting (so bytes since went to the open point). */
  caughtUp: boolean;
  presendStart: Map<number, number>;
  presentBytes: Map<number, number>;
}

interface VolumeBook {
  readonly volume: Volume;
  readonly sinks: Map<string, SinkBook>;
  /** Every point seen closed (the volume forgets points every sink acknowledged). */
  readonly points: Map<number, SnapshotPoint>;
  nextCloseAt: number | null;
  /** A leveled schedule's offset (as the node reports it), or null. */
  levelOffsetMs: number | null;
  /** Replica side: a commit stuck writing its image, as the node reports it, or null. */
  betweenPoints: { n: number; forMs: number; stalled: boolean } | null;
}

export class ReplicationFeed implements FeedSource {
  private readonly listeners = new Set<(e: FeedEvent) => void>();
  private readonly volumes = new Map<string, VolumeBook>();
  private readonly poller: NodeJS.Timeout;

  constructor(private readonly node: string, private readonly replica: () => ReplicaServer | null) {
    // Bytes a link sends while nothing closed is waiting belong to the open point: pre-send.
    this.poller = setInterval(() => this.samplePresend(), 100);
  }

  subscribe(listener: (e: FeedEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: FeedEvent): void {
    for (const l of this.listeners) l(e);
  }

  addVolume(volume: Volume): void {
    const book: VolumeBook = { volume, sinks: new Map(), points: new Map(), nextCloseAt: null, levelOffsetMs: null, betweenPoints: null };
    this.volumes.set(volume.info.id, book);
    this.learnPoints(book);
  }

  /** The onEvent handler to give startSource for this volume's sink. */
  sourceEvents(volumeId: string): (e: SourceEvent) => void {
    return (e) => this.onSourceEvent(volumeId, e);
  }

  addSink(volumeId: string, sink: WatchedSink): void {
    const book = this.volumes.get(volumeId)!;
    book.sinks.set(sink.name, { cfg: sink, acked: new Map(), lastPayload: sink.link.stats().payloadBytesSent, caughtUp: false, presendStart: new Map(), presentBytes: new Map() });
    this.learnPoints(book);
  }

  setNextClose(volumeId: string, at: number | null): void {
    this.volumes.get(volumeId)!.nextCloseAt = at;
  }

  setLevelOffset(volumeId: string, ms: number | null): void {
    this.volumes.get(volumeId)!.levelOffsetMs = ms;
  }

  setBetweenPoints(volumeId: string, between: { n: number; forMs: number; stalled: boolean } | null): void {
    this.volumes.get(volumeId)!.betweenPoints = between;
  }

  /** Closes the open point as scheduled at `scheduledAt`, and tells the browsers. */
  async close(volumeId: string, scheduledAt: number): Promise<SnapshotPoint> {
    const book = this.volumes.get(volumeId)!;
    this.samplePresend();
    const p = await book.volume.closeSnapshot({ scheduledAt });
    book.points.set(p.n, p);
    this.emit({ type: 'snapshot-closed', time: p.closedAt, volume: volumeId, n: p.n });
    for (const s of book.sinks.values()) this.emit({ type: 'snapshot', time: p.closedAt, record: this.record(book, s, p) });
    return p;
  }

  stop(): void {
    clearInterval(this.poller);
  }

  private learnPoints(book: VolumeBook): void {
    for (const p of book.volume.snapshots()) if (!book.points.has(p.n)) book.points.set(p.n, p);
  }

  private onSourceEvent(volumeId: string, e: SourceEvent): void {
    const book = this.volumes.get(volumeId);
    const s = book?.sinks.get(e.sink);
    const now = Date.now();
    if (e.type === 'connected') this.emit({ type: 'link-connected', time: now, volume: volumeId, sink: e.sink });
    else if (e.type === 'disconnected') this.emit({ type: 'link-disconnected', time: now, volume: volumeId, sink: e.sink, code: e.code, message: e.message });
    else if (e.type === 'acked') {
      if (!book || !s) return;
      s.acked.set(e.n, { at: now, sentBytes: e.sentBytes, minimalBytes: e.minimalBytes });
      this.learnPoints(book);
      this.emit({ type: 'snapshot-acked', time: now, volume: volumeId, sink: e.sink, n: e.n, lagMs: e.lagMs, sentBytes: e.sentBytes ?? 0, minimalBytes: e.minimalBytes ?? 0 });
      const p = book.points.get(e.n);
      if (p) this.emit({ type: 'snapshot', time: now, record: this.record(book, s, p) });
    }
  }

  private samplePresend(): void {
    const now = Date.now();
    for (const book of this.volumes.values()) {
      const open = book.volume.openSnapshot;
      const latest = book.volume.latestClosed?.n ?? null;
      for (const s of book.sinks.values()) {
        const total = s.cfg.link.stats().payloadBytesSent;
        const delta = total - s.lastPayload;
        s.lastPayload = total;
        const acked = book.volume.sink(s.cfg.name).acked;
        const caughtUp = acked !== null && acked === latest;
        const wasCaughtUp = s.caughtUp;
        s.caughtUp = caughtUp;
        // Only when caught up over the whole interval: bytes of a closed point acked meanwhile are not pre-send.
        if (delta > 0 && caughtUp && wasCaughtUp) {
          if (!s.presendStart.has(open)) s.presendStart.set(open, now);
          s.presentBytes.set(open, (s.presentBytes.get(open) ?? 0) + delta);
        }
      }
    }
  }

  private record(book: VolumeBook, s: SinkBook, p: SnapshotPoint): SnapshotRecord {
    const a = s.acked.get(p.n);
    return {
      volume: book.volume.info.id,
      sink: s.cfg.name,
      n: p.n,
      scheduledAt: p.scheduledAt,
      presendStartAt: s.presendStart.get(p.n) ?? null,
      closedAt: p.closedAt,
      committedAt: a?.at ?? null,
      lagMs: a ? Math.max(0, a.at - p.scheduledAt) : null,
      sentBytes: a?.sentBytes ?? null,
      minimalBytes: a?.minimalBytes ?? null,
    };
  }

  private point(book: VolumeBook, s: SinkBook | null, n: number | null): FeedPoint | null {
    if (n === null) return null;
    const p = book.points.get(n);
    if (!p) return null;
    return { n, scheduledAt: p.scheduledAt, closedAt: p.closedAt, committedAt: s?.acked.get(n)?.at ?? null };
  }

  private sinkStatus(book: VolumeBook, s: SinkBook, now: number): FeedSink {
    const v = book.volume;
    const link = s.cfg.link.status();
    const bs = v.blockSize;
    const acked = link.acked;
    const latest = v.latestClosed?.n ?? null;
    const committed = this.point(book, s, acked);
    // Lag: growing while a closed point waits, else the newest commit's.
    let lagMs: number | null = null;
    const waiting = latest !== null && (acked === null || acked < latest) ? book.points.get(acked === null ? v.sink(s.cfg.name).baseline : acked + 1) : undefined;
    if (waiting) lagMs = Math.max(0, now - waiting.scheduledAt);
    else if (committed?.committedAt != null) lagMs = Math.max(0, committed.committedAt - committed.scheduledAt);
    // D: the dirty sets of every point this sink still needs, less what was pre-sent of the open one.
    let dirty = 0;
    let dirtyKnown = true;
    const from = acked === null ? null : acked + 1;
    if (from === null) dirtyKnown = false;
    else {
      for (let n = from; n <= v.openSnapshot; n++) {
        try {
          dirty += v.dirtyBlocks(n).size * bs;
        } catch {
          dirtyKnown = false;
        }
      }
      dirty = Math.max(0, dirty - (s.presentBytes.get(v.openSnapshot) ?? 0));
    }
    // Staging on the replica: the oldest point this sink still needs.
    let staging: FeedSink['staging'] = null;
    const target = this.replica()?.targets.get(v.info.id);
    if (target && from !== null) {
      let total: number | null = null;
      try {
        total = v.dirtyBlocks(from).size;
      } catch {
        total = null;
      }
      staging = { n: from, stagedBlocks: target.staging.staged(from)?.blocks.size ?? 0, totalBlocks: total };
    }
    return {
      ...link,
      policy: s.cfg.policy,
      committedPoint: committed,
      lagMs,
      rpoAgeMs: committed ? Math.max(0, now - committed.scheduledAt) : null,
      rpoTargetMs: s.cfg.rpoTargetMs,
      dirtyBytes: dirtyKnown ? dirty : null,
      secondsToClose: book.nextCloseAt === null ? null : Math.max(0, (book.nextCloseAt - now) / 1000),
      presendStartAt: s.presendStart.get(v.openSnapshot) ?? null,
      presentBytes: s.presentBytes.get(v.openSnapshot) ?? 0,
      collidedBytes: null, // known per point only once it is acknowledged (sent - minimal)
      notConverging: null, // the node's rule (packages/node/src/convergence.ts); this feed does not keep close history
      staging,
    };
  }

  status(): FeedStatus {
    const now = Date.now();
    const volumes: FeedVolume[] = [];
    for (const book of this.volumes.values()) {
      const v = book.volume;
      this.learnPoints(book);
      const latest = v.latestClosed;
      volumes.push({
        id: v.info.id,
        name: v.info.name,
        role: v.info.role,
        epoch: v.info.epoch,
        size: v.size,
        blockSize: v.blockSize,
        openSnapshot: v.openSnapshot,
        latestClosed: latest?.n ?? null,
        committed: v.committed?.n ?? null,
        latestClosedPoint: latest ? { n: latest.n, scheduledAt: latest.scheduledAt, closedAt: latest.closedAt, committedAt: null } : null,
        committedPoint: null,
        nextCloseAt: book.nextCloseAt,
        levelOffsetMs: book.levelOffsetMs,
        betweenPoints: book.betweenPoints,
        sinks: [...book.sinks.values()].map((s) => this.sinkStatus(book, s, now)),
      });
    }
    return { time: now, node: this.node, volumes };
  }
}
