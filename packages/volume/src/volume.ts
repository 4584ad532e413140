/**
 * DEV DOCS — the volume: a sparse raw image file plus an LMDB store (records.ts).
 *
 * Every write gets a sequence number `seq` and belongs to the open snapshot. Closing a
 * snapshot marks `lastSeq`; later writes belong to the next one. A write is acknowledged
 * only after its write-log entry is committed in LMDB and its bytes are in the image file.
 *
 * Write path, per request (FIFO locks on block ranges, block-locks.ts, order requests that
 * share blocks):
 *   1. seq and the open snapshot k are assigned synchronously when the request arrives.
 *   2. Under the block locks: if a block is written for the first time in k and closed point
 *      k-1 is still needed by some sink, its current content (= its content as of k-1) is
 *      preserved in LMDB (copy-on-write), in the same transaction as the write-log entry
 *      (the entries of one event-loop turn share one transaction: log-batch.ts).
 *   3. Only after that transaction commits are the new bytes written to the image. So after a
 *      kill -9 at any instant the log never misses a block whose image content changed, and
 *      every closed point can still be read exactly (the dirty set may hold a block whose
 *      write never landed: sending its unchanged content again is harmless).
 *
 * Reading block b "as of" closed point n: the first point k >= n whose successor's dirty set
 * holds b preserved b's content as of k, and b did not change between n and k, so that copy
 * is the answer; if no later point wrote b, the image still holds it.
 *
 * Sinks (replicas, the archive) each acknowledge points; `floor` is the newest point every
 * sink has; the write log, preserved blocks and dirty sets at or below it are dropped.
 * A sink that is away may be set to catch up (rebaseSink): its next delta goes from its
 * acknowledged point straight to a later one, `catchUpTo`, with every block written between
 * as of that point. Then only the dirty sets of the points between are kept for it (block
 * numbers), not their old content: `readFloor`, the oldest point some sink will still read,
 * is what decides copy-on-write, and it is at or above `floor`.
 *
 * The image file is driven through image-file.ts (plain fd, callback pread/pwrite; writes
 * up to 1 MiB inline while the page cache absorbs them, larger ones one at a time and
 * combined when they continue each other) and the block locks are allocation-free when uncontended
 * (block-locks.ts): both sit on every request.
 *
 * Durability: LMDB commits (overlappingSync) survive a process crash at once; `flush()`
 * fsyncs the image, then waits for LMDB's flush, which is what a power loss needs.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, readlink, rm, stat, symlink } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { open as openLmdb, type Database, type RootDatabase } from 'lmdb';
import { guardLmdbCommitRejections } from './lmdb-guard';
import { HeadstartError, fromSystemError, isHeadstartError } from '@headstart/errors';
import { BlockLocks } from './block-locks';
import { BlockSet } from './block-set';
import { ImageFile } from './image-file';
import { LogBatcher, type PreservedCopy } from './log-batch';
import { SpaceGuard } from './space';
import {
  VOLUME_FORMAT_VERSION,
  decodeLogEntry,
  decodeReplicaPoint,
  decodeSink,
  decodeSnapshot,
  decodeVolumeRecord,
  encodeLogEntry,
  encodeReplicaPoint,
  encodeSink,
  encodeSnapshot,
  type VolumeRecord,
  type WriteKind,
} from './records';
import type { BlockDevice, Clock, SinkState, SnapshotPoint, VolumeInfo, VolumeRole, WriteEntry, WriteEvent, WriteOptions } from './types';

/**
 * The first and last block (indexes into `buf`, whose blocks are `bs` bytes) in which bytes
 * [from, from + length) of `buf` are not all zero; null if none is.
 */
function changedSpan(buf: Buffer, from: number, length: number, bs: number): { first: number; last: number } | null {
  const end = from + length;
  if (isZero(buf.subarray(from, end))) return null;
  const nonZero = (i: number) => !isZero(buf.subarray(Math.max(from, i * bs), Math.min(end, (i + 1) * bs)));
  let first = Math.floor(from / bs);
  while (!nonZero(first)) first++;
  let last = Math.floor((end - 1) / bs);
  while (!nonZero(last)) last--;
  return { first, last };
}

export const DEFAULT_BLOCK_SIZE = 4096;
const MIN_BLOCK_SIZE = 512;
const MAX_BLOCK_SIZE = 1 << 20;
/**
 * Zeroing and trimming go through the write path in pieces this large, so a request for a
 * whole TiB never allocates more than this (each piece is read first: see zeroRangeIn).
 * Measured (tmp probe, 256 MiB trimmed over data): 1.1-1.3 GiB/s with 1 MiB pieces,
 * 1.9-2.1 GiB/s with 8 MiB.
 */
const ZERO_PIECE = 8 << 20;
const IMAGE_FILE = 'image.raw';
const META_DIR = 'meta.lmdb';
const LOCK_FILE = 'lock';
/** How long a read of a replica waits for a commit's image writes before it fails (see Volume.applying). */
const READ_HOLD_MS = 60_000;
/**
 * LMDB commits without fsync: a commit is in the file (page cache) when its promise
 * resolves, which survives a crash of this process, and `flush()` syncs explicitly, as NBD's
 * FLUSH asks. Syncing every commit would cap tracked writes at the disk's fsync rate (about
 * 30k/s here, against 180k/s without). What a power loss between flushes can do is handled
 * at open (see `powerLoss`).
 */
const LMDB_OPTIONS = { noSync: true } as const;

export interface CreateVolumeOptions {
  readonly size: number;
  readonly blockSize?: number;
  readonly id?: string;
  readonly name?: string;
  readonly role?: VolumeRole;
  readonly epoch?: number;
  readonly clock?: Clock;
}

export interface OpenVolumeOptions {
  readonly clock?: Clock;
}

const systemClock: Clock = { now: () => Date.now() };

export async function createVolume(dir: string, options: CreateVolumeOptions): Promise<Volume> {
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  checkGeometry(options.size, blockSize);
  await mkdir(dir, { recursive: true });
  if (await exists(join(dir, META_DIR))) throw new HeadstartError('VOLUME_EXISTS', `a volume already exists in ${dir}`);
  const id = options.id ?? randomUUID();
  const clock = options.clock ?? systemClock;
  const record: VolumeRecord = {
    version: VOLUME_FORMAT_VERSION,
    id,
    name: options.name ?? id,
    size: options.size,
    blockSize,
    role: options.role ?? 'primary',
    epoch: options.epoch ?? 1,
    createdAt: Math.round(clock.now()),
    pristine: (options.role ?? 'primary') === 'primary',
  };
  // The image first, the metadata last: a crash in between leaves no half-made volume
  // that opens (openVolume needs the 'volume' record).
  const image = await ImageFile.open(join(dir, IMAGE_FILE), 'w+');
  try {
    await image.truncate(options.size);
    await image.datasync();
  } finally {
    await image.close();
  }
  guardLmdbCommitRejections();
  const db = openLmdb({ path: join(dir, META_DIR), ...LMDB_OPTIONS });
  try {
    await db.transaction(() => {
      db.openDB({ name: 'meta' }).put('volume', { ...record });
      // Snapshot 0: the volume as created (empty, or the imported image).
      if (record.role === 'primary') db.openDB({ name: 'snapshots' }).put(0, encodeSnapshot({ n: 0, scheduledAt: record.createdAt, closedAt: record.createdAt, lastSeq: 0 }));
    });
    await lmdbSync(db);
  } finally {
    await db.close();
  }
  return openVolume(dir, { clock });
}

export async function openVolume(dir: string, options: OpenVolumeOptions = {}): Promise<Volume> {
  if (!(await exists(join(dir, META_DIR)))) throw new HeadstartError('VOLUME_NOT_FOUND', `no volume in ${dir}`);
  await takeDirLock(dir);
  guardLmdbCommitRejections();
  let root: RootDatabase | undefined;
  let image: ImageFile | undefined;
  try {
    root = openLmdb({ path: join(dir, META_DIR), ...LMDB_OPTIONS });
    const meta = root.openDB<unknown, string>({ name: 'meta' });
    const rawRecord = meta.get('volume');
    if (rawRecord === undefined) throw new HeadstartError('VOLUME_CORRUPT', `volume in ${dir} has no identity record`);
    const record = decodeVolumeRecord(rawRecord);
    checkGeometry(record.size, record.blockSize);
    image = await ImageFile.open(join(dir, IMAGE_FILE), 'r+');
    const size = await image.size();
    if (size !== record.size) throw new HeadstartError('VOLUME_CORRUPT', `image file is ${size} bytes, volume says ${record.size}`);
    const volume = new Volume(dir, root, image, record, options.clock ?? systemClock);
    volume.load();
    await volume.startSession();
    return volume;
  } catch (err) {
    await image?.close().catch(() => {});
    await root?.close().catch(() => {});
    await releaseDirLock(dir);
    throw err;
  }
}

type WriteListener = (event: WriteEvent) => void;

export class Volume implements BlockDevice {
  private record: VolumeRecord;
  private readonly meta: Database<unknown, string>;
  private readonly log: Database<unknown, number>;
  private readonly snapshotDb: Database<unknown, number>;
  private readonly preserved: Database<Buffer, [number, number]>;
  private readonly sinkDb: Database<unknown, string>;
  private readonly locks = new BlockLocks();
  private readonly logBatch: LogBatcher;
  private readonly space: SpaceGuard;
  private readonly listeners = new Set<WriteListener>();

  /** Closed points still kept, ascending by n. */
  private closed: SnapshotPoint[] = [];
  /** Dirty sets of the kept closed points above the floor and of the open point. */
  private readonly dirty = new Map<number, BlockSet>();
  private sinkStates = new Map<string, SinkState>();
  private replicaPoint: SnapshotPoint | null = null;
  /**
   * A demoted primary's own latest point, which its image holds exactly (nothing was written
   * after it), until it begins to apply another primary's point: promoted back, it goes on
   * from it (a demote on the wrong site is undone without --force). Null otherwise.
   */
  private demoted: SnapshotPoint | null = null;
  /** The epoch of the primary whose point the replica committed last (null: not recorded, older volumes). */
  private replicaPointEpoch: number | null = null;
  private osCrashed = false;
  private seq = 0;
  private openN = 1;
  private shut = false;
  private pendingTrim: Promise<void> = Promise.resolve();
  /** The close in progress (resolved when none): closes publish their points in order. */
  private closing: Promise<void> = Promise.resolve();

  /** @internal use createVolume / openVolume */
  constructor(
    readonly dir: string,
    private readonly root: RootDatabase,
    private readonly image: ImageFile,
    record: VolumeRecord,
    private readonly clock: Clock,
  ) {
    this.record = record;
    this.meta = root.openDB({ name: 'meta' });
    this.log = root.openDB({ name: 'log' });
    this.snapshotDb = root.openDB({ name: 'snapshots' });
    this.preserved = root.openDB({ name: 'preserved', encoding: 'binary' });
    this.sinkDb = root.openDB({ name: 'sinks' });
    this.space = new SpaceGuard(dir);
    this.logBatch = new LogBatcher(root, this.log, this.preserved, this.space);
  }

  // ---------------------------------------------------------------- identity

  get info(): VolumeInfo {
    const { id, name, size, blockSize, role, epoch } = this.record;
    return { id, name, size, blockSize, role, epoch };
  }
  get size(): number {
    return this.record.size;
  }
  get blockSize(): number {
    return this.record.blockSize;
  }
  get blockCount(): number {
    return this.record.size / this.record.blockSize;
  }
  get readOnly(): boolean {
    return this.record.role === 'replica';
  }

  // ---------------------------------------------------------------- loading

  /** @internal rebuilds the in-memory state (points, sinks, dirty sets) from LMDB. */
  load(): void {
    for (const { key, value } of this.sinkDb.getRange()) {
      const s = decodeSink(key, value);
      this.sinkStates.set(s.name, s);
    }
    const rawReplica = this.meta.get('replica');
    this.replicaPoint = rawReplica === undefined ? null : decodeReplicaPoint(rawReplica);
    const rawOwn = this.meta.get('ownPoint');
    this.demoted = rawOwn === undefined ? null : decodeReplicaPoint(rawOwn);
    const rawEpoch = this.meta.get('replicaEpoch');
    this.replicaPointEpoch = typeof rawEpoch === 'number' && Number.isSafeInteger(rawEpoch) ? rawEpoch : null;
    this.closed = [];
    for (const { key, value } of this.snapshotDb.getRange()) this.closed.push(decodeSnapshot(key, value));
    const latest = this.closed.at(-1);
    this.openN = latest === undefined ? (this.replicaPoint?.n ?? 0) + 1 : latest.n + 1;
    this.seq = latest?.lastSeq ?? 0;
    for (const p of this.closed) if (p.n > this.floor) this.dirty.set(p.n, new BlockSet());
    this.dirty.set(this.openN, new BlockSet());
    // Rebuild the dirty sets from the write log (entries up to the floor's lastSeq are
    // leftovers of an interrupted trim).
    let boundary = 0;
    const floor = this.floor;
    const above = this.closed.filter((p) => p.n > floor);
    const floorSeq = this.closed.filter((p) => p.n <= floor).at(-1)?.lastSeq ?? 0;
    for (const { key, value } of this.log.getRange()) {
      const e = decodeLogEntry(key, value);
      if (e.seq > this.seq) this.seq = e.seq;
      if (e.seq <= floorSeq) continue;
      while (boundary < above.length && e.seq > above[boundary].lastSeq) boundary++;
      const n = boundary < above.length ? above[boundary].n : this.openN;
      const set = this.dirty.get(n);
      if (set === undefined) continue; // at or below the floor: awaiting trim
      const first = Math.floor(e.offset / this.blockSize);
      const last = e.length === 0 ? first - 1 : Math.floor((e.offset + e.length - 1) / this.blockSize);
      if (last >= first) set.addRange(first, last - first + 1);
    }
    this.dropUnneeded();
  }

  /**
   * True when the machine (not just this process) went down while the volume was open: the
   * boot id changed since an open that never shut down cleanly. LMDB commits are not synced
   * between flushes, so the write log may then have lost entries whose image writes reached
   * the disk: sinks must not trust deltas and need a checksum comparison (a full resync).
   */
  get uncleanOsShutdown(): boolean {
    return this.osCrashed;
  }

  /**
   * @internal detects an OS crash (the previous session never shut down, under another
   * boot) and records that the volume is open under this boot.
   *
   * On a disk too full for that record the volume still opens: reads, status and the
   * shipping of closed points need no new space, and an operator who restarts a node on a
   * full disk must still see and read its volumes. Until the record is written, nothing
   * may change the image (a write, a replica's commit): after an OS crash, the next open
   * would read the previous session's record and could miss that the image changed
   * without its log. So every such change first tries the record again (recordSession),
   * and is refused with VOLUME_NO_SPACE while it does not fit.
   */
  async startSession(): Promise<void> {
    const previous = this.meta.get('session') as { bootId?: unknown; clean?: unknown } | undefined;
    this.osCrashed = previous !== undefined && previous.clean === false && previous.bootId !== currentBootId();
    await this.recordSession().catch((err: unknown) => {
      if (!isHeadstartError(err) || err.code !== 'VOLUME_NO_SPACE') throw err;
    });
  }

  /** Whether this session's record is written (see startSession), and the attempt in flight. */
  private sessionRecorded = false;
  private sessionRecording: Promise<void> | null = null;

  private recordSession(): Promise<void> {
    if (this.sessionRecording) return this.sessionRecording;
    const attempt = (async () => {
      try {
        this.space.forMetadata(`opening volume ${this.record.name}`);
        await this.meta.put('session', { bootId: currentBootId(), clean: false, osCrashed: this.osCrashed });
        await this.syncMeta();
        this.sessionRecorded = true;
      } catch (err) {
        throw storeError(err, `recording that volume ${this.record.name} is open`, this.space);
      }
    })();
    this.sessionRecording = attempt;
    // A failed attempt is made again by the next change.
    void attempt.catch(() => undefined).then(() => (this.sessionRecording = null));
    return attempt;
  }

  /** False while the disk is too full to record the session: the volume takes no changes (see startSession). */
  get sessionOpen(): boolean {
    return this.sessionRecorded;
  }

  // ---------------------------------------------------------------- block I/O

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(offset, buf);
    return buf;
  }

  /** Like read(), into the caller's buffer (which it may reuse once this resolves). */
  async readInto(offset: number, target: Uint8Array): Promise<void> {
    this.checkOpen();
    this.checkRange(offset, target.length);
    if (this.applying !== null) await this.waitApplied();
    this.readsInFlight++;
    try {
      await this.image.pread(target, offset);
    } finally {
      if (--this.readsInFlight === 0 && this.readsDrained !== null) this.readsDrained();
    }
  }

  // ---------------------------------------------------------------- replica commits and readers

  /**
   * Set from beginApply to endApply: a replica is writing committed point n into its image.
   * Its export must only ever show committed points, so reads wait meanwhile (a commit's
   * writes take a fraction of a second per 100 MiB) and the ones under way finish first.
   * A commit that fails half-way (a full disk) leaves the image between two points: the
   * hold stays until a retry of the commit finishes, and reads that wait longer than
   * READ_HOLD_MS fail with VOLUME_BETWEEN_POINTS rather than return a mix.
   */
  private applying: { n: number; since: number; stalled: boolean; done: Promise<void>; release: () => void } | null = null;
  private readsInFlight = 0;
  private readsDrained: (() => void) | null = null;

  /** A demoted primary's own point, which its image holds exactly (see `demoted`), or null. */
  get demotedPoint(): SnapshotPoint | null {
    return this.demoted;
  }

  /** A replica's commit of point n starts writing its image (see `applying`); resolves once no read is under way. */
  async beginApply(n: number): Promise<void> {
    if (this.demoted !== null) {
      // Its image stops being its own point now, durably before the first write.
      this.space.forMetadata(`recording that volume ${this.record.name} takes another primary's point`);
      await this.meta.remove('ownPoint');
      await this.syncMeta();
      this.demoted = null;
    }
    if (this.applying === null) {
      let release!: () => void;
      const done = new Promise<void>((resolve) => (release = resolve));
      this.applying = { n, since: Date.now(), stalled: false, done, release };
    }
    this.applying.stalled = false; // a retry of a stopped commit is writing again
    while (this.readsInFlight > 0) await new Promise<void>((resolve) => (this.readsDrained = resolve));
    this.readsDrained = null;
  }

  /**
   * The point a replica's commit is writing into the image and since when (epoch ms), and
   * whether it stopped half-way (applyFailed: until a retry, the image is between two
   * points), or null.
   */
  get applyingPoint(): { n: number; since: number; stalled: boolean } | null {
    return this.applying === null ? null : { n: this.applying.n, since: this.applying.since, stalled: this.applying.stalled };
  }

  /** The commit's image writes failed half-way: reads stay held (see `applying`) until a retry finishes. */
  applyFailed(): void {
    if (this.applying !== null) this.applying.stalled = true;
  }

  /** The commit's image writes are done and its point recorded: reads go on. */
  endApply(): void {
    const a = this.applying;
    this.applying = null;
    a?.release();
  }

  private async waitApplied(): Promise<void> {
    for (let a = this.applying; a !== null; a = this.applying) {
      let timer: NodeJS.Timeout | undefined;
      const expired = await Promise.race([a.done.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), READ_HOLD_MS)))]);
      clearTimeout(timer);
      this.checkOpen(); // shut down meanwhile (shutdown wakes the waiting reads)
      if (expired && this.applying === a) {
        throw new HeadstartError('VOLUME_BETWEEN_POINTS', `volume ${this.record.name} is between points ${this.replicaPoint?.n ?? 'none'} and ${a.n}: its commit of point ${a.n} has not finished writing the image after ${READ_HOLD_MS / 1000} s`);
      }
    }
  }

  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, data.length);
    if (data.length === 0) return;
    if (!this.sessionRecorded) await this.recordSession();
    await this.applyWrite(offset, data.length, data, 'write');
    if (options?.fua) await this.flush();
  }

  async writeZeroes(offset: number, length: number, options?: WriteOptions): Promise<void> {
    await this.zeroRange(offset, length, 'zero', options);
  }

  /** Trim reads back as zeroes (deterministic content replicates exactly). */
  async trim(offset: number, length: number, options?: WriteOptions): Promise<void> {
    await this.zeroRange(offset, length, 'trim', options);
  }

  async flush(): Promise<void> {
    this.checkOpen();
    await this.image.datasync('flushing the volume image');
    await this.syncMeta();
  }

  /** mdb_env_sync: makes every LMDB commit so far durable. */
  private syncMeta(): Promise<void> {
    return lmdbSync(this.root).catch((err: unknown) => {
      throw fromSystemError(err, 'syncing the volume metadata');
    });
  }

  private async zeroRange(offset: number, length: number, kind: WriteKind, options?: WriteOptions): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    if (!this.sessionRecorded) await this.recordSession();
    for (let at = offset; at < offset + length; at += ZERO_PIECE) {
      await this.applyWrite(at, Math.min(ZERO_PIECE, offset + length - at), null, kind);
    }
    if (options?.fua) await this.flush();
  }

  /** The write path (see DEV DOCS). `data` null means zeroes. */
  private async applyWrite(offset: number, length: number, data: Uint8Array | null, kind: WriteKind): Promise<void> {
    const bs = this.blockSize;
    let first = Math.floor(offset / bs);
    let count = Math.floor((offset + length - 1) / bs) - first + 1;
    // seq, the open point and the lock registration are taken in one synchronous step:
    // seq order == lock order.
    const seq = ++this.seq;
    const k = this.openN;
    const hold = this.locks.enter(first, count);
    try {
      if (hold.waitingOn > 0) await this.locks.ready(hold);
      this.checkOpen();
      const dirtyK = this.dirty.get(k)!;
      // Old content is needed for zeroes (trim, write-zeroes), which only touch blocks not
      // already zero (see below and zeroRangeIn), for the copy-on-write, and for an
      // unaligned write's edges.
      let old: Buffer | null = null;
      if (data === null) {
        old = Buffer.allocUnsafe(count * bs);
        await this.image.pread(old, first * bs);
        // Zeroes over bytes that are zero already change nothing: the write shrinks to the
        // blocks it changes, and is no write at all (no log entry, no dirty block, nothing
        // for the sinks) if it changes none. Without this, a discard of space never written
        // or discarded before (mkfs on a new volume; fstrim, which after a remount discards
        // all of a file system's free space again, weekly on most distributions) made every
        // block of it part of the next point, which the replica stages and reads back to
        // commit: a 68 GiB discard made a point of 17.8 M blocks (tmp-diag/e2e-bigtrim.sh).
        const span = changedSpan(old, offset - first * bs, length, bs);
        if (span === null) return;
        const end = offset + length;
        offset = Math.max(offset, (first + span.first) * bs);
        length = Math.min(end, (first + span.last + 1) * bs) - offset;
        old = old.subarray(span.first * bs, (span.last + 1) * bs);
        first += span.first;
        count = span.last - span.first + 1;
      }
      // Point k-1 is closed; if some sink will still read it, keep what this write overwrites.
      const keepPrevious = k - 1 > this.readFloor;
      let cow: number[] | null = null;
      if (keepPrevious) {
        for (let b = first; b < first + count; b++) if (!dirtyK.has(b)) (cow ??= []).push(b);
      }
      const aligned = offset % bs === 0 && length % bs === 0;
      if (old === null && (cow !== null || !aligned)) {
        old = Buffer.allocUnsafe(count * bs);
        await this.image.pread(old, first * bs);
      }
      const time = Math.round(this.clock.now());
      const entry = encodeLogEntry({ seq, offset, length, time }, kind);
      // Zeroes never take new space in the sparse image (only blocks that hold data are
      // rewritten, see zeroRangeIn); data may fill holes: all of it counts.
      const imageBytes = data === null ? 0 : aligned ? length : count * bs;
      let copies: PreservedCopy[] | null = null;
      if (cow !== null) {
        copies = [];
        for (const b of cow) {
          const block = old!.subarray((b - first) * bs, (b - first + 1) * bs);
          // A never-written (zero) block is preserved as an empty value: sparse volumes
          // would otherwise fill LMDB with zeroes.
          copies.push({ key: [k - 1, b], value: isZero(block) ? EMPTY : block });
        }
      }
      try {
        // Committed with the other writes of this turn, in one transaction (log-batch.ts).
        await this.logBatch.record(seq, entry, copies, imageBytes);
      } catch (err) {
        throw storeError(err, 'recording the write in the write log', this.space);
      }
      try {
        if (data === null) await this.zeroRangeIn(old!, first * bs, offset - first * bs, length);
        else if (aligned) await this.image.pwrite(data, offset);
        else {
          const merged = old!;
          merged.set(data, offset - first * bs);
          await this.image.pwrite(merged, first * bs);
        }
      } finally {
        this.space.writeDone(imageBytes);
        // Dirty even if the image write failed (a full disk, an I/O error): the log has the
        // entry, and the image may hold part of the new bytes, so the blocks must go to the
        // sinks as the image holds them (a restart's log replay would make them dirty too).
        dirtyK.addRange(first, count);
        if (this.listeners.size > 0) {
          const event: WriteEvent = { seq, offset, length, time, snapshot: k, firstBlock: first, blockCount: count, kind };
          for (const l of this.listeners) l(event);
        }
      }
    } finally {
      this.locks.leave(hold);
    }
  }

  /**
   * Zeroes bytes [from, from + length) of the blocks `current` holds (their content now,
   * starting at image offset `at`), writing only blocks that are not zero there already. A
   * trim or write-zeroes over never-written blocks then writes nothing, so the sparse image
   * does not fill with zeroes (an mkfs discards the whole device: before, that allocated the
   * whole volume). Node has no hole punching: blocks that held data get zeroes written,
   * which takes no new space. Costs a read of the range: `npm run bench:volume` has the rows.
   */
  private async zeroRangeIn(current: Buffer, at: number, from: number, length: number): Promise<void> {
    if (isZero(current.subarray(from, from + length))) return;
    const bs = this.blockSize;
    const end = from + length;
    let run = -1; // first block of a run of whole blocks to zero
    const flush = async (upTo: number) => {
      if (run < 0) return;
      await this.image.pwrite(zeroes((upTo - run) * bs), at + run * bs);
      run = -1;
    };
    for (let i = 0; i * bs < current.length; i++) {
      const lo = Math.max(from, i * bs);
      const hi = Math.min(end, (i + 1) * bs);
      const toZero = !isZero(current.subarray(lo, hi));
      if (toZero && lo === i * bs && hi === (i + 1) * bs) {
        if (run < 0) run = i;
        continue;
      }
      await flush(i);
      if (toZero) {
        // An edge block zeroed in part: the rest of it stays.
        const block = Buffer.from(current.subarray(i * bs, (i + 1) * bs));
        block.fill(0, lo - i * bs, hi - i * bs);
        await this.image.pwrite(block, at + i * bs);
      }
    }
    await flush(current.length / bs);
  }

  // ---------------------------------------------------------------- snapshot points

  /** The number of the open snapshot (writes go to it). */
  get openSnapshot(): number {
    return this.openN;
  }

  /** Closed points still kept (the floor and everything after it), oldest first. */
  snapshots(): SnapshotPoint[] {
    return [...this.closed];
  }

  get latestClosed(): SnapshotPoint | null {
    return this.closed.at(-1) ?? null;
  }

  /**
   * The open snapshot's writes recorded in the write log (committed ones), oldest first:
   * what a consumer that follows writes through onWrite missed before it subscribed, such
   * as the planner of a node that restarted in the middle of an interval.
   */
  *openWrites(): Generator<WriteEntry & { kind: WriteKind }> {
    if (this.readOnly) return;
    const start = (this.latestClosed?.lastSeq ?? 0) + 1;
    for (const { key, value } of this.log.getRange({ start })) yield decodeLogEntry(key, value);
  }

  /**
   * Throws what closeSnapshot would throw before changing anything (a replica, no room for
   * the close's record): a consistency group checks every member first, so that its volumes
   * close together or not at all.
   */
  checkCanClose(): void {
    this.checkWritable();
    this.space.forMetadata(`recording the close of snapshot point ${this.openN}`);
  }

  /** Throws what setRole would throw for want of room for its record, before anything changes (a group checks every member first). */
  checkCanChangeRole(): void {
    this.checkOpen();
    this.space.forMetadata(`changing volume ${this.record.name}'s role`);
  }

  /**
   * Closes the open snapshot: every write that arrived before this call belongs to it, every
   * later one to the next. Resolves once the point is recorded and its writes are complete.
   * `closedAt` (default now) may name an earlier instant of the cut: a consistency group's
   * volume closed at a node's start for the cut its group took before the node went down
   * (the node's closeTornGroups).
   */
  async closeSnapshot(options: { scheduledAt?: number; closedAt?: number } = {}): Promise<SnapshotPoint> {
    this.checkWritable();
    const n = this.openN;
    const lastSeq = this.seq;
    const closedAt = Math.round(options.closedAt ?? this.clock.now());
    const point: SnapshotPoint = { n, scheduledAt: Math.round(options.scheduledAt ?? closedAt), closedAt, lastSeq };
    // Recorded synchronously, before anything changes: a write of n + 1 may commit its log
    // entry (with copies of n's blocks it overwrites) in the next turn, and a restart must
    // then know n closed, or it would fold n + 1's writes into n and look for those copies
    // under n - 1. If it cannot be recorded (a full disk), nothing happened: n stays open
    // and the caller may try again.
    try {
      this.space.forMetadata(`recording the close of snapshot point ${n}`);
      this.snapshotDb.putSync(n, encodeSnapshot(point));
    } catch (err) {
      throw storeError(err, `recording the close of snapshot point ${n}`, this.space);
    }
    this.openN = n + 1;
    this.dirty.set(n + 1, new BlockSet());
    const drained = this.locks.drain();
    // Points are published in order even when closes overlap.
    const previous = this.closing;
    let done!: () => void;
    this.closing = new Promise<void>((resolve) => (done = resolve));
    try {
      await previous;
      await drained;
    } finally {
      done();
    }
    // Published only now: writes of n that were still in flight at the call have landed in
    // its dirty set, so whoever sees n closed (the shipper iterates that set) sees it final.
    this.closed.push(point);
    if (this.sinkStates.size === 0) this.dropUnneeded();
    return point;
  }

  /**
   * Whether closed point n is known to be all zeroes without reading it: point 0 of a volume
   * that createVolume made empty. A first full copy of it sends nothing and need not scan.
   */
  isZeroPoint(n: number): boolean {
    return n === 0 && this.record.pristine === true;
  }

  /**
   * The blocks written in snapshot n (closed and above the floor, or the open one). The
   * returned set is live for the open snapshot; do not modify it.
   */
  dirtyBlocks(n: number): BlockSet {
    const set = this.dirty.get(n);
    if (set === undefined) throw this.unknownPoint(n);
    return set;
  }

  /**
   * Every block written after closed point n (the delta a failback needs), or only up to
   * point `upTo` included (a sink's catch-up delta: rebaseSink).
   */
  changedSince(n: number, upTo = Infinity): BlockSet {
    if (n < this.floor) throw this.unknownPoint(n);
    const out = new BlockSet();
    for (const [k, set] of this.dirty) if (k > n && k <= upTo) out.addAll(set);
    return out;
  }

  /** Blocks [firstBlock, firstBlock + count) exactly as they were at closed point n. */
  async readBlocksAt(n: number, firstBlock: number, count: number): Promise<Buffer> {
    this.checkOpen();
    if (!Number.isSafeInteger(firstBlock) || !Number.isSafeInteger(count) || firstBlock < 0 || count < 0 || firstBlock + count > this.blockCount) {
      throw new HeadstartError('VOLUME_OUT_OF_RANGE', `blocks ${firstBlock}+${count} are outside the volume (${this.blockCount} blocks)`);
    }
    const bs = this.blockSize;
    const out = Buffer.allocUnsafe(count * bs);
    if (count === 0) return out;
    // Hold the block locks so no write can overwrite a block between our look-up of where
    // its old content lives and the read of it.
    const release = await this.locks.acquire(firstBlock, count);
    try {
      if (!this.isReadable(n)) throw this.unknownPoint(n);
      await this.image.pread(out, firstBlock * bs);
      // The point may have been released while the image was read (its last sink
      // acknowledged it): its dirty sets are gone at once and its preserved copies soon
      // after, so what follows would find newer copies or none. The rest is synchronous.
      if (!this.isReadable(n)) throw this.unknownPoint(n);
      for (let i = 0; i < count; i++) {
        const b = firstBlock + i;
        for (let k = n; k < this.openN; k++) {
          if (this.dirty.get(k + 1)?.has(b)) {
            const copy = this.preserved.get([k, b]);
            if (copy === undefined) throw new HeadstartError('VOLUME_CORRUPT', `preserved copy of block ${b} as of point ${k} is missing`);
            if (copy.length === 0) out.fill(0, i * bs, (i + 1) * bs);
            else if (copy.length === bs) copy.copy(out, i * bs);
            else throw new HeadstartError('VOLUME_CORRUPT', `preserved copy of block ${b} as of point ${k} has ${copy.length} bytes`);
            break;
          }
        }
      }
    } finally {
      release();
    }
    return out;
  }

  /**
   * Whether closed point n can still be read exactly: above the read floor (its overwritten
   * blocks are preserved), or the latest point with nothing written since (the image is it).
   */
  isReadable(n: number): boolean {
    if (!this.closed.some((p) => p.n === n)) return false;
    if (n > this.readFloor) return true;
    // At or below the read floor nothing was preserved: the image is point n only if no block
    // was written since, in any later point (one may still be closing) nor in the open one.
    for (let k = n + 1; k <= this.openN; k++) if ((this.dirty.get(k)?.size ?? 0) > 0) return false;
    return true;
  }

  onWrite(listener: WriteListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---------------------------------------------------------------- sinks

  /**
   * The newest point every sink has: nothing at or below it is kept. With no sinks, every
   * closed point counts as delivered.
   */
  get floor(): number {
    return this.lowestOverSinks((s) => s.acked ?? s.baseline - 1);
  }

  /**
   * The point below the oldest one some sink will still read (as the base of its full copy or
   * its next delta): the old content of blocks first written after it is preserved, and
   * nothing at or below it. The floor, or higher while a sink catches up (rebaseSink).
   */
  get readFloor(): number {
    return this.lowestOverSinks((s) => (s.catchUpTo !== undefined ? s.catchUpTo - 1 : (s.acked ?? s.baseline - 1)));
  }

  /** The lowest of `point` over the sinks; with none, the latest closed point (everything counts as delivered). */
  private lowestOverSinks(point: (s: SinkState) => number): number {
    if (this.sinkStates.size === 0) return this.latestClosed?.n ?? this.openN - 1;
    let lowest = Infinity;
    for (const s of this.sinkStates.values()) lowest = Math.min(lowest, point(s));
    return lowest;
  }

  /** Whether a block was written since the latest closed point: if not, the image is that point exactly. */
  get writtenSinceLatest(): boolean {
    return (this.dirty.get(this.openN)?.size ?? 0) > 0;
  }

  sinks(): SinkState[] {
    return [...this.sinkStates.values()];
  }

  sink(name: string): SinkState {
    const s = this.sinkStates.get(name);
    if (s === undefined) throw new HeadstartError('SINK_UNKNOWN', `no sink named ${JSON.stringify(name)} on volume ${this.record.name}`);
    return s;
  }

  /**
   * Adds a sink. With `acked`, the sink already holds that point and continues from it; it
   * must still be kept here. Without, the sink needs a full copy of `baseline`: the latest
   * closed point if its content is still intact, else a point closed now.
   */
  async addSink(name: string, options: { acked?: number } = {}): Promise<SinkState> {
    this.checkWritable();
    if (this.sinkStates.has(name)) return this.sinkStates.get(name)!;
    // No write may be half-way between the image and the dirty set while we decide, and no
    // point half-way through its close.
    await this.locks.drain();
    await this.closing;
    this.checkOpen(); // shut down meanwhile: no LMDB write after it closed
    let state: SinkState;
    let closeNow = false;
    if (options.acked !== undefined) {
      const a = options.acked;
      // Not below the read floor: the old content of the points after it may be gone.
      if (!this.closed.some((p) => p.n === a) || a < this.readFloor) {
        throw new HeadstartError('SINK_BAD_ACK', `point ${a} is no longer kept on volume ${this.record.name}; the sink needs a full (checksum) resync`);
      }
      state = { name, acked: a, baseline: a };
    } else {
      const latest = this.latestClosed;
      closeNow = latest === null || !this.isReadable(latest.n);
      // Either the latest point is intact, or the point about to close becomes the baseline.
      state = { name, acked: null, baseline: closeNow ? this.openN : latest!.n };
    }
    // The sink takes effect synchronously, before any later write decides on copy-on-write.
    this.sinkStates.set(name, state);
    for (const p of this.closed) if (p.n > this.floor && !this.dirty.has(p.n)) this.dirty.set(p.n, new BlockSet());
    try {
      if (closeNow) await this.closeSnapshot();
      this.space.forMetadata(`adding sink ${name}`);
      await this.sinkDb.put(name, encodeSink(state));
    } catch (err) {
      this.sinkStates.delete(name);
      throw err;
    }
    return state;
  }

  /** Records that `name` has committed point n; frees what no sink needs any more. */
  async acknowledge(name: string, n: number): Promise<void> {
    this.checkOpen();
    const s = this.sink(name);
    const have = s.acked ?? s.baseline - 1;
    if (n <= have) return; // a repeated or late ack: idempotent
    if (!this.closed.some((p) => p.n === n)) throw new HeadstartError('SINK_BAD_ACK', `sink ${name} acknowledged point ${n}, which is not a closed point`);
    if (s.acked === null && n < s.baseline) throw new HeadstartError('SINK_BAD_ACK', `sink ${name} acknowledged ${n} before its baseline ${s.baseline}`);
    // A catch-up ends with the point it was going to (or a later one).
    const next: SinkState = s.catchUpTo !== undefined && n < s.catchUpTo ? { ...s, acked: n } : { name, acked: n, baseline: s.baseline };
    this.space.forMetadata(`recording that ${name} has point ${n}`);
    await this.sinkDb.put(name, encodeSink(next));
    this.changeSink(next);
  }

  /**
   * The sink's next copy goes to the latest closed point, so the old content of the points
   * before it is no longer kept for it. For a sink that stays away (a site down for days),
   * every point would otherwise keep the old content of each block first written in it,
   * growing the metadata store with every point (4.7 MB/s under 10 MB/s of writes, measured).
   *   - A sink that holds nothing yet (acked null) takes its full copy from that point
   *     instead of its baseline: by checksum, no cheaper from an older point.
   *   - A sink that has points catches up (`catchUpTo`): its next delta goes from its last
   *     point straight to that one, each block written between sent once, as of that point.
   *     Only the dirty sets of the points between stay, to know which blocks those are.
   * Returns the point the sink now goes to, or null if nothing moved (it is not behind by
   * two points or more, or the latest point cannot be read). The caller makes sure no
   * session of the sink has begun reading the point it went to before (source.ts, followLatest).
   */
  async rebaseSink(name: string): Promise<number | null> {
    this.checkOpen();
    const s = this.sink(name);
    const latest = this.latestClosed;
    if (latest === null || !this.isReadable(latest.n)) return null;
    let next: SinkState;
    if (s.acked === null) {
      if (s.baseline >= latest.n) return null;
      next = { ...s, baseline: latest.n };
    } else {
      if (latest.n <= s.acked + 1 || (s.catchUpTo ?? 0) >= latest.n) return null;
      next = { ...s, catchUpTo: latest.n };
    }
    this.space.forMetadata(`moving sink ${name}'s next copy to point ${latest.n}`);
    // Saved first: were the floor raised before, a failed save would leave the old point
    // unreadable (writes stop keeping its blocks) while the record still names it.
    await this.sinkDb.put(name, encodeSink(next));
    this.changeSink(next);
    return latest.n;
  }

  /** Takes a sink's new state (saved already) and drops what it no longer needs. */
  private changeSink(next: SinkState): void {
    const before = [this.floor, this.readFloor];
    this.sinkStates.set(next.name, next);
    if (this.floor > before[0] || this.readFloor > before[1]) this.dropUnneeded();
  }

  async removeSink(name: string): Promise<void> {
    this.checkOpen();
    this.sink(name);
    await this.sinkDb.remove(name);
    this.sinkStates.delete(name);
    this.dropUnneeded();
  }

  /**
   * Drops what no sink needs: points below `floor` (the floor's own record stays, as the base
   * and for its lastSeq), dirty sets at or below it and their log entries, and preserved
   * blocks at or below the read floor. Runs in the background; a crash before it finishes
   * just leaves garbage that the next trim removes.
   */
  private dropUnneeded(): void {
    const floor = this.floor;
    const readFloor = this.readFloor;
    const floorPoint = this.closed.filter((p) => p.n <= floor).at(-1);
    if (floorPoint !== undefined) {
      this.closed = this.closed.filter((p) => p.n >= floorPoint.n);
      for (const k of [...this.dirty.keys()]) if (k <= floor) this.dirty.delete(k);
    }
    this.pendingTrim = this.pendingTrim.then(() =>
      Promise.resolve()
        .then(() => this.space.forMetadata('trimming the write log')) // else the next trim does it
        .then(() => this.root.transaction(() => {
          if (floorPoint !== undefined) {
            for (const key of this.snapshotDb.getKeys({ end: floorPoint.n })) this.snapshotDb.remove(key);
            for (const key of this.log.getKeys({ end: floorPoint.lastSeq + 1 })) this.log.remove(key);
          }
          for (const key of this.preserved.getKeys({ end: [readFloor + 1, 0] })) this.preserved.remove(key);
        }))
        .then(() => undefined)
        .catch(() => undefined),
    );
  }

  // ---------------------------------------------------------------- replica side

  /** The replica's committed point, or null (primaries: null). */
  get committed(): SnapshotPoint | null {
    return this.replicaPoint;
  }

  /**
   * The epoch of the history the committed point belongs to: the epoch the replica held when
   * it committed it. The volume's own epoch is raised as soon as a source promoted over it
   * connects (fencing older primaries), before any of that source's points is here; this one
   * is raised only by a commit. null when not recorded (a volume from before it was).
   */
  get committedEpoch(): number | null {
    return this.replicaPoint === null ? null : this.replicaPointEpoch;
  }

  /**
   * Writes whole blocks straight to the image, without the write log: the replica's commit
   * (and its redo after a crash) applies a snapshot this way. Idempotent.
   */
  async applyBlocks(blocks: Iterable<{ block: number; data: Uint8Array }>): Promise<void> {
    this.checkOpen();
    if (!this.sessionRecorded) await this.recordSession();
    const bs = this.blockSize;
    for (const { block, data } of blocks) {
      if (!Number.isSafeInteger(block) || block < 0 || block >= this.blockCount) {
        throw new HeadstartError('VOLUME_OUT_OF_RANGE', `block ${block} is outside the volume (${this.blockCount} blocks)`);
      }
      if (data.length % bs !== 0 || data.length === 0 || block + data.length / bs > this.blockCount) {
        throw new HeadstartError('VOLUME_BAD_REQUEST', `applyBlocks needs whole blocks inside the volume (block ${block}, ${data.length} bytes)`);
      }
      if (isZero(Buffer.from(data.buffer, data.byteOffset, data.length))) {
        // Zeroes (a trim or zeroing on the source): only blocks that hold data here are
        // rewritten, so the replica's sparse image does not fill with zeroes either.
        const current = Buffer.allocUnsafe(data.length);
        await this.image.pread(current, block * bs);
        await this.zeroRangeIn(current, block * bs, 0, current.length);
        continue;
      }
      // Past the page cache when the caller's buffer allows it (image-file.ts, pwriteDirect):
      // setCommitted syncs the image right after, and nobody reads these bytes soon.
      await this.image.pwriteDirect(data, block * bs);
    }
  }

  /** Durably records the replica's committed point (after its blocks are applied and synced). */
  async setCommitted(point: SnapshotPoint): Promise<void> {
    this.checkOpen();
    await this.image.datasync('syncing the replica image before recording its point');
    this.space.forMetadata(`recording committed point ${point.n}`);
    const epoch = this.record.epoch;
    await this.root.transaction(() => {
      this.meta.put('replica', encodeReplicaPoint(point));
      this.meta.put('replicaEpoch', epoch);
    });
    await this.syncMeta();
    this.replicaPoint = point;
    this.replicaPointEpoch = epoch;
  }

  /**
   * Changes the role (promotion, demotion). The epoch never goes down. A replica promoted to
   * primary continues the point numbering from its committed point.
   */
  async setRole(role: VolumeRole, epoch: number): Promise<void> {
    this.checkOpen();
    if (!Number.isSafeInteger(epoch) || epoch < this.record.epoch) {
      throw new HeadstartError('VOLUME_BAD_REQUEST', `epoch ${epoch} is lower than the volume's epoch ${this.record.epoch}`);
    }
    // A role change ends the "point 0 is the empty image" guarantee (numbering continues from a copy).
    const next: VolumeRecord = { ...this.record, role, epoch, pristine: false };
    const wasReplica = this.record.role === 'replica';
    await this.locks.drain();
    await this.closing;
    // Demoted: its image is its own latest point if nothing was written since (see `demoted`),
    // and it holds no other primary's point (the one it committed as a replica before it was
    // promoted, long ago, is not what its image holds).
    const latest = this.latestClosed;
    const demotedAt = role === 'replica' && !wasReplica ? (latest !== null && !this.writtenSinceLatest ? latest : null) : undefined;
    this.space.forMetadata(`changing volume ${this.record.name}'s role`);
    await this.root.transaction(() => {
      this.meta.put('volume', { ...next });
      // Once primary, its data is its own history: the epoch of the point it last committed as a replica no longer says it.
      if (role === 'primary') this.meta.remove('replicaEpoch');
      if (demotedAt !== undefined) {
        this.meta.remove('replica');
        this.meta.remove('replicaEpoch');
        if (demotedAt === null) this.meta.remove('ownPoint');
        else this.meta.put('ownPoint', encodeReplicaPoint(demotedAt));
      }
      if (role === 'primary' && wasReplica) {
        // The committed point becomes the new primary's latest closed point; promoted back
        // before it committed any, a demoted primary goes on from its own.
        this.meta.remove('ownPoint');
        const base = this.replicaPoint ?? this.demoted ?? { n: 0, scheduledAt: this.record.createdAt, closedAt: this.record.createdAt, lastSeq: 0 };
        const point = { ...base, lastSeq: this.seq };
        for (const key of this.snapshotDb.getKeys()) this.snapshotDb.remove(key);
        for (const key of this.log.getKeys()) this.log.remove(key);
        for (const key of this.preserved.getKeys()) this.preserved.remove(key);
        for (const key of this.sinkDb.getKeys()) this.sinkDb.remove(key);
        this.snapshotDb.put(point.n, encodeSnapshot(point));
      }
    });
    await this.syncMeta();
    this.record = next;
    if (role === 'primary') this.replicaPointEpoch = null;
    if (demotedAt !== undefined) {
      this.replicaPoint = null;
      this.replicaPointEpoch = null;
      this.demoted = demotedAt;
    }
    if (role === 'primary') this.demoted = null;
    if (role === 'primary' && wasReplica) {
      this.sinkStates.clear();
      this.dirty.clear();
      this.load();
    }
  }

  // ---------------------------------------------------------------- lifecycle

  /** Waits for in-flight work, then releases the image file and LMDB. */
  async shutdown(): Promise<void> {
    if (this.shut) return;
    await this.locks.drain();
    await this.pendingTrim;
    this.shut = true;
    this.applying?.release(); // reads waiting for a commit fail now (VOLUME_CLOSED), not in a minute
    await this.image.datasync().catch(() => {});
    // With no room left, skipped: the next open takes it for a process crash (same boot),
    // which costs nothing but the log replay every open does anyway.
    await Promise.resolve()
      .then(() => this.space.forMetadata('recording a clean shutdown'))
      .then(() => this.meta.put('session', { bootId: currentBootId(), clean: true }))
      .catch(() => {});
    await lmdbSync(this.root).catch(() => {});
    await this.image.close().catch(() => {});
    await this.root.close().catch(() => {});
    await releaseDirLock(this.dir);
  }

  /** Free bytes on the volume's file system, and the reserve below which it refuses writes (space.ts). */
  room(): { freeBytes: number | null; reserveBytes: number; warnBytes: number } {
    return this.space.room();
  }

  /** Figures for status and benchmarks. */
  stats(): { openSnapshot: number; floor: number; dirtyBlocks: Record<number, number>; dirtySetBytes: number; seq: number } {
    const dirtyBlocks: Record<number, number> = {};
    let dirtySetBytes = 0;
    for (const [k, s] of this.dirty) {
      dirtyBlocks[k] = s.size;
      dirtySetBytes += s.byteSize();
    }
    return { openSnapshot: this.openN, floor: this.floor, dirtyBlocks, dirtySetBytes, seq: this.seq };
  }

  // ---------------------------------------------------------------- helpers

  private unknownPoint(n: number): HeadstartError {
    if (n <= this.floor && n >= 0) return new HeadstartError('SNAPSHOT_RELEASED', `point ${n} of volume ${this.record.name} is acknowledged by every sink and no longer kept`);
    if (n <= this.readFloor && n >= 0) return new HeadstartError('SNAPSHOT_RELEASED', `point ${n} of volume ${this.record.name} is no longer kept: the sinks that lack it catch up to a later point`);
    return new HeadstartError('SNAPSHOT_UNKNOWN', `volume ${this.record.name} has no point ${n} (open point is ${this.openN})`);
  }

  private checkOpen(): void {
    if (this.shut) throw new HeadstartError('VOLUME_CLOSED', `volume ${this.record.name} is shut down`);
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.record.role === 'replica') throw new HeadstartError('VOLUME_READ_ONLY', `volume ${this.record.name} is a replica (epoch ${this.record.epoch})`);
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new HeadstartError('VOLUME_BAD_REQUEST', `bad request: offset ${offset}, length ${length}`);
    }
    if (offset + length > this.record.size) {
      throw new HeadstartError('VOLUME_OUT_OF_RANGE', `request ${offset}+${length} ends beyond the volume size ${this.record.size}`);
    }
  }
}

const EMPTY = Buffer.alloc(0);

function isZero(block: Buffer): boolean {
  return block.equals(zeroes(block.length)); // memcmp against a shared zero buffer
}

let zeroBuffer = Buffer.alloc(0);
function zeroes(length: number): Buffer {
  if (zeroBuffer.length < length) zeroBuffer = Buffer.alloc(Math.max(length, ZERO_PIECE));
  return zeroBuffer.subarray(0, length);
}

function checkGeometry(size: number, blockSize: number): void {
  const powerOfTwo = Number.isSafeInteger(blockSize) && blockSize > 0 && (blockSize & (blockSize - 1)) === 0;
  if (!powerOfTwo || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE) {
    throw new HeadstartError('VOLUME_BAD_GEOMETRY', `block size ${blockSize} is not a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE}`);
  }
  if (!Number.isSafeInteger(size) || size <= 0 || size % blockSize !== 0) {
    throw new HeadstartError('VOLUME_BAD_GEOMETRY', `volume size ${size} is not a positive multiple of the block size ${blockSize}`);
  }
}

/** Linux's id of this boot: it changes when the machine restarts, not when a process does. */
function currentBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/**
 * An LMDB write failure as one of our errors. LMDB reports a full disk as EIO (a short page
 * write, whose errno it does not keep), which would send the operator looking for a bad
 * disk: when the volume's file system has no space left, say so (VOLUME_NO_SPACE).
 */
function storeError(err: unknown, what: string, space: SpaceGuard): HeadstartError {
  if (isHeadstartError(err)) return err;
  const e = fromSystemError(err, what);
  if (e.code !== 'VOLUME_IO') return e;
  const free = space.room().freeBytes;
  return free !== null && free < 1 << 20 ? new HeadstartError('VOLUME_NO_SPACE', `${what}: no space left on device (LMDB said: ${e.message.slice(what.length + 2)})`, { cause: err }) : e;
}

/** mdb_env_sync through lmdb-js (present at run time, missing from its type definitions). */
function lmdbSync(db: RootDatabase): Promise<void> {
  const env = db as unknown as { sync(callback: (err?: Error) => void): void };
  return new Promise((resolve, reject) => env.sync((err) => (err ? reject(err) : resolve())));
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * One process per volume directory: a lock naming the owner's pid; a dead owner's lock is
 * taken over. The lock is a symbolic link whose target is the pid, not a file holding it:
 * creating it is just as atomic (EEXIST), and a short link target lives in the inode, so
 * the lock can be taken on a disk with no free block left (a node restarted on a full disk
 * must still open its volumes, see startSession). A lock left as a plain file holding the
 * pid (an earlier release) is read as well.
 */
async function takeDirLock(dir: string): Promise<void> {
  const path = join(dir, LOCK_FILE);
  // This process's own hold (or its own take under way) is known here, not by the pid on
  // disk: a lock naming this process's pid that this process does not hold was left by an
  // earlier process that had the same pid (a container's node restarts as the same pid
  // after a crash; pids are reused after a reboot) and is stale.
  if (heldLocks.has(path) || takingLocks.has(path)) {
    throw new HeadstartError('VOLUME_LOCKED', `volume ${dir} is open in process ${process.pid} (this one)`);
  }
  takingLocks.add(path);
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await symlink(String(process.pid), path);
        heldLocks.add(path);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(err, `locking ${dir}`);
        const target = await readlink(path).catch(() => readFile(path, 'utf8')).catch(() => '');
        const owner = Number(target.trim());
        if (Number.isSafeInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
          throw new HeadstartError('VOLUME_LOCKED', `volume ${dir} is open in process ${owner}`);
        }
        // A dead owner's lock: taken over (a directory we may not write fails here, in words).
        await rm(path, { force: true }).catch((e: unknown) => {
          throw fromSystemError(e, `locking ${dir}`);
        });
      }
    }
    throw new HeadstartError('VOLUME_LOCKED', `could not lock volume ${dir}`);
  } finally {
    takingLocks.delete(path);
  }
}

const heldLocks = new Set<string>();
/** Locks this process is taking (between its check and its symlink). */
const takingLocks = new Set<string>();

async function releaseDirLock(dir: string): Promise<void> {
  const path = join(dir, LOCK_FILE);
  if (!heldLocks.has(path)) return;
  heldLocks.delete(path);
  await rm(path, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A process killed a moment ago is a zombie until its parent reaps it (seconds, under a
  // busy init): it holds no file, lock or map any more, but kill(pid, 0) still finds it, so
  // a node restarted at once after kill -9 was refused with VOLUME_LOCKED.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc (not Linux) or unreadable: alive, as kill said
  }
}
