/**
 * @headstart/node — what one site runs: volumes, the NBD export, snapshot schedules,
 * replication links both ways, status, metrics, the admin API and the dashboard, all from
 * one YAML configuration. node.ts explains how the pieces fit.
 */
export { PEER_URL, loadConfig, validateConfig, readSecret, parseSize, parseDuration, parseRate, configSchema, type NodeConfig, type VolumeConfig, type PeerConfig } from './config';
export { startNode, type HeadstartNode, type NodeStatus, type VolumeView, type SinkView, type SnapshotRecord, type NodeEvent } from './node';
export { startServices, type Services } from './services';
export { callAdmin } from './admin';
export { runDemo, demoInterval, type DemoOptions, type DemoResult } from './demo';
export { runGeneratedWorkload, replayTrace, type WorkloadStats, type TraceWrite } from './workload';
export { createLogger, silentLogger, type Logger } from './logger';
export { scheduleFrom, intervalSchedule, cronSchedule, type Schedule } from './schedule';
export { levelOffsets, modelledPeak, type LevelUnit, type LevelPlan } from './leveling';
export { toFeedStatus, feedSource } from './dashboard';
export { predictivePolicy, type PredictivePolicy } from './predictive';
export { type LinkCapView } from './link-caps';
export { capAt, parseDays, parseTimeOfDay, type RateWindow, type CapNow } from './rate-windows';
export { hashPoint, rangeHash, differingRanges, compareWithReplica, parseNbdUrl, VERIFY_RANGE_BYTES, type VerifyPlan, type VerifyOutcome } from './verify';
