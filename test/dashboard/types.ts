/** Types the browser tests share (re-exported from the packages' doors). */
export type { FeedEvent, FeedPoint, FeedSink, FeedStatus, FeedVolume, SnapshotRecord } from '@headstart/protocol';
export type { FeedSource } from '@headstart/dashboard';
