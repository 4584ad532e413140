import { describe, expect, it } from 'vitest';
import { backlogAtCloses, notConverging, type CloseRecord } from './convergence';

const MIN = 60_000;

/** Points closed every minute, shipped one after another, each taking `shipMs(i)`: what a
 * sink does when its link needs that long per point. */
function shipped(count: number, shipMs: (i: number) => number): CloseRecord[] {
  const out: CloseRecord[] = [];
  let free = 0;
  for (let i = 0; i < count; i++) {
    const closedAt = i * MIN;
    const done = Math.max(free, closedAt) + shipMs(i);
    free = done;
    out.push({ n: i + 1, closedAt, acks: { r: { ackedAt: done } } });
  }
  return out;
}

describe('not converging', () => {
  it('a sink that commits each point within its interval converges', () => {
    const h = shipped(12, () => 5_000);
    expect(backlogAtCloses(h, 'r', 12)).toEqual(Array(12).fill(1));
    expect(notConverging(h, 'r')).toBe(false);
  });

  it('a link 1.5x too slow is flagged within a window, and so is a sink that never acknowledges', () => {
    const h = shipped(12, () => 90_000);
    expect(backlogAtCloses(h, 'r', 12)).toEqual([1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5]);
    expect(notConverging(h.slice(0, 5), 'r')).toBe(false); // not enough closes to say
    expect(notConverging(h.slice(0, 11), 'r')).toBe(true);
    expect(notConverging(h, 'other-sink')).toBe(true); // nothing ever acknowledged
  });

  it('one write burst is not flagged, before or after the backlog it leaves drains', () => {
    const burst = shipped(12, (i) => (i === 9 ? 200_000 : 5_000));
    for (let k = 7; k <= 12; k++) expect(notConverging(burst.slice(0, k), 'r')).toBe(false);
  });

  it('a large but steady backlog is not flagged; the flag clears when the link catches up', () => {
    const steady = shipped(14, (i) => (i < 4 ? 120_000 : 60_000));
    expect(backlogAtCloses(steady, 'r', 7)).toEqual([5, 5, 5, 5, 5, 5, 5]); // four slow points left five waiting, for good
    expect(notConverging(steady, 'r')).toBe(false);
    const recovering = shipped(24, (i) => (i < 11 ? 90_000 : 5_000)); // caught up by the 17th close
    expect(notConverging(recovering.slice(0, 11), 'r')).toBe(true);
    expect(notConverging(recovering, 'r')).toBe(false);
  });

  it('a sink that caught up since the last close is not flagged (a link back after an outage)', () => {
    // The link is down for the first seven closes: nothing acknowledged, the backlog grows.
    const down: CloseRecord[] = Array.from({ length: 7 }, (_, i) => ({ n: i + 1, closedAt: i * MIN, acks: {} }));
    expect(notConverging(down, 'r')).toBe(true);
    // Back half a minute after the last close, it ships and commits all seven before the next close.
    const back = down.map((r) => ({ ...r, acks: { r: { ackedAt: 6 * MIN + 30_000 } } }));
    expect(backlogAtCloses(back, 'r', 7)).toEqual([1, 2, 3, 4, 5, 6, 7]); // as it was at each close
    expect(notConverging(back, 'r', 6 * MIN + 10_000)).toBe(true); // still down then
    expect(notConverging(back, 'r', 6 * MIN + 40_000)).toBe(false); // caught up: no backlog
    // Only the oldest committed: still behind.
    const partly = down.map((r, i) => (i === 0 ? { ...r, acks: { r: { ackedAt: 6 * MIN + 30_000 } } } : r));
    expect(notConverging(partly, 'r', 6 * MIN + 40_000)).toBe(true);
  });

  it('an acknowledgement of n covers the points before it (a lost ACK)', () => {
    const h: CloseRecord[] = [
      { n: 1, closedAt: 0, acks: {} },
      { n: 2, closedAt: MIN, acks: {} },
      { n: 3, closedAt: 2 * MIN, acks: { r: { ackedAt: 2 * MIN + 5_000 } } },
      { n: 4, closedAt: 3 * MIN, acks: {} },
    ];
    expect(backlogAtCloses(h, 'r', 4)).toEqual([1, 2, 3, 1]);
  });
});
