/**
 * The keepalive measures silence on the monotonic clock: a wall clock stepped forward (NTP
 * correcting a clock that was behind, an operator's `date -s`) is no silent peer. Before, a
 * step of more than 20 s ended every link of the node at once with "replica silent for 20000
 * ms" (LINK_TIMEOUT), seen on a primary whose clock jumped 120 s.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { KEEPALIVE_MS } from './constants';
import { makePair } from './testing.test-helpers';
import type { SourceEvent } from './source';

afterEach(() => vi.restoreAllMocks());

describe('keepalive and the wall clock', () => {
  it('a wall clock stepped 120 s forward drops no link', async () => {
    const events: SourceEvent[] = [];
    const pair = await makePair({ source: { onEvent: (e) => events.push(e) } });
    try {
      // Connected, and the first copy (point 0) acknowledged: the link is idle, only keepalives go.
      for (let i = 0; i < 200 && !events.some((e) => e.type === 'acked'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(events.some((e) => e.type === 'acked')).toBe(true);
      await new Promise((r) => setTimeout(r, 200));
      const real = Date.now.bind(Date);
      vi.spyOn(Date, 'now').mockImplementation(() => real() + 120_000);
      await new Promise((r) => setTimeout(r, KEEPALIVE_MS + 1_500)); // a keepalive tick on each side
      expect(events.filter((e) => e.type === 'disconnected')).toEqual([]);
    } finally {
      vi.restoreAllMocks();
      await pair.cleanup();
    }
  }, 30_000);
});
