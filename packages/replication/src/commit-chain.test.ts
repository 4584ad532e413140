/**
 * A commit that fails must not let the commits queued behind it run: a source pipelines
 * CLOSE(n+1) before ACK(n), and n+1's staged blocks are only a delta over n. Applied over
 * n-1 they would leave an image equal to no point, recorded as n+1.
 */
import { describe, expect, it } from 'vitest';
import { HeadstartError } from '@headstart/errors';
import { makePair, imageHash, randomBlock, sourceHashAt } from './testing.test-helpers';
import type { CommitPhase } from './replica-target';

describe('a failed commit', () => {
  it('fails the commits queued after it; the source sends both points again and the replica ends equal', async () => {
    let failed = false;
    let held: number | null = null;
    let target: { acceptedUpTo: number | null } | undefined;
    const onCommitPhase = async (phase: CommitPhase, n: number) => {
      if (phase !== 'journaled' || failed || held === null || n !== held) return;
      // Hold point `held` until the next point's CLOSE was accepted (queued behind it), then fail it.
      const deadline = Date.now() + 10_000;
      while ((target?.acceptedUpTo ?? -1) <= n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      failed = true;
      throw new HeadstartError('VOLUME_IO', 'injected: the image write failed');
    };
    const pair = await makePair({ size: 2 * 1024 * 1024, replica: { onCommitPhase } });
    try {
      const { source, link, server } = pair;
      target = server.targets.get('vol-1');
      const bs = source.blockSize;
      await link.waitAcked(source.sink('r1').baseline, 10_000);
      await source.addSink('hold', { acked: source.sink('r1').baseline }); // keeps every point readable
      await source.write(0, randomBlock(64 * bs, 1)); // only in point n
      const p1 = await source.closeSnapshot();
      held = p1.n;
      // n + 1 writes nothing: its CLOSE needs no staging, so it is accepted while n commits
      // (staging waits for a commit's journal; a point with blocks would wait behind it).
      const p2 = await source.closeSnapshot();
      await link.waitAcked(p2.n, 30_000);
      expect(failed).toBe(true);
      expect(target!.acceptedUpTo).toBe(p2.n);
      expect(pair.replica.committed?.n).toBe(p2.n);
      expect(await imageHash(pair.replica)).toBe(await sourceHashAt(source, p2.n));
    } finally {
      await pair.cleanup();
    }
  });
});
