/**
 * The replication invariant under a random workload, in one process over a real WebSocket:
 * writes, trims and zero-writes of random extents, snapshot closes, link drops and rate
 * changes in random order, with the continuous policy pre-sending as it goes. After every
 * commit the replica's whole image must equal the source's content of that point.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { makePair, randomBlock, sourceHashAt } from './testing.test-helpers';
import type { CommitPhase } from './replica-target';
import { seededRandom } from '../../../test/helpers/random';

describe('invariant under a random workload', () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: every committed point equals the source's point`, async () => {
      const expected = new Map<number, string>();
      const checked: number[] = [];
      const mismatches: string[] = [];
      let replicaRef: import('@headstart/volume').Volume | undefined;
      const onCommitPhase = async (phase: CommitPhase, n: number) => {
        if (phase !== 'finished' || !replicaRef) return;
        const h = createHash('sha256');
        for (let off = 0; off < replicaRef.size; off += 1 << 20) h.update(await replicaRef.read(off, Math.min(1 << 20, replicaRef.size - off)));
        const want = expected.get(n);
        if (want !== undefined) {
          checked.push(n);
          if (want !== h.digest('hex')) mismatches.push(`point ${n}`);
        }
      };
      const pair = await makePair({ size: 2 * 1024 * 1024, replica: { onCommitPhase } });
      replicaRef = pair.replica;
      try {
        const { source, link } = pair;
        // a second sink that never acknowledges keeps every point readable for the expected hashes
        await source.addSink('hold', { acked: source.sink('r1').baseline });
        expected.set(source.sink('r1').baseline, await sourceHashAt(source, source.sink('r1').baseline));
        const r = seededRandom(seed);
        const bs = source.blockSize;
        const blocks = source.size / bs;
        for (let step = 0; step < 120; step++) {
          const op = r();
          const first = Math.floor(r() * blocks);
          const count = Math.min(1 + Math.floor(r() * 8), blocks - first);
          if (op < 0.6) await source.write(first * bs, randomBlock(count * bs, seed * 100000 + step));
          else if (op < 0.65) await source.trim(first * bs, count * bs);
          else if (op < 0.7) await source.writeZeroes(first * bs, count * bs);
          else if (op < 0.72) await source.write(first * bs + 100, randomBlock(300, step)); // unaligned
          else if (op < 0.85) {
            const p = await source.closeSnapshot();
            expected.set(p.n, await sourceHashAt(source, p.n));
          } else if (op < 0.9) link.reconnect();
          else if (op < 0.95) link.setRateLimit(r() < 0.5 ? 256 * 1024 : null);
          else await new Promise((res) => setTimeout(res, Math.floor(r() * 30)));
        }
        link.setRateLimit(null);
        const last = await source.closeSnapshot();
        expected.set(last.n, await sourceHashAt(source, last.n));
        await link.waitAcked(last.n, 30_000);
        expect(mismatches).toEqual([]);
        expect(checked).toContain(last.n);
        expect(checked.length).toBeGreaterThanOrEqual(5);
      } finally {
        await pair.cleanup();
      }
    });
  }
});
