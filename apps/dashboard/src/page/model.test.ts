import type { SnapshotRecord } from '@headstart/protocol';
import { describe, expect, it } from 'vitest';
import { Model, rowKey } from './model';

const record = (n: number, scheduledAt: number, committedAt: number | null): SnapshotRecord => ({
  volume: 'db', sink: 'site-b', n, scheduledAt, presendStartAt: null, closedAt: scheduledAt + 5, committedAt, lagMs: committedAt === null ? null : committedAt - scheduledAt, sentBytes: null, minimalBytes: null,
});
const numbers = (m: Model) => m.sortedRecords(rowKey('db', 'site-b')).map((r) => r.n);

describe('the page model', () => {
  it('forgets, as the volume is promoted, its points from before that never committed; not those since', () => {
    const m = new Model();
    // A page opened on the old primary after its demote: the records of the points it closed while fenced.
    m.apply({ type: 'hello', version: 1, status: { time: 30_000, node: 'site-a', volumes: [] }, snapshots: [record(27, 27_000, 27_100), record(29, 29_000, null), record(30, 30_000, null)], events: [] });
    expect(numbers(m)).toEqual([27, 29, 30]);
    m.apply({ type: 'events', dropped: 0, events: [{ type: 'promoted', time: 40_000, volume: 'db', epoch: 3, n: 58 }, { type: 'snapshot', time: 50_000, record: record(59, 50_000, null) }] });
    expect(numbers(m)).toEqual([27, 59]);
    // A page opened later gets the promotion after the records: the point in flight since stays.
    const later = new Model();
    later.apply({ type: 'hello', version: 1, status: { time: 50_000, node: 'site-a', volumes: [] }, snapshots: [record(27, 27_000, 27_100), record(59, 50_000, null)], events: [{ type: 'promoted', time: 40_000, volume: 'db', epoch: 3, n: 58 }] });
    expect(numbers(later)).toEqual([27, 59]);
  });
});
