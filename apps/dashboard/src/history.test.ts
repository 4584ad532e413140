import type { SnapshotRecord } from '@headstart/protocol';
import { describe, expect, it } from 'vitest';
import { FeedHistory } from './history';

const record = (volume: string, n: number, committedAt: number | null): SnapshotRecord => ({
  volume, sink: 'site-b', n, scheduledAt: n * 1000, presendStartAt: null, closedAt: n * 1000 + 5, committedAt, lagMs: committedAt === null ? null : committedAt - n * 1000, sentBytes: null, minimalBytes: null,
});

describe('the feed history', () => {
  it('forgets, when a volume is promoted, its points that never committed (a fenced primary\'s, rolled back by its demote)', () => {
    const h = new FeedHistory();
    for (const r of [record('db', 27, 27_100), record('db', 28, 28_100), record('db', 29, null), record('db', 30, null), record('logs', 4, null)]) h.add({ type: 'snapshot', time: 0, record: r });
    h.add({ type: 'promoted', time: 40_000, volume: 'db', epoch: 3, n: 58 });
    h.add({ type: 'snapshot', time: 0, record: record('db', 59, null) }); // in flight since the promotion
    h.add({ type: 'promoted', time: 40_000, volume: 'db', epoch: 3, n: 58 }); // as a page's hello replays it after the records
    expect(h.snapshots().map((r) => `${r.volume}#${r.n}`)).toEqual(['db#27', 'db#28', 'db#59', 'logs#4']);
    expect(h.recentEvents().map((e) => e.type)).toEqual(['promoted', 'promoted']);
  });
});
