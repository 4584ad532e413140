/**
 * @headstart/archive — stores snapshot points of volumes in an object store (a directory
 * or S3): chunk objects, delta objects over them, a manifest per point; retention,
 * restore and verification. sink.ts explains the upload, format/ the bytes, layout.ts the
 * keys, retention.ts what prune keeps.
 */
export type { ObjectStore, ObjectInfo, StoreCallOptions } from './store/types';
export { openDirectoryStore, type DirectoryStoreOptions } from './store/directory';
export { openS3Store, type S3StoreOptions } from './store/s3';
export { openStore, parseStoreUrl, type StoreSpec } from './store/open';
export { withRetry, type RetryOptions } from './retry';
export { ArchiveSink, createArchiveSink, type ArchiveSinkOptions, type ArchiveResult } from './sink';
export type { ArchiveSource, ArchiveSinkSource } from './source';
export { restorePoint, restoreToDevice, restoreToNewVolume, type RestoreOptions, type RestoreProgress, type RestoreResult } from './restore';
export { prune, planRetention, planGroupRetention, type PruneOptions, type PruneReport, type RetentionPolicy, type RetentionPlan, type RetentionInput, type KeepReason } from './retention';
export { listPoints, listVolumes, protectPoint, verifyArchive, type PointInfo, type VerifyReport, type VerifyProblem } from './points';
export { DEFAULT_CHUNK_BYTES, DEFAULT_MAX_CHAIN, DEFAULT_CONCURRENCY, DEFAULT_SINK_NAME } from './constants';
