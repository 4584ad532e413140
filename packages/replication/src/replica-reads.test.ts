/**
 * A reader of the replica's volume (its read-only NBD export reads through volume.read)
 * only ever sees a committed point, never a commit half-way through its image writes: each
 * point stamps every block of a region with its number, and a reader loops over the region
 * while points commit.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { atSnapshotPolicy } from './policy';
import { makePair, type Pair } from './testing.test-helpers';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

describe('reads of a replica while it commits', () => {
  it('see one committed point at a time, never a mix of two', async () => {
    const REGION = 16 << 20;
    pair = await makePair({ size: REGION, source: { policy: atSnapshotPolicy() } });
    const { source, replica, link } = pair;
    const bs = source.blockSize;
    await link.waitAcked(source.latestClosed!.n, 20_000);
    let stop = false;
    let reads = 0;
    const mixed: string[] = [];
    const reader = (async () => {
      while (!stop) {
        const data = await replica.read(0, REGION);
        reads++;
        const stamps = new Set<number>();
        for (let off = 0; off < REGION; off += bs) stamps.add(data[off]);
        if (stamps.size > 1) mixed.push([...stamps].sort((a, b) => a - b).join('+'));
        await new Promise((r) => setImmediate(r));
      }
    })();
    try {
      for (let g = 1; g <= 12; g++) {
        await source.write(0, Buffer.alloc(REGION, g));
        const p = await source.closeSnapshot();
        await link.waitAcked(p.n, 30_000);
      }
    } finally {
      stop = true;
      await reader;
    }
    expect(reads, 'the reader ran alongside the commits').toBeGreaterThan(12);
    expect(mixed, `reads that saw two points at once, of ${reads}`).toEqual([]);
    expect((await replica.read(0, bs))[0]).toBe(12);
  }, 120_000);
});
