/**
 * What the server remembers for browsers that connect later: the newest events and, per
 * volume x sink, the newest snapshot records. Both bounded (constants.ts), whatever the
 * node sends; the oldest go first.
 */
import type { FeedEvent, SnapshotRecord } from '@headstart/protocol';
import { HISTORY_EVENTS, HISTORY_MAX_SINKS, HISTORY_SNAPSHOTS_PER_SINK } from './constants';

export class FeedHistory {
  private readonly events: FeedEvent[] = [];
  /** `${volume}\0${sink}` -> n -> record; Map order = insertion order, so the first key is the oldest. */
  private readonly records = new Map<string, Map<number, SnapshotRecord>>();

  constructor(
    private readonly maxEvents = HISTORY_EVENTS,
    private readonly perSink = HISTORY_SNAPSHOTS_PER_SINK,
    private readonly maxSinks = HISTORY_MAX_SINKS,
  ) {}

  add(e: FeedEvent): void {
    if (e.type === 'status') return;
    if (e.type === 'snapshot') {
      this.upsert(e.record);
      return;
    }
    if (e.type === 'promoted') this.dropUncommitted(e.volume, e.time);
    this.events.push(e);
    if (this.events.length > this.maxEvents) this.events.splice(0, this.events.length - this.maxEvents);
  }

  private upsert(r: SnapshotRecord): void {
    const key = `${r.volume}\0${r.sink}`;
    let m = this.records.get(key);
    if (!m) {
      if (this.records.size >= this.maxSinks) this.records.delete(this.records.keys().next().value!);
      m = new Map();
      this.records.set(key, m);
    }
    m.set(r.n, r);
    if (m.size > this.perSink) {
      // Drop the lowest numbers: the chart shows the newest points.
      const ns = [...m.keys()].sort((a, b) => a - b);
      for (const n of ns.slice(0, m.size - this.perSink)) m.delete(n);
    }
  }

  /**
   * A volume promoted here at `time`: its points from before that never committed belong to a
   * history that ended (a stale primary's, closed while fenced, rolled back by its demote):
   * none is in flight.
   */
  private dropUncommitted(volume: string, time: number): void {
    for (const m of this.records.values()) for (const [n, r] of m) if (r.volume === volume && r.committedAt === null && r.scheduledAt <= time) m.delete(n);
  }

  snapshots(): SnapshotRecord[] {
    const out: SnapshotRecord[] = [];
    for (const m of this.records.values()) for (const r of m.values()) out.push(r);
    return out;
  }

  recentEvents(): FeedEvent[] {
    return [...this.events];
  }
}
