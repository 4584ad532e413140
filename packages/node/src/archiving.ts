/**
 * DEV DOCS — the archive sink of one primary volume (DESIGN.md "The archive").
 *
 * The archive is one more sink on the volume, named `archive`: the volume keeps every point
 * it has not acknowledged, exactly as for a replica. One worker per volume, never more than
 * one run at a time, runs `catchUp` (a full copy of the sink's baseline the first time, then
 * every closed point in order, each acknowledged once its manifest is stored) and then
 * retention pruning, which never deletes an object a kept point needs (for a consistency
 * group, planned over the group's volumes, so that the times kept are kept in all).
 *
 * When it runs: after every close (`kick`), or with `every` at most that often (points
 * closed meanwhile go up together: each is still archived, as a delta over the one before,
 * and retention thins them). Replication never waits for it.
 *
 * A failing store (down, denied, full): the run stops, the error is logged and shown as the
 * sink's lastError, and the worker tries again with exponential backoff (1 s .. 5 min). The
 * volume keeps the unarchived points meanwhile, so nothing is lost, and the sink's RPO age
 * (now - scheduled time of the newest archived point) grows in status and metrics.
 */
import { isHeadstartError } from '@headstart/errors';
import { DEFAULT_SINK_NAME, createArchiveSink, listPoints, openStore, prune, type ArchiveSink, type ObjectStore } from '@headstart/archive';
import type { SinkStatus } from '@headstart/protocol';
import type { Volume } from '@headstart/volume';
import type { VolumeConfig } from './config';
import type { Logger } from './logger';
import { MAX_TIMER_MS } from './timers';

export const ARCHIVE_SINK = DEFAULT_SINK_NAME;

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 5 * 60_000;

export type ArchiveConfig = NonNullable<VolumeConfig['archive']>;

export interface ArchivedEvent {
  readonly n: number;
  readonly scheduledAt: number;
  readonly uploadedBytes: number;
  readonly changedBytes: number;
}

/** A replication link's status (SinkStatus), so status, metrics and the dashboard read it like any sink. */
export interface ArchiveView extends SinkStatus {
  /**
   * 'connecting' before the first run, 'connected' while the store answers, 'error' while
   * failing (retrying with backoff), 'disconnected' once stopped.
   */
  readonly state: 'connecting' | 'connected' | 'error' | 'disconnected';
  /** A run is under way. */
  readonly busy: boolean;
  readonly payloadBytesSent: number;
  readonly wireBytesOut: number;
  /** What went to the store (the same bytes: objects are not compressed further). */
  readonly socketBytesOut: number;
}

export interface Archiver {
  /** A point closed: catch up now (or at the next `every` slot). */
  kick(): void;
  view(): ArchiveView;
  stop(): Promise<void>;
}

/**
 * Starts the archive sink of a primary volume. Call it before the volume's schedule can
 * close a point: the sink is added here, first, so the volume keeps points for the archive
 * even while the store is unreachable, and so adding it never races a close (a sink added
 * while a point is closing could pick the previous point as its baseline after a write of
 * the closing point overwrote it without a preserved copy). `group`: the other volumes of
 * its consistency group (configured with the same archive), pruned with it to common times.
 */
export async function startArchiver(volume: Volume, config: ArchiveConfig, log: Logger, onArchived: (e: ArchivedEvent) => void, group: readonly string[] = []): Promise<Archiver> {
  const name = volume.info.id;
  if (!volume.sinks().some((s) => s.name === ARCHIVE_SINK)) await volume.addSink(ARCHIVE_SINK);
  const abort = new AbortController();
  let store: ObjectStore | null = null;
  let sink: ArchiveSink | null = null;
  let running: Promise<void> | null = null;
  let again = false;
  let timer: NodeJS.Timeout | null = null;
  let failures = 0;
  let lastRunAt = 0;
  let state: ArchiveView['state'] = 'connecting';
  let lastError: string | null = null;
  let ackedScheduledAt: number | null = volume.snapshots().find((p) => p.n === acked())?.scheduledAt ?? null;
  let uploaded = 0;
  let throughput = 0;

  function acked(): number | null {
    return volume.sinks().find((s) => s.name === ARCHIVE_SINK)?.acked ?? null;
  }

  function later(ms: number): void {
    if (timer !== null || abort.signal.aborted) return;
    // kick() works out the wait again: a far-off one (archive.every of weeks) takes steps setTimeout can hold.
    timer = setTimeout(() => {
      timer = null;
      kick();
    }, Math.min(ms, MAX_TIMER_MS));
    timer.unref?.();
  }

  function kick(): void {
    if (abort.signal.aborted) return;
    if (running !== null) {
      again = true; // the run under way picks the new point up when it ends
      return;
    }
    if (failures > 0 && timer !== null) return; // backing off: the retry timer will run it
    const wait = config.every === undefined ? 0 : lastRunAt + config.every - Date.now();
    if (wait > 0) return later(wait);
    running = run().finally(() => {
      running = null;
      if (again && failures === 0) {
        again = false;
        kick();
      }
    });
  }

  async function run(): Promise<void> {
    lastRunAt = Date.now();
    const started = performance.now();
    let bytes = 0;
    const scheduled = new Map(volume.snapshots().map((p) => [p.n, p.scheduledAt]));
    try {
      store ??= await openStore(config.store);
      sink ??= await createArchiveSink({ store, source: volume, volumeId: name, concurrency: config.concurrency, signal: abort.signal });
      const results = await sink.catchUp(volume, ARCHIVE_SINK);
      for (const r of results) {
        bytes += r.uploadedBytes;
        if (r.repaired > 0) log.warn({ volume: name, n: r.n, chunks: r.repaired }, 'archive objects that older points need are missing from the store: this point stores those chunks whole (it restores); run headstart archive verify for the older points');
        const scheduledAt = scheduled.get(r.n) ?? ackedScheduledAt ?? Date.now();
        ackedScheduledAt = scheduledAt;
        onArchived({ n: r.n, scheduledAt, uploadedBytes: r.uploadedBytes, changedBytes: r.changedBytes });
      }
      if (ackedScheduledAt === null && acked() !== null) {
        // Archived by an earlier run whose point the volume has since released: the manifest knows when it was scheduled.
        ackedScheduledAt = (await listPoints({ store, volumeId: name })).find((p) => p.n === acked())?.scheduledAt ?? null;
      }
      if (results.length > 0 && config.retention !== undefined) {
        const report = await prune({ store, volumeId: name, policy: config.retention, group, concurrency: config.concurrency });
        if (report.damaged.length > 0) log.warn({ volume: name, damaged: report.damaged }, 'archive retention found damaged points: kept, not counted; run headstart archive verify');
        if (report.deletedPoints.length > 0) log.info({ volume: name, deletedPoints: report.deletedPoints, freedBytes: report.freedBytes }, 'archive retention pruned points');
      }
      uploaded += bytes;
      const secs = (performance.now() - started) / 1000;
      if (bytes > 0 && secs > 0) throughput = bytes / secs;
      if (failures > 0) log.info({ volume: name, after: failures }, 'archive store reachable again');
      failures = 0;
      lastError = null;
      state = 'connected';
    } catch (err) {
      uploaded += bytes;
      // Points this run did store before failing are acknowledged on the volume: the RPO age counts from them.
      const a = acked();
      if (a !== null && scheduled.has(a)) ackedScheduledAt = scheduled.get(a)!;
      if (abort.signal.aborted) return;
      failures++;
      lastError = isHeadstartError(err) ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err);
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(failures - 1, 20));
      state = 'error';
      log.warn({ volume: name, err: lastError, failures, retryInMs: delay }, 'archiving failed; the volume keeps the points until the archive has them');
      again = false;
      later(delay);
    }
  }

  kick(); // points closed while the node was down, or the first full copy

  return {
    kick,
    view: () => ({
      name: ARCHIVE_SINK,
      state: abort.signal.aborted ? 'disconnected' : state,
      busy: running !== null,
      acked: acked(),
      ackedScheduledAt,
      throughput,
      inFlightBytes: 0,
      rateLimit: null,
      lastError,
      staging: null, // the archive uploads whole points; there is no staged set to show
      payloadBytesSent: uploaded,
      wireBytesOut: uploaded,
      socketBytesOut: uploaded,
    }),
    async stop() {
      abort.abort();
      if (timer !== null) clearTimeout(timer);
      timer = null;
      await running?.catch(() => undefined);
    },
  };
}
