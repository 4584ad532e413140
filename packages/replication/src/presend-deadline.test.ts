/**
 * Pre-sends share a cap by deadline too (DESIGN "Scale"): of two links pre-sending through
 * one cap, the one whose open point closes sooner gets the cap, the other its reserve turns
 * (one in eight, so it is not starved) and whatever the first leaves. Asserted on bytes,
 * not time: a slow machine changes when, not who.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { sharedRateLimit } from './source';
import { makePair, randomBlock, type Pair } from './testing.test-helpers';

const MiB = 1 << 20;
const pairs: Pair[] = [];
afterEach(async () => {
  for (const p of pairs.splice(0)) await p.cleanup();
});

describe('pre-sends on a shared cap', () => {
  it('go to the open point due soonest first, not to whichever link asks first', async () => {
    const cap = sharedRateLimit(4 * MiB);
    const now = Date.now();
    const soon = await makePair({ size: 16 * MiB, source: { sharedLimits: [cap], nextCloseAt: () => now + 5_000 } });
    pairs.push(soon);
    const later = await makePair({ size: 16 * MiB, source: { sharedLimits: [cap], nextCloseAt: () => now + 3_600_000 } });
    pairs.push(later);
    for (const p of pairs) await p.link.waitAcked(p.source.latestClosed!.n, 20_000);
    const sent = (p: Pair) => p.link.stats().payloadBytesSent;
    const before = pairs.map(sent);
    // 8 MiB each, written at once: both (continuous) pre-send at once through the 4 MiB/s cap.
    await Promise.all(pairs.map((p, i) => p.source.write(0, randomBlock(8 * MiB, 70 + i))));
    const until = Date.now() + 30_000;
    while (sent(soon) - before[0] < 8 * MiB && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    const soonSent = sent(soon) - before[0];
    const laterSent = sent(later) - before[1];
    console.log(`pre-sends by deadline: ${(soonSent / MiB).toFixed(2)} MiB for the point due soonest while ${(laterSent / MiB).toFixed(2)} MiB for the later one`);
    expect(soonSent).toBe(8 * MiB);
    // About 8/7 MiB by the reserve turns; first come, first served, the two interleaved
    // (measured before: 8 MiB each).
    expect(laterSent).toBeGreaterThan(0);
    expect(laterSent).toBeLessThan(3 * MiB);
    // Then the later one has the cap to itself.
    while (sent(later) - before[1] < 8 * MiB && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(sent(later) - before[1]).toBe(8 * MiB);
  }, 60_000);
});
