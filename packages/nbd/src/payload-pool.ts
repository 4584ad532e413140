/**
 * Reusable buffers for WRITE payloads that arrive split across socket chunks (every large
 * write does). A fresh 1 MiB buffer per request costs page faults on first touch, which
 * profiling showed as the biggest CPU item of 1 MiB sequential writes; recycling avoids it.
 *
 * Contract: a buffer goes back to the pool only after device.write() has resolved, as with
 * pwrite(2): a BlockDevice must not keep a reference to `data` beyond that (a Volume writes
 * it to the image file and keeps nothing).
 */

/** Payloads below this are cut from a shared slab instead (see acquire). */
const MIN_POOLED = 64 * 1024;
const SLAB_SIZE = 1024 * 1024;

export class PayloadPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private pooledBytes = 0;
  private slab = Buffer.allocUnsafeSlow(0);
  private slabUsed = 0;

  constructor(private readonly maxPooledBytes: number) {}

  acquire(length: number): Buffer {
    if (length < MIN_POOLED) {
      // Small payloads (a 4 KiB write is the common one) are cut one after another from a
      // 1 MiB slab, which lives until its last slice is dropped: one allocation per ~250
      // requests instead of one each (Node pools only buffers below 4 KiB).
      if (this.slabUsed + length > this.slab.length) {
        this.slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
        this.slabUsed = 0;
      }
      const out = this.slab.subarray(this.slabUsed, this.slabUsed + length);
      this.slabUsed += (length + 7) & ~7;
      return out;
    }
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
