/**
 * One browser on the feed, with bounded memory whatever its speed. The server hands every
 * client the same pre-serialised status frame each tick; a client keeps only a reference
 * to the newest one (older ones are coalesced away) and the JSON of each volume it last
 * sent, so an update carries only the volumes that changed for THIS browser. Events queue
 * up to a cap; past it the oldest are dropped and the count is sent along. While the
 * socket holds more than the high-water mark of unsent bytes nothing new is written.
 */
import type { FeedEvent, SnapshotRecord } from '@headstart/protocol';
import type { WebSocket } from 'ws';
import { CLIENT_HIGH_WATER_BYTES, CLIENT_MAX_QUEUED_EVENTS } from './constants';

/** A status serialised once per tick for every client: volume id -> JSON of the FeedVolume. */
export interface StatusFrame {
  readonly time: number;
  readonly node: string;
  readonly volumes: ReadonlyMap<string, string>;
}

/** A browser hears from the feed at least this often (an empty update) so it can tell a dead feed from a quiet one. */
const KEEPALIVE_UPDATE_MS = 1000;

export class FeedClient {
  private readonly sent = new Map<string, string>();
  private latest: StatusFrame | null = null;
  private events: FeedEvent[] = [];
  private dropped = 0;
  private lastUpdateAt = 0;
  alive = true;

  constructor(
    readonly ws: WebSocket,
    private readonly highWater = CLIENT_HIGH_WATER_BYTES,
    private readonly maxEvents = CLIENT_MAX_QUEUED_EVENTS,
  ) {}

  /** The first message: the whole status and what the server remembers. */
  hello(frame: StatusFrame, snapshots: readonly SnapshotRecord[], events: readonly FeedEvent[]): void {
    const vols: string[] = [];
    for (const [id, json] of frame.volumes) {
      vols.push(json);
      this.sent.set(id, json);
    }
    const status = `{"time":${frame.time},"node":${JSON.stringify(frame.node)},"volumes":[${vols.join(',')}]}`;
    this.ws.send(`{"type":"hello","version":1,"status":${status},"snapshots":${JSON.stringify(snapshots)},"events":${JSON.stringify(events)}}`);
    this.lastUpdateAt = frame.time;
  }

  offerStatus(frame: StatusFrame): void {
    this.latest = frame;
  }

  offerEvent(e: FeedEvent): void {
    this.events.push(e);
    if (this.events.length > this.maxEvents) {
      const over = this.events.length - this.maxEvents;
      this.events.splice(0, over);
      this.dropped += over;
    }
  }

  /** Bytes waiting for this browser (for tests and the log). */
  get backlog(): { bufferedBytes: number; queuedEvents: number; dropped: number } {
    return { bufferedBytes: this.ws.bufferedAmount, queuedEvents: this.events.length, dropped: this.dropped };
  }

  /** Writes what is due, unless the browser is still reading what it got. */
  flush(): void {
    if (this.ws.readyState !== this.ws.OPEN || this.ws.bufferedAmount > this.highWater) return;
    const f = this.latest;
    if (f) {
      this.latest = null;
      const changed: string[] = [];
      for (const [id, json] of f.volumes) {
        if (this.sent.get(id) !== json) {
          changed.push(json);
          this.sent.set(id, json);
        }
      }
      const removed: string[] = [];
      for (const id of this.sent.keys()) if (!f.volumes.has(id)) removed.push(id);
      for (const id of removed) this.sent.delete(id);
      if (changed.length > 0 || removed.length > 0 || f.time - this.lastUpdateAt >= KEEPALIVE_UPDATE_MS) {
        this.ws.send(`{"type":"update","time":${f.time},"node":${JSON.stringify(f.node)},"volumes":[${changed.join(',')}],"removed":${JSON.stringify(removed)}}`);
        this.lastUpdateAt = f.time;
      }
    }
    if (this.events.length > 0 || this.dropped > 0) {
      this.ws.send(JSON.stringify({ type: 'events', events: this.events, dropped: this.dropped }));
      this.events = [];
      this.dropped = 0;
    }
  }
}
