/**
 * A point of more blocks than V8 lets a Map hold (2^24: 64 GiB at 4 KiB), as the initial
 * sync of a larger volume is. The replica kept each staged point's blocks in two Maps and
 * threw "Map maximum size exceeded" once a point staged that far; and a replica holding
 * more staged blocks than one RESUME may list (MAX_RESUME_ENTRIES: 16 GiB at 4 KiB) sent a
 * RESUME every source refuses as malformed, so a link cut during a large sync never resumed.
 * Zero blocks stand in for the data: they stage without being written out, so the test
 * needs no 64 GiB of disk, and they go through the same index as data blocks.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_RESUME_ENTRIES, SnapshotDigest, blockHash, decodeFrame, encodeFrame, loadHasher, zeroBlockHash } from '@headstart/protocol';
import { createVolume } from '@headstart/volume';
import { ReplicaTarget } from './replica-target';
import { randomBlock } from './testing.test-helpers';

const BS = 4096;
const MAP_LIMIT = 2 ** 24;

describe('a point of more than 2^24 blocks', () => {
  it('stages on the replica, lists a RESUME the source accepts, and plans its whole commit', async () => {
    await loadHasher();
    const total = MAP_LIMIT + 4096;
    const dir = await mkdtemp(join(tmpdir(), 'hs-large-point-'));
    const volume = await createVolume(join(dir, 'rep'), { size: (total + 16) * BS, id: 'v', role: 'replica' });
    const target = await ReplicaTarget.open({ volume, stagingDir: join(dir, 'staging') });
    try {
      const zero = zeroBlockHash(BS);
      const empty = new Uint8Array(0);
      const expected = new SnapshotDigest();
      const batch = 65536;
      for (let first = 0; first < total; first += batch) {
        const blocks = [];
        for (let b = first; b < Math.min(total, first + batch); b++) {
          blocks.push({ block: b, hash: zero, data: empty });
          expected.add(b, zero);
        }
        await target.staging.stage(1, blocks);
      }
      // Data past the 2^24th block, and one block sent again with new content (a collision).
      const a = randomBlock(BS, 1);
      const b = randomBlock(BS, 2);
      await target.staging.stage(1, [{ block: total, hash: blockHash(a), data: a }, { block: total + 1, hash: blockHash(a), data: a }]);
      await target.staging.stage(1, [{ block: total + 1, hash: blockHash(b), data: b }]);
      expected.add(total, blockHash(a));
      expected.add(total + 1, blockHash(b));

      const set = target.staging.staged(1)!;
      expect(set.blocks.size).toBe(total + 2);
      // What CLOSE compares with the source's count and digest.
      expect(set.digest.count).toBe(total + 2);
      expect(set.digest.value).toBe(expected.value);

      const resume = await target.resume();
      expect(resume.staged.map((s) => s.entries.length / 16)).toEqual([MAX_RESUME_ENTRIES]);
      const decoded = decodeFrame(encodeFrame({ ...resume, proof: Buffer.alloc(32) })) as { staged: { n: number; entries: Uint8Array }[] };
      expect(decoded.staged[0].entries.length).toBe(MAX_RESUME_ENTRIES * 16);

      const plan = target.staging.plan(1, 1 << 20);
      expect(plan.reduce((sum, run) => sum + run.count, 0)).toBe(total + 2);
      const last = plan.find((run) => run.block <= total + 1 && total + 1 < run.block + run.count)!;
      const data = await target.staging.read(1, last);
      const at = (total + 1 - last.block) * BS;
      expect(Buffer.from(data.subarray(at, at + BS)).equals(b)).toBe(true);
    } finally {
      await target.close();
      await volume.shutdown();
      await rm(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
