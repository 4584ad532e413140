/**
 * Reusable buffers for WRITE payloads that arrive split across socket chunks (every large
 * write does). A fresh 1 MiB buffer per request costs page faults on first touch, which
 * profiling showed as the biggest CPU item of 1 MiB sequential writes; recycling avoids it.
 *
 * Contract: a buffer goes back to the pool only after device.write() has resolved, as with
 * pwrite(2): a BlockDevice must not keep a reference to `data` beyond that (a Volume writes
 * it to the image file and keeps nothing).
 */

/** Payloads below this come from Node's own small-buffer pool instead. */
const MIN_POOLED = 64 * 1024;

export class PayloadPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private pooledBytes = 0;

  constructor(private readonly maxPooledBytes: number) {}

  acquire(length: number): Buffer {
    if (length < MIN_POOLED) return Buffer.allocUnsafe(length);
    const size = sizeClass(length);
    const list = this.free.get(size);
    const ab = list?.pop();
    if (ab) {
      this.pooledBytes -= size;
      return Buffer.from(ab, 0, length);
    }
    return Buffer.from(Buffer.allocUnsafeSlow(size).buffer, 0, length);
  }

  /** Hands back a buffer from acquire() whose request has completed. */
  release(buf: Buffer): void {
    const ab = buf.buffer as ArrayBuffer;
    const size = ab.byteLength;
    if (buf.length < MIN_POOLED || size !== sizeClass(buf.length) || buf.byteOffset !== 0) return;
    if (this.pooledBytes + size > this.maxPooledBytes) return;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(ab);
    this.pooledBytes += size;
  }
}

function sizeClass(length: number): number {
  return 2 ** Math.ceil(Math.log2(length));
}
