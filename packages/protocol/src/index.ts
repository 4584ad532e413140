/**
 * @headstart/protocol: every byte format of the replication link. Both ends import this
 * package and nothing else to talk to each other; docs/wire-format.md describes the frames.
 */
export * from './constants';
export type * from './messages';
export type { FeedEvent, FeedMessage, FeedPoint, FeedSink, FeedStaging, FeedStatus, FeedVersion, FeedVolume, LinkState, PrimaryLinkView, SinkStatus, SnapshotRecord, VolumeStatus } from './feed';
export { encodeFrame, encodeFrameWith, decodeFrame, peekType, maxFrameBytes, u64ToBytes, bytesToU64 } from './frame';
export { loadHasher, blockHash, zeroBlockHash, isZero, rangeHash, SnapshotDigest } from './hash';
export { freshNonce, computeProof, verifyProof, agreeVersion, type ProofInput } from './auth';
export { ReplicaInbound, SourceInbound } from './order';
