/**
 * DEV DOCS — the headstart node: everything one site runs, wired from one configuration.
 *
 *   volumes      one Volume per configured volume, in <dataDir>/volumes/<name>; its id is
 *                its name, which is how a source and its replica find each other
 *   NBD server   exports every volume (replicas read-only)
 *   scheduler    closes each primary volume's snapshot points on its schedule
 *   sources      one replication link per (primary volume, sink peer)
 *   replica srv  accepts links from peers for the volumes this node replicates
 *   archive      per primary volume with `archive:`, one more sink that stores its points
 *                in an object store (archiving.ts); it shows in status as the sink `archive`
 *   status       one picture (per volume and sink) for the CLI, the dashboard and metrics
 *   planner      per primary volume, the predictive policy (predictive.ts); what its planner
 *                learnt is saved in <dataDir>/planner/<name>.learnt (planner-state.ts)
 *
 * A consistency group (`group:` on several volumes) is one unit for the schedule, promotion and
 * demotion: its volumes close in one synchronous step (closePoints), so no write can land on
 * one of them between their closes, and the replica commits them together (the replication
 * package's commit-group.ts).
 *
 * A volume's role and epoch live in the volume itself (the configuration only says what a
 * new volume starts as); promotion and demotion change them there, so they survive restarts.
 * The same `sinks` list serves both directions: while a volume is primary it ships to those
 * peers; while it is a replica it accepts their links.
 */
import { constants as fsConstants } from 'node:fs';
import { access, link, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { HeadstartError, isHeadstartError } from '@headstart/errors';
import { startNbdServer, type ExportOptions, type NbdServer, type WriteRecorder } from '@headstart/nbd';
import { TraceRecorder } from '@headstart/traces';
import type { FeedEvent, PrimaryLinkView, SinkStatus } from '@headstart/protocol';
import { startReplicaServer, startSource, policyByName, type PresendPolicy, type ReplicaServer, type ReplicaVolumeConfig, type SourceEvent, type SourceLink, type ReplicaEvent, type GroupWait, type WaitOptions } from '@headstart/replication';
import { createVolume, openVolume, type SnapshotPoint, type Volume } from '@headstart/volume';
import { readSecret, type NodeConfig, type VolumeConfig } from './config';
import { intervalSchedule, scheduleFrom, type Schedule } from './schedule';
import { levelOffsets, modelledPeak, type LevelUnit } from './leveling';
import { armAt } from './timers';
import { predictivePolicy, type PredictivePolicy } from './predictive';
import { learntPath, loadLearnt, saveLearnt } from './planner-state';
import { LinkCap, type LinkCapView } from './link-caps';
import type { RateWindow } from './rate-windows';
import { ARCHIVE_SINK, startArchiver, type Archiver } from './archiving';
import { notConverging } from './convergence';
import type { Logger } from './logger';
import { Repeats } from './repeats';
import { listening } from './listen';
import { VERIFY_HOLD_MS, VERIFY_RANGE_BYTES, VERIFY_SINK, compareWithReplica, hashPoint, type VerifyPlan } from './verify';

export interface SnapshotRecord {
  readonly n: number;
  readonly scheduledAt: number;
  readonly closedAt: number;
  /** Per sink: when it acknowledged, the lag (and of it, the sink's commit: CLOSE to ACK), bytes sent and minimal bytes. */
  readonly acks: Record<string, { ackedAt: number; lagMs: number; commitMs?: number | null; sentBytes: number | null; minimalBytes: number | null }>;
}

/** One sink of a volume in status: the link's own SinkStatus plus what the node derives. */
export interface SinkView extends SinkStatus {
  readonly rpoAgeMs: number | null;
  readonly lastLagMs: number | null;
  /** Of lastLagMs, from the point's CLOSE to the sink's ACK: the replica's commit and a round trip (null: not measured, or an archive). */
  readonly lastCommitMs: number | null;
  /** Block payload bytes sent to this sink since the link started (resends included). */
  readonly payloadBytesSent: number;
  /** Bytes on the wire to this sink (frames, headers, checksums included), before compression. */
  readonly wireBytesOut: number;
  /** Bytes the TCP socket wrote to this sink: after compression (peers[].compress). */
  readonly socketBytesOut: number;
  /** The points waiting for this sink grow with every close: writes outrun the link (convergence.ts). */
  readonly notConverging: boolean;
}

/** How a scheduled verification ended: equal or not at point n, or why it could not run. */
export interface VerifyResult {
  /** When it started, epoch ms. */
  readonly at: number;
  readonly point: number | null;
  /** null when it could not run (see error). */
  readonly equal: boolean | null;
  readonly differingBytes: number | null;
  /** The first differing ranges, [offset, length] in bytes. */
  readonly ranges: readonly [number, number][];
  readonly error: string | null;
}

export interface VolumeView {
  readonly name: string;
  /** The consistency group, or null. */
  readonly group: string | null;
  /** Replica side: the commit of a point held until the rest of its group has it, or null. */
  readonly groupWait: GroupWait | null;
  /**
   * Replica side: the commit writing point n into the image since `since` (epoch ms), or
   * null. Reads of the export wait meanwhile. `stalled`: it stopped half-way (a full disk
   * most often), and the replica is between two points until a retry finishes it.
   */
  readonly betweenPoints: { readonly n: number; readonly since: number; readonly stalled: boolean } | null;
  readonly role: 'primary' | 'replica';
  readonly epoch: number;
  readonly size: number;
  readonly blockSize: number;
  readonly openSnapshot: number | null;
  readonly latestClosed: number | null;
  readonly nextCloseAt: number | null;
  /** Load leveling (schedule.level): its points fall this many ms after the clock's marks; null when not leveled. */
  readonly levelOffsetMs: number | null;
  readonly committed: { n: number; scheduledAt: number } | null;
  /**
   * Replica side (null on a primary): its primary as this node sees it. `connected`: who
   * ships to it now ("node at host:port"), or null; `lastSeenAt`: when a session of it was
   * last alive (epoch ms; null: not since this node started); `demotedAt`: when it ended its
   * session by a demote (null: it did not). Promote refuses without --force while it is
   * connected, and for 15 s after it was last seen unless it demoted. Its clock, when it
   * differs from this node's (CLOCK_SKEW_MS), measures the replica's RPO age.
   */
  readonly primaryLink: PrimaryLinkView | null;
  readonly rpoTargetMs: number | null;
  readonly dirtyBytes: number;
  readonly policy: string;
  readonly planner: ReturnType<PredictivePolicy['status']> | null;
  readonly sinks: readonly SinkView[];
  readonly history: readonly SnapshotRecord[];
  /** The last scheduled verification against the replica (volume.verify), or null. */
  readonly lastVerify: VerifyResult | null;
  /** Scheduled verifications skipped in a row because a sink had not committed the latest point (a backlog). */
  readonly verifyDeferred: number;
  /** A scheduled close that keeps failing (retried every few seconds), or null. */
  readonly closeFailing: CloseFailure | null;
  /** The volume's file system: free bytes (null if unknown), and the reserve below which writes are refused. */
  readonly disk: { readonly freeBytes: number | null; readonly reserveBytes: number; readonly warnBytes: number };
}

/** A scheduled point that could not be closed yet (a full disk): retried until it closes. */
export interface CloseFailure {
  /** The close's scheduled time and the first failure's (epoch ms). */
  readonly scheduledAt: number;
  readonly since: number;
  readonly attempts: number;
  readonly code: string;
  readonly message: string;
}

export interface PromoteResult {
  /** The named volume's new epoch and point. */
  readonly epoch: number;
  readonly point: number | null;
  readonly tookMs: number;
  /** Every volume promoted: the named one, and the rest of its consistency group. */
  readonly volumes: readonly { name: string; epoch: number; point: number | null }[];
}

export interface NodeStatus {
  readonly node: string;
  readonly time: number;
  readonly listen: { nbd: string | null; peers: string | null };
  /** The node-wide cap, then each peer's: the rate now and what sets it (windows, operator). */
  readonly linkCaps: readonly LinkCapView[];
  readonly volumes: readonly VolumeView[];
}

interface Managed {
  readonly config: VolumeConfig;
  volume: Volume;
  schedule: Schedule | null;
  timer: NodeJS.Timeout | null;
  nextCloseAt: number | null;
  sources: Map<string, SourceLink>;
  policy: PresendPolicy & Partial<PredictivePolicy>;
  history: SnapshotRecord[];
  /** Replica side: the last time a source's session for this volume was seen alive (0: not since start). */
  primarySeenAt: number;
  /** Replica side: when that source ended its session by a demote (null: it did not, or a session began since). */
  primaryDemotedAt: number | null;
  /** Replica side: the source's clock as last measured (its PINGs), and whether the log said they differ. */
  sourceClock: { source: string; aheadMs: number; told: boolean } | null;
  /** The code the replica's last retry of a stopped commit failed with (logged once per code), or null. */
  redoFailing: string | null;
  /**
   * A verification in progress: the schedule is held until it ends. `waiting` calls off its
   * wait for the sinks' acknowledgement; `expiry` ends the hold VERIFY_HOLD_MS after the
   * sinks hold its point `n`, or after its comparison last renewed it (renewVerify), whatever
   * happens to the caller.
   */
  verifyHold: { waiting: AbortController; expiry: NodeJS.Timeout | null; n: number | null } | null;
  /** The next scheduled verification (volume.verify). */
  verifyTimer: NodeJS.Timeout | null;
  /** How the last scheduled verification ended. */
  lastVerify: VerifyResult | null;
  /** Scheduled verifications deferred in a row because a sink was behind (runScheduledVerify). */
  verifyDeferred: number;
  /** The planner's model being saved (planner-state.ts), resolved when none is. */
  learntSaving: Promise<void>;
  /** When the last save began (epoch ms). */
  learntSavedAt: number;
  /** Primary side: the archive sink, when the volume has `archive:`. */
  archiver: Archiver | null;
  /** Sinks last logged as not converging (the log says so once per change). */
  readonly notConverging: Set<string>;
  /** The scheduled close being retried after a failure, or null. */
  closeFailing: CloseFailure | null;
  /** Load leveling (schedule.level): where in the interval its points fall, ms after the clock's marks; null when not leveled. */
  levelOffsetMs: number | null;
  /** Bytes of its last points (dirty set at close), newest last: the leveling's weight. */
  readonly pointBytes: number[];
}

const HISTORY_LIMIT = 500;
/**
 * A scheduled close that failed (the volume's disk is full: nothing changed, the point is
 * still open) is tried again this often, for the same scheduled time, until it closes; the
 * log repeats the error once a minute, status shows it all along.
 */
const CLOSE_RETRY_MS = 5_000;
/** Save a volume's planner state at a close at most this often (see saveLearnt). */
const LEARNT_SAVE_MS = 5 * 60_000;
/** How early a timer may fire by Date.now() that scheduleNext still recognises its close (a clock stepped back is not). */
const EARLY_TIMER_MS = 1000;
/** An export's hold on its point is a sink named this, then its process and time. */
const EXPORT_HOLD_PREFIX = 'export-';
/**
 * A primary whose link dropped (or whose node stopped without demoting) may be alive and
 * reconnecting: promote refuses without --force for this long after its session ended.
 */
const PRIMARY_ALIVE_MS = 15_000;
/**
 * Clocks of a replica and its primary that differ by this much or more are reported (status,
 * the dashboard, the log), and the replica's RPO age is measured on the primary's clock: the
 * points' scheduled times are the primary's, and a replica 5 min behind read a negative age
 * (a point lost 5 min ago looked fresh), one 90 s ahead a false alarm.
 */
const CLOCK_SKEW_MS = 1_000;
/** Load leveling weighs a volume by the mean of its last points, this many. */
const LEVEL_WEIGHT_POINTS = 8;
/** Leveling plans again from measured weights once each leveled volume closed this many points... */
const LEVEL_MEASURED_POINTS = 3;
/** ...and then after this many closes of leveled volumes per volume; */
const LEVEL_RECHECK_POINTS = 24;
/** a new plan moves schedules only if its modelled peak is this much lower (offsets stay put through noise). */
const LEVEL_MIN_GAIN = 0.1;

/** One image an export wrote: the volume's point (`scheduledAt` names it across a group) and the file. */
export interface ExportedImage {
  readonly volume: string;
  readonly n: number;
  readonly scheduledAt: number;
  readonly bytes: number;
  readonly path: string;
}

/** What fails on an output file is the output's problem (no such directory, no room), not the volume's disk: EXPORT_OUTPUT, naming the file. */
async function onOutput<T>(out: string, what: string, op: Promise<T>): Promise<T> {
  try {
    return await op;
  } catch (err) {
    throw new HeadstartError('EXPORT_OUTPUT', `cannot ${what} ${out}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}

/**
 * Copies a volume's content into a sparse raw image beside `out` (a temp file, synced) and
 * resolves its path; placeImages puts it in place. A failed read of the volume stays its own error.
 */
async function writeTemp(v: Volume, out: string, read: (first: number, count: number) => Promise<Buffer>): Promise<string> {
  const tmp = `${out}.partial-${process.pid}`;
  const fh = await onOutput(out, 'create', open(tmp, 'w'));
  try {
    await onOutput(out, 'size', fh.truncate(v.size));
    const per = Math.max(1, Math.floor((1 << 20) / v.blockSize));
    const zero = Buffer.alloc(per * v.blockSize);
    const bs = v.blockSize;
    const zeroBlock = zero.subarray(0, bs);
    const isZero = (data: Buffer, b: number) => data.subarray(b * bs, (b + 1) * bs).equals(zeroBlock);
    for (let first = 0; first < v.blockCount; first += per) {
      const count = Math.min(per, v.blockCount - first);
      const data = await read(first, count);
      if (data.equals(zero.subarray(0, data.length))) continue; // stays a hole
      // Only the runs of blocks that are not zero: the others stay holes too (per 1 MiB, an
      // image of scattered 4 KiB blocks took its whole size on disk).
      for (let b = 0; b < count; ) {
        if (isZero(data, b)) {
          b++;
          continue;
        }
        let e = b + 1;
        while (e < count && !isZero(data, e)) e++;
        await onOutput(out, 'write', fh.write(data, b * bs, (e - b) * bs, (first + b) * bs));
        b = e;
      }
    }
    await onOutput(out, 'sync', fh.datasync());
    await onOutput(out, 'close', fh.close());
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
  return tmp;
}

/**
 * Renames every written image into place, all or none: a group's images are one point only
 * together, so a failure (a file that cannot be replaced) leaves every target as it was. A
 * file replaced is first linked aside, and put back if a later one fails.
 */
async function placeImages(images: readonly { tmp: string; out: string }[]): Promise<void> {
  const aside: (string | null)[] = [];
  const placed: number[] = [];
  try {
    for (const { out } of images) {
      const exists = await stat(out).then(() => true, () => false);
      const keep = `${out}.replaced-${process.pid}`;
      if (exists) {
        await rm(keep, { force: true });
        await onOutput(out, 'replace', link(out, keep));
      }
      aside.push(exists ? keep : null);
    }
    for (const [i, { tmp, out }] of images.entries()) {
      await onOutput(out, 'rename into place', rename(tmp, out));
      placed.push(i);
    }
  } catch (err) {
    for (const i of placed.reverse()) {
      const keep = aside[i];
      await (keep !== null ? rename(keep, images[i].out) : rm(images[i].out, { force: true })).catch(() => {});
    }
    for (const { tmp } of images) await rm(tmp, { force: true });
    for (const keep of aside) if (keep !== null) await rm(keep, { force: true });
    throw err;
  }
  for (const keep of aside) if (keep !== null) await rm(keep, { force: true });
}

/**
 * Writes each image to a temp file, then puts them all in place (placeImages); a failure
 * leaves no temp file. The caller checked the names (exportUnit: EXPORT_EXISTS, the directories).
 */
async function writeImages(jobs: readonly { v: Volume; out: string; read: (first: number, count: number) => Promise<Buffer> }[]): Promise<void> {
  const written: { tmp: string; out: string }[] = [];
  try {
    for (const j of jobs) written.push({ tmp: await writeTemp(j.v, j.out, j.read), out: j.out });
  } catch (err) {
    for (const { tmp } of written) await rm(tmp, { force: true });
    throw err;
  }
  await placeImages(written);
}

export interface HeadstartNode {
  readonly config: NodeConfig;
  readonly nbdPort: number | null;
  readonly peersPort: number | null;
  status(): NodeStatus;
  volume(name: string): Volume;
  /** Closes a snapshot point of a primary volume now (outside its schedule). */
  snapshotNow(name: string): Promise<SnapshotPoint>;
  /** Waits until every sink of `name` acknowledged point n. */
  waitAcked(name: string, n: number, timeoutMs?: number, options?: WaitOptions): Promise<void>;
  /** Promotes a replica (with its consistency group). */
  promote(name: string, options?: { force?: boolean; allowTorn?: boolean }): Promise<PromoteResult>;
  /**
   * Changes a rate cap at run time: a peer's (shared by every link to it), or with peer null
   * the node-wide linkCap (shared by every link of the node). null bytes/s removes the cap;
   * either holds, whatever the cap's windows say, until 'auto' hands it back to them.
   */
  setRateLimit(peer: string | null, bytesPerSecond: number | null | 'auto'): { peer: string | null; rateLimit: number | null; links: number; cap: LinkCapView };
  /** Every link cap of the node (linkCap, then each peer's) and what sets it now. */
  linkCaps(): LinkCapView[];
  /**
   * Closes a point of a primary volume and holds it for comparison with its sinks (see
   * verify.ts), once every sink acknowledged it. The wait fails after timeoutMs in which the
   * link made no progress (not on a long backlog that moves), or when `signal` aborts.
   * `sink`: wait for that sink only (the one whose replica is compared): a volume's other
   * sinks, down or behind, then neither delay nor fail it.
   */
  beginVerify(name: string, options?: { timeoutMs?: number; signal?: AbortSignal; sink?: string }): Promise<VerifyPlan>;
  /**
   * Keeps the hold of verification at point n for another VERIFY_HOLD_MS: a comparison that
   * outlasts it would read newer points on the replica and report differences that are not
   * real. Throws VERIFY_ENDED if the hold ended (expired, or the node restarted).
   */
  renewVerify(name: string, n: number): Promise<{ n: number; heldForMs: number }>;
  /**
   * Ends the verification in progress (`headstart verify --end`), or with `n` only the one
   * holding point n: a comparison's own end must not end another that began after its hold
   * expired. Resolves whether it ended one.
   */
  endVerify(name: string, n?: number): Promise<boolean>;
  /**
   * Writes a point to a raw image file: a fresh point of a primary, the committed point of a
   * replica. `scheduledAt` names the point across a consistency group (its members number
   * their points apart): two members' images are one point of the group when it is equal.
   */
  exportImage(name: string, out: string, options?: { overwrite?: boolean }): Promise<ExportedImage>;
  /**
   * Writes every volume of `name`'s consistency group, at one point of the group, to
   * `dir`/VOLUME.raw: on a primary a fresh group point, on a replica the point its members
   * hold (refused, NODE_GROUP_TORN, if they do not hold the same one).
   */
  exportGroup(name: string, dir: string, options?: { overwrite?: boolean }): Promise<{ group: string; scheduledAt: number; volumes: ExportedImage[] }>;
  /** Demotes a primary (with its consistency group); `point`: the point its image is left at (a last one is closed first if anything was written since), null if none. */
  demote(name: string): Promise<{ epoch: number; point: number | null; volumes: { name: string; epoch: number; point: number | null }[] }>;
  subscribe(listener: (e: FeedEvent | NodeEvent) => void): () => void;
  stop(): Promise<void>;
}

export type NodeEvent =
  | { readonly type: 'promoted'; readonly time: number; readonly volume: string; readonly epoch: number }
  | { readonly type: 'demoted'; readonly time: number; readonly volume: string; readonly epoch: number };

export async function startNode(config: NodeConfig, logger: Logger): Promise<HeadstartNode> {
  const node = new Node(config, logger);
  try {
    await node.start();
  } catch (err) {
    await node.stop().catch(() => {});
    throw err;
  }
  return node;
}

class Node implements HeadstartNode {
  private readonly managed = new Map<string, Managed>();
  /** Failures retried every few seconds (a link to a site that is down), logged once and then every few minutes. */
  private readonly repeats = new Repeats();
  /**
   * Rate caps shared by every link to a peer (peers[].rateLimit), and by every link of the
   * node (linkCap), each following its windows (link-caps.ts).
   */
  private readonly peerCaps = new Map<string, LinkCap>();
  private readonly nodeCap: LinkCap;
  /** Load leveling: closes of leveled volumes since the plan was last weighed, and whether it ever was on measured points. */
  private levelCloses = 0;
  private levelMeasured = false;
  private nbd: NbdServer | null = null;
  private replicaServer: ReplicaServer | null = null;
  private secret: string | null = null;
  private readonly listeners = new Set<(e: FeedEvent | NodeEvent) => void>();
  private stopping = false;
  private readonly recorders: TraceRecorder[] = [];
  private readonly recorderOf = new Map<string, WriteRecorder>();

  constructor(
    readonly config: NodeConfig,
    private readonly log: Logger,
  ) {
    this.nodeCap = this.makeCap(null, config.linkCap ?? null, config.linkCapWindows ?? []);
  }

  get nbdPort(): number | null {
    return this.nbd?.port ?? null;
  }
  get peersPort(): number | null {
    return this.replicaServer?.port ?? null;
  }

  async start(): Promise<void> {
    this.secret = await readSecret(this.config);
    const volumesDir = join(this.config.node.dataDir, 'volumes');
    await mkdir(volumesDir, { recursive: true });
    // The volumes there are first: a new volume of a consistency group takes its group's role.
    const existing = new Map<string, Volume>();
    try {
      for (const vc of this.config.volumes) {
        try {
          existing.set(vc.name, await openVolume(join(volumesDir, vc.name)));
        } catch (err) {
          if (!isHeadstartError(err, 'VOLUME_NOT_FOUND')) throw err;
        }
      }
      await this.manageVolumes(volumesDir, existing);
    } catch (err) {
      // node.stop() shuts the managed volumes: those opened here and not managed yet are this one's to shut.
      for (const [name, v] of existing) if (this.managed.get(name)?.volume !== v) await v.shutdown().catch(() => {});
      throw err;
    }

    // A volume taken out of the configuration is neither served nor replicated, but nothing
    // is deleted: its data, its points and what it keeps for its sinks stay on disk, and its
    // replicas fall behind. Said at every start, so it is not forgotten there.
    for (const entry of await readdir(volumesDir, { withFileTypes: true })) {
      if (!entry.isDirectory() || this.managed.has(entry.name)) continue;
      this.log.warn({ volume: entry.name, dir: join(volumesDir, entry.name) }, 'a volume on disk is not in the configuration: not served (no export, no points, no replication: its replicas fall behind); its data stays: put it back in the configuration to serve it, or remove its directory to delete it');
    }
    await this.closeTornGroups();
    const nbdListen = this.config.listen.nbd;
    if (nbdListen !== undefined) {
      this.nbd = await listening('listen.nbd', nbdListen.host, nbdListen.port, () => startNbdServer({ host: nbdListen.host, port: nbdListen.port, logger: this.log }));
      for (const m of this.managed.values()) {
        if (m.config.record !== undefined) {
          // Every write the export receives goes into a trace file: real software run through
          // headstart becomes a workload for the planner's evaluator and for `demo --trace`.
          const recorder = await TraceRecorder.open(m.config.record);
          this.recorders.push(recorder);
          // A zeroing is recorded as a trim: both leave zeroes, which replicate as a flag.
          this.recorderOf.set(m.config.name, { record: (op, offset, length, timeMs) => recorder.record({ op: op === 'zero' ? 'trim' : op, offset, length, time: timeMs }) });
        }
        if (!m.volume.readOnly) this.nbd.addExport(m.config.name, m.volume, this.exportOptions(m));
      }
      this.log.info({ port: this.nbd.port }, 'NBD server listening');
    }
    await this.startReplicaServer();
    // Replicas are exported once the replica server has finished any commit a crash
    // interrupted (its redo journal): before that, an image can be between two points.
    for (const m of this.managed.values()) if (m.volume.readOnly) this.nbd?.addExport(m.config.name, m.volume, this.exportOptions(m));
    // Leveled schedules first, so no timer is armed on the clock's marks to be moved later.
    this.levelSchedules('start');
    for (const m of this.managed.values()) if (!m.volume.readOnly) await this.startPrimary(m);
  }

  /** Opens or creates each configured volume (those already there first: see start) and manages it. */
  private async manageVolumes(volumesDir: string, existing: Map<string, Volume>): Promise<void> {
    for (const vc of this.config.volumes) {
      const dir = join(volumesDir, vc.name);
      let volume = existing.get(vc.name);
      if (volume === undefined) {
        // `role` is what a new volume starts as; a group's volumes keep theirs, changed by
        // promotions since. A volume added to the group joins it in the role its volumes hold
        // here (after a failover the configuration, which must give the group one role, says
        // the old one): a replica among primaries would split the group between the sites.
        const member = this.config.volumes.find((x) => x.group !== undefined && x.group === vc.group && existing.has(x.name));
        const role = member === undefined ? vc.role : existing.get(member.name)!.info.role;
        volume = await createVolume(dir, { id: vc.name, name: vc.name, size: vc.size, blockSize: vc.blockSize, role });
        // A planner model saved for an earlier volume of this name (its data directory was
        // removed and the node made it anew) describes another workload: a new volume starts cold.
        const earlier = await stat(learntPath(this.config.node.dataDir, vc.name)).then(() => true, () => false);
        await rm(learntPath(this.config.node.dataDir, vc.name), { force: true });
        if (earlier && role !== 'replica') {
          // Its replicas refuse to take this empty history over theirs (REPL_DIVERGED): they may hold the only copy.
          this.log.error({ volume: vc.name, dir }, 'a volume of this name was here before and its data directory is gone: made anew, empty; if its data was lost, promote a replica instead of writing here');
        } else if (role !== vc.role) this.log.warn({ volume: vc.name, size: vc.size, role, group: vc.group }, `created volume as a ${role}, the role its consistency group holds here (the configuration says ${vc.role}: what the group started as)`);
        else this.log.info({ volume: vc.name, size: vc.size, role }, 'created volume');
      }
      if (volume.size !== vc.size || volume.blockSize !== vc.blockSize) {
        throw new HeadstartError('CONFIG_INVALID', `volume ${vc.name} on disk is ${volume.size} bytes in ${volume.blockSize}-byte blocks; the configuration says ${vc.size} in ${vc.blockSize}`);
      }
      if (volume.uncleanOsShutdown) this.log.warn({ volume: vc.name }, 'the machine went down while this volume was open: sinks will be re-verified by checksum');
      this.managed.set(vc.name, {
        config: vc,
        volume,
        schedule: vc.schedule === undefined ? null : scheduleFrom(vc.schedule),
        timer: null,
        nextCloseAt: null,
        sources: new Map(),
        policy: this.makePolicy(vc, volume),
        history: [],
        notConverging: new Set(),
        closeFailing: null,
        levelOffsetMs: null,
        pointBytes: [],
        primarySeenAt: 0,
        primaryDemotedAt: null,
        sourceClock: null,
        redoFailing: null,
        verifyHold: null,
        verifyTimer: null,
        lastVerify: null,
        verifyDeferred: 0,
        learntSaving: Promise.resolve(),
        learntSavedAt: -Infinity,
        archiver: null,
      });
    }
  }

  /**
   * At start, before any write can arrive: a consistency group whose last close reached only
   * some of its volumes gets it on the rest. A group closes in one synchronous step, each
   * volume recording its point with a synchronous commit (closePoints), so a kill -9 or a
   * power cut inside that step leaves the point recorded on some volumes only. Left so, the
   * others would fold the time's writes into their next point, and the replica would commit
   * the group's point on some volumes only: a torn group until the next close, which a
   * promotion in that window must refuse.
   *
   * A volume behind its group is closed at the group's time and cut instant only if its
   * open point holds no write logged after that instant. That is always so after a kill in
   * the close step (no write of the next point can start before every record is taken);
   * a volume whose own record failed while the node ran on (a full disk) took later writes,
   * and stays behind: its writes belong to its next point, and the log says so.
   */
  private async closeTornGroups(): Promise<void> {
    const seen = new Set<string>();
    for (const m of this.managed.values()) {
      const group = m.config.group;
      if (group === undefined || seen.has(group) || m.volume.readOnly) continue;
      seen.add(group);
      const unit = this.closeUnit(m);
      // Point 0 is a volume's creation (createVolume), not a close of the group: members made
      // at different times (a new group, a volume added to one) hold it at different times.
      const newest = unit.map((x) => x.volume.latestClosed).reduce<SnapshotPoint | null>((a, p) => (p !== null && p.n > 0 && (a === null || p.scheduledAt > a.scheduledAt) ? p : a), null);
      if (newest === null) continue;
      for (const x of unit) {
        const latest = x.volume.latestClosed;
        if (latest !== null && latest.scheduledAt >= newest.scheduledAt) continue;
        let later = false;
        for (const w of x.volume.openWrites()) if (w.time > newest.closedAt) later = true;
        const at = { volume: x.config.name, group, scheduledAt: newest.scheduledAt };
        if (later) {
          this.log.error(at, 'a volume of the group missed its last close and took writes after it: the group is not consistent at that point (its writes go into its next point)');
          continue;
        }
        try {
          const point = await x.volume.closeSnapshot({ scheduledAt: newest.scheduledAt, closedAt: newest.closedAt });
          this.log.warn({ ...at, n: point.n }, 'the node stopped in the middle of a group close: this volume closed its point now, at the group\'s cut');
        } catch (err) {
          this.log.error({ ...at, err }, 'a volume of the group missed its last close and cannot close it now: the group is not consistent at that point');
        }
      }
    }
  }

  private exportOptions(m: Managed): ExportOptions {
    return { readOnly: m.volume.readOnly, description: `headstart volume ${m.config.name}`, recorder: this.recorderOf.get(m.config.name) };
  }

  // ------------------------------------------------------------------ primary side

  private makePolicy(vc: VolumeConfig, volume: Volume): PresendPolicy & Partial<PredictivePolicy> {
    if (vc.policy.name !== 'predictive') return policyByName(vc.policy.name);
    const m = () => this.managed.get(vc.name);
    const path = learntPath(this.config.node.dataDir, vc.name);
    let learnt: Uint8Array | undefined;
    try {
      learnt = loadLearnt(path);
    } catch (err) {
      this.log.warn({ err, volume: vc.name, path }, 'cannot read the planner\'s saved model: it starts cold');
    }
    let refused = false;
    const policy = predictivePolicy({
      learnt,
      onLearntRefused: (err) => {
        refused = true;
        this.log.warn({ err, volume: vc.name, path }, 'the planner\'s saved model is unusable: it starts cold');
      },
      volume,
      K: vc.policy.K,
      L: vc.policy.L,
      PT: vc.policy.PT,
      maxOpenBlocks: vc.policy.maxOpenBlocks,
      onUntracked: (n, limit) => {
        this.emit({ type: 'presend-limited', time: Date.now(), volume: vc.name, n, limit });
        this.log.warn({ volume: vc.name, n, limit }, 'the open point has more dirty blocks than the planner tracks: it pre-sends from the first ones, the rest ship at the close (its lag grows)');
      },
      timeScale: vc.policy.timeScale,
      nextCloseAt: () => m()?.nextCloseAt ?? null,
      linkHint: this.peerRate(vc),
    });
    if (learnt !== undefined && !refused) this.log.info({ volume: vc.name, path }, 'the planner starts from its saved model');
    return policy;
  }

  private makeCap(peer: string | null, plain: number | null, windows: readonly RateWindow[]): LinkCap {
    const scope = peer ?? 'node-wide';
    const cap = new LinkCap(peer, plain, windows, (v) =>
      this.log.info({ cap: scope, rateLimit: v.rateLimit, window: v.window, until: v.until === null ? null : new Date(v.until).toISOString() }, v.window === null ? 'link cap back to its configured rate' : `link cap window ${v.window} in force`),
    );
    const v = cap.view();
    if (v.window !== null) this.log.info({ cap: scope, rateLimit: v.rateLimit, window: v.window }, `link cap window ${v.window} in force`);
    return cap;
  }

  private peerCap(peer: string): LinkCap {
    let c = this.peerCaps.get(peer);
    if (c === undefined) {
      const p = this.config.peers.find((x) => x.name === peer);
      c = this.makeCap(peer, p?.rateLimit ?? null, p?.rateWindows ?? []);
      this.peerCaps.set(peer, c);
    }
    return c;
  }

  /** Every link cap of the node and what sets it now. */
  linkCaps(): LinkCapView[] {
    return [this.nodeCap.view(), ...this.config.peers.map((p) => this.peerCap(p.name).view())];
  }

  setRateLimit(peer: string | null, bytesPerSecond: number | null | 'auto'): { peer: string | null; rateLimit: number | null; links: number; cap: LinkCapView } {
    if (bytesPerSecond !== null && bytesPerSecond !== 'auto' && !(Number.isFinite(bytesPerSecond) && bytesPerSecond > 0)) {
      throw new HeadstartError('CONFIG_INVALID', `a rate limit is a positive number of bytes/s, none or auto; not ${bytesPerSecond}`);
    }
    if (peer !== null && !this.config.peers.some((p) => p.name === peer)) throw new HeadstartError('CONFIG_INVALID', `node ${this.config.node.name} has no peer ${JSON.stringify(peer)}`);
    const links = [...this.managed.values()].flatMap((m) => [...m.sources.keys()]).filter((l) => peer === null || l === peer);
    const cap = peer === null ? this.nodeCap : this.peerCap(peer);
    if (bytesPerSecond === 'auto') cap.resume();
    else cap.setByOperator(bytesPerSecond);
    const view = cap.view();
    const what = peer === null ? 'node-wide link cap' : `link cap of peer ${peer}`;
    this.log.warn({ peer, rateLimit: view.rateLimit, setBy: view.setBy, window: view.window }, bytesPerSecond === 'auto' ? `${what} follows its configuration again` : `${what} changed by the operator; it holds until \`headstart rate auto\``);
    return { peer, rateLimit: view.rateLimit, links: links.length, cap: view };
  }

  /** The planner's first guess at B: the tightest cap in force (window or operator included) on the volume's links. */
  private peerRate(vc: VolumeConfig): number | undefined {
    const caps = [...vc.sinks.map((s) => this.peerCap(s)), this.nodeCap];
    const rates = caps.map((c) => c.bucket.limit).filter((r): r is number => r !== null);
    return rates.length > 0 ? Math.min(...rates) : undefined;
  }

  /** Arms the next scheduled verification of a primary volume (volume.verify). */
  private scheduleVerify(m: Managed): void {
    if (m.verifyTimer) clearTimeout(m.verifyTimer);
    m.verifyTimer = null;
    const v = m.config.verify;
    if (v === undefined || this.stopping) return;
    armAt(Date.now() + v.every, () => void this.runScheduledVerify(m, v.replica).finally(() => this.scheduleVerify(m)), (t) => (m.verifyTimer = t));
  }

  private async runScheduledVerify(m: Managed, replica: string): Promise<void> {
    const name = m.config.name;
    if (m.volume.readOnly || this.stopping || m.verifyHold !== null) return; // a replica here, or an operator's verify under way
    // A sink still shipping earlier points (a backlog, a link that cannot keep up): a
    // verification now would hold the schedule (so the RPO) while it waits, up to five
    // minutes, and then fail on the wait, not on the data. It waits for a slot with no backlog.
    // (From the volume's sinks, not sink(name): a configured sink its source has not
    // registered yet must not throw here, outside the try below.)
    const latest = m.volume.latestClosed?.n ?? null;
    const behind = latest === null ? [] : m.volume.sinks().filter((s) => m.config.sinks.includes(s.name) && (s.acked === null || s.acked < latest)).map((s) => s.name);
    if (behind.length > 0) {
      m.verifyDeferred++;
      this.log.info({ volume: name, behind, point: latest, deferred: m.verifyDeferred }, 'scheduled verification deferred: a sink has not committed the latest point yet (a backlog); the next slot tries again');
      return;
    }
    m.verifyDeferred = 0;
    const at = Date.now();
    try {
      const plan = await this.beginVerify(name);
      try {
        const r = await compareWithReplica(plan, replica, undefined, () => this.renewVerify(name, plan.n));
        const differingBytes = r.differing.reduce((a, [, len]) => a + len, 0);
        const ranges = r.differing.slice(0, 16);
        m.lastVerify = { at, point: r.point, equal: r.equal, differingBytes, ranges, error: null };
        if (r.equal) this.log.info({ volume: name, n: r.point, ranges: r.rangesCompared }, 'scheduled verification: the replica equals the source');
        else this.log.error({ volume: name, n: r.point, differingBytes, ranges }, 'scheduled verification: the replica DIFFERS from the source at this point');
      } finally {
        await this.endVerify(name, plan.n).catch(() => {});
      }
    } catch (err) {
      const message = isHeadstartError(err) ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err);
      m.lastVerify = { at, point: null, equal: null, differingBytes: null, ranges: [], error: message };
      if (!this.stopping) this.log.warn({ volume: name, err: message }, 'scheduled verification could not run; it is tried again at the next slot');
    }
  }

  private async startPrimary(m: Managed): Promise<void> {
    await this.dropStaleSinks(m);
    await this.startArchive(m); // before the schedule can close a point (archiving.ts)
    this.scheduleNext(m);
    this.scheduleVerify(m);
    if (m.config.sinks.length > 0) await this.startSources(m);
    // A sink's first copy can close a point on the volume itself (addSink, when the latest
    // point is no longer readable), as can a group's close finished at start: tell the
    // policy now, so its planner plans the point that is open, not one already closed.
    const latest = m.volume.latestClosed;
    if (latest !== null) m.policy.onClose?.(latest.n, latest.closedAt, m.nextCloseAt);
  }

  private async startSources(m: Managed): Promise<void> {
    if (this.secret === null) throw new HeadstartError('CONFIG_INVALID', 'node.secret: peers need a pairing secret');
    for (const sinkName of m.config.sinks) {
      const peer = this.config.peers.find((p) => p.name === sinkName)!;
      const link = await startSource({
        volume: m.volume,
        group: m.config.group,
        sink: peer.name,
        url: peer.url,
        secret: this.secret,
        node: this.config.node.name,
        policy: m.policy,
        rateLimit: null, // the caps are shared: see peerCaps and nodeCap
        sharedLimits: [this.peerCap(peer.name).bucket, this.nodeCap.bucket],
        nextCloseAt: () => m.nextCloseAt,
        compress: peer.compress,
        ca: peer.ca,
        verifyHost: peer.verifyHost,
        onEvent: (e) => this.onSourceEvent(m, e),
      });
      m.sources.set(peer.name, link);
    }
  }

  /**
   * Sink records nothing will acknowledge any more: a peer taken out of the volume's `sinks`
   * (the volume kept every point for it, for good, until its disk filled), and the hold of
   * an export or a verification that the node stopped in the middle of (none runs while a
   * volume starts as primary). The archive's sink is startArchive's. A peer put back later
   * starts as a new sink: the replica is resynchronised by checksum.
   */
  private async dropStaleSinks(m: Managed): Promise<void> {
    for (const s of m.volume.sinks()) {
      if (m.config.sinks.includes(s.name) || s.name === ARCHIVE_SINK) continue;
      await m.volume.removeSink(s.name);
      const hold = s.name === VERIFY_SINK || s.name.startsWith(EXPORT_HOLD_PREFIX);
      this.log.warn({ volume: m.config.name, sink: s.name, acked: s.acked }, hold ? 'removed the hold of an export or a verification that did not finish (the node stopped during it)' : 'sink no longer in the volume\'s configuration: removed it, and the points kept for it');
    }
  }

  private async startArchive(m: Managed): Promise<void> {
    const ac = m.config.archive;
    if (ac === undefined) {
      // Archive removed from the configuration: drop its sink, or the volume would keep every point for it forever.
      if (m.volume.sinks().some((s) => s.name === ARCHIVE_SINK)) {
        await m.volume.removeSink(ARCHIVE_SINK);
        this.log.warn({ volume: m.config.name }, 'archive no longer configured: removed its sink');
      }
      return;
    }
    m.archiver = await startArchiver(m.volume, ac, this.log, (e) => {
      const rec = m.history.find((h) => h.n === e.n);
      const lagMs = Date.now() - e.scheduledAt;
      if (rec) rec.acks[ARCHIVE_SINK] = { ackedAt: Date.now(), lagMs, sentBytes: e.uploadedBytes, minimalBytes: e.changedBytes };
      this.emit({ type: 'snapshot-acked', time: Date.now(), volume: m.config.name, sink: ARCHIVE_SINK, n: e.n, lagMs, sentBytes: e.uploadedBytes, minimalBytes: e.changedBytes });
      this.log.info({ volume: m.config.name, n: e.n, uploadedBytes: e.uploadedBytes, changedBytes: e.changedBytes }, 'snapshot point archived');
      if (m.notConverging.has(ARCHIVE_SINK)) this.checkConvergence(m);
    }, this.groupPeersOf(m));
  }

  /**
   * Saves what the volume's planner has learnt (planner-state.ts), one save at a time per
   * volume; a failure is logged and a later close tries again. At a close only if the last
   * save is LEARNT_SAVE_MS old (`force` at demotion and shutdown): the model moves slowly
   * (a 6 h half-life), and a TiB volume's state (37 MiB for 786k tracked blocks) takes
   * ~130-160 ms of the event loop to encode.
   */
  private saveLearnt(m: Managed, force = false): Promise<void> {
    const policy = m.policy;
    if (policy.exportLearnt === undefined) return m.learntSaving;
    if (!force && Date.now() - m.learntSavedAt < LEARNT_SAVE_MS) return m.learntSaving;
    m.learntSavedAt = Date.now();
    const path = learntPath(this.config.node.dataDir, m.config.name);
    m.learntSaving = m.learntSaving
      .then(() => saveLearnt(path, policy.exportLearnt!()))
      .catch((err: unknown) => this.log.warn({ err, volume: m.config.name, path }, 'saving the planner\'s model failed; a later close tries again'));
    return m.learntSaving;
  }

  /** The names of the other volumes of m's consistency group on this node (archive retention plans them together). */
  private groupPeersOf(m: Managed): string[] {
    return this.groupOf(m)
      .map((x) => x.config.name)
      .filter((n) => n !== m.config.name);
  }

  /** The volumes of m's consistency group on this node, in configuration order (m alone without a group). */
  private groupOf(m: Managed): Managed[] {
    const g = m.config.group;
    return g === undefined ? [m] : [...this.managed.values()].filter((x) => x.config.group === g);
  }

  /**
   * The volumes that close together with m: its group's primary volumes. The first of them
   * holds the timer; the group waits while any of them holds a verification.
   */
  private closeUnit(m: Managed): Managed[] {
    return this.groupOf(m).filter((x) => !x.volume.readOnly);
  }

  private scheduleNext(m: Managed): void {
    const unit = this.closeUnit(m);
    for (const x of [m, ...unit]) {
      if (x.timer) clearTimeout(x.timer);
      x.timer = null;
    }
    const lead = unit[0];
    if (lead === undefined || lead.schedule === null || this.stopping || unit.some((x) => x.verifyHold !== null)) {
      for (const x of [m, ...unit]) x.nextCloseAt = null;
      return;
    }
    // A timer can fire a little before its time by Date.now(): timers run on the monotonic
    // clock, Date.now() on the wall clock, and the two round differently and drift apart
    // (NTP slews the wall clock). "The next time after now" would then be the point just
    // closed, and the same scheduled time would close twice, ms apart (seen in
    // bench:policies). Never again a time already taken; a clock stepped back further than
    // EARLY_TIMER_MS is not mistaken for this.
    const now = Date.now();
    const latest = unit.reduce<SnapshotPoint | null>((a, x) => {
      const p = x.volume.latestClosed;
      return p !== null && (a === null || p.scheduledAt > a.scheduledAt) ? p : a;
    }, null);
    const last = latest?.scheduledAt ?? -Infinity;
    let at = lead.schedule.nextAfter(last > now && last - now < EARLY_TIMER_MS ? last : now);
    // A leveled unit whose offset moved (or was planned anew at start) keeps its interval
    // from its last point: the new offset's first time may come later than that, and then
    // the old time comes first (point 0 of a new volume is its empty image: no such limit).
    const every = lead.config.schedule?.every;
    if (lead.levelOffsetMs !== null && every !== undefined && latest !== null && latest.n > 0 && last + every > now) at = Math.min(at, last + every);
    if (!Number.isFinite(at)) {
      // Windows with no points all week: nothing is ever due (the configuration said so).
      for (const x of [m, ...unit]) x.nextCloseAt = null;
      return;
    }
    for (const x of unit) {
      x.nextCloseAt = at;
      x.policy.schedule?.(at);
    }
    armAt(at, () => void this.closeScheduled(lead, at), (t) => (lead.timer = t));
  }

  /**
   * The close units whose schedule is leveled (schedule.level): a volume, or a consistency
   * group (its first primary volume holds the timer), weighed by the mean bytes of their
   * recent points.
   */
  private leveledUnits(): { lead: Managed; members: Managed[]; unit: LevelUnit }[] {
    const units: { lead: Managed; members: Managed[]; unit: LevelUnit }[] = [];
    const seen = new Set<Managed>();
    for (const m of this.managed.values()) {
      const every = m.config.schedule?.every;
      if (seen.has(m) || m.volume.readOnly || m.config.schedule?.level !== true || every === undefined) continue;
      const members = this.closeUnit(m);
      for (const x of members) seen.add(x);
      const weights = members.filter((x) => x.pointBytes.length > 0).map((x) => x.pointBytes.reduce((a, b) => a + b, 0) / x.pointBytes.length);
      const id = m.config.group === undefined ? `volume ${m.config.name}` : `group ${m.config.group}`;
      units.push({ lead: members[0], members, unit: { id, everyMs: every, weightBytes: weights.length === 0 ? null : weights.reduce((a, b) => a + b, 0) } });
    }
    return units;
  }

  /**
   * Plans where the leveled volumes' points fall (leveling.ts) and moves their schedules:
   * at start (before any timer), when roles change, and as the points' sizes become known.
   * A new offset never delays a point: scheduleNext keeps a leveled unit's next point within
   * one interval of its last.
   */
  private levelSchedules(reason: 'start' | 'roles' | 'measured'): void {
    const units = this.leveledUnits();
    if (units.length === 0 || this.stopping) return;
    const caps = [this.nodeCap, ...new Set(units.flatMap((u) => u.members.flatMap((m) => m.config.sinks.map((s) => this.peerCap(s)))))];
    const limits = caps.map((c) => c.bucket.limit).filter((r): r is number => r !== null);
    // The link they share: the node-wide cap if any, else the tightest peer cap, else not known.
    const link = this.nodeCap.bucket.limit ?? (limits.length > 0 ? Math.min(...limits) : null);
    const plan = levelOffsets(units.map((u) => u.unit), link);
    if (reason === 'measured') {
      const current = new Map(units.map((u) => [u.unit.id, u.lead.levelOffsetMs ?? 0]));
      const peakNow = modelledPeak(units.map((u) => u.unit), current, link);
      if (units.every((u) => u.lead.levelOffsetMs !== null) && plan.peakBytesPerSecond > peakNow * (1 - LEVEL_MIN_GAIN)) return;
    }
    for (const u of units) {
      const offset = plan.offsets.get(u.unit.id)!;
      if (u.lead.levelOffsetMs === offset) continue;
      const schedule = intervalSchedule(u.unit.everyMs, offset);
      for (const x of u.members) {
        x.schedule = schedule;
        x.levelOffsetMs = offset;
      }
      this.log.info({ unit: u.unit.id, every: u.unit.everyMs, offsetMs: offset, weightBytes: u.unit.weightBytes, reason }, `load leveling: its points fall ${offset / 1000} s after the clock's marks`);
      if (u.lead.timer !== null) this.scheduleNext(u.lead);
    }
  }

  /** After a close of m: its size weighs its unit; the plan is weighed again once sizes are known, then now and then. */
  private noteLeveledClose(m: Managed, bytes: number | undefined): void {
    if (m.config.schedule?.level !== true || bytes === undefined) return;
    m.pointBytes.push(bytes);
    if (m.pointBytes.length > LEVEL_WEIGHT_POINTS) m.pointBytes.shift();
    const units = this.leveledUnits();
    this.levelCloses++;
    const measured = units.every((u) => u.members.every((x) => x.pointBytes.length >= LEVEL_MEASURED_POINTS));
    if (!measured) return;
    if (this.levelMeasured && this.levelCloses < LEVEL_RECHECK_POINTS * units.reduce((k, u) => k + u.members.length, 0)) return;
    this.levelMeasured = true;
    this.levelCloses = 0;
    this.levelSchedules('measured');
  }

  /** A scheduled close (of m's group); if it fails (nothing changed then), again every CLOSE_RETRY_MS until it succeeds. */
  private async closeScheduled(m: Managed, scheduledAt: number): Promise<void> {
    m.timer = null;
    const unit = this.closeUnit(m);
    try {
      await this.closePoints(unit, scheduledAt);
      for (const x of unit) {
        if (x.closeFailing !== null) this.log.info({ volume: x.config.name, scheduledAt: new Date(scheduledAt).toISOString(), attempts: x.closeFailing.attempts + 1 }, 'the delayed snapshot point closed');
        x.closeFailing = null;
      }
    } catch (err) {
      const code = isHeadstartError(err) ? err.code : 'INTERNAL';
      let attempts = 0;
      for (const x of unit) {
        const prev = x.closeFailing;
        x.closeFailing = { scheduledAt, since: prev?.since ?? Date.now(), attempts: (prev?.attempts ?? 0) + 1, code, message: (err as Error)?.message ?? String(err) };
        attempts = x.closeFailing.attempts;
      }
      if (attempts === 1 || attempts % Math.round(60_000 / CLOSE_RETRY_MS) === 0) {
        this.log.error({ err, volume: m.config.name, group: m.config.group, attempts }, `closing a scheduled snapshot point failed; the point stays open, trying again every ${CLOSE_RETRY_MS / 1000} s`);
      }
      if (this.stopping || m.volume.readOnly || m.schedule === null || m.timer !== null || unit.some((x) => x.verifyHold !== null)) return;
      m.timer = setTimeout(() => void this.closeScheduled(m, scheduledAt), CLOSE_RETRY_MS);
    }
  }

  /** Closes a point of m now, and of every volume of its group in the same instant; m's point. */
  private async closePoint(m: Managed, scheduledAt: number): Promise<SnapshotPoint> {
    const points = await this.closePoints(this.closeUnit(m), scheduledAt);
    const point = points.get(m);
    if (point === undefined) throw new HeadstartError('VOLUME_READ_ONLY', `volume ${m.config.name} is a replica here; take points on its primary`);
    return point;
  }

  /**
   * Closes a point of every volume of `unit` at one cut. Every volume is checked first (a
   * full disk refuses them all, nothing changes, and the caller retries); then each
   * closeSnapshot runs to its first await — where it records the point and moves writes to
   * the next one — in one synchronous loop, so no write can be started or acknowledged on
   * any of them in between: a write that depends on an acknowledged write of another volume
   * of the group is never in a point without it. A volume that still fails after the check
   * (its record could not be written) misses this point: its writes go into its next one,
   * and the replica, seeing it skip the time, does not wait for it (the group is not
   * consistent at that point, which a promotion then reports).
   */
  private async closePoints(unit: readonly Managed[], requestedAt: number): Promise<Map<Managed, SnapshotPoint>> {
    for (const x of unit) x.volume.checkCanClose();
    // A group's points are known on the replica by their scheduled time, which must grow: a
    // clock stepped back would make a new point look older than the last, and the replica's
    // barrier would let a member commit it alone (commit-group.ts).
    const last = unit.length > 1 ? Math.max(...unit.map((x) => x.volume.latestClosed?.scheduledAt ?? -Infinity)) : -Infinity;
    const scheduledAt = requestedAt > last ? requestedAt : last + 1;
    const closing = unit.map((x) => x.volume.closeSnapshot({ scheduledAt }).then((point) => ({ x, point }), (err: unknown) => ({ x, err })));
    const results = await Promise.all(closing);
    const points = new Map<Managed, SnapshotPoint>();
    for (const r of results) if ('point' in r) points.set(r.x, r.point);
    const failed = results.filter((r): r is { x: Managed; err: unknown } => 'err' in r);
    if (points.size === 0 && failed.length > 0) throw failed[0].err;
    for (const f of failed) this.log.error({ err: f.err, volume: f.x.config.name, group: f.x.config.group, scheduledAt }, 'a volume of the group could not close with the others: the group is not consistent at this point (its writes go into its next point)');
    if (unit.length > 0) this.scheduleNext(unit[0]);
    for (const [x, point] of points) {
      x.history.push({ n: point.n, scheduledAt: point.scheduledAt, closedAt: point.closedAt, acks: {} });
      if (x.history.length > HISTORY_LIMIT) x.history.shift();
      x.policy.onClose?.(point.n, point.closedAt, x.nextCloseAt);
      void this.saveLearnt(x);
      this.emit({ type: 'snapshot-closed', time: Date.now(), volume: x.config.name, n: point.n });
      // A volume without sinks drops a point as it closes (nobody needs it): no dirty set left.
      const dirtyBlocks = x.volume.sinks().length > 0 ? x.volume.dirtyBlocks(point.n).size : undefined;
      this.log.info({ volume: x.config.name, n: point.n, dirtyBlocks, group: x.config.group }, 'snapshot point closed');
      this.noteLeveledClose(x, dirtyBlocks === undefined ? undefined : dirtyBlocks * x.volume.blockSize);
      x.archiver?.kick();
      this.checkConvergence(x);
    }
    this.followLatest([...points.keys()]);
    return points;
  }

  /**
   * A sink that is away goes to the point just closed when it returns, so the old content of
   * the points before is not kept for it (Volume.rebaseSink). Without this a site away for
   * days kept every point's overwritten blocks, growing the metadata store with every point.
   *   - A sink that has points catches up: its next delta goes from its last point straight to
   *     the latest, each block written between sent once (as a replica, it skips the points
   *     between: it is byte-equal to one point before the delta and to the latest after).
   *   - A sink that holds nothing yet takes its full copy from the latest point, but only on a
   *     volume promoted over another history (epoch above 1: the old primary's site after a
   *     failover), where that copy is a checksum compare in any case. On a volume never
   *     promoted the points stay kept for a new sink, so that a new site seeded from the
   *     archive gets only what came after its point (docs/operations.md).
   * A group's volumes all move or none do, so they go to one cut.
   */
  private followLatest(unit: readonly Managed[]): void {
    const promoted = unit.every((x) => x.volume.info.epoch > 1);
    const names = new Set(unit.flatMap((x) => [...x.sources.keys()]));
    for (const sink of names) {
      const links = unit.map((x) => x.sources.get(sink));
      if (!links.every((l) => l?.mayFollowLatest === true)) continue;
      const states = unit.map((x) => x.volume.sink(sink));
      if (!promoted && states.some((s) => s.acked === null)) continue;
      for (const [i, l] of links.entries()) {
        const was = states[i];
        const volume = unit[i].config.name;
        void l!.followLatest().then(
          (to) => {
            // Said once per absence: the first move of a catch-up (later ones only move its end).
            if (to !== null && was.acked !== null && was.catchUpTo === undefined) {
              this.log.info({ volume, sink, from: was.acked, to }, 'sink away: it will catch up from its last point straight to the latest, and the points between are no longer kept for it');
            }
          },
          (err: unknown) => this.log.warn({ err, volume, sink }, 'could not move the next copy of an away sink to the latest point (the points before stay kept for it)'),
        );
      }
    }
  }

  /** Logs when a sink starts or stops falling further behind with every point. */
  private checkConvergence(m: Managed): void {
    const sinks = [...m.sources.keys(), ...(m.archiver ? [ARCHIVE_SINK] : [])];
    for (const sink of sinks) {
      // Not judged while the sink is down (its link's error is logged): it falls behind for that.
      const state = sink === ARCHIVE_SINK ? m.archiver?.view().state : m.sources.get(sink)?.status().state;
      if (state !== 'connected') continue;
      const now = notConverging(m.history, sink, Date.now());
      if (now === m.notConverging.has(sink)) continue;
      if (now) {
        m.notConverging.add(sink);
        this.log.warn({ volume: m.config.name, sink }, 'not converging: the points waiting for this sink grow with every close (writes outrun the link; raise its rate cap, slow the writers or lengthen the interval)');
      } else {
        m.notConverging.delete(sink);
        this.log.info({ volume: m.config.name, sink }, 'converging again: the sink is catching up');
      }
    }
  }

  private onSourceEvent(m: Managed, e: SourceEvent): void {
    const volume = m.config.name;
    if (e.type === 'acked') {
      const rec = m.history.find((h) => h.n === e.n);
      if (rec) rec.acks[e.sink] = { ackedAt: Date.now(), lagMs: e.lagMs, commitMs: e.commitMs, sentBytes: e.sentBytes, minimalBytes: e.minimalBytes };
      this.emit({ type: 'snapshot-acked', time: Date.now(), volume, sink: e.sink, n: e.n, lagMs: e.lagMs, sentBytes: e.sentBytes ?? 0, minimalBytes: e.minimalBytes ?? 0, commitMs: e.commitMs });
      this.log.info({ volume, sink: e.sink, n: e.n, lagMs: e.lagMs, commitMs: e.commitMs, sentBytes: e.sentBytes, minimalBytes: e.minimalBytes }, 'snapshot point committed on sink');
      // A flagged sink that has caught up says so now, as status does, not at the next close.
      if (m.notConverging.has(e.sink)) this.checkConvergence(m);
    } else if (e.type === 'disconnected') {
      this.emit({ type: 'link-error', time: Date.now(), volume, sink: e.sink, code: e.code, message: e.message });
      // Once, then a reminder every few minutes (repeats.ts): it is retried every few seconds.
      const r = this.repeats.failed(`sink\0${volume}\0${e.sink}`, `${e.code} ${e.message}`, Date.now());
      if (r.log && r.count === 1) this.log.warn({ volume, sink: e.sink, code: e.code, message: e.message }, 'link to sink down');
      else if (r.log) this.log.warn({ volume, sink: e.sink, code: e.code, message: e.message, attempts: r.count, since: new Date(r.since).toISOString() }, 'link to sink still down');
    } else if (e.type === 'resync') {
      this.log.warn({ volume, sink: e.sink, message: e.message }, 'the sink does not hold the point it acknowledged: it is copied afresh (by checksum where it holds data)');
    } else if (e.type === 'presend-stopped') {
      this.emit({ type: 'presend-stopped', time: Date.now(), volume, sink: e.sink, n: e.n, limit: e.limit });
      this.log.warn({ volume, sink: e.sink, n: e.n, limit: e.limit }, 'pre-sends stopped: the open point has more dirty blocks than the limit, it ships whole at its close (its lag grows)');
    } else {
      const d = this.repeats.ended(`sink\0${volume}\0${e.sink}`, Date.now());
      this.log.info({ volume, sink: e.sink, ...(d === null ? {} : { downForMs: d.forMs, failedAttempts: d.count }) }, 'link to sink up');
    }
  }

  // ------------------------------------------------------------------ replica side

  /**
   * Every volume is a target, whatever its role: the handshake checks the role and the
   * epoch, so a stream into a volume that is primary here is refused as fenced (never
   * "unknown"), and a volume demoted at run time is ready for its new primary.
   */
  private async startReplicaServer(): Promise<void> {
    const replicas = [...this.managed.values()];
    const listen = this.config.listen.peers;
    if (listen === undefined) return;
    if (this.secret === null) throw new HeadstartError('CONFIG_INVALID', 'node.secret: a node that accepts peers needs a pairing secret');
    const secret = this.secret;
    this.replicaServer = await listening('listen.peers', listen.host, listen.port, () =>
      startReplicaServer({
        secret,
        host: listen.host,
        port: listen.port,
        node: this.config.node.name,
        tls: this.config.tls,
        volumes: replicas.map((m) => this.targetConfig(m)),
        onEvent: (e) => this.onReplicaEvent(e),
      }),
    );
    this.log.info({ port: this.replicaServer.port, replicas: replicas.filter((m) => m.volume.readOnly).map((m) => m.config.name) }, 'accepting replication links');
  }

  /** A volume as a replication target. One that has been primary holds data: its first
   * sync compares checksums so only differing blocks move (failback). */
  private targetConfig(m: Managed): ReplicaVolumeConfig {
    return { volume: m.volume, stagingDir: this.stagingDir(m.config.name), haveCopy: m.volume.latestClosed !== null, group: m.config.group };
  }

  private stagingDir(volume: string): string {
    return join(this.config.node.dataDir, 'staging', volume);
  }

  private onReplicaEvent(e: ReplicaEvent): void {
    const m = e.volume === null ? undefined : this.managed.get(e.volume);
    // When a primary last shipped here, for promote's guard: a session that ends by a demote
    // clears it (promote needs no --force), one that drops (a failed link, a restarting node)
    // counts as alive at that moment. Sessions live now are asked of the server directly.
    // (A session's start is not counted: while it lasts, shippingFrom says so, and one the
    // source ends at once because it holds another history, 'refused', must not keep a
    // promotion waiting for a primary that can never ship here.)
    if (m && (e.type === 'committed' || e.type === 'nack' || (e.type === 'session-ended' && (e.how === 'dropped' || e.how === 'demoted')))) m.primarySeenAt = Date.now();
    if (m && e.type === 'session') m.primaryDemotedAt = null;
    if (e.type === 'session') this.repeats.ended(`replica\0${e.volume}`, Date.now());
    if (m && e.type === 'source-clock') {
      const differ = Math.abs(e.aheadMs) >= CLOCK_SKEW_MS;
      const told = m.sourceClock?.told ?? false;
      if (differ && !told) this.log.warn({ volume: e.volume, source: e.source, aheadMs: Math.round(e.aheadMs) }, `the clocks differ: this node's is ${(Math.abs(e.aheadMs) / 1000).toFixed(1)} s ${e.aheadMs > 0 ? 'ahead of' : 'behind'} ${e.source}'s; RPO ages here are measured on ${e.source}'s clock (set both right: NTP)`);
      if (!differ && told) this.log.info({ volume: e.volume, source: e.source, aheadMs: Math.round(e.aheadMs) }, `the clocks agree again with ${e.source}'s`);
      m.sourceClock = { source: e.source, aheadMs: e.aheadMs, told: differ };
      return;
    }
    if (m && e.type === 'session-ended' && e.how === 'demoted') m.primaryDemotedAt = Date.now();
    if (e.type === 'committed') {
      this.emit({ type: 'snapshot-committed', time: Date.now(), volume: e.volume, n: e.n });
      this.log.info({ volume: e.volume, n: e.n }, 'snapshot point committed');
    } else if (e.type === 'session-ended' && e.how === 'demoted') {
      this.log.info({ volume: e.volume, peer: e.peer }, 'the primary was demoted: it no longer replicates to this node');
    } else if (e.type === 'link-error') {
      // A fenced old primary retries every few seconds until it is demoted: once, then reminders.
      const r = this.repeats.failed(`replica\0${e.volume}`, `${e.code} ${e.message}`, Date.now());
      if (r.log) this.log.warn({ volume: e.volume, code: e.code, message: e.message, ...(r.count > 1 ? { attempts: r.count, since: new Date(r.since).toISOString() } : {}) }, r.count > 1 ? 'replication link error, again' : 'replication link error');
    } else if (e.type === 'nack') {
      this.log.error({ volume: e.volume, n: e.n, message: e.message }, 'snapshot point refused');
    } else if (e.type === 'recovery-failed') {
      this.log.error({ volume: e.volume, code: e.code, message: e.message }, 'the replica cannot finish the commit its journal holds (a crash interrupted it): it retries every few seconds, and reads of the replica wait until it is finished');
    } else if (e.type === 'redo' && m) {
      if (e.code === null) {
        m.redoFailing = null;
        this.log.info({ volume: e.volume, n: e.n }, 'the replica finished the commit it had stopped half-way (from its journal); reads go on');
      } else if (m.redoFailing !== e.code) {
        // Once per cause: a retry every few seconds on a full disk would flood the log.
        m.redoFailing = e.code;
        this.log.error({ volume: e.volume, n: e.n, code: e.code, message: e.message }, 'the replica still cannot finish the commit it stopped half-way; it keeps retrying');
      }
    }
  }

  // ------------------------------------------------------------------ operator actions

  volume(name: string): Volume {
    return this.get(name).volume;
  }

  private get(name: string): Managed {
    const m = this.managed.get(name);
    if (m === undefined) throw new HeadstartError('NODE_NO_SUCH_VOLUME', `node ${this.config.node.name} has no volume ${JSON.stringify(name)}`);
    return m;
  }

  async snapshotNow(name: string): Promise<SnapshotPoint> {
    const m = this.get(name);
    if (m.volume.readOnly) throw new HeadstartError('VOLUME_READ_ONLY', `volume ${name} is a replica here; take points on its primary`);
    return this.closePoint(m, Date.now());
  }

  async waitAcked(name: string, n: number, timeoutMs = 60_000, options?: WaitOptions): Promise<void> {
    const m = this.get(name);
    await Promise.all([...m.sources.values()].map((s) => s.waitAcked(n, timeoutMs, options)));
  }

  async beginVerify(name: string, options: { timeoutMs?: number; signal?: AbortSignal; sink?: string } = {}): Promise<VerifyPlan> {
    const m = this.get(name);
    if (m.volume.readOnly) throw new HeadstartError('VOLUME_READ_ONLY', `volume ${name} is a replica here; verify from its primary`);
    if (m.verifyHold !== null) throw new HeadstartError('VERIFY_BUSY', `volume ${name} is being verified already`);
    const sinks = options.sink === undefined ? [...m.sources.entries()] : [...m.sources.entries()].filter(([peer]) => peer === options.sink);
    if (options.sink !== undefined && sinks.length === 0) {
      throw new HeadstartError('CONFIG_INVALID', `--sink ${options.sink}: volume ${name} has no sink of that name (its sinks: ${[...m.sources.keys()].join(', ') || 'none'})`);
    }
    // Hold the schedule (no later point may close on the replica) and keep the point readable.
    const hold: NonNullable<Managed['verifyHold']> = { waiting: new AbortController(), expiry: null, n: null };
    m.verifyHold = hold;
    const callerGone = () => hold.waiting.abort(new HeadstartError('VERIFY_ENDED', `the verification of ${name} was called off by its caller before the replica held its point`));
    options.signal?.addEventListener('abort', callerGone);
    if (options.signal?.aborted === true) callerGone();
    if (m.timer) clearTimeout(m.timer);
    m.timer = null;
    m.nextCloseAt = null;
    try {
      const point = await this.closeHeld(m, VERIFY_SINK);
      // Behind a backlog the point can take longer than any fixed wait: the wait fails only
      // when the link stops making progress, and the hold's expiry starts once the sinks hold it.
      const wait = { whileProgressing: true, signal: hold.waiting.signal };
      await Promise.all(
        sinks.map(([peer, s]) =>
          s.waitAcked(point.n, options.timeoutMs ?? 300_000, wait).catch((err: unknown) => {
            // Waiting for every sink, one that is down fails the check of the others: say how not to.
            if (options.sink === undefined && m.sources.size > 1 && isHeadstartError(err, 'LINK_TIMEOUT')) {
              throw new HeadstartError('LINK_TIMEOUT', `${err.message} (verify --sink NAME waits for the compared replica's sink only; here ${peer} is one of ${[...m.sources.keys()].join(', ')})`, { cause: err });
            }
            throw err;
          }),
        ),
      );
      hold.waiting.signal.throwIfAborted();
      const hashes = await hashPoint(m.volume, point.n);
      hold.n = point.n;
      this.armVerifyExpiry(name, m, hold);
      return { volume: name, n: point.n, size: m.volume.size, rangeBytes: VERIFY_RANGE_BYTES, hashes };
    } catch (err) {
      // Not a later verification's hold: this one may have been ended (and another begun) meanwhile.
      if (m.verifyHold === hold) await this.endVerify(name);
      throw err;
    } finally {
      options.signal?.removeEventListener('abort', callerGone);
    }
  }

  async exportImage(name: string, out: string, options: { overwrite?: boolean } = {}): Promise<ExportedImage> {
    const [image] = await this.exportUnit([this.get(name)], [out], options.overwrite === true);
    return image;
  }

  async exportGroup(name: string, dir: string, options: { overwrite?: boolean } = {}): Promise<{ group: string; scheduledAt: number; volumes: ExportedImage[] }> {
    const m = this.get(name);
    const group = m.config.group;
    if (group === undefined) throw new HeadstartError('CONFIG_INVALID', `volume ${name} is in no consistency group: export it alone (without --group)`);
    const unit = this.groupOf(m);
    const volumes = await this.exportUnit(unit, unit.map((x) => join(dir, `${x.config.name}.raw`)), options.overwrite === true);
    return { group, scheduledAt: volumes[0].scheduledAt, volumes };
  }

  /**
   * Writes one point of each volume of `unit` (one volume, or a consistency group) to its
   * image in `outs`. Primaries: a fresh point of them all at one cut, each kept readable by
   * a temporary sink while it is copied, so writes go on. Replicas: the point they hold;
   * they take no stream while they are copied (their source retries; the node's other
   * volumes go on replicating), and a group's members must hold the same point.
   */
  private async exportUnit(unit: readonly Managed[], outs: readonly string[], overwrite: boolean): Promise<ExportedImage[]> {
    if (new Set(unit.map((x) => x.volume.readOnly)).size > 1) {
      throw new HeadstartError('NODE_GROUP_TORN', `the volumes of group ${unit[0].config.group} are not in one role here (${unit.map((x) => `${x.config.name} ${x.volume.readOnly ? 'replica' : 'primary'}`).join(', ')}): promote or demote the group first`);
    }
    // Every image's name is checked before any is written: none of a group's is left alone.
    if (!overwrite) {
      for (const out of outs) if (await stat(out).then(() => true, () => false)) throw new HeadstartError('EXPORT_EXISTS', `${out} exists; choose another path or pass --force`);
    }
    // And where they go, before a primary closes a point for them (a missing or unwritable
    // directory closed a point that nothing was then written from).
    for (const out of outs) {
      await onOutput(out, 'create', access(dirname(out), fsConstants.W_OK).then(() => stat(dirname(out))).then((st) => {
        if (!st.isDirectory()) throw Object.assign(new Error(`ENOTDIR: not a directory, ${dirname(out)}`), { code: 'ENOTDIR' });
      }));
    }
    const images: ExportedImage[] = [];
    if (!unit[0].volume.readOnly) {
      const hold = `${EXPORT_HOLD_PREFIX}${process.pid}-${Date.now()}`;
      const held: Managed[] = [];
      try {
        // Each volume's hold first, so no write after the close can miss its copy.
        for (const x of unit) {
          await this.holdFromLatest(x, hold);
          held.push(x);
        }
        const points = await this.closePoints(this.closeUnit(unit[0]), Date.now());
        // A member whose close failed (closePoints logged it) has no point of this cut.
        const missing = unit.filter((x) => !points.has(x));
        if (missing.length > 0) throw new HeadstartError('NODE_GROUP_TORN', `the point for the export could not be closed on ${missing.map((x) => x.config.name).join(', ')} (see the node log); nothing was written`);
        // Every image is written before any is put in place: a failure leaves none of this point.
        await writeImages(unit.map((x, i) => ({ v: x.volume, out: outs[i], read: (first: number, count: number) => x.volume.readBlocksAt(points.get(x)!.n, first, count) })));
        for (const [i, x] of unit.entries()) {
          const point = points.get(x)!;
          images.push({ volume: x.config.name, n: point.n, scheduledAt: point.scheduledAt, bytes: x.volume.size, path: outs[i] });
        }
        return images;
      } finally {
        // Absent when the hold itself could not be added: the error that says why goes on.
        for (const x of held) if (x.volume.sinks().some((s) => s.name === hold)) await x.volume.removeSink(hold);
      }
    }
    for (const x of unit) if (x.volume.committed === null) throw new HeadstartError('SNAPSHOT_UNKNOWN', `replica ${x.config.name} has not committed any point yet`);
    const detached: Managed[] = [];
    try {
      for (const x of unit) {
        // Its last commit could not be finished (a full disk): detach says so and keeps it in service.
        await this.replicaServer?.detach(x.volume.info.id);
        detached.push(x);
      }
      // Detached, a group's commit journaled by only some of its members is dropped (commit-group.ts): they hold one point unless a close on the source failed for one.
      const points = unit.map((x) => ({ volume: x.config.name, n: x.volume.committed!.n, scheduledAt: x.volume.committed!.scheduledAt }));
      if (new Set(points.map((p) => p.scheduledAt)).size > 1) {
        throw new HeadstartError('NODE_GROUP_TORN', `the volumes of group ${unit[0].config.group} do not hold the same point: ${points.map((p) => `${p.volume} at point ${p.n} (${new Date(p.scheduledAt).toISOString()})`).join(', ')}; export them one by one, or after the next point commits`);
      }
      await writeImages(unit.map((x, i) => ({ v: x.volume, out: outs[i], read: (first: number, count: number) => x.volume.read(first * x.volume.blockSize, count * x.volume.blockSize) })));
      for (const [i] of unit.entries()) images.push({ ...points[i], bytes: unit[i].volume.size, path: outs[i] });
      return images;
    } finally {
      for (const x of detached) await this.replicaServer?.attach(this.targetConfig(x));
    }
  }

  /**
   * Closes a fresh point of a primary and keeps it readable under a sink named `hold` until
   * that sink is removed (holdFromLatest).
   */
  private async closeHeld(m: Managed, hold: string): Promise<SnapshotPoint> {
    await this.holdFromLatest(m, hold);
    return this.closePoint(m, Date.now());
  }

  /**
   * Adds a sink named `hold` to a primary, so that the next point it closes stays readable
   * until that sink is removed (added before the close: no write after it can miss the
   * copy). The hold starts from the latest closed point, which is always kept, not from the
   * floor: while a sink takes its full copy the floor is a point before any (-1) or one
   * released. No point yet (a volume without sinks): the hold's own full copy closes the first one.
   */
  private async holdFromLatest(m: Managed, hold: string): Promise<void> {
    const latest = m.volume.latestClosed;
    await m.volume.addSink(hold, latest === null ? {} : { acked: latest.n });
  }

  /** Ends the hold VERIFY_HOLD_MS from now unless renewed (renewVerify) or ended before. */
  private armVerifyExpiry(name: string, m: Managed, hold: NonNullable<Managed['verifyHold']>): void {
    if (hold.expiry !== null) clearTimeout(hold.expiry);
    hold.expiry = setTimeout(() => {
      if (m.verifyHold !== hold) return;
      this.log.warn({ volume: name, n: hold.n }, `a verification's hold on its point was not renewed for ${VERIFY_HOLD_MS / 60_000} min: ended (its comparison, if still running, is void)`);
      void this.endVerify(name).catch(() => {});
    }, VERIFY_HOLD_MS);
  }

  async renewVerify(name: string, n: number): Promise<{ n: number; heldForMs: number }> {
    const m = this.get(name);
    const hold = m.verifyHold;
    if (hold === null || hold.n !== n) {
      throw new HeadstartError(
        'VERIFY_ENDED',
        `the verification of ${name} at point ${n} no longer holds its point (its hold ends ${VERIFY_HOLD_MS / 60_000} min after the last renewal, or the node restarted): newer points may have reached the replica while it was read, so its comparison is void; run it again`,
      );
    }
    this.armVerifyExpiry(name, m, hold);
    return { n, heldForMs: VERIFY_HOLD_MS };
  }

  async endVerify(name: string, n?: number): Promise<boolean> {
    const m = this.get(name);
    const hold = m.verifyHold;
    if (n !== undefined && hold !== null && hold.n !== n) return false;
    m.verifyHold = null;
    if (hold !== null) {
      if (hold.expiry !== null) clearTimeout(hold.expiry);
      hold.waiting.abort(new HeadstartError('VERIFY_ENDED', `the verification of ${name} was ended before the replica held its point`));
    }
    // A node stopping shuts its volumes down next: a write now could reach LMDB after it closed
    // (an uncaught error in lmdb's own callback). The hold left is removed at the next start.
    if (this.stopping) return hold !== null;
    if (m.volume.sinks().some((s) => s.name === VERIFY_SINK)) await m.volume.removeSink(VERIFY_SINK);
    this.scheduleNext(m);
    return hold !== null;
  }

  /**
   * Promotes a replica, or every volume of its consistency group: each is taken out of
   * replication (a journaled commit is finished, or in a group dropped when not every member
   * journaled it: commit-group.ts), and the group is promoted only if all its volumes hold
   * the same point (a group torn by a close that failed on one volume is refused unless
   * `allowTorn`). A failure puts every volume back in service as the replica it still is.
   */
  async promote(name: string, options: { force?: boolean; allowTorn?: boolean } = {}): Promise<PromoteResult> {
    const started = performance.now();
    const first = this.get(name);
    if (!first.volume.readOnly) throw new HeadstartError('NODE_ALREADY_PRIMARY', `volume ${name} is already primary here (epoch ${first.volume.info.epoch})`);
    const unit = this.groupOf(first).filter((x) => x.volume.readOnly);
    for (const m of unit) {
      const from = options.force ? null : (this.replicaServer?.shippingFrom(m.volume.info.id) ?? null);
      if (from !== null) {
        throw new HeadstartError('NODE_PRIMARY_REACHABLE', `the primary of ${m.config.name} is connected and shipping to this node (from ${from}); demote it first, or use --force if its site is gone`);
      }
      const aliveMs = Date.now() - m.primarySeenAt;
      if (!options.force && m.primaryDemotedAt === null && m.primarySeenAt > 0 && aliveMs < PRIMARY_ALIVE_MS) {
        throw new HeadstartError('NODE_PRIMARY_REACHABLE', `the primary of ${m.config.name} was shipping to this node ${Math.round(aliveMs / 1000)} s ago and did not demote (its link dropped, or its node is restarting); wait ${Math.ceil((PRIMARY_ALIVE_MS - aliveMs) / 1000)} s, demote it first, or use --force if its site is gone`);
      }
      // Nothing committed: no point of any primary is here, so the "promoted" data would be
      // whatever the image holds (zeroes, for a replica that never synced). Only on purpose.
      // A primary demoted (by mistake, say) and not written into since holds its own point.
      if (!options.force && m.volume.committed === null && m.volume.demotedPoint === null) {
        throw new HeadstartError('SNAPSHOT_UNKNOWN', `replica ${m.config.name} has not committed any point from a primary yet: promoted, it would hold no data of its primary (zeroes if it never synced); use --force if that is what you want`);
      }
    }
    // End each volume's session (a commit under way finishes first; the node's other volumes
    // keep theirs), then drop what was staged but never committed.
    const detached: Managed[] = [];
    const unexported: Managed[] = [];
    const backInService = async () => {
      for (const m of detached) {
        await this.replicaServer?.attach(this.targetConfig(m)).catch((e: unknown) => this.log.error({ err: e, volume: m.config.name }, 'cannot put the replica back in service'));
      }
      for (const m of unexported) this.nbd?.addExport(m.config.name, m.volume, this.exportOptions(m));
    };
    try {
      for (const m of unit) {
        if (this.nbd && (await this.nbd.removeExport(m.config.name))) unexported.push(m);
        // Its last commit could not be finished (a full disk): still a replica, still exported.
        await this.replicaServer?.detach(m.volume.info.id);
        detached.push(m);
      }
      if (unit.length > 1) {
        const points = unit.map((m) => ({ volume: m.config.name, n: m.volume.committed?.n ?? null, scheduledAt: m.volume.committed?.scheduledAt ?? null }));
        if (new Set(points.map((p) => p.scheduledAt)).size > 1 && !options.allowTorn) {
          const list = points.map((p) => `${p.volume} at ${p.n === null ? 'no point' : `point ${p.n} (${new Date(p.scheduledAt!).toISOString()})`}`).join(', ');
          throw new HeadstartError('NODE_GROUP_TORN', `the volumes of group ${first.config.group} do not hold the same point: ${list}`);
        }
      }
      for (const m of unit) m.volume.checkCanChangeRole();
      for (const m of unit) await m.volume.setRole('primary', m.volume.info.epoch + 1);
    } catch (err) {
      // Not promoted (no room for the record, a torn group): back in service as the replicas they still are.
      const promoted = unit.filter((m) => !m.volume.readOnly);
      if (promoted.length > 0) this.log.error({ err, volumes: promoted.map((m) => m.config.name) }, 'only part of the group was promoted');
      await backInService();
      throw err;
    }
    const volumes: { name: string; epoch: number; point: number | null }[] = [];
    for (const m of unit) {
      const vname = m.config.name;
      await rm(this.stagingDir(vname), { recursive: true, force: true });
      // Still a target, so a stream from the old primary is refused as fenced, never "unknown".
      await this.replicaServer?.attach(this.targetConfig(m));
      this.nbd?.addExport(vname, m.volume, this.exportOptions(m));
      m.policy = this.makePolicy(m.config, m.volume);
      await this.startPrimary(m);
      volumes.push({ name: vname, epoch: m.volume.info.epoch, point: m.volume.latestClosed?.n ?? null });
    }
    this.levelSchedules('roles');
    const tookMs = performance.now() - started;
    for (const v of volumes) {
      this.log.warn({ volume: v.name, epoch: v.epoch, point: v.point, tookMs, group: first.config.group }, 'volume promoted to primary');
      this.emit({ type: 'promoted', time: Date.now(), volume: v.name, epoch: v.epoch });
    }
    const mine = volumes.find((v) => v.name === name)!;
    return { epoch: mine.epoch, point: mine.point, tookMs, volumes };
  }

  /** Demotes a primary, or every volume of its consistency group. */
  async demote(name: string): Promise<{ epoch: number; point: number | null; volumes: { name: string; epoch: number; point: number | null }[] }> {
    const first = this.get(name);
    if (first.volume.readOnly) throw new HeadstartError('NODE_ALREADY_REPLICA', `volume ${name} is already a replica here`);
    const unit = this.groupOf(first).filter((x) => !x.volume.readOnly);
    for (const m of unit) {
      if (m.timer) clearTimeout(m.timer);
      m.timer = null;
      m.nextCloseAt = null;
    }
    // No writes from here on, then a last point if anything was written since the latest:
    // each volume's image then is exactly that point (Volume.demotedPoint), so a demote on
    // the wrong site can be undone by promoting it back, at that point. One cut for the group.
    for (const m of unit) {
      if (m.verifyHold !== null) await this.endVerify(m.config.name);
      this.nbd && (await this.nbd.removeExport(m.config.name));
    }
    if (unit.some((m) => m.volume.writtenSinceLatest)) {
      await this.closePoints(unit, Date.now()).catch((err: unknown) =>
        this.log.warn({ err, volume: name, group: first.config.group }, 'could not close a last point before the demotion (its writes since the latest are in its image, which is then no point: promoting it back needs --force)'),
      );
    }
    const volumes: { name: string; epoch: number; point: number | null }[] = [];
    for (const m of unit) {
      const vname = m.config.name;
      if (m.timer) clearTimeout(m.timer); // endVerify and the last close re-armed the group's schedule
      m.timer = null;
      await Promise.all([...m.sources.values()].map((s) => s.stop()));
      m.sources.clear();
      await m.archiver?.stop();
      m.archiver = null;
      await this.saveLearnt(m, true);
      // The epoch stays: the new primary's is higher, and its links are accepted; ours never
      // ship again until promoted. Our writes since the last common point are rolled back by
      // the checksum comparison the new primary starts with.
      const epoch = m.volume.info.epoch;
      await this.replicaServer?.detach(m.volume.info.id);
      await m.volume.setRole('replica', epoch);
      this.nbd?.addExport(vname, m.volume, this.exportOptions(m));
      await this.replicaServer?.attach(this.targetConfig(m));
      const point = m.volume.demotedPoint?.n ?? null;
      this.log.warn({ volume: vname, epoch, point, group: m.config.group }, 'volume demoted to replica');
      this.emit({ type: 'demoted', time: Date.now(), volume: vname, epoch });
      volumes.push({ name: vname, epoch, point });
      m.levelOffsetMs = null;
      m.schedule = m.config.schedule === undefined ? null : scheduleFrom(m.config.schedule);
    }
    this.levelSchedules('roles');
    const mine = volumes.find((v) => v.name === name)!;
    return { epoch: mine.epoch, point: mine.point, volumes };
  }

  // ------------------------------------------------------------------ status

  status(): NodeStatus {
    const now = Date.now();
    const volumes: VolumeView[] = [...this.managed.values()].map((m) => {
      const v = m.volume;
      const open = v.readOnly ? null : v.openSnapshot;
      const skew = m.sourceClock !== null && Math.abs(m.sourceClock.aheadMs) >= CLOCK_SKEW_MS ? Math.round(m.sourceClock.aheadMs) : null;
      const sinks: SinkView[] = [...m.sources.values()].map((link) => {
        const s = link.status();
        const lastAck = [...m.history].reverse().find((h) => h.acks[s.name] !== undefined);
        const counters = link.stats();
        return {
          ...s,
          payloadBytesSent: counters.payloadBytesSent,
          wireBytesOut: counters.wireBytesOut,
          socketBytesOut: counters.socketBytesOut,
          rpoAgeMs: s.ackedScheduledAt === null ? null : now - s.ackedScheduledAt,
          lastLagMs: lastAck?.acks[s.name]?.lagMs ?? null,
          lastCommitMs: lastAck?.acks[s.name]?.commitMs ?? null,
          // A sink that is down falls behind for that reason, which its state says: "writes
          // outrun the link" would send the operator after the wrong cause.
          notConverging: s.state === 'connected' && notConverging(m.history, s.name, now),
        };
      });
      if (m.archiver !== null) {
        // The archive is one more sink in status: the CLI, the dashboard feed and metrics show it as such.
        const { busy: _busy, ...view } = m.archiver.view();
        const lastAck = [...m.history].reverse().find((h) => h.acks[ARCHIVE_SINK] !== undefined);
        sinks.push({ ...view, rpoAgeMs: view.ackedScheduledAt === null ? null : now - view.ackedScheduledAt, lastLagMs: lastAck?.acks[ARCHIVE_SINK]?.lagMs ?? null, lastCommitMs: null, notConverging: view.state === 'connected' && notConverging(m.history, ARCHIVE_SINK, now) });
      }
      return {
        name: m.config.name,
        group: m.config.group ?? null,
        groupWait: v.readOnly ? (this.replicaServer?.targets.get(v.info.id)?.groupWait() ?? null) : null,
        betweenPoints: v.applyingPoint,
        role: v.info.role,
        epoch: v.info.epoch,
        size: v.size,
        blockSize: v.blockSize,
        openSnapshot: open,
        latestClosed: v.readOnly ? null : (v.latestClosed?.n ?? null),
        nextCloseAt: m.nextCloseAt,
        levelOffsetMs: v.readOnly ? null : m.levelOffsetMs,
        committed: v.committed === null ? null : { n: v.committed.n, scheduledAt: v.committed.scheduledAt },
        primaryLink: v.readOnly
          ? { connected: this.replicaServer?.shippingFrom(v.info.id) ?? null, lastSeenAt: m.primarySeenAt === 0 ? null : m.primarySeenAt, demotedAt: m.primaryDemotedAt, clockAheadMs: skew, clockOf: m.sourceClock?.source ?? null }
          : null,
        rpoTargetMs: m.config.rpoTarget ?? null,
        dirtyBytes: open === null ? 0 : v.dirtyBlocks(open).size * v.blockSize,
        policy: m.policy.name,
        planner: m.policy.status?.(now) ?? null,
        sinks,
        history: m.history.slice(-50),
        lastVerify: m.lastVerify,
        verifyDeferred: m.verifyDeferred,
        closeFailing: m.closeFailing,
        disk: v.room(),
      };
    });
    const addr = (host: string | undefined, port: number | null) => (port === null || host === undefined ? null : `${host}:${port}`);
    return { node: this.config.node.name, time: now, listen: { nbd: addr(this.config.listen.nbd?.host, this.nbdPort), peers: addr(this.config.listen.peers?.host, this.peersPort) }, linkCaps: this.linkCaps(), volumes };
  }

  subscribe(listener: (e: FeedEvent | NodeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: FeedEvent | NodeEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.log.error({ err }, 'status listener failed');
      }
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const m of this.managed.values()) {
      if (m.timer) clearTimeout(m.timer);
      if (m.verifyHold) {
        if (m.verifyHold.expiry !== null) clearTimeout(m.verifyHold.expiry);
        m.verifyHold.waiting.abort(new HeadstartError('REPL_STOPPED', `node ${this.config.node.name} is stopping`));
      }
      if (m.verifyTimer) clearTimeout(m.verifyTimer);
    }
    await Promise.allSettled([...this.managed.values()].flatMap((m) => [...m.sources.values()].map((s) => s.stop('shutdown'))));
    await Promise.allSettled([...this.managed.values()].map((m) => m.archiver?.stop()));
    await this.nbd?.stop().catch((err) => this.log.error({ err }, 'stopping NBD server'));
    await this.replicaServer?.close().catch((err) => this.log.error({ err }, 'stopping replica server'));
    for (const m of this.managed.values()) {
      if (!m.volume.readOnly) await this.saveLearnt(m, true);
      m.policy.dispose?.();
      await m.volume.shutdown().catch((err) => this.log.error({ err, volume: m.config.name }, 'shutting volume down'));
    }
    for (const r of this.recorders) await r.close().catch((err) => this.log.error({ err }, 'closing a trace recorder'));
    for (const c of [this.nodeCap, ...this.peerCaps.values()]) c.stop();
    this.listeners.clear();
  }
}
