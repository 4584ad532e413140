/**
 * `headstart demo`: the whole product on one machine. Two nodes on loopback (site-a, the
 * source, and site-b, its replica) with one volume, a workload written through site-a's
 * NBD export, snapshot points on a schedule under the predictive policy, the dashboard,
 * and a live status line. With a bounded duration it then stops the workload, takes a last
 * point, waits for the replica to commit it and compares the two byte for byte (by hash).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectNbd } from '@headstart/nbd';
import type { Volume } from '@headstart/volume';
import { validateConfig, type NodeConfig } from './config';
import { startNode, type HeadstartNode } from './node';
import { runGeneratedWorkload, replayTrace, type TraceWrite, type WorkloadStats } from './workload';
import type { Logger } from './logger';
import { startServices, type Services } from './services';

export interface DemoOptions {
  /** Run for this long, then check and exit; undefined = until the signal aborts. */
  readonly forMs?: number;
  readonly intervalMs?: number;
  readonly volumeSize?: number;
  /** Mean workload rate, bytes/s. */
  readonly writeRate?: number;
  /** Link rate limit, bytes/s (so pre-sending matters). */
  readonly linkRate?: number;
  readonly trace?: { writes: AsyncIterable<TraceWrite> | Iterable<TraceWrite>; speedup: number };
  /** Record the writes the source's NBD export receives into this trace file (headstart format, epoch ms). */
  readonly record?: string;
  readonly dir?: string;
  readonly dashboard?: boolean;
  /** Pre-send policy of the source (default predictive). */
  readonly policy?: 'predictive' | 'continuous' | 'at-snapshot';
  /**
   * Points fall at workload start + k * interval (instead of on the clock), and the
   * workload starts at that instant: a trace replay then closes exactly where the trace
   * evaluator closes, so the two can be compared.
   */
  readonly alignToWorkload?: boolean;
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /** Called about once a second with a one-line status. */
  readonly onStatus?: (line: string) => void;
  readonly onReady?: (info: { dir: string; nbd: string; dashboard: string | null; metrics: string | null; intervalMs: number }) => void;
}

export interface DemoResult {
  readonly snapshots_committed: number;
  readonly interval_s: number;
  readonly duration_s: number;
  readonly lag_mean_s: number | null;
  readonly lag_max_s: number | null;
  readonly redundancy: number | null;
  readonly replica_equal: boolean | null;
  readonly last_point: number | null;
  readonly policy: string;
  readonly workload: WorkloadStats;
  /** Epoch ms the workload started (and, aligned, the origin of the schedule). */
  readonly started_at: number;
  /** Every point the replica committed, as the engine measured it. */
  readonly points: readonly { n: number; scheduled_at: number; lag_s: number; commit_s: number | null; sent_bytes: number; minimal_bytes: number }[];
}

const MiB = 1 << 20;

/** The interval a bounded run uses: a minute by default, shorter so a short run still sees several points. */
export function demoInterval(forMs: number | undefined, requested: number | undefined): number {
  if (requested !== undefined) return requested;
  if (forMs === undefined || forMs >= 6 * 60_000) return 60_000;
  return Math.max(2000, Math.floor(forMs / 6 / 1000) * 1000);
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const started = Date.now();
  const intervalMs = demoInterval(o.forMs, o.intervalMs);
  const dir = o.dir ?? (await mkdtemp(join(tmpdir(), 'headstart-demo-')));
  const ownsDir = o.dir === undefined;
  const secret = randomBytes(24).toString('hex');
  const size = o.volumeSize ?? 256 * MiB;
  const linkRate = o.linkRate ?? 4 * MiB;
  const writeRate = o.writeRate ?? 1 * MiB;
  let replicaNode: HeadstartNode | null = null;
  let sourceNode: HeadstartNode | null = null;
  let services: Services | null = null;
  const acks: { n: number; lagMs: number; commitMs: number | null; sent: number; minimal: number }[] = [];
  const policy = o.policy ?? 'predictive';
  // Aligned: the schedule's origin, a moment after both nodes are up, when the workload starts.
  const origin = o.alignToWorkload ? Date.now() + 3000 : undefined;
  try {
    const replicaConfig: NodeConfig = validateConfig(
      {
        node: { name: 'site-b', dataDir: join(dir, 'site-b'), secret },
        listen: { peers: '127.0.0.1:0', admin: '127.0.0.1:0' },
        volumes: [{ name: 'demo', size, role: 'replica', sinks: [] }],
      },
      'demo site-b configuration',
    );
    replicaNode = await startNode(replicaConfig, o.logger.child({ node: 'site-b' }));
    const sourceConfig: NodeConfig = validateConfig(
      {
        node: { name: 'site-a', dataDir: join(dir, 'site-a'), secret },
        listen: { nbd: '127.0.0.1:0', admin: '127.0.0.1:0', dashboard: o.dashboard === false ? undefined : '127.0.0.1:0', metrics: '127.0.0.1:0' },
        peers: [{ name: 'site-b', url: `ws://127.0.0.1:${replicaNode.peersPort}`, rateLimit: linkRate }],
        volumes: [{ name: 'demo', size, role: 'primary', schedule: { every: `${intervalMs}ms`, origin }, policy: { name: policy, ...(policy === 'predictive' && o.trace ? { timeScale: o.trace.speedup } : {}) }, rpoTarget: `${intervalMs * 2}ms`, sinks: ['site-b'], ...(o.record ? { record: o.record } : {}) }],
      },
      'demo site-a configuration',
    );
    sourceNode = await startNode(sourceConfig, o.logger.child({ node: 'site-a' }));
    services = await startServices(sourceNode, sourceConfig, o.logger, { admin: false });
    const scheduled = new Map<number, number>();
    sourceNode.subscribe((e) => {
      if (e.type === 'snapshot-acked') acks.push({ n: e.n, lagMs: e.lagMs, commitMs: e.commitMs ?? null, sent: e.sentBytes, minimal: e.minimalBytes });
      if (e.type === 'snapshot-closed') scheduled.set(e.n, sourceNode!.volume('demo').snapshots().find((p) => p.n === e.n)?.scheduledAt ?? e.time);
    });
    const nbd = `nbd://127.0.0.1:${sourceNode.nbdPort}/demo`;
    o.onReady?.({ dir, nbd, dashboard: services.dashboardUrl, metrics: services.metricsUrl, intervalMs });

    // The workload, through NBD like any client; connected before the origin, so the first
    // write of an aligned replay lands on it rather than a handshake later.
    const client = await connectNbd({ host: '127.0.0.1', port: sourceNode.nbdPort!, exportName: 'demo' });
    if (origin !== undefined) await new Promise((r) => setTimeout(r, Math.max(0, origin - Date.now())));
    const workloadStartedAt = Date.now();
    const stopWorkload = new AbortController();
    const onAbort = () => stopWorkload.abort();
    o.signal.addEventListener('abort', onAbort, { once: true });
    const workload: Promise<WorkloadStats> = o.trace
      ? replayTrace({ client, writes: o.trace.writes, speedup: o.trace.speedup, signal: stopWorkload.signal })
      : runGeneratedWorkload({ client, bytesPerSecond: writeRate, signal: stopWorkload.signal, seed: 7 });
    // A workload that fails (a malformed line deep in a trace, read as the replay reaches it)
    // ends the run now; `await workload` below throws its error, after which the nodes stop.
    // Unhandled meanwhile, its rejection killed the process with a stack dump, the nodes and
    // the demo's directory left behind.
    workload.catch(() => stopWorkload.abort());
    const ticker = setInterval(() => o.onStatus?.(statusLine(sourceNode!, replicaNode!)), 1000);
    if (o.forMs !== undefined) {
      const t = setTimeout(() => stopWorkload.abort(), o.forMs);
      stopWorkload.signal.addEventListener('abort', () => clearTimeout(t), { once: true });
    }
    await new Promise<void>((resolve) => stopWorkload.signal.addEventListener('abort', () => resolve(), { once: true }));
    let stats: WorkloadStats;
    try {
      stats = await workload;
    } catch (err) {
      // The status ticker and the NBD connection would keep the process alive after the error.
      clearInterval(ticker);
      o.signal.removeEventListener('abort', onAbort);
      await client.close().catch(() => {});
      throw err;
    }
    await client.flush().catch(() => {});
    await client.close().catch(() => {});

    // A bounded run ends with a last point and a byte-for-byte check of the replica.
    let equal: boolean | null = null;
    let lastPoint: number | null = null;
    try {
      if (o.forMs !== undefined && !o.signal.aborted) {
        let writesSince = 0;
        const unsubscribe = sourceNode.volume('demo').onWrite(() => writesSince++);
        const point = await sourceNode.snapshotNow('demo');
        lastPoint = point.n;
        // A workload faster than the link leaves a backlog: the last point commits when the
        // link has sent it, however long that takes, as long as it keeps sending (the status
        // line goes on meanwhile). Only a link that stops moving for two minutes fails the
        // run; an interrupt (Ctrl-C) ends the wait, and the figures say the check was not made.
        const acked = sourceNode.waitAcked('demo', point.n, 120_000, { whileProgressing: true });
        acked.catch(() => {});
        const interrupted = new Promise<void>((resolve) => o.signal.addEventListener('abort', () => resolve(), { once: true }));
        if ((await Promise.race([acked.then(() => true), interrupted.then(() => false)])) === true) {
          equal = await sameContent(sourceNode.volume('demo'), point.n, replicaNode.volume('demo'), () => writesSince);
        }
        unsubscribe();
      }
    } finally {
      clearInterval(ticker);
      o.signal.removeEventListener('abort', onAbort);
    }
    const lags = acks.map((a) => a.lagMs / 1000);
    const measured = acks.filter((a) => a.minimal > 0);
    return {
      snapshots_committed: acks.length,
      interval_s: intervalMs / 1000,
      duration_s: Math.round((Date.now() - started) / 100) / 10,
      lag_mean_s: lags.length ? round(lags.reduce((a, b) => a + b, 0) / lags.length) : null,
      lag_max_s: lags.length ? round(Math.max(...lags)) : null,
      redundancy: measured.length ? round(measured.reduce((a, b) => a + b.sent, 0) / measured.reduce((a, b) => a + b.minimal, 0)) : null,
      replica_equal: equal,
      last_point: lastPoint,
      policy,
      workload: stats,
      started_at: workloadStartedAt,
      points: acks.map((a) => ({ n: a.n, scheduled_at: scheduled.get(a.n) ?? 0, lag_s: a.lagMs / 1000, commit_s: a.commitMs === null ? null : a.commitMs / 1000, sent_bytes: a.sent, minimal_bytes: a.minimal })),
    };
  } finally {
    await services?.stop().catch(() => {});
    await sourceNode?.stop().catch(() => {});
    await replicaNode?.stop().catch(() => {});
    if (ownsDir) await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/**
 * Whether the replica holds exactly point n of the source. The workload has stopped before
 * n was taken, so the source's image still is point n as long as nothing wrote since
 * (checked: any write event after n fails the check); the scheduler may have closed more,
 * empty points meanwhile, which change nothing. Compared by hash, 1 MiB at a time.
 */
async function sameContent(source: Volume, n: number, replica: Volume, writesSince: () => number): Promise<boolean> {
  if (replica.committed === null || replica.committed.n < n) return false;
  const a = createHash('sha256');
  const b = createHash('sha256');
  for (let at = 0; at < source.size; at += MiB) {
    const length = Math.min(MiB, source.size - at);
    a.update(await source.read(at, length));
    b.update(await replica.read(at, length));
  }
  return writesSince() === 0 && a.digest('hex') === b.digest('hex');
}

function statusLine(source: HeadstartNode, replica: HeadstartNode): string {
  const v = source.status().volumes[0];
  const r = replica.status().volumes[0];
  const s = v.sinks[0];
  const mb = (x: number) => (x / MiB).toFixed(1);
  const nextIn = v.nextCloseAt === null ? '-' : `${Math.max(0, Math.round((v.nextCloseAt - Date.now()) / 1000))}s`;
  const lag = s?.lastLagMs == null ? '-' : `${(s.lastLagMs / 1000).toFixed(1)}s`;
  const rpo = s?.rpoAgeMs == null ? '-' : `${Math.round(s.rpoAgeMs / 1000)}s`;
  const started = v.planner ? (v.planner.started ? 'pre-sending' : 'holding') : '';
  return `point ${v.openSnapshot} open (next close in ${nextIn}), replica at ${r.committed?.n ?? '-'}, lag ${lag}, RPO age ${rpo}, D ${mb(v.planner?.D ?? v.dirtyBytes)} MiB, B ${mb(v.planner?.B ?? s?.throughput ?? 0)} MB/s, link ${s?.state ?? '-'} ${started}`;
}
