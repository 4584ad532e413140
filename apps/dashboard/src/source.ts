import type { FeedEvent, FeedStatus, SnapshotRecord } from '@headstart/protocol';

/**
 * What the dashboard reads; the node implements it over its volumes, links and planners.
 * `status()` is called a few times a second while a browser watches, so it must be cheap
 * (figures the node already keeps, no I/O). `subscribe` delivers events as they happen and
 * returns the unsubscribe function.
 */
export interface FeedSource {
  status(): FeedStatus;
  subscribe(listener: (event: FeedEvent) => void): () => void;
  /** Snapshot records and events from before the dashboard started, oldest first (optional). */
  history?(): { readonly snapshots: readonly SnapshotRecord[]; readonly events: readonly FeedEvent[] };
}

/** The subset of a pino logger the server uses. */
export interface DashboardLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}
