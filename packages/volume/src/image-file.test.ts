import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isHeadstartError } from '@headstart/errors';
import { directSupported, openDirect } from '../../../test/helpers/direct-io';
import { ImageFile, alignedBuffer } from './image-file';

describe('ImageFile', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'headstart-image-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes small (inline) and large (thread pool) pieces and reads them back', async () => {
    const f = await ImageFile.open(join(dir, 'img'), 'w+');
    await f.truncate(4 << 20);
    const small = Buffer.alloc(4096, 0x11);
    const big = Buffer.alloc(2 << 20, 0x22); // above INLINE_WRITE_MAX (1 MiB)
    await f.pwrite(small, 8192);
    await f.pwrite(big, 1 << 20);
    const back = Buffer.alloc(4096 + (2 << 20));
    await f.pread(back.subarray(0, 4096), 8192);
    await f.pread(back.subarray(4096), 1 << 20);
    expect(back.subarray(0, 4096).equals(small)).toBe(true);
    expect(back.subarray(4096).equals(big)).toBe(true);
    expect(await f.size()).toBe(4 << 20);
    await f.datasync();
    await f.close();
    const disk = readFileSync(join(dir, 'img'));
    expect(disk.subarray(8192, 8192 + 4096).equals(small)).toBe(true);
    expect(disk.subarray(1 << 20, 3 << 20).equals(big)).toBe(true);
  });

  it('large writes in flight together (contiguous in any order, or not) all land where they belong', async () => {
    const f = await ImageFile.open(join(dir, 'img'), 'w+');
    const piece = (1 << 20) + 4096; // above INLINE_WRITE_MAX: thread pool, combined when contiguous
    await f.truncate(40 * piece);
    // Pieces 0..29 in a shuffled order (some continue each other, some do not), plus gaps.
    const order = [3, 0, 1, 2, 7, 5, 6, 4, 9, 8, 12, 10, 11, 20, 21, 23, 22, 29, 28, 27, 26, 25, 24, 14, 13, 15, 16, 18, 17, 19];
    const fill = (i: number) => Buffer.alloc(piece, (i * 37 + 11) & 0xff);
    await Promise.all(order.map((i) => f.pwrite(fill(i), i * piece)));
    const back = Buffer.alloc(40 * piece);
    await f.pread(back, 0);
    for (let i = 0; i < 40; i++) {
      const want = i < 30 ? fill(i) : Buffer.alloc(piece);
      expect(back.subarray(i * piece, (i + 1) * piece).equals(want)).toBe(true);
    }
    await f.close();
  });

  it('reads past the end of the file as zeroes', async () => {
    const f = await ImageFile.open(join(dir, 'img'), 'w+');
    await f.truncate(4096);
    await f.pwrite(Buffer.alloc(4096, 0xff), 0);
    const buf = Buffer.alloc(8192, 0x77);
    await f.pread(buf, 0);
    expect(buf.subarray(0, 4096).every((x) => x === 0xff)).toBe(true);
    expect(buf.subarray(4096).every((x) => x === 0)).toBe(true);
    await f.close();
  });

  it('close waits for reads in flight, then refuses new work with VOLUME_CLOSED', async () => {
    const f = await ImageFile.open(join(dir, 'img'), 'w+');
    await f.truncate(8 << 20);
    const reads = Array.from({ length: 8 }, (_, i) => f.pread(Buffer.alloc(1 << 20), i << 20));
    const closed = f.close();
    await expect(Promise.all(reads)).resolves.toBeDefined();
    await closed;
    const err = await f.pread(Buffer.alloc(16), 0).catch((e: unknown) => e);
    expect(isHeadstartError(err) && err.code).toBe('VOLUME_CLOSED');
    await f.close(); // idempotent
  });

  it('an OS error surfaces as a HeadstartError naming the step', async () => {
    const f = await ImageFile.open(join(dir, 'img'), 'w+');
    // Beyond the largest file the file system allows: EFBIG, inline and on the thread pool.
    for (const size of [16, 2 << 20]) {
      const err = await f.pwrite(Buffer.alloc(size), 2 ** 52).catch((e: unknown) => e);
      expect(isHeadstartError(err) && err.code).toBe('VOLUME_IO');
      expect(String((err as Error).message)).toMatch(/writing the volume image/);
    }
    await f.close();
    await expect(ImageFile.open(join(dir, 'missing'), 'r+')).rejects.toThrow();
  });

  it('writes past the page cache from aligned buffers, falls back to the cache for anything else, and stays coherent with cached I/O', async () => {
    const path = join(dir, 'img');
    const f = await ImageFile.open(path, 'w+');
    await f.truncate(8 << 20);
    const direct = directSupported(path); // a tmpfs: every write below takes the cached path
    // A cached write first, then a direct one over the same range: the read sees the latter.
    await f.pwrite(Buffer.alloc(1 << 20, 0x33), 1 << 20);
    const aligned = alignedBuffer(1 << 20).fill(0x44);
    expect(aligned.byteOffset % 4096).toBe(0);
    await f.pwriteDirect(aligned, 1 << 20);
    expect(openDirect(path)).toBe(direct);
    // Not aligned in memory (a plain Buffer: the kernel says EINVAL), in the file, or in length: cached.
    const plain = Buffer.alloc(64 << 10, 0x55);
    await f.pwriteDirect(plain, 4 << 20);
    await f.pwriteDirect(Buffer.alloc(4096, 0x66), (5 << 20) + 512);
    await f.pwriteDirect(alignedBuffer(1000).fill(0x77), 6 << 20);
    const back = Buffer.alloc(8 << 20);
    await f.pread(back, 0);
    expect(back.subarray(1 << 20, 2 << 20).equals(Buffer.alloc(1 << 20, 0x44))).toBe(true);
    expect(back.subarray(4 << 20, (4 << 20) + (64 << 10)).equals(plain)).toBe(true);
    expect(back.subarray((5 << 20) + 512, (5 << 20) + 512 + 4096).equals(Buffer.alloc(4096, 0x66))).toBe(true);
    expect(back.subarray(6 << 20, (6 << 20) + 1000).equals(Buffer.alloc(1000, 0x77))).toBe(true);
    expect(back.subarray((6 << 20) + 1000, (6 << 20) + 4096).equals(Buffer.alloc(4096 - 1000))).toBe(true);
    await f.datasync();
    await f.close();
    expect(openDirect(path), 'close() closes the direct fd too').toBe(false);
    const disk = readFileSync(path);
    expect(disk.subarray(1 << 20, 2 << 20).equals(Buffer.alloc(1 << 20, 0x44))).toBe(true);
    expect(disk.subarray(4 << 20, (4 << 20) + (64 << 10)).equals(plain)).toBe(true);
  });
});
