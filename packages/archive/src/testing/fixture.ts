/** Test helper: temp dirs cleaned up after the test, a real Volume and a seeded workload. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVolume, type Volume } from '@headstart/volume';

export class TempDirs {
  readonly #dirs: string[] = [];
  async make(tag = 'hs-archive-'): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), tag));
    this.#dirs.push(d);
    return d;
  }
  async cleanup(): Promise<void> {
    await Promise.all(this.#dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  }
}

/** Small deterministic PRNG (mulberry32) so a failing run can be replayed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function newVolume(dirs: TempDirs, size: number, blockSize = 4096): Promise<Volume> {
  return createVolume(join(await dirs.make('hs-archive-vol-'), 'v'), { size, blockSize });
}

/**
 * One snapshot's worth of writes: mostly small random writes, some multi-block runs, some
 * write-zeroes and trims (which the archive must store as zero blocks).
 */
export async function randomWrites(v: Volume, random: () => number, ops: number): Promise<void> {
  const bs = v.blockSize;
  const blocks = v.size / bs;
  for (let i = 0; i < ops; i++) {
    const r = random();
    const first = Math.floor(random() * blocks);
    const count = Math.min(blocks - first, 1 + Math.floor(random() * (r < 0.8 ? 2 : 24)));
    if (r < 0.85) {
      const data = Buffer.alloc(count * bs);
      for (let j = 0; j < data.length; j += 64) data.writeUInt32LE((random() * 2 ** 32) >>> 0, j);
      await v.write(first * bs, data);
    } else if (r < 0.93) await v.writeZeroes(first * bs, count * bs);
    else await v.trim(first * bs, count * bs);
  }
}
