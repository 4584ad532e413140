/**
 * One replica volume and its staging store: what a replica session writes into, and the
 * crash-safe commit.
 *
 * Commit of point n (only after CLOSE(n) arrived and the staged set's count and digest
 * equal the source's):
 *   1. sync staging, then write the redo journal ("committing n", with the point) durably;
 *   2. apply every staged block of n to the image (volume.applyBlocks, raw and idempotent);
 *   3. volume.setCommitted(point): fsyncs the image, then records n durably;
 *   4. one LMDB transaction drops the journal and the staged blocks of n.
 * A crash before 1 leaves the volume at n-1 with n staged; after 1 and before 4, opening
 * the target replays 2-4 from the journal (applying the same bytes again is harmless), so
 * the image is at all times either exactly n-1 (nothing written yet) or being brought to n
 * by a redo that cannot be skipped. Only then is ACK(n) sent.
 *
 * A volume of a consistency group (commit-group.ts) waits, before 1, until the group's other
 * volumes have accepted CLOSE for the same scheduled point, and between 1 and 2 until their
 * journals for it are durable too; its journal is redone at open only if theirs were, and
 * dropped otherwise (no member has written that point then).
 */
import { HeadstartError, isHeadstartError } from '@headstart/errors';
import { MAX_RESUME_ENTRIES, MAX_RESUME_STAGED, rangeHash, type ResumeMsg, type StagedSet } from '@headstart/protocol';
import { alignedBuffer, type SnapshotPoint, type Volume } from '@headstart/volume';
import type { CommitGroup, GroupMember, GroupWait } from './commit-group';
import { Staging } from './staging';

/** Bytes per applyBlocks call during a commit. */
const APPLY_RUN_BYTES = 2 * 1024 * 1024;
/** Runs being copied from staging to the image at once during a commit (memory: x APPLY_RUN_BYTES). */
const APPLY_PARALLEL = 4;
/** The apply workers' buffers, page-aligned for direct writes (alignedBuffer), shared by every commit of the process. */
const applyBuffers: Buffer[] = [];

/**
 * How often (ms) a replica retries, from its journal, a commit that stopped half-way (a full
 * disk): its source sends the point again when it reconnects, but a source whose site is
 * gone, the case a replica exists for, never will, and the export's reads would wait on it
 * for good. A retry that still fails costs a journal read and one failed write.
 */
export const REDO_RETRY_MS = 5_000;

/** 'ready': about to write the journal (a group member: every other member accepted the point). */
export type CommitPhase = 'ready' | 'journaled' | 'applied' | 'recorded' | 'finished';

export interface ReplicaVolumeConfig {
  readonly volume: Volume;
  /** The staging LMDB directory; by convention next to the volume directory. */
  readonly stagingDir: string;
  /** The image may already hold a copy of the source (restored image): initial sync compares checksums. */
  readonly haveCopy?: boolean;
  /** The consistency group this volume commits with (commit-group.ts), by name; the same on the source's site. */
  readonly group?: string;
  /** Observability (and fault-injection in tests): awaited after each commit phase. */
  readonly onCommitPhase?: (phase: CommitPhase, n: number) => void | Promise<void>;
  /** A commit stopped half-way was retried from its journal (REDO_RETRY_MS): `err` null when it is finished. */
  readonly onRedo?: (n: number, err: unknown) => void;
  /** Overrides REDO_RETRY_MS (tests). */
  readonly redoRetryMs?: number;
}

export class ReplicaTarget implements GroupMember {
  private commitChain: Promise<void> = Promise.resolve();
  /** Highest point whose CLOSE was accepted (commit queued or done), this process. */
  acceptedUpTo: number | null = null;
  /** Session currently feeding this target (one at a time). */
  active: { close(): Promise<void> } | null = null;
  /** Scheduled time of the point whose durable journal staging holds (GroupMember). */
  preparedAt: number | null;
  /** Scheduled times of the accepted points whose commit has not ended (GroupMember). */
  readonly pendingAt = new Set<number>();
  private redoTimer: NodeJS.Timeout | null = null;
  private closing = false;

  private constructor(readonly config: ReplicaVolumeConfig, readonly staging: Staging, private readonly group: CommitGroup | null) {
    this.preparedAt = staging.journal()?.point.scheduledAt ?? null;
  }

  get volume(): Volume {
    return this.config.volume;
  }
  get id(): string {
    return this.volume.info.id;
  }

  /**
   * Opens the target. A member of a group joins it but is not recovered yet: its journal's
   * fate depends on the other members' state, so the caller opens them all, then calls
   * recover() on each.
   */
  static async open(config: ReplicaVolumeConfig, group: CommitGroup | null = null): Promise<ReplicaTarget> {
    const t = new ReplicaTarget(config, await Staging.open(config.stagingDir, config.volume.blockSize), group);
    if (group === null) await t.recoverOrDefer();
    else group.join(t.id, t);
    return t;
  }

  /**
   * recover(), except that a failure worth retrying (a disk still full) leaves the target
   * open with its journal, instead of failing the whole replica server (and with it every
   * other volume of the node): the commit is finished by a retry (REDO_RETRY_MS), or by the
   * normal path if the source sends its CLOSE again first, and meanwhile reads of the volume
   * wait (the image may be between two points: volume.ts, beginApply). Returns the failure,
   * or null.
   */
  async recoverOrDefer(): Promise<unknown> {
    try {
      await this.recover();
      return null;
    } catch (err) {
      if (!isHeadstartError(err) || !err.retryable) throw err;
      this.recoveryFailed = err;
      this.scheduleRedo();
      return err;
    }
  }

  /** What the last recovery at open failed with, if it did (see recoverOrDefer); null once a commit succeeds. */
  recoveryFailed: unknown = null;

  /**
   * Finishes a commit interrupted by a crash or a failure (or, in a group whose other
   * members did not all journal that point, drops its journal: see commit-group.ts), and
   * drops staging of points already committed.
   */
  async recover(): Promise<void> {
    const j = this.staging.journal();
    if (j) {
      const c = this.volume.committed;
      if (c !== null && c.n >= j.point.n) await this.staging.finish(j.point.n);
      // A point whose image writes have begun (a retry after they stopped half-way) is
      // finished whatever the group says: dropping its journal would leave a torn image.
      else if (this.group === null || this.volume.applyingPoint?.n === j.point.n || this.group.decided(this, j.point.scheduledAt)) {
        await this.apply(j.point);
        await this.staging.finish(j.point.n);
      } else await this.staging.dropJournal();
      this.preparedAt = null;
      this.group?.changed();
    }
    await this.dropCommitted();
  }

  /** What this volume's commit waits for in its group, or null. */
  groupWait(): GroupWait | null {
    return this.group?.waiting(this.id) ?? null;
  }

  /**
   * Out of service (detach, close): a commit waiting for its group fails (REPL_STOPPED) and
   * the group stops counting this volume's queued points; then waits for the commits to end.
   */
  async quiesce(): Promise<void> {
    this.stopRedo();
    this.pendingAt.clear();
    this.group?.leave(this.id);
    await this.commitChain.catch(() => undefined);
  }

  /** Back in service after a quiesce (a detach that could not finish the stopped commit). */
  resumeService(): void {
    this.closing = false;
    if (this.staging.journal() !== null && this.volume.applyingPoint?.stalled) this.scheduleRedo();
  }

  /** Out of service: no more retries of a stopped commit (detach and promotion redo it themselves). */
  private stopRedo(): void {
    this.closing = true;
    if (this.redoTimer !== null) clearTimeout(this.redoTimer);
    this.redoTimer = null;
  }

  private async dropCommitted(): Promise<void> {
    const c = this.volume.committed?.n ?? null;
    if (c !== null) await this.staging.discard(this.staging.snapshots().filter((n) => n <= c));
  }

  /** What the replica tells a source after the handshake (waits for queued commits first). */
  async resume(): Promise<Omit<ResumeMsg, 'proof'>> {
    await this.commitChain.catch(() => undefined);
    this.commitChain = Promise.resolve(); // a new session starts over from what is committed
    // A commit stopped half-way is finished first (or, in a group that did not decide it, its
    // journal dropped: recover). Its source need not send that point again: a sink that was
    // away catches up past it (BEGIN with `from`), and the blocks of the point it goes to
    // would wait for ever behind that journal (staging holds writes while one is pending).
    // If it still fails (a full disk), so does this session, and the source retries. In the
    // commit chain: a session that replaces this one (its source timed out waiting for a
    // large point's redo) waits for that redo, never runs a second one beside it.
    if (this.staging.journal() !== null) {
      const redo = this.commitChain.then(() => (this.staging.journal() === null ? undefined : this.recover()));
      this.commitChain = redo;
      try {
        await redo;
        this.recoveryFailed = null;
      } catch (err) {
        this.recoveryFailed = err;
        throw err;
      }
    }
    await this.dropCommitted();
    this.acceptedUpTo = this.volume.committed?.n ?? null;
    // RESUME lists at most MAX_RESUME_STAGED points: the next ones to commit. Any beyond
    // (held by a replica from before sources bounded how far ahead they ship) are dropped
    // and sent again; listed, they would make the source refuse every RESUME for good.
    // A point whose staging write failed part-way is dropped first (see StagedSetInfo.broken).
    await this.staging.settled();
    await this.staging.discard(this.staging.snapshots().filter((n) => this.staging.staged(n)!.broken));
    const points = this.staging.snapshots().sort((a, b) => a - b);
    await this.staging.discard(points.slice(MAX_RESUME_STAGED));
    // And at most MAX_RESUME_ENTRIES blocks in all, the earliest points first: a source
    // refuses a longer RESUME as malformed, so a replica that had staged more (16 GiB of
    // 4 KiB blocks: any large initial sync) could never resume. What is left out stays
    // staged; the source sends it again and the newer copy replaces it, which is only slower.
    const staged: StagedSet[] = [];
    let room = MAX_RESUME_ENTRIES;
    for (const n of points.slice(0, MAX_RESUME_STAGED)) {
      const entries = await this.staging.entries(n, room);
      room -= entries.length / 16;
      staged.push({ n, entries });
    }
    const c = this.volume.committed;
    return {
      type: 'RESUME',
      epoch: this.volume.info.epoch,
      committed: c === null ? null : { n: c.n, scheduledAt: c.scheduledAt, closedAt: c.closedAt, lastSeq: c.lastSeq },
      haveCopy: c === null && (this.config.haveCopy ?? false),
      staged,
    };
  }

  /**
   * Queues the commit of `point` after the ones before it; resolves when n is committed.
   * A commit that fails fails every commit queued behind it, until the next session starts
   * over (resume): a source pipelines CLOSE(n+1) before ACK(n), and n+1's staged blocks are
   * a delta over n — applied over n-1 they would leave an image equal to no point, recorded
   * as n+1 (an empty n+1, whose CLOSE needs no staging, did exactly that).
   */
  enqueueCommit(point: SnapshotPoint): Promise<void> {
    this.acceptedUpTo = point.n;
    this.pendingAt.add(point.scheduledAt);
    const run = this.commitChain.then(() => this.commit(point));
    this.commitChain = run;
    run.then(
      () => this.pendingAt.delete(point.scheduledAt),
      () => {
        this.pendingAt.clear(); // every commit queued behind it fails too
        if (this.volume.applyingPoint?.stalled) this.scheduleRedo();
      },
    ).finally(() => this.group?.changed());
    this.group?.changed();
    return run;
  }

  private async commit(point: SnapshotPoint): Promise<void> {
    const c = this.volume.committed;
    if (c !== null && c.n >= point.n) return;
    const T = point.scheduledAt;
    await this.group?.closed(this, T);
    await this.config.onCommitPhase?.('ready', point.n);
    await this.staging.writeJournal(point);
    this.preparedAt = T;
    this.group?.changed();
    await this.config.onCommitPhase?.('journaled', point.n);
    await this.group?.prepared(this, T);
    await this.apply(point);
    await this.staging.finish(point.n);
    this.preparedAt = null;
    this.recoveryFailed = null;
    await this.config.onCommitPhase?.('finished', point.n);
  }

  private async apply(point: SnapshotPoint): Promise<void> {
    const plan = this.staging.plan(point.n, APPLY_RUN_BYTES);
    // Readers of the export see n - 1 until n is recorded, then n: never a mix (volume.ts,
    // beginApply). A failure below keeps them held: the image is between two points.
    await this.volume.beginApply(point.n);
    try {
      await this.applyRuns(point, plan);
    } catch (err) {
      this.volume.applyFailed();
      throw err;
    }
    this.volume.endApply();
    await this.config.onCommitPhase?.('recorded', point.n);
  }

  /**
   * apply(): the staged runs into the image, then the point recorded. Several runs are read
   * from staging and written to the image at once: both go through libuv's thread pool and
   * overlap; runs are disjoint, so their order does not matter.
   */
  private async applyRuns(point: SnapshotPoint, plan: readonly { block: number; count: number; zero: boolean }[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      // One per worker, reused: no page faults per run, and direct writes need aligned memory.
      const buf = applyBuffers.pop() ?? alignedBuffer(APPLY_RUN_BYTES);
      try {
        while (next < plan.length) {
          const run = plan[next++];
          const data = await this.staging.read(point.n, run, buf);
          await this.volume.applyBlocks([{ block: run.block, data }]);
        }
      } finally {
        applyBuffers.push(buf);
      }
    };
    await Promise.all(Array.from({ length: APPLY_PARALLEL }, worker));
    await this.config.onCommitPhase?.('applied', point.n);
    await this.volume.setCommitted(point);
  }

  /**
   * A commit stopped half-way (its journal durable, the image between two points): retry it
   * from the journal in REDO_RETRY_MS, after whatever commit is queued, until it is finished
   * (by this or by a session's commit). Its failure fails the commits queued behind it, as a
   * commit's own would (enqueueCommit).
   */
  private scheduleRedo(): void {
    if (this.redoTimer !== null || this.closing) return;
    this.redoTimer = setTimeout(() => {
      this.redoTimer = null;
      const j = this.staging.journal();
      if (this.closing || j === null) return;
      const before = this.commitChain;
      const run = before.catch(() => undefined).then(async () => {
        if (this.closing || this.staging.journal() === null) return false;
        // A session is connected: its source sends the point again (and its resume() would
        // race a redo over staging); look again later, in case it goes away without doing so.
        if (this.active !== null) {
          this.scheduleRedo();
          return false;
        }
        await this.recover();
        return true;
      });
      // Not redone: the chain keeps the outcome it had (a failed commit still fails the ones
      // queued behind it); redone: it goes on; failed: it fails them, as a commit's own would.
      this.commitChain = run.then((done) => (done ? undefined : before));
      this.commitChain.catch(() => undefined); // handled below and by whoever queues behind
      run.then(
        (done) => {
          if (!done) return;
          this.recoveryFailed = null;
          this.config.onRedo?.(j.point.n, null);
        },
        (err: unknown) => {
          this.recoveryFailed = err;
          this.config.onRedo?.(j.point.n, err);
          this.scheduleRedo();
        },
      );
    }, this.config.redoRetryMs ?? REDO_RETRY_MS);
    this.redoTimer.unref();
  }

  /** Hashes of the image over ranges of `rangeBlocks` blocks (initial sync against a held copy). */
  async checksums(first: number, count: number, rangeBlocks: number): Promise<Buffer> {
    const bs = this.volume.blockSize;
    const total = this.volume.size / bs;
    if (first + count > total) throw new HeadstartError('VOLUME_OUT_OF_RANGE', `checksum range ${first}+${count} is outside the replica volume (${total} blocks)`);
    const ranges = Math.ceil(count / rangeBlocks);
    const out = Buffer.allocUnsafe(ranges * 8);
    for (let r = 0; r < ranges; r++) {
      const b = first + r * rangeBlocks;
      const n = Math.min(rangeBlocks, first + count - b);
      out.writeBigUInt64LE(rangeHash(await this.volume.read(b * bs, n * bs)), r * 8);
    }
    return out;
  }

  async close(): Promise<void> {
    this.stopRedo();
    await this.active?.close();
    await this.quiesce();
    await this.staging.close();
  }
}
