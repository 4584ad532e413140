/**
 * The page's copy of the node's state, fed by feed messages: volumes, one row per
 * volume x sink, snapshot records and samples of B and D per row (bounded rings), events.
 * Applying a message only marks what changed; the views render those marks.
 */
import type { FeedEvent, FeedMessage, FeedSink, FeedVolume, SnapshotRecord } from '@headstart/protocol';

/** Samples of B and D kept per row: 10 minutes at one a second. */
const MAX_SAMPLES = 600;
/** Snapshot records kept per row. */
const MAX_RECORDS = 120;
/** Events kept for the list (a fleet can log hundreds a second; the newest are what matter). */
export const MAX_EVENTS = 100;

export interface Row {
  readonly key: string;
  volume: FeedVolume;
  /** null for a volume without sinks (a replica, or a primary not yet paired). */
  sink: FeedSink | null;
  /** Server time of the status that carried this volume (ages grow from here). */
  statusTime: number;
  /** Needs its cells refreshed. */
  dirty: boolean;
}

export interface Samples {
  t: number[];
  b: (number | null)[];
  d: (number | null)[];
}

export const rowKey = (volume: string, sink: string | null) => `${volume}\u0000${sink ?? ''}`;

export class Model {
  readonly volumes = new Map<string, FeedVolume>();
  readonly rows = new Map<string, Row>();
  readonly records = new Map<string, Map<number, SnapshotRecord>>();
  readonly samples = new Map<string, Samples>();
  readonly events: FeedEvent[] = [];
  node = '';
  /** Server clock at `receivedAt` (performance.now()); the page ages figures by its own clock in between. */
  private serverTime = 0;
  private receivedAt = 0;
  /** Rows added or removed: the table re-sorts. */
  layoutChanged = false;
  /** Row keys whose records or samples changed. */
  readonly seriesChanged = new Set<string>();
  newEvents: FeedEvent[] = [];
  droppedEvents = 0;

  serverNow(): number {
    return this.serverTime + (performance.now() - this.receivedAt);
  }

  apply(m: FeedMessage): void {
    switch (m.type) {
      case 'hello': {
        for (const key of this.rows.keys()) this.removeRow(key);
        this.volumes.clear();
        this.records.clear();
        this.lagCache.clear();
        this.samples.clear();
        this.events.length = 0;
        this.clock(m.status.time);
        this.node = m.status.node;
        for (const v of m.status.volumes) this.putVolume(v, m.status.time);
        for (const r of m.snapshots) this.putRecord(r);
        this.addEvents(m.events);
        this.layoutChanged = true;
        return;
      }
      case 'update':
        this.clock(m.time);
        this.node = m.node;
        for (const v of m.volumes) this.putVolume(v, m.time);
        for (const id of m.removed) this.dropVolume(id);
        return;
      case 'events':
        this.droppedEvents += m.dropped;
        this.addEvents(m.events);
        return;
    }
  }

  private clock(t: number): void {
    this.serverTime = t;
    this.receivedAt = performance.now();
  }

  private putVolume(v: FeedVolume, time: number): void {
    const old = this.volumes.get(v.id);
    this.volumes.set(v.id, v);
    const keys = new Set<string>();
    const sinks: (FeedSink | null)[] = v.sinks.length > 0 ? [...v.sinks] : [null];
    for (const s of sinks) {
      const key = rowKey(v.id, s?.name ?? null);
      keys.add(key);
      let row = this.rows.get(key);
      if (!row) {
        row = { key, volume: v, sink: s, statusTime: time, dirty: true };
        this.rows.set(key, row);
        this.layoutChanged = true;
      } else {
        row.volume = v;
        row.sink = s;
        row.statusTime = time;
        row.dirty = true;
      }
      this.sample(key, time, s);
    }
    if (old) {
      const before = old.sinks.length > 0 ? old.sinks.map((s) => rowKey(v.id, s.name)) : [rowKey(v.id, null)];
      for (const k of before) if (!keys.has(k)) this.removeRow(k);
    }
  }

  private dropVolume(id: string): void {
    this.volumes.delete(id);
    for (const [k, r] of this.rows) if (r.volume.id === id) this.removeRow(k);
  }

  private removeRow(key: string): void {
    this.rows.delete(key);
    this.samples.delete(key);
    this.records.delete(key);
    this.lagCache.delete(key);
    this.layoutChanged = true;
  }

  private sample(key: string, time: number, s: FeedSink | null): void {
    if (!s) return;
    let sm = this.samples.get(key);
    if (!sm) {
      sm = { t: [], b: [], d: [] };
      this.samples.set(key, sm);
    }
    const t = time / 1000;
    const last = sm.t.length - 1;
    // One sample a second is plenty for a 10-minute chart; a newer one in the same second replaces it.
    if (last >= 0 && Math.floor(sm.t[last]) === Math.floor(t)) {
      sm.t[last] = t;
      sm.b[last] = s.throughput / 1e6;
      sm.d[last] = s.dirtyBytes === null ? null : s.dirtyBytes / 1048576;
    } else {
      sm.t.push(t);
      sm.b.push(s.throughput / 1e6);
      sm.d.push(s.dirtyBytes === null ? null : s.dirtyBytes / 1048576);
      if (sm.t.length > MAX_SAMPLES) {
        sm.t.shift();
        sm.b.shift();
        sm.d.shift();
      }
    }
    this.seriesChanged.add(key);
  }

  private putRecord(r: SnapshotRecord): void {
    const key = rowKey(r.volume, r.sink);
    let m = this.records.get(key);
    if (!m) {
      m = new Map();
      this.records.set(key, m);
    }
    m.set(r.n, r);
    if (m.size > MAX_RECORDS) {
      const ns = [...m.keys()].sort((a, b) => a - b);
      for (const n of ns.slice(0, m.size - MAX_RECORDS)) m.delete(n);
    }
    this.seriesChanged.add(key);
    this.lagCache.delete(key);
    const row = this.rows.get(key);
    if (row) row.dirty = true; // the lag trend feeds the health verdict
  }

  private addEvents(events: readonly FeedEvent[]): void {
    for (const e of events) {
      if (e.type === 'snapshot') {
        this.putRecord(e.record);
        continue;
      }
      if (e.type === 'status') continue;
      if (e.type === 'promoted') this.dropUncommitted(e.volume, e.time);
      this.events.push(e);
      this.newEvents.push(e);
    }
    if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
    if (this.newEvents.length > MAX_EVENTS) this.newEvents.splice(0, this.newEvents.length - MAX_EVENTS);
  }

  /**
   * As the server's history does (history.ts): a volume's points from before its promotion
   * that never committed are of a history that ended, not in flight. (A hello replays the
   * promotion after the records: the points since are kept.)
   */
  private dropUncommitted(volume: string, time: number): void {
    for (const [key, m] of this.records) {
      let dropped = false;
      for (const [n, r] of m) if (r.volume === volume && r.committedAt === null && r.scheduledAt <= time) dropped = m.delete(n);
      if (dropped) this.seriesChanged.add(key);
    }
  }

  private readonly lagCache = new Map<string, number[]>();

  /** Lags (ms) of the row's committed points, oldest first (cached until a record of the row changes). */
  lags(key: string): number[] {
    let l = this.lagCache.get(key);
    if (!l) {
      const m = this.records.get(key);
      l = m ? [...m.values()].filter((r) => r.lagMs !== null).sort((a, b) => a.n - b.n).map((r) => r.lagMs!) : [];
      this.lagCache.set(key, l);
    }
    return l;
  }

  sortedRecords(key: string): SnapshotRecord[] {
    const m = this.records.get(key);
    return m ? [...m.values()].sort((a, b) => a.n - b.n) : [];
  }
}

/** Checks the shape of a feed frame before use: it is input from the network, not trusted. */
export function parseFeed(text: string): FeedMessage {
  const m: unknown = JSON.parse(text);
  if (typeof m !== 'object' || m === null) throw new Error('feed frame is not an object');
  const type = Reflect.get(m, 'type');
  const arr = (k: string) => Array.isArray(Reflect.get(m, k));
  if (type === 'hello') {
    if (Reflect.get(m, 'version') !== 1) throw new Error(`feed version ${String(Reflect.get(m, 'version'))} is not 1: reload the page`);
    const st: unknown = Reflect.get(m, 'status');
    if (typeof st !== 'object' || st === null || !Array.isArray(Reflect.get(st, 'volumes')) || !arr('snapshots') || !arr('events')) throw new Error('malformed hello');
  } else if (type === 'update') {
    if (typeof Reflect.get(m, 'time') !== 'number' || !arr('volumes') || !arr('removed')) throw new Error('malformed update');
  } else if (type === 'events') {
    if (!arr('events') || typeof Reflect.get(m, 'dropped') !== 'number') throw new Error('malformed events');
  } else {
    throw new Error(`unknown feed message ${String(type)}`);
  }
  return m as FeedMessage; // shape checked above; fields inside are the node's own status
}
