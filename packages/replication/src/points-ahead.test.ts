/**
 * How far a source ships ahead of the replica's acknowledgements. Unbounded, a replica whose
 * commits waited (a consistency group waiting for a slow member, a slow disk) staged point
 * after point; once it held more than one RESUME may list (MAX_RESUME_STAGED), every
 * reconnection failed with LINK_MALFORMED_FRAME and the link was stuck for good (found by
 * `npm run faults -- --group`).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_POINTS_AHEAD, MAX_RESUME_STAGED, blockHash, decodeFrame, encodeFrame, loadHasher } from '@headstart/protocol';
import { createVolume } from '@headstart/volume';
import { ReplicaTarget } from './replica-target';
import { imageHash, makePair, randomBlock, sourceHashAt } from './testing.test-helpers';
import type { CommitPhase } from './replica-target';

describe('points shipped ahead of acknowledgements', () => {
  it('stay within MAX_POINTS_AHEAD while the replica cannot commit, and a reconnection then resumes', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let holding = false;
    const onCommitPhase = async (phase: CommitPhase) => {
      if (phase === 'ready' && holding) await held;
    };
    const pair = await makePair({ size: 2 * 1024 * 1024, replica: { onCommitPhase } });
    try {
      const { source, link, server } = pair;
      await link.waitAcked(source.sink('r1').baseline, 10_000);
      await source.addSink('hold', { acked: source.sink('r1').baseline });
      holding = true;
      let last = 0;
      for (let i = 0; i < 30; i++) {
        await source.write((i % 64) * 4096, randomBlock(4096, i + 1));
        last = (await source.closeSnapshot()).n;
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 1000));
      const staged = server.targets.get('vol-1')!.staging.snapshots().length;
      expect(staged, 'points staged on the replica while its commits wait').toBeLessThanOrEqual(MAX_POINTS_AHEAD + 1);
      expect(staged).toBeGreaterThan(1);
      link.reconnect();
      await new Promise((r) => setTimeout(r, 300));
      release();
      await link.waitAcked(last, 30_000);
      expect(link.status().lastError).toBeNull();
      expect(await imageHash(pair.replica)).toBe(await sourceHashAt(source, last));
    } finally {
      release();
      await pair.cleanup();
    }
  });

  it('a replica holding more staged points than RESUME may list reports the next ones and drops the rest', async () => {
    await loadHasher();
    const dir = await mkdtemp(join(tmpdir(), 'hs-resume-cap-'));
    const volume = await createVolume(join(dir, 'rep'), { size: 1024 * 1024, id: 'v', role: 'replica' });
    const target = await ReplicaTarget.open({ volume, stagingDir: join(dir, 'staging') });
    try {
      for (let n = 1; n <= MAX_RESUME_STAGED + 6; n++) {
        const data = randomBlock(4096, n);
        await target.staging.stage(n, [{ block: n, hash: blockHash(data), data }]);
      }
      const resume = await target.resume();
      expect(resume.staged.map((s) => s.n)).toEqual(Array.from({ length: MAX_RESUME_STAGED }, (_, i) => i + 1));
      expect(target.staging.snapshots().length).toBe(MAX_RESUME_STAGED);
      // And the source can read it.
      const frame = encodeFrame({ ...resume, proof: Buffer.alloc(32) });
      expect((decodeFrame(frame) as { staged: unknown[] }).staged.length).toBe(MAX_RESUME_STAGED);
    } finally {
      await target.close();
      await volume.shutdown();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
