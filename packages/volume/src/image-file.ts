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
 * Closing: a raw fd number is reused by the OS as soon as it is closed, so an operation
 * still queued could touch another file. `close()` first waits until no operation is in
 * flight, and every operation after close() fails with VOLUME_CLOSED.
 *
 * Errors come out as HeadstartErrors already (VOLUME_IO, VOLUME_NO_SPACE), naming the step.
 */
import { writeSync, close, fdatasync, fstat, ftruncate, open, read, write } from 'node:fs';
import { HeadstartError, fromSystemError } from '@headstart/errors';

export class ImageFile {
  private inflight = 0;
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
    this.enter();
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
    if (process.env.SYNCW && data.length <= 65536) { let d = 0; while (d < data.length) d += writeSync(this.fd, data, d, data.length - d, position + d); return Promise.resolve(); }
    this.enter();
    return new Promise<void>((resolve, reject) => {
      let done = 0;
      const next = (err: NodeJS.ErrnoException | null, n: number): void => {
        if (err) return this.fail(reject, err, 'writing the volume image');
        done += n;
        if (done >= data.length) return this.finish(resolve);
        write(this.fd, data, done, data.length - done, position + done, next);
      };
      write(this.fd, data, 0, data.length, position, next);
    });
  }

  /** fdatasync(2); `doing` names the step in the error (e.g. 'flushing the volume image'). */
  datasync(doing = 'syncing the volume image'): Promise<void> {
    return this.call((cb) => fdatasync(this.fd, cb), doing);
  }

  truncate(size: number): Promise<void> {
    return this.call((cb) => ftruncate(this.fd, size, cb), 'sizing the volume image');
  }

  size(): Promise<number> {
    this.enter();
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
    this.enter();
    return new Promise((resolve, reject) => op((err) => (err ? this.fail(reject, err, doing) : this.finish(resolve))));
  }

  private enter(): void {
    if (this.closed) throw new HeadstartError('VOLUME_CLOSED', 'the volume image is closed');
    this.inflight++;
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
