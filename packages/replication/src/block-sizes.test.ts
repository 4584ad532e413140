/**
 * Replication with block sizes other than 4 KiB: 512 B blocks (runs the replica's direct
 * I/O takes only where they happen to fall on 4 KiB boundaries, the cache otherwise) and
 * 64 KiB blocks. Every acknowledged point equals the source's, after random writes that
 * overlap, straddle blocks and overwrite each other.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { atSnapshotPolicy } from './policy';
import { imageHash, makePair, sourceHashAt, type Pair } from './testing.test-helpers';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.cleanup();
  pair = undefined;
});

describe('replication with other block sizes', () => {
  for (const blockSize of [512, 65536]) {
    it(`${blockSize}-byte blocks: every point arrives exactly`, async () => {
      const size = 8 << 20;
      pair = await makePair({ size, blockSize, source: { policy: atSnapshotPolicy() } });
      const { source, replica, link } = pair;
      await link.waitAcked(source.latestClosed!.n, 20_000);
      let seed = blockSize;
      const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      for (let point = 0; point < 4; point++) {
        for (let i = 0; i < 40; i++) {
          const offset = Math.floor(random() * (size - 300_000) / 512) * 512;
          await source.write(offset, randomBytes(512 * (1 + Math.floor(random() * 500))));
        }
        const p = await source.closeSnapshot();
        await link.waitAcked(p.n, 30_000);
        expect(replica.committed?.n).toBe(p.n);
        expect(await imageHash(replica), `point ${p.n}`).toBe(await sourceHashAt(source, p.n));
      }
    }, 120_000);
  }
});
