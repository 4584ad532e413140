/**
 * The replica's staging store, next to the replica volume: received blocks of snapshots not
 * yet committed. Block CONTENT goes into one sparse staging file per snapshot, `data-<n>`,
 * at the block's own offset (as in the image), gathered from the received frame into a
 * reused page-aligned buffer and written past the page cache (O_DIRECT, see StageFile.direct)
 * where the file system allows; a small LMDB environment holds the INDEX: run records key
 * [n, firstBlock, gen] -> [count u32 LE, kind u32 LE] (kind 1: the run's content is in the
 * staging file, 0: a run of zero blocks, which is never written out). Against the former
 * design (whole runs as LMDB values): the JS thread does a fraction of the work (LMDB's
 * copy into its map and its commits were most of the replica's profile), the commit's
 * read-back is faster (512 MiB applied in 1.6-1.9 s instead of 2.4-3.0 s here), and the
 * space goes back after each commit (an LMDB file never shrinks). Total CPU per MiB came
 * out about the same: on this machine the kernel's page-cache copies dominate either way.
 *
 * `gen` grows with every record written; a block resent later (a collision on the source)
 * lands in a newer record and overwrites the same place in the file, and the record with
 * the highest gen is the live one. A write waits for the earlier writes of the same
 * snapshot whose block span overlaps its own (others run alongside), so the file holds the
 * latest copy of every block it holds; a record is written only after its content is in
 * the file. The replica volume does not change while blocks stage.
 *
 * In memory, per staged point, only two compact block sets (BlockSet: a few bits a block
 * where dense): the blocks staged, and which of them are zero blocks. Each staged block's
 * hash is in a sparse file beside the data, `hashes-<n>`, 8 bytes at the block's index
 * times 8, written with the block; the point's digest (what CLOSE compares) is kept as
 * batches land. Before, two JS Maps per point held both: V8 caps a Map at 2^24 entries, so
 * a point of 64 GiB of 4 KiB blocks (any large initial sync) threw, and they took ~50
 * bytes a block. The hash file is a cache of this process: on open every live block's
 * hash is recomputed from the bytes held (xxhash runs at GB/s) and written again, so
 * whatever a crash left there, the hashes the replica reports (RESUME) and commits
 * against are those of the bytes it holds.
 *
 * It also holds the commit's redo journal ('journal' = the point being committed): see
 * replica-target.ts for the commit protocol.
 *
 * Durability: staging is only a cache of what the source can send again, so neither the
 * files nor LMDB are synced per write (an fsync per batch stalled the link for hundreds of
 * ms on a busy disk); a staging file is flushed in the background every STAGE_FLUSH_BYTES
 * so that a commit's sync has little left to do. What must survive is the journal with the
 * staged set it points to, so:
 *   - before the first unsynced write, a marker file `unsynced` (holding the kernel's boot
 *     id) is made durable; every full sync (staging files, then LMDB) removes it durably;
 *   - the journal is written and synced under the marker, and no staging write happens
 *     from then until the commit's final transaction is synced (writes wait on a gate);
 *   - on open, a marker from ANOTHER boot means the machine went down with unsynced data,
 *     which may be torn: the store is wiped (nothing in it was needed: either no journal was
 *     live, or its point is already recorded on the volume). A marker from this boot means
 *     only our process died; the kernel kept every page, the store is intact. An empty
 *     marker is one whose making never finished (no write followed it): kept too.
 *   - a staging file is deleted only after the removal of its records is durable, so a live
 *     record never points into a missing file (files without records are removed on open).
 */
import { HeadstartError, fromSystemError, isHeadstartError } from '@headstart/errors';
import { MAX_BLOCKS_PAYLOAD, MAX_BLOCK_SIZE, SnapshotDigest, blockHash, zeroBlockHash } from '@headstart/protocol';
import { BlockSet, DIRECT_ALIGN, DIRECT_WRITE_MIN_BYTES, SpaceGuard, alignedBuffer, guardLmdbCommitRejections, type SnapshotPoint } from '@headstart/volume';
import { constants as fsConstants, readSync, writeSync, closeSync, existsSync, fsyncSync, openSync, readFileSync, readdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { open as openFile, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown'; // no boot id: treat every leftover marker as a reboot (wipe: safe, just slower)
  }
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface StagedSetInfo {
  /** The blocks staged (whose batch is written or on its way). */
  readonly blocks: BlockSet;
  /** Those of them whose live copy is a zero block (never written to the file). */
  readonly zero: BlockSet;
  /** The digest of the live copies of the batches written so far: the point's, once settled(). */
  readonly digest: SnapshotDigest;
  /** A staging write failed part-way: what the files hold for this point is not known any
   * more. Its CLOSE fails the digest check and RESUME drops it, so it is sent again. */
  readonly broken: boolean;
}

interface StagedSet extends StagedSetInfo {
  broken: boolean;
}

/** A staged block's state before a batch restaged it: whether it was staged, and as a zero block. */
interface Before {
  staged: boolean;
  zero: boolean;
}

/** A staging write in flight: the block span it covers, and the state it replaced per block
 * (handed on to the next batch of the same block if this one fails before writing). */
interface PendingBatch {
  readonly n: number;
  readonly seq: number;
  readonly lo: number;
  readonly hi: number;
  readonly before: Map<number, Before>;
  done: Promise<unknown>;
}

export interface Journal {
  readonly point: SnapshotPoint;
}

function decodeJournal(raw: unknown): Journal {
  const bad = () => new HeadstartError('VOLUME_CORRUPT', 'the replica commit journal is damaged');
  if (typeof raw !== 'object' || raw === null) throw bad();
  const p: unknown = Reflect.get(raw, 'point');
  if (typeof p !== 'object' || p === null) throw bad();
  const field = (k: string): number => {
    const v: unknown = Reflect.get(p, k);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad();
    return v;
  };
  return { point: { n: field('n'), scheduledAt: field('scheduledAt'), closedAt: field('closedAt'), lastSeq: field('lastSeq') } };
}

/** lmdb-js has env.sync (mdb_env_sync, forced) on the root, missing from its typings. */
function envSync(root: RootDatabase): Promise<void> {
  const sync: unknown = Reflect.get(root, 'sync');
  if (typeof sync !== 'function') return root.flushed.then(() => undefined);
  return new Promise((resolve, reject) => {
    sync.call(root, (err?: Error | null) => (err ? reject(err) : resolve()));
  });
}

/** A staging file is flushed in the background after this many bytes written to it. */
const STAGE_FLUSH_BYTES = 64 * 1024 * 1024;
/** A BLOCKS frame's payload fits (MAX_BLOCKS_PAYLOAD, or one block of the largest size). */
const BATCH_BUFFER_BYTES = Math.max(MAX_BLOCKS_PAYLOAD, MAX_BLOCK_SIZE);
/**
 * Batch buffers kept for reuse, shared by every staging store of the process (at most one
 * per staging write in flight, which the links' windows bound). Page-aligned (alignedBuffer),
 * so that a batch can be written past the page cache.
 */
const batchBuffers: Buffer[] = [];
const BATCH_BUFFERS_KEPT = 32;
const KIND_ZERO = 0;
const KIND_DATA = 1;
/** On open, live blocks are read back and hashed in runs of at most this many bytes. */
const REHASH_RUN_BYTES = 1 << 20;
/**
 * RESUME's hashes are read from the hash file in windows of at most this many blocks, a
 * window spanning gaps of up to HASH_READ_GAP blocks (4 KiB of the file: reading the gap
 * costs less than another read). Measured (tmp-diag/resumelist.ts), listing 4 M staged
 * blocks: dense 0.9-1.4 s, every other block 2.2-2.4 s, every 1000th block 24 s (a read per
 * block, ~5 us each on this VM, synchronously; 169 s through the thread pool). Wider gaps
 * only read more: 64 KiB gaps took 29 s there.
 */
const HASH_READ_WINDOW = 1 << 16;
const HASH_READ_GAP = 512;

/** Writes all of buf at position, synchronously: for the hash file's small writes into the page cache (see writeRuns). */
function writeFullSync(fd: number, buf: Buffer, position: number): void {
  for (let done = 0; done < buf.length; ) done += writeSync(fd, buf, done, buf.length - done, position + done);
}

/** Reads buf.length bytes at position; past the end of the file reads as zeroes. Synchronous:
 * for the hash file, small reads from the page cache, where a thread-pool round trip costs
 * ten times the read. */
function readFullSync(fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) {
    const bytesRead = readSync(fd, buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  buf.fill(0, done);
}

interface StageFile {
  fh: FileHandle;
  /**
   * The same file opened with O_DIRECT, or null where the file system refuses it (tmpfs).
   * Staged blocks are written once and read once, by the commit: through the page cache
   * they would take as much memory again as the image's own, for nothing (and where the
   * page cache grows slowly, as on this VM, that cost most of a large point's staging
   * time). Cached and direct I/O on one range stay coherent: the kernel writes back and
   * drops cached pages in the range of a direct read or write.
   */
  direct: FileHandle | null;
  /** The point's hash file (see the header): through the page cache, never synced. */
  hashes: FileHandle;
  /** Bytes written since the last flush started. */
  unflushed: number;
  /** The latest background flush (a full sync waits for it, then syncs again). */
  flushing: Promise<unknown>;
}

interface StageRecord {
  readonly first: number;
  readonly gen: number;
  readonly blocks: readonly { block: number; hash: bigint; data: Uint8Array }[];
  readonly zero: boolean;
}

function dedupeKeepingLast<T extends { block: number }>(batch: readonly T[]): readonly T[] {
  // The shipper sends its blocks in ascending order: then there is nothing to drop, and no
  // Map to build per batch on the replica's hot path.
  let ascending = true;
  for (let i = 1; i < batch.length && ascending; i++) ascending = batch[i].block > batch[i - 1].block;
  if (ascending) return batch;
  const last = new Map<number, number>();
  batch.forEach((b, i) => last.set(b.block, i));
  return last.size === batch.length ? batch : batch.filter((b, i) => last.get(b.block) === i);
}

export class Staging {
  private readonly sets = new Map<number, StagedSet>();
  /** Staging writes not finished yet, in the order they were asked for: a write waits for the
   * earlier ones of the same snapshot whose span overlaps its own (so the file ends up with
   * the latest copy of a resent block), and runs alongside the others. */
  private readonly pending = new Set<PendingBatch>();
  private batchSeq = 0;
  /** Staging writes past the gate (a journal waits for them; the others wait on the gate). */
  private readonly running = new Set<Promise<unknown>>();
  private marked = false;
  /** Set while a commit is live: staging writes wait for it (see the header). */
  private gate: Promise<void> | null = null;
  private openGate: (() => void) | null = null;
  /** close() has begun: batches still waiting at the gate give up instead of writing. */
  private closing = false;
  private gen = 0;
  private readonly files = new Map<number, StageFile>();
  /** Removal of dropped files, in the background (see dropFile). */
  private removing: Promise<void> = Promise.resolve();
  private dropsPending = 0;
  private dropSeq = 0;
  private readonly opening = new Map<number, Promise<StageFile>>();
  private takeBuffer(bytes: number): Buffer {
    if (bytes > BATCH_BUFFER_BYTES) return Buffer.allocUnsafe(bytes);
    return batchBuffers.pop() ?? alignedBuffer(BATCH_BUFFER_BYTES);
  }

  private giveBuffer(buf: Buffer): void {
    if (buf.length === BATCH_BUFFER_BYTES && batchBuffers.length < BATCH_BUFFERS_KEPT) batchBuffers.push(buf);
  }

  private constructor(
    private readonly dir: string,
    private readonly root: RootDatabase,
    private readonly blockSize: number,
    private readonly index: Database<Buffer, [number, number, number]>,
    private readonly meta: Database<unknown, string>,
  ) {
    this.space = new SpaceGuard(dir);
  }

  /** Room on the staging file system, checked before LMDB is asked to commit (see SpaceGuard). */
  private readonly space: SpaceGuard;

  static async open(dir: string, blockSize: number): Promise<Staging> {
    const marker = join(dir, 'unsynced');
    if (existsSync(marker)) {
      const boot = readFileSync(marker, 'utf8').trim();
      // An empty marker is one mark() never finished (a full disk, or a crash before its
      // fsync): no write followed it, and the store is as its last full sync left it, which
      // may hold a live commit journal. Wiping it then would lose the journal of a commit
      // whose image writes had begun (found by recover-full-disk.test.ts: a retried
      // commit's marker met a full disk, and the restart wiped the first attempt's journal).
      if (boot === '') rmSync(marker, { force: true });
      else if (boot !== bootId() || boot === 'unknown') rmSync(dir, { recursive: true, force: true });
    }
    guardLmdbCommitRejections();
    // A large map costs only address space; the index stays small (16 B per run).
    const root = open({ path: dir, noSync: true, mapSize: 2 ** 36 });
    const s = new Staging(dir, root, blockSize, root.openDB({ name: 'index', encoding: 'binary' }), root.openDB({ name: 'meta' }));
    s.marked = existsSync(marker);
    const records: { n: number; first: number; gen: number; count: number; kind: number }[] = [];
    for (const { key, value } of s.index.getRange()) {
      const [n, first, gen] = s.checkKey(key);
      const { count, kind } = s.checkValue(value);
      records.push({ n, first, gen, count, kind });
      s.gen = Math.max(s.gen, gen);
    }
    // Oldest record first: a block's live copy is the one of its newest record.
    records.sort((a, b) => a.gen - b.gen);
    for (const r of records) {
      const set = s.setOf(r.n);
      set.blocks.addRange(r.first, r.count);
      if (r.kind === KIND_ZERO) set.zero.addRange(r.first, r.count);
      else for (let b = r.first; b < r.first + r.count; b++) set.zero.delete(b);
    }
    // Files whose records are gone (a crash between dropping the records and the file), and
    // dropped files whose removal a crash or a close cut short (dropFile).
    for (const name of readdirSync(dir)) {
      const m = /^(?:data|hashes)-(\d+)$/.exec(name);
      if ((m && !s.sets.has(Number(m[1]))) || name.startsWith('dropped-')) await rm(join(dir, name), { force: true });
    }
    // Hashes from the bytes held: zero blocks by their kind, the others read back from the file.
    const zeroHash = zeroBlockHash(blockSize);
    for (const [n, set] of s.sets) {
      const f = await s.fileOf(n);
      for (const [first, count] of set.blocks.runs(Math.max(1, Math.floor(REHASH_RUN_BYTES / blockSize)))) {
        let anyData = false;
        for (let b = first; b < first + count && !anyData; b++) anyData = !set.zero.has(b);
        const data = anyData ? await s.readData(n, first, count) : null;
        const hashes = Buffer.allocUnsafe(count * 8);
        for (let i = 0; i < count; i++) {
          const b = first + i;
          const h = data === null || set.zero.has(b) ? zeroHash : blockHash(data.subarray(i * blockSize, (i + 1) * blockSize));
          hashes.writeBigUInt64LE(h, i * 8);
          set.digest.add(b, h);
        }
        writeFullSync(f.hashes.fd, hashes, first * 8);
      }
    }
    return s;
  }

  private checkKey(key: unknown): [number, number, number] {
    if (!Array.isArray(key) || key.length !== 3 || !key.every((k) => Number.isSafeInteger(k) && k >= 0)) {
      throw new HeadstartError('VOLUME_CORRUPT', 'a staged run record is damaged');
    }
    return [key[0], key[1], key[2]];
  }

  private checkValue(value: Buffer): { count: number; kind: number } {
    if (!Buffer.isBuffer(value) || value.length !== 8) throw new HeadstartError('VOLUME_CORRUPT', 'a staged run record is damaged');
    const count = value.readUInt32LE(0);
    const kind = value.readUInt32LE(4);
    if (count === 0 || (kind !== KIND_ZERO && kind !== KIND_DATA)) throw new HeadstartError('VOLUME_CORRUPT', 'a staged run record is damaged');
    return { count, kind };
  }

  private fileName(n: number): string {
    return join(this.dir, `data-${n}`);
  }

  private hashFileName(n: number): string {
    return join(this.dir, `hashes-${n}`);
  }

  private fileOf(n: number): Promise<StageFile> {
    const f = this.files.get(n);
    if (f) return Promise.resolve(f);
    let p = this.opening.get(n);
    if (!p) {
      // read-write, created if missing, never truncated
      p = openFile(this.fileName(n), fsConstants.O_RDWR | fsConstants.O_CREAT)
        .then(async (fh) => {
          const direct = await openFile(this.fileName(n), fsConstants.O_RDWR | fsConstants.O_DIRECT).catch(() => null);
          const hashes = await openFile(this.hashFileName(n), fsConstants.O_RDWR | fsConstants.O_CREAT);
          const file: StageFile = { fh, direct, hashes, unflushed: 0, flushing: Promise.resolve() };
          this.files.set(n, file);
          return file;
        })
        .finally(() => this.opening.delete(n));
      this.opening.set(n, p);
    }
    return p;
  }

  /** Content of blocks [first, first+count) of n from its file (a hole or a short file reads as zeroes). */
  private async readData(n: number, first: number, count: number, into?: Buffer): Promise<Buffer> {
    const bs = this.blockSize;
    const out = into && into.length >= count * bs ? into.subarray(0, count * bs) : Buffer.allocUnsafe(count * bs);
    if (!this.files.has(n) && !existsSync(this.fileName(n))) return out.fill(0);
    const f = await this.fileOf(n);
    let done = 0;
    // The commit's reads (into an aligned buffer) go past the page cache; the end of the
    // file (a short read), anything unaligned, and runs too short to be written past the
    // cache (writeRuns: most likely still in it) go through it.
    let direct = out.length >= DIRECT_WRITE_MIN_BYTES && f.direct !== null && out.buffer === into?.buffer && out.byteOffset % DIRECT_ALIGN === 0 && (first * bs) % DIRECT_ALIGN === 0 && out.length % DIRECT_ALIGN === 0;
    while (done < out.length) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await (direct ? f.direct! : f.fh).read(out, done, out.length - done, first * bs + done));
      } catch (err) {
        if (!direct || (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        direct = false; // the kernel refused the buffer: the cache then
        continue;
      }
      if (bytesRead === 0) break;
      done += bytesRead;
      if (done % DIRECT_ALIGN !== 0) direct = false;
    }
    return out.fill(0, done);
  }

  /**
   * Makes the "unsynced writes may exist" marker durable before the first such write. If it
   * cannot (a full disk), nothing was written after it: the partial marker goes (open()
   * reads an empty one as guarding nothing) and the caller gets VOLUME_NO_SPACE, not a raw
   * ENOSPC that the link would report as an internal failure.
   */
  private mark(): void {
    if (this.marked) return;
    const path = join(this.dir, 'unsynced');
    try {
      writeFileSync(path, bootId());
      fsyncPath(path);
      fsyncPath(this.dir);
    } catch (err) {
      rmSync(path, { force: true });
      throw fromSystemError(err, 'marking the staging store before unsynced writes');
    }
    this.marked = true;
  }

  /** Forces every staging write so far to disk (files, then LMDB), then drops the marker durably. */
  private async syncAll(): Promise<void> {
    for (const f of this.files.values()) {
      await f.flushing.catch(() => undefined);
      f.unflushed = 0;
      await f.fh.datasync();
    }
    await envSync(this.root);
    if (this.marked) {
      unlinkSync(join(this.dir, 'unsynced'));
      fsyncPath(this.dir);
      this.marked = false;
    }
  }

  private setOf(n: number): StagedSet {
    let set = this.sets.get(n);
    if (!set) {
      set = { blocks: new BlockSet(), zero: new BlockSet(), digest: new SnapshotDigest(), broken: false };
      this.sets.set(n, set);
    }
    return set;
  }

  /** Snapshots with staged blocks, ascending. */
  snapshots(): number[] {
    return [...this.sets.keys()].filter((n) => this.sets.get(n)!.blocks.size > 0).sort((a, b) => a - b);
  }

  staged(n: number): StagedSetInfo | undefined {
    return this.sets.get(n);
  }

  /**
   * Stages a batch of blocks of snapshot n (replacing earlier versions): the data runs go to
   * n's staging file, gathered from the frame's buffers, and every block's hash to its hash
   * file; then one LMDB transaction records the runs, and the digest takes the batch in.
   * Which blocks are staged (and which as zero blocks) changes at once. Resolves once the
   * batch is written (after the commit gate, if one is live).
   */
  stage(n: number, batch: readonly { block: number; hash: bigint; data: Uint8Array }[]): Promise<unknown> {
    const set = this.setOf(n);
    // A block twice in one batch (the wire allows it): its later copy is the newer one.
    const blocks = dedupeKeepingLast(batch);
    const before = new Map<number, Before>();
    for (const { block, data } of blocks) {
      before.set(block, { staged: set.blocks.has(block), zero: set.zero.has(block) });
      set.blocks.add(block);
      if (data.length === 0) set.zero.add(block);
      else set.zero.delete(block);
    }
    // Cut the batch into runs of adjacent blocks of one kind (data or zero); one record each.
    const records: StageRecord[] = [];
    for (let i = 0; i < blocks.length; ) {
      const zero = blocks[i].data.length === 0;
      let j = i + 1;
      while (j < blocks.length && blocks[j].block === blocks[j - 1].block + 1 && (blocks[j].data.length === 0) === zero) j++;
      records.push({ first: blocks[i].block, gen: ++this.gen, blocks: blocks.slice(i, j), zero });
      i = j;
    }
    let lo = Infinity;
    let hi = -1;
    for (const { block } of blocks) {
      lo = Math.min(lo, block);
      hi = Math.max(hi, block);
    }
    const earlier = [...this.pending].filter((p) => p.n === n && p.lo <= hi && lo <= p.hi).map((p) => p.done);
    const entry: PendingBatch = { n, seq: ++this.batchSeq, lo, hi, before, done: Promise.resolve() };
    const progress = { wrote: false };
    const write = async () => {
      if (earlier.length > 0) await Promise.all(earlier);
      while (this.gate) await this.gate;
      if (this.closing) throw new HeadstartError('REPL_STOPPED', `staging closed before point ${n}'s batch could be written`);
      const run = this.writeRecords(n, set, records, before, progress);
      this.running.add(run);
      try {
        await run;
      } finally {
        this.running.delete(run);
      }
    };
    const written = write();
    // A batch that failed to stage (a full disk) must not count as staged: the source's RESUME
    // skips what the replica lists, so the replica would commit points without those blocks.
    written.catch(() => this.unstage(set, entry, progress.wrote));
    entry.done = written.catch(() => undefined);
    this.pending.add(entry);
    void entry.done.then(() => this.pending.delete(entry));
    return written;
  }

  /**
   * Undoes a failed batch's place in its point. Failed before writing anything (the space
   * guard refused it, staging closed): its blocks are as they were before it, unless a later
   * batch restages them (that batch then replaces what this one replaced). Failed part-way: the
   * files may hold part of it and its hashes, so the point is marked broken (see StagedSetInfo).
   */
  private unstage(set: StagedSet, entry: PendingBatch, wrote: boolean): void {
    if (wrote) {
      set.broken = true;
      return;
    }
    const later = [...this.pending].filter((p) => p.n === entry.n && p.seq > entry.seq);
    for (const [block, was] of entry.before) {
      const next = later.find((p) => p.before.has(block));
      if (next) next.before.set(block, was);
      else if (!was.staged) {
        set.blocks.delete(block);
        set.zero.delete(block);
      } else if (was.zero) set.zero.add(block);
      else set.zero.delete(block);
    }
  }

  private async writeRecords(n: number, set: StagedSet, records: readonly StageRecord[], before: ReadonlyMap<number, Before>, progress: { wrote: boolean }): Promise<void> {
    const bs = this.blockSize;
    let dataBytes = 0;
    let blockCount = 0;
    for (const r of records) {
      blockCount += r.blocks.length;
      if (!r.zero) dataBytes += r.blocks.length * bs;
    }
    // The blocks, their hashes and their index records must fit with the reserve to spare; a
    // commit and its cleanup (which free the space) still find room in the reserve.
    const room = () => this.space.forWrites(records.length * 64, dataBytes + blockCount * 8, `staging ${records.length} run(s) of point ${n}`);
    try {
      room();
    } catch (err) {
      // Committed points' files still being removed (dropFile) give their space back when
      // done: a staging disk with room for about one point would refuse the next one until then.
      if (!isHeadstartError(err, 'VOLUME_NO_SPACE') || this.dropsPending === 0) throw err;
      await this.removing;
      room();
    }
    // Batches stage concurrently: each counts the others' bytes until they are written.
    this.space.writeStarted(dataBytes);
    try {
      this.mark();
      await this.writeRuns(n, set, records, before, progress);
    } catch (err) {
      throw isHeadstartError(err) ? err : fromSystemError(err, `staging blocks of point ${n}`);
    } finally {
      this.space.writeDone(dataBytes);
    }
  }

  private async writeRuns(n: number, set: StagedSet, records: readonly StageRecord[], before: ReadonlyMap<number, Before>, progress: { wrote: boolean }): Promise<void> {
    const bs = this.blockSize;
    const f = await this.fileOf(n);
    // The hashes of the copies this batch replaces, which the digest holds (the hash file has
    // them: the batches that wrote them are done, as overlapping batches go in order).
    const replaced = new Map<number, bigint>();
    for (const r of records) {
      if (!r.blocks.some((b) => before.get(b.block)!.staged)) continue;
      const old = Buffer.allocUnsafe(r.blocks.length * 8);
      readFullSync(f.hashes.fd, old, r.first * 8);
      r.blocks.forEach((b, i) => {
        if (before.get(b.block)!.staged) replaced.set(b.block, old.readBigUInt64LE(i * 8));
      });
    }
    progress.wrote = true;
    // The hashes, one small write per run into the page cache: written synchronously, as a
    // thread-pool round trip each they made staging 256 MiB of single scattered blocks 10-25 %
    // slower (tmp-diag/stagespeed.ts); synchronous, no slower than keeping them in a Map was.
    for (const r of records) {
      const hashes = Buffer.allocUnsafe(r.blocks.length * 8);
      r.blocks.forEach((b, i) => hashes.writeBigUInt64LE(b.hash, i * 8));
      writeFullSync(f.hashes.fd, hashes, r.first * 8);
    }
    // The batch's data runs are gathered into one reused buffer and written one plain write
    // per run: a writev of one iovec per 4 KiB block cost more main-thread time (1.3 ms per
    // MiB) than the copy, and a fresh buffer per batch costs page faults.
    let total = 0;
    for (const r of records) if (!r.zero) for (const b of r.blocks) total += b.data.length;
    const buf = total > 0 ? this.takeBuffer(total) : null;
    try {
      let off = 0;
      for (const r of records) {
        if (r.zero) continue;
        const start = off;
        for (const b of r.blocks) {
          buf!.set(b.data, off);
          off += b.data.length;
        }
        // Past the page cache when everything is aligned (see StageFile.direct) and the run is
        // not short: a short direct write into the sparse file's hole allocates its block there
        // and then, one write at a time per file (DIRECT_WRITE_MIN_BYTES); through the cache the
        // file system allocates at writeback, adjacent blocks together. A write may take less
        // than asked: go on from where it stopped (through the cache if off the boundary).
        let direct = off - start >= DIRECT_WRITE_MIN_BYTES && f.direct !== null && start % DIRECT_ALIGN === 0 && (off - start) % DIRECT_ALIGN === 0 && (r.first * bs) % DIRECT_ALIGN === 0;
        for (let done = start; done < off; ) {
          try {
            done += (await (direct ? f.direct! : f.fh).write(buf!, done, off - done, r.first * bs + (done - start))).bytesWritten;
          } catch (err) {
            if (!direct || (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
            direct = false;
            continue;
          }
          if ((done - start) % DIRECT_ALIGN !== 0) direct = false;
        }
        f.unflushed += r.blocks.length * bs;
      }
    } finally {
      if (buf) this.giveBuffer(buf);
    }
    this.root.transactionSync(() => {
      for (const r of records) {
        const value = Buffer.allocUnsafe(8);
        value.writeUInt32LE(r.blocks.length, 0);
        value.writeUInt32LE(r.zero ? KIND_ZERO : KIND_DATA, 4);
        this.index.putSync([n, r.first, r.gen], value);
      }
    });
    for (const r of records) {
      for (const { block, hash } of r.blocks) {
        const old = replaced.get(block);
        if (old !== undefined) set.digest.remove(block, old);
        set.digest.add(block, hash);
      }
    }
    if (f.unflushed >= STAGE_FLUSH_BYTES) {
      // Let the disk take what is staged while more arrives; a commit's sync then finds little left.
      f.unflushed = 0;
      f.flushing = f.flushing.then(() => f.fh.datasync()).catch(() => undefined);
    }
  }

  /**
   * What RESUME lists of point n: at most `max` of its staged blocks, ascending, as
   * [block u64 LE, hash u64 LE] entries (after every batch in flight has landed).
   */
  async entries(n: number, max: number): Promise<Buffer> {
    await this.settled();
    const set = this.sets.get(n);
    if (!set || set.broken) return Buffer.alloc(0);
    const out = Buffer.allocUnsafe(Math.min(set.blocks.size, max) * 16);
    const f = await this.fileOf(n);
    let at = 0;
    let window: [number, number][] = [];
    let windowBlocks = 0;
    const readWindow = () => {
      if (window.length === 0) return;
      const first = window[0][0];
      const last = window.at(-1)!;
      const hashes = Buffer.allocUnsafe((last[0] + last[1] - first) * 8);
      readFullSync(f.hashes.fd, hashes, first * 8);
      for (const [b, count] of window) {
        for (let i = 0; i < count; i++) {
          out.writeBigUInt64LE(BigInt(b + i), at);
          hashes.copy(out, at + 8, (b + i - first) * 8, (b + i - first + 1) * 8);
          at += 16;
        }
      }
      window = [];
      windowBlocks = 0;
    };
    for (const [first, whole] of set.blocks.runs(HASH_READ_WINDOW)) {
      const listed = at / 16 + windowBlocks;
      if (listed >= out.length / 16) break;
      const count = Math.min(whole, out.length / 16 - listed);
      const start = window.length > 0 ? window[0][0] : first;
      const end = window.length > 0 ? window.at(-1)![0] + window.at(-1)![1] : first;
      if (window.length > 0 && (first - end > HASH_READ_GAP || first + count - start > HASH_READ_WINDOW)) readWindow();
      window.push([first, count]);
      windowBlocks += count;
    }
    readWindow();
    return out.subarray(0, at);
  }

  /** Opens the commit gate (see the header): the batches waiting at it go on. */
  private releaseGate(): void {
    const open = this.openGate;
    this.gate = null;
    this.openGate = null;
    open?.();
  }

  /** Every stage() so far is written (or failed). */
  async settled(): Promise<void> {
    await Promise.all([...this.pending].map((p) => p.done));
  }

  journal(): Journal | null {
    const raw = this.meta.get('journal');
    return raw === undefined ? null : decodeJournal(raw);
  }

  /** Marks "committing point": durable, with every staged block, before it returns. From here
   * until finish(), staging writes wait. */
  async writeJournal(point: SnapshotPoint): Promise<void> {
    if (!this.gate) this.gate = new Promise((r) => (this.openGate = r));
    try {
      await Promise.all([...this.running].map((r) => r.catch(() => undefined)));
      await this.syncAll();
      this.mark();
      this.space.forMetadata(`journaling the commit of point ${point.n}`);
      await this.meta.put('journal', { point: { n: point.n, scheduledAt: point.scheduledAt, closedAt: point.closedAt, lastSeq: point.lastSeq } });
      await this.syncAll();
    } catch (err) {
      // No journal, no commit to finish: open the gate again, or every later batch, and
      // close(), would wait for a finish() that never comes (a full disk refused the journal:
      // a promotion hung on it). A journal that was written stays, gate shut, for the redo.
      if (this.journal() === null) this.releaseGate();
      throw err;
    }
  }

  /**
   * Drops the journal but keeps the staged blocks (a consistency group's commit that was
   * never decided: no member wrote the point, and its source sends CLOSE again), syncs, and
   * lets staging writes go on.
   */
  async dropJournal(): Promise<void> {
    try {
      this.mark();
      this.space.forMetadata('dropping an undecided commit journal');
      await this.meta.remove('journal');
      await this.syncAll();
    } finally {
      this.releaseGate();
    }
  }

  /** Where the live staged blocks of n are: runs of one kind (data or zero) of at most
   * maxBytes, ascending. */
  plan(n: number, maxBytes: number): { block: number; count: number; zero: boolean }[] {
    const set = this.sets.get(n);
    if (!set) return [];
    const maxBlocks = Math.max(1, Math.floor(maxBytes / this.blockSize));
    const out: { block: number; count: number; zero: boolean }[] = [];
    for (const [first, count] of set.blocks.runs()) {
      for (let i = 0; i < count; ) {
        const zero = set.zero.has(first + i);
        let j = i + 1;
        while (j < count && j - i < maxBlocks && set.zero.has(first + j) === zero) j++;
        out.push({ block: first + i, count: j - i, zero });
        i = j;
      }
    }
    return out;
  }

  /** The content of one run of plan(n), in `into` if it is large enough (a reused buffer). */
  async read(n: number, run: { block: number; count: number; zero: boolean }, into?: Buffer): Promise<Buffer> {
    if (!run.zero) return this.readData(n, run.block, run.count, into);
    const bytes = run.count * this.blockSize;
    return into && into.length >= bytes ? into.subarray(0, bytes).fill(0) : Buffer.alloc(bytes);
  }

  /** The live staged blocks of n with their content, run by run (see plan). */
  async *runs(n: number, maxBytes: number): AsyncGenerator<{ block: number; data: Buffer }> {
    for (const run of this.plan(n, maxBytes)) yield { block: run.block, data: await this.read(n, run) };
  }

  /** Closes and deletes n's staging file; only once no durable record points into it. */
  private async dropFile(n: number): Promise<void> {
    const f = this.files.get(n);
    this.files.delete(n);
    if (f) {
      await f.flushing.catch(() => undefined);
      await f.fh.close().catch(() => undefined);
      await f.direct?.close().catch(() => undefined);
      await f.hashes.close().catch(() => undefined);
    }
    // Out of the way at once (a rename), removed in the background: unlinking a point's data
    // file frees every extent of it, and scattered blocks make one each. It held the ACK of a
    // committed point of 405,868 scattered 4 KiB blocks for 35 s (tmp-diag/e2e-fio-phases.sh).
    // A file left behind by a crash or a close goes at the next open.
    for (const path of [this.fileName(n), this.hashFileName(n)]) {
      const dropped = join(this.dir, `dropped-${process.pid}-${++this.dropSeq}`);
      try {
        renameSync(path, dropped);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      this.dropsPending++;
      this.removing = this.removing
        .then(() => rm(dropped, { force: true }))
        .catch(() => undefined) // left for the next open() to remove
        .finally(() => this.dropsPending--);
    }
  }

  /** Resolves once the files dropped so far are removed (for tests; close() does not wait). */
  removed(): Promise<void> {
    return this.removing;
  }

  /** Drops the journal and the staged blocks of n in one transaction (the end of a commit),
   * syncs, and lets staging writes go on. */
  async finish(n: number): Promise<void> {
    try {
      this.mark();
      this.space.forMetadata(`finishing the commit of point ${n}`);
      await this.root.transaction(() => {
        this.meta.remove('journal');
        for (const key of this.index.getKeys({ start: [n], end: [n + 1] })) this.index.remove(key);
      });
      this.sets.delete(n);
      await this.syncAll();
      await this.dropFile(n);
    } finally {
      this.releaseGate();
    }
  }

  /** Forgets the staged blocks of every snapshot in `ns` (digest mismatch, or already committed). */
  async discard(ns: readonly number[]): Promise<void> {
    if (ns.length === 0) return;
    await this.gate;
    await this.settled();
    this.mark();
    this.space.forMetadata('discarding staged points');
    await this.root.transaction(() => {
      for (const n of ns) for (const key of this.index.getKeys({ start: [n], end: [n + 1] })) this.index.remove(key);
    });
    for (const n of ns) this.sets.delete(n);
    // The records' removal must be durable before their files go (see the header).
    await envSync(this.root);
    for (const n of ns) await this.dropFile(n);
  }

  async close(): Promise<void> {
    // Batches waiting at a live journal's gate (its commit stopped half-way) would wait for a
    // finish() that this process will not do: they give up (the source sends them again),
    // and the journal stays for the next open's redo.
    this.closing = true;
    this.releaseGate();
    await this.settled();
    await this.syncAll().catch(() => undefined);
    for (const f of this.files.values()) {
      await f.fh.close().catch(() => undefined);
      await f.direct?.close().catch(() => undefined);
      await f.hashes.close().catch(() => undefined);
    }
    this.files.clear();
    await this.root.close();
  }
}
