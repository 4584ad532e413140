/**
 * @headstart/volume — a block volume: a sparse raw image file, a write log, snapshot points
 * with copy-on-write for closed points that a sink still needs, and per-sink acknowledgement.
 * See volume.ts for how the pieces fit.
 */
export { createVolume, openVolume, Volume, DEFAULT_BLOCK_SIZE, type CreateVolumeOptions, type OpenVolumeOptions } from './volume';
export { BlockSet } from './block-set';
export { DIRECT_ALIGN, DIRECT_WRITE_MIN_BYTES, alignedBuffer } from './image-file';
export { guardLmdbCommitRejections } from './lmdb-guard';
export { SpaceGuard } from './space';
export type { BlockDevice, Clock, SinkState, SnapshotPoint, VolumeInfo, VolumeRole, WriteEntry, WriteEvent, WriteOptions } from './types';
