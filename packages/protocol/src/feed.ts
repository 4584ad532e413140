/**
 * Shapes of the dashboard's live feed (node -> browser over a WebSocket, JSON). Kept small
 * on purpose: a status snapshot per volume and per sink, and events. The dashboard and
 * the node import these types; nothing here is on the replication link.
 */

export interface SinkStatus {
  readonly name: string;
  /** 'connected' while a link is up and authenticated. */
  readonly state: 'connecting' | 'connected' | 'disconnected' | 'fenced' | 'error';
  /** Last snapshot the sink committed and acknowledged, or null. */
  readonly acked: number | null;
  /** Epoch ms of the newest acknowledged point's scheduled time (recovery point). */
  readonly ackedScheduledAt: number | null;
  /** Link throughput measured from acknowledged bytes, bytes/s. */
  readonly throughput: number;
  /** Payload bytes sent and not yet staged by the sink. */
  readonly inFlightBytes: number;
  /** Configured rate limit, bytes/s, or null for none. */
  readonly rateLimit: number | null;
  readonly lastError: string | null;
}

export interface VolumeStatus {
  readonly id: string;
  readonly name: string;
  readonly role: 'primary' | 'replica';
  readonly epoch: number;
  readonly size: number;
  readonly blockSize: number;
  readonly openSnapshot: number;
  readonly latestClosed: number | null;
  /** Replica side: the committed point, or null. */
  readonly committed: number | null;
  readonly sinks: readonly SinkStatus[];
}

export type FeedEvent =
  | { readonly type: 'status'; readonly time: number; readonly volumes: readonly VolumeStatus[] }
  | { readonly type: 'snapshot-closed'; readonly time: number; readonly volume: string; readonly n: number }
  | { readonly type: 'snapshot-acked'; readonly time: number; readonly volume: string; readonly sink: string; readonly n: number; readonly lagMs: number; readonly sentBytes: number; readonly minimalBytes: number }
  | { readonly type: 'snapshot-committed'; readonly time: number; readonly volume: string; readonly n: number }
  | { readonly type: 'link-error'; readonly time: number; readonly volume: string; readonly sink: string; readonly code: string; readonly message: string };
