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
  /** The point this link is shipping now and how much of it the sink has staged; null when idle or not known. */
  readonly staging: FeedStaging | null;
  /**
   * A sink that was away catches up: its next point is this one, straight from `acked`
   * (the points between are skipped, not kept for it). Null or absent: the one after `acked`.
   */
  readonly catchUpTo?: number | null;
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

/** Where a volume's sink stands: the link state of SinkStatus, named for reuse. */
export type LinkState = SinkStatus['state'];

/** A snapshot point as the dashboard shows it; times are epoch ms, null while not reached. */
export interface FeedPoint {
  readonly n: number;
  /** When the point was scheduled: lag and RPO age are measured from here. */
  readonly scheduledAt: number;
  readonly closedAt: number | null;
  /** When the sink committed it (replica side) and acknowledged it. */
  readonly committedAt: number | null;
}

/** Staging on the replica of the point in flight (received blocks, not yet committed). */
export interface FeedStaging {
  readonly n: number;
  /** Distinct blocks of n the sink has confirmed staged (STAGED), including those it held from before a reconnect. */
  readonly stagedBlocks: number;
  /** Blocks the point has (its dirty set so far while it is open); null when not known (an initial sync, which skips zero blocks). */
  readonly totalBlocks: number | null;
}

/**
 * One sink of one volume, everything the dashboard shows for it. Extends the link's own
 * SinkStatus (state, acked, throughput B, lastError). Figures the node does not know are
 * null, never a made-up zero.
 */
export interface FeedSink extends SinkStatus {
  /** Pre-send policy of this link: 'continuous', 'at-snapshot', 'predictive'. */
  readonly policy: string;
  /**
   * Predictive policy: when the model its planner started from was saved (epoch ms), or
   * null when it has been learning since the node started; absent for other policies.
   */
  readonly plannerResumedFrom?: number | null;
  /** Newest point the sink committed and acknowledged. */
  readonly committedPoint: FeedPoint | null;
  /**
   * Current completion lag, ms: while a closed point waits for the sink, now minus its
   * scheduled time (it is still growing); else the newest committed point's commit time
   * minus its scheduled time.
   */
  readonly lagMs: number | null;
  /** Recovery-point age, ms: now minus the scheduled time of the newest committed point. */
  readonly rpoAgeMs: number | null;
  /** The operator's RPO target for this volume and sink, ms. */
  readonly rpoTargetMs: number | null;
  /** D: bytes still to send to this sink (closed points' remainder plus the open point's unsent dirty blocks). */
  readonly dirtyBytes: number | null;
  /** TS: seconds to the next scheduled close. */
  readonly secondsToClose: number | null;
  /** When pre-sending of the open point starts (or started) by the planner's start rule, epoch ms. */
  readonly presendStartAt: number | null;
  /** Bytes of the open point pre-sent and still current. */
  readonly presentBytes: number | null;
  /** Bytes of the open point pre-sent and then written again (to be sent again). */
  readonly collidedBytes: number | null;
  /** The points waiting for this sink grow with every close (writes outrun the link); null when not known. */
  readonly notConverging: boolean | null;
  /**
   * Which cap binds this link and why, when one does: "peer site-b, window mon-fri
   * 08:00-18:00", "node-wide, set by an operator", "peer site-b, configured". Absent from
   * older nodes.
   */
  readonly capReason?: string | null;
}

/** One volume on the node with its sinks (replica side: committedPoint, no sinks). */
/**
 * A replica's primary as its node sees it (`headstart status` and the feed): `connected`, who
 * ships to it now ("node at host:port"), or null; `lastSeenAt`, when a session of it was last
 * alive, and `demotedAt`, when it ended one by a demote (epoch ms; null: not since the node
 * started / it did not).
 */
export interface PrimaryLinkView {
  readonly connected: string | null;
  readonly lastSeenAt: number | null;
  readonly demotedAt: number | null;
  /**
   * How far the replica's clock is ahead of its primary's (ms, negative: behind), as last
   * measured while connected (kept after: clocks drift slowly), when they differ by a second
   * or more; null when they agree or were never compared (absent from older nodes). The
   * committed point's scheduled time is the primary's clock: its RPO age is `now -
   * clockAheadMs - scheduledAt`.
   */
  readonly clockAheadMs?: number | null;
  /** The primary whose clock that is. */
  readonly clockOf?: string | null;
}

export interface FeedVolume extends VolumeStatus {
  readonly latestClosedPoint: FeedPoint | null;
  readonly committedPoint: FeedPoint | null;
  /** Scheduled time of the next close, epoch ms, or null when none is scheduled. */
  readonly nextCloseAt: number | null;
  readonly sinks: readonly FeedSink[];
  /** The volume's file system: free bytes (null if unknown) and the reserve below which writes are refused (absent from older nodes). */
  readonly disk?: FeedDisk;
  /** A scheduled close that keeps failing (the node retries it), or null (absent from older nodes). */
  readonly closeFailing?: { readonly code: string; readonly since: number; readonly attempts: number } | null;
  /** The consistency group the volume closes, commits and fails over with, or null (absent from older nodes). */
  readonly group?: string | null;
  /**
   * A leveled schedule's offset into its interval (`schedule.level`): the node closes this
   * volume that long after the clock's marks, so that its volumes do not all send at once;
   * null when not leveled (absent from older nodes).
   */
  readonly levelOffsetMs?: number | null;
  /**
   * Replica side: a commit writing point n into the image for `forMs` at the status's time
   * (reads of the export wait meanwhile); `stalled` when it stopped half-way (the replica is
   * between two points until a retry finishes it). Null when none (absent from older nodes).
   */
  readonly betweenPoints?: { readonly n: number; readonly forMs: number; readonly stalled: boolean } | null;
  /**
   * Replica side: its primary as this node sees it (as `headstart status` says it): who ships
   * to it now, or null; when a session of it was last alive and when it ended one by a demote
   * (epoch ms, null: not since this node started / it did not). Null on a primary (absent from older nodes).
   */
  readonly primaryLink?: PrimaryLinkView | null;
  /**
   * The volume's RPO target (ms; `rpoTarget`), or null. A sink carries it too; on a replica it
   * flags the point it holds once older than that (absent from older nodes).
   */
  readonly rpoTargetMs?: number | null;
}

export interface FeedDisk {
  readonly freeBytes: number | null;
  /** Below this, writes are refused. */
  readonly reserveBytes: number;
  /** Below this, the disk is nearly full (the volume's own warning level). */
  readonly warnBytes: number;
}

/** What the node reports at one instant. */
export interface FeedStatus {
  /** The node's clock (epoch ms) when it took this status: the page ages figures from here. */
  readonly time: number;
  readonly node: string;
  readonly volumes: readonly FeedVolume[];
}

/** One snapshot point as one sink saw it: the rows of the lag chart and the timeline. */
export interface SnapshotRecord {
  readonly volume: string;
  readonly sink: string;
  readonly n: number;
  readonly scheduledAt: number;
  /** When pre-sending of n began, or null (none before the close). */
  readonly presendStartAt: number | null;
  readonly closedAt: number | null;
  readonly committedAt: number | null;
  /** committedAt - scheduledAt, ms. */
  readonly lagMs: number | null;
  /** S(n): payload bytes sent for n, resends included. */
  readonly sentBytes: number | null;
  /** M(n): block size x dirty blocks of n. */
  readonly minimalBytes: number | null;
}

export type FeedEvent =
  /** A source says its status changed; the dashboard server answers by pushing status() soon. Never forwarded to browsers. */
  | { readonly type: 'status'; readonly time: number; readonly volumes: readonly VolumeStatus[] }
  | { readonly type: 'snapshot-closed'; readonly time: number; readonly volume: string; readonly n: number }
  | {
      readonly type: 'snapshot-acked';
      readonly time: number;
      readonly volume: string;
      readonly sink: string;
      readonly n: number;
      readonly lagMs: number;
      readonly sentBytes: number;
      readonly minimalBytes: number;
      /** Of the lag, from the point's last frame (CLOSE) to the sink's ACK: its commit; null when not measured (an archive upload, a reconnect). */
      readonly commitMs?: number | null;
    }
  | { readonly type: 'snapshot-committed'; readonly time: number; readonly volume: string; readonly n: number }
  | { readonly type: 'link-error'; readonly time: number; readonly volume: string; readonly sink: string; readonly code: string; readonly message: string }
  /** Open point n has more dirty blocks than `limit`: it is not pre-sent, it ships whole at its close. */
  | { readonly type: 'presend-stopped'; readonly time: number; readonly volume: string; readonly sink: string; readonly n: number; readonly limit: number }
  /** Open point n has more dirty blocks than its planner tracks (`limit`): those beyond ship at its close. */
  | { readonly type: 'presend-limited'; readonly time: number; readonly volume: string; readonly n: number; readonly limit: number }
  /** Insert or replace the record of (volume, sink, n): sent as a point closes and commits. */
  | { readonly type: 'snapshot'; readonly time: number; readonly record: SnapshotRecord }
  | { readonly type: 'link-connected'; readonly time: number; readonly volume: string; readonly sink: string }
  | { readonly type: 'link-disconnected'; readonly time: number; readonly volume: string; readonly sink: string; readonly code: string; readonly message: string }
  | { readonly type: 'promoted'; readonly time: number; readonly volume: string; readonly epoch: number; readonly n: number | null }
  /** The volume became a replica (its epoch kept): its new primary resynchronises it by checksum. */
  | { readonly type: 'demoted'; readonly time: number; readonly volume: string; readonly epoch: number }
  | { readonly type: 'error'; readonly time: number; readonly volume: string | null; readonly code: string; readonly message: string }
  /** The node (its dashboard) started: the events before it are from its last run, kept on disk. */
  | { readonly type: 'node-started'; readonly time: number; readonly node: string };

/** Version of the messages below (a type, so the browser bundle imports no code); a page refuses a hello of another version. */
export type FeedVersion = 1;

/**
 * Messages on the dashboard's WebSocket, server -> browser, one JSON text frame each:
 * `hello` once on connect (full status plus recent history), then `update` (only the
 * volumes that changed since this browser's last update; `removed` lists volume ids gone)
 * and `events` (in order; `dropped` counts events this browser missed because it read too
 * slowly). The browser never sends anything.
 */
export type FeedMessage =
  | { readonly type: 'hello'; readonly version: FeedVersion; readonly status: FeedStatus; readonly snapshots: readonly SnapshotRecord[]; readonly events: readonly FeedEvent[] }
  | { readonly type: 'update'; readonly time: number; readonly node: string; readonly volumes: readonly FeedVolume[]; readonly removed: readonly string[] }
  | { readonly type: 'events'; readonly events: readonly FeedEvent[]; readonly dropped: number };
