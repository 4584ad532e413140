/**
 * The volume's raw image file: positioned reads and writes on a plain fd.
 *
 * Why not fs/promises' FileHandle: each FileHandle.read/write builds an FSReqPromise (with
 * its own stats array) and goes through the promise machinery of fs/promises; profiling a
 * 4 KiB random-write load showed that native call alone as a quarter of the main thread's
 * time. The callback API on the fd does the same pread(2)/pwrite(2) on libuv's thread pool
 * for less, and we wrap each whole request (all its short-read/short-write rounds) in one
 * promise.
 *
 * Writes up to 1 MiB inline: handing a 4 KiB pwrite to the thread pool (queue, futex wake-up
 * of a worker, completion back through the event loop) cost about 15 µs of CPU per write here,
 * against 2-4 µs for the pwrite itself, which normally only copies into the page cache. So
 * writes up to INLINE_WRITE_MAX are done with pwrite(2) right on the event loop while they
 * stay that fast. When the kernel starts throttling (dirty-page writeback) or the device is
 * slow, an inline write takes long and would stall every connection; then we go back to the
 * thread pool for INLINE_BACKOFF_MS before trying again. What this cannot cover: a device
 * that hangs in the middle of one inline write stalls the event loop for that write. Reads
 * always use the thread pool (a cache miss is a device read).
 *
 * Larger writes (and all writes while backed off) go to the thread pool one at a time per
 * image, combined with any queued ones that continue them (see startPoolWrite).
 *
 * Closing: a raw fd number is reused by the OS as soon as it is closed, so an operation
 * still queued could touch another file. `close()` first waits until no operation is in
 * flight, and every operation after close() fails with VOLUME_CLOSED.
 *
 * Bulk writes that nobody reads soon (a replica applying a committed point) can bypass the
 * page cache: pwriteDirect, on a second fd opened with O_DIRECT, from buffers made by
 * alignedBuffer (see there).
 *
 * Errors come out as HeadstartErrors already (VOLUME_IO, VOLUME_NO_SPACE), naming the step.
 */
import { close, constants as fsConstants, fdatasync, fstat, ftruncate, open, read, write, writeSync, writev } from 'node:fs';
import { HeadstartError, fromSystemError } from '@headstart/errors';

/**
 * Writes up to this size may go inline: a 4 KiB random-write load, and also 1 MiB writes.
 * A 1 MiB page-cache write takes 100-200 µs, which the event loop can afford, and handing
 * it to a worker costs more than it saves on a small machine: the worker must be woken and
 * pull the payload into another core's cache while the client competes for the same cores.
 * Measured through NBD (1 MiB sequential writes, iodepth 8, 2 cores, side by side with
 * nbdkit): thread pool 0.59 and 0.73 of nbdkit at 496-533 µs CPU per write, inline 0.94 and
 * 0.84 at 434-480 µs. Larger requests still go to the thread pool.
 */
const INLINE_WRITE_MAX = 1024 * 1024;
/**
 * pwriteDirect sends writes smaller than this through the page cache. An O_DIRECT write into
 * a hole of the sparse image allocates its blocks there and then, one write at a time per
 * file (ext4 serializes those and journals each): a commit of 122,718 scattered 4 KiB blocks
 * ran at ~5,000 blocks/s. Through the cache the file system allocates at writeback, adjacent
 * blocks together, and the commit's datasync writes them out (tmp-diag/e2e-fio-phases.sh,
 * with staging's short runs going through the cache too: that point acknowledged 23.8 s
 * after its close instead of 39.3 s).
 */
export const DIRECT_WRITE_MIN_BYTES = 64 * 1024;
/**
 * When inline writes stop being fast. A 4 KiB page-cache write takes 3-10 µs here, a 1 MiB
 * one 100-200 µs; dirty-page throttling pauses a writer for 1-200 ms at a time, a busy
 * device makes each write wait. So: one write over INLINE_STALL_NS, or, across a window of
 * at least INLINE_WINDOW_MIN writes, more time than INLINE_SLOW_MEAN_NS per write plus
 * INLINE_SLOW_NS_PER_BYTE per byte (slower than 2 GB/s is not a page-cache copy any more).
 * Not any single write over a few ms: on a loaded machine a write is now and then preempted
 * that long without anything being wrong with the disk.
 */
const INLINE_STALL_NS = 20_000_000;
const INLINE_SLOW_MEAN_NS = 250_000;
const INLINE_SLOW_NS_PER_BYTE = 0.5;
const INLINE_WINDOW_NS = 100_000_000;
const INLINE_WINDOW_MIN = 16;
/** How long to stay on the thread pool once the budget was overrun. */
const INLINE_BACKOFF_MS = 1000;
/** Bounds of one combined thread-pool write (iovec count; bytes, so one write stays short). */
const WRITE_BATCH_MAX = 64;
const WRITE_BATCH_BYTES = 16 * 1024 * 1024;

/**
 * O_DIRECT needs the file offset, the length and the buffer's address aligned to the
 * device's logical block size: 4096 covers every disk (512e and 4Kn alike).
 */
export const DIRECT_ALIGN = 4096;

/** The one part of the WebAssembly API used here (the project's TypeScript libs do not declare it). */
declare const WebAssembly: { Memory: new (descriptor: { initial: number; maximum?: number }) => { readonly buffer: ArrayBuffer } };

/** Aligned memory comes from slabs of this size (see alignedBuffer). */
const SLAB_BYTES = 32 * 1024 * 1024;
let slab: ArrayBuffer | null = null;
let slabUsed = 0;

/**
 * A buffer whose memory starts on a page boundary, for direct I/O. Node has no aligned
 * allocation (a Buffer's memory is only 16-byte aligned), but a WebAssembly memory's is
 * page-aligned. Each WebAssembly memory reserves gigabytes of address space (its guard
 * region), so buffers are carved from shared 32 MiB slabs and never given back: callers
 * keep a few and reuse them (the replica's apply workers, staging's batch buffers).
 */
export function alignedBuffer(bytes: number): Buffer {
  const size = Math.ceil(bytes / DIRECT_ALIGN) * DIRECT_ALIGN;
  if (size > SLAB_BYTES / 4) return Buffer.from(wasmMemory(size), 0, bytes);
  if (slab === null || slabUsed + size > SLAB_BYTES) {
    slab = wasmMemory(SLAB_BYTES);
    slabUsed = 0;
  }
  const buf = Buffer.from(slab, slabUsed, bytes);
  slabUsed += size;
  return buf;
}

function wasmMemory(bytes: number): ArrayBuffer {
  const pages = Math.ceil(bytes / 65536);
  return new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer;
}

interface QueuedWrite {
  readonly data: Uint8Array;
  readonly position: number;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

export class ImageFile {
  /** Date.now() before which writes up to INLINE_WRITE_MAX go to the thread pool too. */
  private inlineAfter = 0;
  /** hrtime (ns) the current window started; inline writes in it and the time they took. */
  private windowStart = 0;
  private windowWrites = 0;
  private windowBytes = 0;
  private windowUsed = 0;
  private inflight = 0;
  /** Thread-pool writes waiting for their turn, and whether one is running (startPoolWrite). */
  private readonly writeQueue: QueuedWrite[] = [];
  private poolWriting = false;
  private closing: (() => void) | null = null;
  private closed = false;

  /** The O_DIRECT fd of pwriteDirect: opened on first use; false once the file system refused it. */
  private direct: Promise<number | false> | null = null;

  private constructor(
    private readonly fd: number,
    private readonly path: string,
  ) {}

  /** Opens an existing image ('r+') or creates/truncates one ('w+'). */
  static open(path: string, flags: 'r+' | 'w+'): Promise<ImageFile> {
    return new Promise((resolve, reject) => open(path, flags, 0o644, (err, fd) => (err ? reject(err) : resolve(new ImageFile(fd, path)))));
  }

  /**
   * Writes all of `data` at `position` past the page cache (O_DIRECT), for bulk writes that
   * are synced right after and not read soon: a replica's commit. Why: the commit syncs the
   * image before it records the point, so caching its bytes buys nothing; it would double
   * the replica's page cache (staged copy, image copy) and, where growing the page cache is
   * slow, dominate the commit. Measured here, 128 MiB applied from a staging file by 4
   * workers: 0.74-1.23 s through the page cache (plus 70-80 ms of sync), 0.11-0.12 s direct
   * (nothing left to sync): this VM backs new guest memory lazily (free page reporting),
   * so each page the cache grows by costs a host fault; recycled pages are fast.
   *
   * `data` must come from alignedBuffer (the kernel checks the address). An unaligned
   * offset or length, a file system without O_DIRECT (tmpfs), or a buffer the kernel
   * refuses (EINVAL) falls back to pwrite: same bytes, through the cache. Direct and cached
   * writes of one range stay coherent (the kernel flushes and drops cached pages in the
   * range of a direct write).
   */
  async pwriteDirect(data: Uint8Array, position: number): Promise<void> {
    if (this.closed) return closedError();
    if (data.length < DIRECT_WRITE_MIN_BYTES || position % DIRECT_ALIGN !== 0 || data.length % DIRECT_ALIGN !== 0 || data.byteOffset % DIRECT_ALIGN !== 0) return this.pwrite(data, position);
    this.inflight++; // from here, so that close() waits for the open below too
    this.direct ??= new Promise((resolve) => open(this.path, fsConstants.O_RDWR | fsConstants.O_DIRECT, (err, fd) => resolve(err ? false : fd)));
    try {
      const fd = await this.direct;
      let done = 0;
      try {
        while (fd !== false && done < data.length) {
          const n = await new Promise<number>((resolve, reject) => write(fd, data, done, data.length - done, position + done, (err, written) => (err ? reject(err) : resolve(written))));
          if (n === 0) throw Object.assign(new Error('write wrote nothing'), { code: 'EIO' });
          done += n;
          if (done % DIRECT_ALIGN !== 0) break; // a short write off the alignment: the rest goes through the cache
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw fromSystemError(err, 'writing the volume image');
      }
      if (done < data.length) await this.pwrite(data.subarray(done), position + done);
    } finally {
      this.leave();
    }
  }

  /**
   * Fills `buf` from `position`. Past the end of the file reads as zeroes (the image is
   * sized at creation, so that only happens if it was truncated behind our back).
   */
  pread(buf: Uint8Array, position: number): Promise<void> {
    if (this.closed) return closedError();
    this.inflight++;
    return new Promise<void>((resolve, reject) => {
      let done = 0;
      const next = (err: NodeJS.ErrnoException | null, n: number): void => {
        if (err) return this.fail(reject, err, 'reading the volume image');
        if (n === 0) {
          buf.fill(0, done);
          return this.finish(resolve);
        }
        done += n;
        if (done >= buf.length) return this.finish(resolve);
        read(this.fd, buf, done, buf.length - done, position + done, next);
      };
      read(this.fd, buf, 0, buf.length, position, next);
    });
  }

  /** Writes all of `data` at `position` (repeating after a short write). */
  pwrite(data: Uint8Array, position: number): Promise<void> {
    if (this.closed) return closedError();
    if (data.length <= INLINE_WRITE_MAX && (this.inlineAfter === 0 || Date.now() >= this.inlineAfter)) return this.pwriteInline(data, position);
    this.inflight++;
    return new Promise<void>((resolve, reject) => {
      this.writeQueue.push({ data, position, resolve, reject });
      if (!this.poolWriting) this.startPoolWrite();
    });
  }

  /**
   * One thread-pool write at a time, taking along every queued write that continues it
   * exactly (one pwritev). Why: a buffered write holds the file's inode lock for its whole
   * length (ext4), so parallel pwrites on one image do not overlap anyway; they spin on that
   * lock and each costs a worker wake-up. Sequential 1 MiB writes at depth 8 mostly arrive
   * while the previous one is still being written, and then leave as one write of several MiB:
   * measured through NBD, thread-pool CPU per 1 MiB write went from about 245 µs to 140 µs.
   * Requests are independent here: overlapping ones are never in flight together (the
   * volume's block locks), so combining or reordering disjoint ranges is safe.
   */
  private startPoolWrite(): void {
    const queue = this.writeQueue;
    const batch = [queue.shift()!];
    let end = batch[0].position + batch[0].data.length;
    let bytes = batch[0].data.length;
    for (let i = 0; i < queue.length && batch.length < WRITE_BATCH_MAX && bytes < WRITE_BATCH_BYTES; ) {
      if (queue[i].position === end) {
        const w = queue.splice(i, 1)[0];
        batch.push(w);
        end += w.data.length;
        bytes += w.data.length;
        i = 0; // an earlier queued write may continue the new end
      } else {
        i++;
      }
    }
    this.poolWriting = true;
    const done = (err: NodeJS.ErrnoException | null): void => {
      this.poolWriting = false;
      for (const w of batch) {
        if (err) this.fail(w.reject, err, 'writing the volume image');
        else this.finish(w.resolve);
      }
      if (queue.length > 0 && !this.poolWriting) this.startPoolWrite();
    };
    writeAll(this.fd, batch.map((w) => w.data), batch[0].position, done);
  }

  private pwriteInline(data: Uint8Array, position: number): Promise<void> {
    const t0 = now();
    try {
      let done = 0;
      while (done < data.length) done += writeSync(this.fd, data, done, data.length - done, position + done);
    } catch (err) {
      return Promise.reject(fromSystemError(err, 'writing the volume image'));
    } finally {
      const t1 = now();
      if (t1 - this.windowStart > INLINE_WINDOW_NS) {
        this.windowStart = t0;
        this.windowWrites = 0;
        this.windowBytes = 0;
        this.windowUsed = 0;
      }
      this.windowWrites++;
      this.windowBytes += data.length;
      this.windowUsed += t1 - t0;
      const budget = INLINE_SLOW_MEAN_NS * this.windowWrites + INLINE_SLOW_NS_PER_BYTE * this.windowBytes;
      const slowMean = this.windowWrites >= INLINE_WINDOW_MIN && this.windowUsed > budget;
      if (t1 - t0 > INLINE_STALL_NS || slowMean) {
        this.inlineAfter = Date.now() + INLINE_BACKOFF_MS;
        this.windowStart = 0;
      } else {
        this.inlineAfter = 0;
      }
    }
    return Promise.resolve();
  }

  /** fdatasync(2); `doing` names the step in the error (e.g. 'flushing the volume image'). */
  datasync(doing = 'syncing the volume image'): Promise<void> {
    return this.call((cb) => fdatasync(this.fd, cb), doing);
  }

  truncate(size: number): Promise<void> {
    return this.call((cb) => ftruncate(this.fd, size, cb), 'sizing the volume image');
  }

  size(): Promise<number> {
    if (this.closed) return closedError();
    this.inflight++;
    return new Promise((resolve, reject) =>
      fstat(this.fd, (err, st) => (err ? this.fail(reject, err, 'inspecting the volume image') : this.finish(() => resolve(st.size)))),
    );
  }

  /** Waits for operations in flight, then closes the fd. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.inflight > 0) await new Promise<void>((resolve) => (this.closing = resolve));
    const direct = this.direct === null ? false : await this.direct;
    if (direct !== false) await new Promise<void>((resolve) => close(direct, () => resolve()));
    await new Promise<void>((resolve, reject) => close(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  private call(op: (cb: (err: NodeJS.ErrnoException | null) => void) => void, doing: string): Promise<void> {
    if (this.closed) return closedError();
    this.inflight++;
    return new Promise((resolve, reject) => op((err) => (err ? this.fail(reject, err, doing) : this.finish(resolve))));
  }

  private finish(resolve: () => void): void {
    this.leave();
    resolve();
  }

  private fail(reject: (err: unknown) => void, err: unknown, doing: string): void {
    this.leave();
    reject(fromSystemError(err, doing));
  }

  private leave(): void {
    if (--this.inflight === 0 && this.closing !== null) {
      const wake = this.closing;
      this.closing = null;
      wake();
    }
  }
}

/** Monotonic ns as a double (exact for 104 days of uptime; plenty for 100 ms windows). */
function now(): number {
  const [sec, ns] = process.hrtime();
  return sec * 1e9 + ns;
}

function closedError(): Promise<never> {
  return Promise.reject(new HeadstartError('VOLUME_CLOSED', 'the volume image is closed'));
}

/** pwritev of all of `buffers` at `position`, continuing after short writes. */
function writeAll(fd: number, buffers: Uint8Array[], position: number, done: (err: NodeJS.ErrnoException | null) => void): void {
  writev(fd, buffers, position, (err, written) => {
    if (err) return done(err);
    let left = written;
    let i = 0;
    while (i < buffers.length && left >= buffers[i].length) left -= buffers[i++].length;
    if (i === buffers.length) return done(null);
    if (written === 0) return done(Object.assign(new Error('pwritev wrote nothing'), { code: 'EIO' }));
    const rest = buffers.slice(i);
    rest[0] = rest[0].subarray(left);
    writeAll(fd, rest, position + written, done);
  });
}

