/**
 * The node as the dashboard's FeedSource: its status in the feed's shape, and its events
 * (closes, acknowledgements, link changes, promotions) as feed events and snapshot records.
 */
import { startDashboard, type FeedSource } from '@headstart/dashboard';
import type { FeedEvent, FeedPoint, FeedSink, FeedStatus, FeedVolume, SnapshotRecord } from '@headstart/protocol';
import type { NodeConfig } from './config';
import type { LinkCapView } from './link-caps';
import type { HeadstartNode, NodeStatus, SnapshotRecord as NodeRecord, VolumeView } from './node';
import type { Logger } from './logger';
import { EventJournal, eventJournalPath } from './event-journal';

export async function startNodeDashboard(node: HeadstartNode, config: NodeConfig, log: Logger): Promise<{ url: string; stop(): Promise<void> }> {
  const listen = config.listen.dashboard!;
  const logger = log.child({ component: 'dashboard' });
  // The event list of the last run, and where this one starts (event-journal.ts).
  const journal = await EventJournal.open(eventJournalPath(config.node.dataDir), logger);
  journal.add({ type: 'node-started', time: Date.now(), node: config.node.name });
  let dashboard;
  try {
    dashboard = await startDashboard({ host: listen.host, port: listen.port, token: config.dashboard.token, source: feedSource(node, journal), logger });
  } catch (err) {
    await journal.close();
    throw err;
  }
  const tokenPart = config.dashboard.token ? `?token=${encodeURIComponent(config.dashboard.token)}` : '';
  return {
    url: dashboard.url + tokenPart,
    async stop() {
      await dashboard.stop();
      await journal.close();
    },
  };
}

/** The node as a feed; with a journal, its events are kept across restarts too (and its saved ones seed the page). */
export function feedSource(node: HeadstartNode, journal?: EventJournal): FeedSource {
  return {
    status: () => toFeedStatus(node.status()),
    subscribe(to) {
      const listener = (e: FeedEvent) => {
        journal?.add(e);
        to(e);
      };
      return node.subscribe((e) => {
        if (e.type === 'promoted') {
          listener({ type: 'promoted', time: e.time, volume: e.volume, epoch: e.epoch, n: node.volume(e.volume).latestClosed?.n ?? null });
          return;
        }
        if (e.type === 'link-error') {
          listener({ type: 'link-disconnected', time: e.time, volume: e.volume, sink: e.sink, code: e.code, message: e.message });
          return;
        }
        listener(e);
        if (e.type === 'snapshot-acked' || e.type === 'snapshot-closed') {
          const v = node.status().volumes.find((x) => x.name === e.volume);
          const rec = v?.history.find((h) => h.n === e.n);
          if (v && rec) for (const sink of v.sinks) listener({ type: 'snapshot', time: e.time, record: toRecord(v.name, sink.name, rec) });
        }
      });
    },
    history() {
      const snapshots: SnapshotRecord[] = [];
      for (const v of node.status().volumes) for (const h of v.history) for (const s of v.sinks) snapshots.push(toRecord(v.name, s.name, h));
      return { snapshots, events: journal?.events() ?? [] };
    },
  };
}

function toRecord(volume: string, sink: string, h: NodeRecord): SnapshotRecord {
  const a = h.acks[sink];
  return {
    volume,
    sink,
    n: h.n,
    scheduledAt: h.scheduledAt,
    presendStartAt: null,
    closedAt: h.closedAt,
    committedAt: a?.ackedAt ?? null,
    lagMs: a?.lagMs ?? null,
    sentBytes: a?.sentBytes ?? null,
    minimalBytes: a?.minimalBytes ?? null,
  };
}

export function toFeedStatus(s: NodeStatus): FeedStatus {
  return { time: s.time, node: s.node, volumes: s.volumes.map((v) => toFeedVolume(v, s.time, s.linkCaps ?? [])) };
}

/** The cap that binds a link to `peer` (the tighter of the peer's and the node-wide one), and why. */
function capReason(caps: readonly LinkCapView[], peer: string): string | null {
  // Not a peer (the archive): the link caps do not apply to it.
  if (!caps.some((c) => c.peer === peer)) return null;
  const binding = caps
    .filter((c) => (c.peer === null || c.peer === peer) && c.rateLimit !== null)
    .sort((a, b) => a.rateLimit! - b.rateLimit!)[0];
  if (binding === undefined) return null;
  const who = binding.peer === null ? 'node-wide' : `peer ${binding.peer}`;
  const why = binding.setBy === 'operator' ? 'set by an operator' : binding.setBy === 'window' ? `window ${binding.window}` : 'configured';
  return `${who}, ${why}`;
}

function toFeedVolume(v: VolumeView, now: number, caps: readonly LinkCapView[]): FeedVolume {
  const point = (n: number | null): FeedPoint | null => {
    if (n === null) return null;
    const h = v.history.find((x) => x.n === n);
    return { n, scheduledAt: h?.scheduledAt ?? now, closedAt: h?.closedAt ?? null, committedAt: null };
  };
  const planner = v.planner;
  const sinks: FeedSink[] = v.sinks.map((s) => {
    const acked = s.acked === null ? null : v.history.find((h) => h.n === s.acked);
    const waiting = v.history.find((h) => s.acked === null || h.n > s.acked);
    return {
      name: s.name,
      state: s.state,
      acked: s.acked,
      ackedScheduledAt: s.ackedScheduledAt,
      throughput: s.throughput,
      inFlightBytes: s.inFlightBytes,
      rateLimit: s.rateLimit,
      lastError: s.lastError,
      policy: v.policy,
      ...(planner ? { plannerResumedFrom: planner.restoredFrom === null ? null : Math.round(planner.restoredFrom * 1000) } : {}),
      committedPoint: s.acked === null ? null : { n: s.acked, scheduledAt: s.ackedScheduledAt ?? acked?.scheduledAt ?? now, closedAt: acked?.closedAt ?? null, committedAt: acked?.acks[s.name]?.ackedAt ?? null },
      lagMs: waiting !== undefined ? Math.max(0, now - waiting.scheduledAt) : s.lastLagMs,
      rpoAgeMs: s.rpoAgeMs,
      rpoTargetMs: v.rpoTargetMs,
      dirtyBytes: planner?.D ?? v.dirtyBytes,
      secondsToClose: v.nextCloseAt === null ? null : Math.max(0, (v.nextCloseAt - now) / 1000),
      presendStartAt: planner && Number.isFinite(planner.predictedStartAt) ? Math.round(planner.predictedStartAt * 1000) : null,
      presentBytes: planner?.presentBytes ?? null,
      collidedBytes: planner?.collidedBytes ?? null,
      staging: s.staging,
      catchUpTo: s.catchUpTo ?? null,
      notConverging: s.notConverging,
      capReason: capReason(caps, s.name),
    };
  });
  return {
    id: v.name,
    name: v.name,
    role: v.role,
    epoch: v.epoch,
    size: v.size,
    blockSize: v.blockSize,
    openSnapshot: v.openSnapshot ?? 0,
    latestClosed: v.latestClosed,
    committed: v.committed?.n ?? null,
    latestClosedPoint: point(v.latestClosed),
    committedPoint: v.committed === null ? null : { n: v.committed.n, scheduledAt: v.committed.scheduledAt, closedAt: null, committedAt: null },
    nextCloseAt: v.nextCloseAt,
    sinks,
    disk: v.disk,
    closeFailing: v.closeFailing === null ? null : { code: v.closeFailing.code, since: v.closeFailing.since, attempts: v.closeFailing.attempts },
    group: v.group,
    levelOffsetMs: v.levelOffsetMs,
    betweenPoints: v.betweenPoints === null ? null : { n: v.betweenPoints.n, forMs: Math.max(0, now - v.betweenPoints.since), stalled: v.betweenPoints.stalled },
    primaryLink: v.primaryLink,
    rpoTargetMs: v.rpoTargetMs,
  };
}
