/**
 * @headstart/replication: ships snapshot points from a source volume to replica volumes
 * over WebSockets (source.ts, source-session.ts), and stages and commits them crash-safely
 * on the replica (replica-server.ts, replica-target.ts, staging.ts). The byte formats are
 * in @headstart/protocol.
 */
export { startSource, sharedRateLimit, type LinkStats, type SourceLink, type SourceOptions, type SourceEvent, type WaitOptions } from './source';
export type { ShippedSnapshot } from './source-session';
export { startReplicaServer, type ReplicaServer, type ReplicaServerOptions, type ReplicaEvent, type TlsFiles } from './replica-server';
export { ReplicaTarget, type ReplicaVolumeConfig, type CommitPhase } from './replica-target';
export type { GroupWait } from './commit-group';
export { continuousPolicy, atSnapshotPolicy, policyByName, type PresendPolicy, type PresendView } from './policy';
export { TokenBucket, ThroughputMeter, RateLimits, type RateGate } from './rate';
export { errorFromClose } from './link';
export { scanImageInto, type ScanResult } from './image-scan';
