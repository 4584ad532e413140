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
 * the highest gen is the live one (tracked in memory, rebuilt on open). A write waits for
 * the earlier writes of the same snapshot whose block span overlaps its own (others run
 * alongside), so the file holds the latest copy of every block it holds;
 * a record is written only after its content is in the file. Hashes are recomputed from
 * the file on open (xxhash runs at GB/s), so whatever a crash left there, the hashes the
 * replica reports (RESUME) and commits against are those of the bytes it holds.
 * The replica volume does not change while blocks stage.
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
import { DIRECT_ALIGN, SpaceGuard, alignedBuffer, guardLmdbCommitRejections, type SnapshotPoint } from '@headstart/volume';
import { constants as fsConstants, closeSync, existsSync, fsyncSync, openSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { open as openFile, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { StagedBlocks } from './staged-blocks';

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
  /** block -> the gen of the record holding its live copy, and that copy's hash. */
  readonly blocks: StagedBlocks;
  readonly digest: SnapshotDigest;
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
  /** Bytes written since the last flush started. */
  unflushed: number;
  /** The latest background flush (a full sync waits for it, then syncs again). */
  flushing: Promise<unknown>;
}

export class Staging {
  private readonly sets = new Map<number, StagedSetInfo>();
  /** Staging writes not finished yet, with the block span each covers: a write waits for the
   * earlier ones of the same snapshot whose span overlaps its own (so the file ends up with
   * the latest copy of a resent block), and runs alongside the others. */
  private readonly pending = new Set<{ n: number; lo: number; hi: number; done: Promise<unknown> }>();
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
    for (const r of records) {
      const set = s.setOf(r.n);
      for (let i = 0; i < r.count; i++) if ((set.blocks.gen(r.first + i) ?? -1) < r.gen) set.blocks.put(r.first + i, r.gen, 0n);
    }
    // Hashes from the bytes held: zero runs by their kind, data runs read back from the file.
    for (const r of records) {
      const set = s.sets.get(r.n)!;
      const data = r.kind === KIND_DATA ? await s.readData(r.n, r.first, r.count) : null;
      for (let i = 0; i < r.count; i++) {
        const b = r.first + i;
        if (set.blocks.gen(b) !== r.gen) continue;
        set.blocks.put(b, r.gen, data === null ? zeroBlockHash(blockSize) : blockHash(data.subarray(i * blockSize, (i + 1) * blockSize)));
      }
    }
    for (const set of s.sets.values()) set.blocks.forEach((b, _gen, h) => set.digest.add(b, h));
    // Files whose records are gone (a crash between dropping the records and the file).
    for (const name of readdirSync(dir)) {
      const m = /^data-(\d+)$/.exec(name);
      if (m && !s.sets.has(Number(m[1]))) await rm(join(dir, name), { force: true });
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

  private fileOf(n: number): Promise<StageFile> {
    const f = this.files.get(n);
    if (f) return Promise.resolve(f);
    let p = this.opening.get(n);
    if (!p) {
      // read-write, created if missing, never truncated
      p = openFile(this.fileName(n), fsConstants.O_RDWR | fsConstants.O_CREAT)
        .then(async (fh) => {
          const direct = await openFile(this.fileName(n), fsConstants.O_RDWR | fsConstants.O_DIRECT).catch(() => null);
          const file: StageFile = { fh, direct, unflushed: 0, flushing: Promise.resolve() };
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
    // file (a short read) and anything unaligned go through it.
    let direct = f.direct !== null && out.buffer === into?.buffer && out.byteOffset % DIRECT_ALIGN === 0 && (first * bs) % DIRECT_ALIGN === 0 && out.length % DIRECT_ALIGN === 0;
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

  private setOf(n: number): StagedSetInfo {
    let set = this.sets.get(n);
    if (!set) {
      set = { blocks: new StagedBlocks(), digest: new SnapshotDigest() };
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
   * n's staging file with one writev each, straight from the frame's buffers; then one
   * LMDB transaction records the runs. The in-memory set (blocks, digest) changes at once.
   * Resolves once the batch is written (after the commit gate, if one is live).
   */
  stage(n: number, blocks: readonly { block: number; hash: bigint; data: Uint8Array }[]): Promise<unknown> {
    const set = this.setOf(n);
    // Cut the batch into runs of adjacent blocks of one kind (data or zero); one record each.
    const records: { first: number; gen: number; count: number; data: Uint8Array[] | null }[] = [];
    for (let i = 0; i < blocks.length; ) {
      const zero = blocks[i].data.length === 0;
      let j = i + 1;
      while (j < blocks.length && blocks[j].block === blocks[j - 1].block + 1 && (blocks[j].data.length === 0) === zero) j++;
      const gen = ++this.gen;
      for (let k = i; k < j; k++) {
        const { block, hash } = blocks[k];
        const old = set.blocks.hash(block);
        if (old !== undefined) set.digest.remove(block, old);
        set.blocks.put(block, gen, hash);
        set.digest.add(block, hash);
      }
      records.push({ first: blocks[i].block, gen, count: j - i, data: zero ? null : blocks.slice(i, j).map((b) => b.data) });
      i = j;
    }
    let lo = Infinity;
    let hi = -1;
    for (const { block } of blocks) {
      lo = Math.min(lo, block);
      hi = Math.max(hi, block);
    }
    const before = [...this.pending].filter((p) => p.n === n && p.lo <= hi && lo <= p.hi).map((p) => p.done);
    const write = async () => {
      if (before.length > 0) await Promise.all(before);
      while (this.gate) await this.gate;
      if (this.closing) throw new HeadstartError('REPL_STOPPED', `staging closed before point ${n}'s batch could be written`);
      const run = this.writeRecords(n, records);
      this.running.add(run);
      try {
        await run;
      } finally {
        this.running.delete(run);
      }
    };
    const written = write();
    // A batch that failed to stage (a full disk) must not count as staged: the set already
    // holds its hashes, and the source's RESUME skips what the set says the replica has,
    // so the replica committed points without those blocks and acknowledged them. Its
    // blocks leave the set (unless a later batch has replaced them meanwhile): the digest
    // then disagrees at CLOSE, or RESUME asks for them again.
    written.catch(() => {
      for (const r of records) {
        for (let b = r.first; b < r.first + r.count; b++) {
          if (set.blocks.gen(b) !== r.gen) continue;
          set.digest.remove(b, set.blocks.hash(b)!);
          set.blocks.delete(b);
        }
      }
    });
    const entry = { n, lo, hi, done: written.catch(() => undefined) };
    this.pending.add(entry);
    void entry.done.then(() => this.pending.delete(entry));
    return written;
  }

  private async writeRecords(n: number, records: readonly { first: number; gen: number; count: number; data: Uint8Array[] | null }[]): Promise<void> {
    const bs = this.blockSize;
    let dataBytes = 0;
    for (const r of records) if (r.data !== null) dataBytes += r.count * bs;
    // The blocks and their index records must fit with the reserve to spare; a commit and
    // its cleanup (which free the space) still find room in the reserve.
    this.space.forWrites(records.length * 64, dataBytes, `staging ${records.length} run(s) of point ${n}`);
    // Batches stage concurrently: each counts the others' bytes until they are written.
    this.space.writeStarted(dataBytes);
    try {
      this.mark();
      await this.writeRuns(n, records);
    } catch (err) {
      throw isHeadstartError(err) ? err : fromSystemError(err, `staging blocks of point ${n}`);
    } finally {
      this.space.writeDone(dataBytes);
    }
  }

  private async writeRuns(n: number, records: readonly { first: number; gen: number; count: number; data: Uint8Array[] | null }[]): Promise<void> {
    const bs = this.blockSize;
    let f: StageFile | null = null;
    // The batch's data runs are gathered into one reused buffer and written one plain write
    // per run: a writev of one iovec per 4 KiB block cost more main-thread time (1.3 ms per
    // MiB) than the copy, and a fresh buffer per batch costs page faults.
    let total = 0;
    for (const r of records) if (r.data !== null) for (const d of r.data) total += d.length;
    const buf = total > 0 ? this.takeBuffer(total) : null;
    try {
      let off = 0;
      for (const r of records) {
        if (r.data === null) continue;
        f ??= await this.fileOf(n);
        const start = off;
        for (const d of r.data) {
          buf!.set(d, off);
          off += d.length;
        }
        // Past the page cache when everything is aligned (see StageFile.direct); a write may
        // take less than asked: go on from where it stopped (through the cache if off the boundary).
        let direct = f.direct !== null && start % DIRECT_ALIGN === 0 && (off - start) % DIRECT_ALIGN === 0 && (r.first * bs) % DIRECT_ALIGN === 0;
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
        f.unflushed += r.count * bs;
      }
    } finally {
      if (buf) this.giveBuffer(buf);
    }
    this.root.transactionSync(() => {
      for (const r of records) {
        const value = Buffer.allocUnsafe(8);
        value.writeUInt32LE(r.count, 0);
        value.writeUInt32LE(r.data === null ? KIND_ZERO : KIND_DATA, 4);
        this.index.putSync([n, r.first, r.gen], value);
      }
    });
    if (f && f.unflushed >= STAGE_FLUSH_BYTES) {
      // Let the disk take what is staged while more arrives; a commit's sync then finds little left.
      f.unflushed = 0;
      const file = f;
      file.flushing = file.flushing.then(() => file.fh.datasync()).catch(() => undefined);
    }
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

  /** Where the live staged blocks of n are: runs of at most maxBytes, in record order (runs
   * are disjoint, so the order they are applied in does not matter). */
  plan(n: number, maxBytes: number): { block: number; count: number; zero: boolean }[] {
    const set = this.sets.get(n);
    if (!set) return [];
    const maxBlocks = Math.max(1, Math.floor(maxBytes / this.blockSize));
    const out: { block: number; count: number; zero: boolean }[] = [];
    for (const { key, value } of this.index.getRange({ start: [n], end: [n + 1] })) {
      const [, first, gen] = this.checkKey(key);
      const { count, kind } = this.checkValue(value);
      for (let i = 0; i < count; ) {
        if (set.blocks.gen(first + i) !== gen) {
          i++;
          continue;
        }
        let j = i + 1;
        while (j < count && j - i < maxBlocks && set.blocks.gen(first + j) === gen) j++;
        out.push({ block: first + i, count: j - i, zero: kind === KIND_ZERO });
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
    }
    await rm(this.fileName(n), { force: true });
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
    }
    this.files.clear();
    await this.root.close();
  }
}
