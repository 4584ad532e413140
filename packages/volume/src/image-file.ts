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
 * Errors come out as HeadstartErrors already (VOLUME_IO, VOLUME_NO_SPACE), naming the step.
 */
import { close, fdatasync, fstat, ftruncate, open, read, writeSync, writev } from 'node:fs';
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

  private constructor(private readonly fd: number) {}

  /** Opens an existing image ('r+') or creates/truncates one ('w+'). */
  static open(path: string, flags: 'r+' | 'w+'): Promise<ImageFile> {
    return new Promise((resolve, reject) => open(path, flags, 0o644, (err, fd) => (err ? reject(err) : resolve(new ImageFile(fd)))));
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

