import { describe as suite, expect, it } from 'vitest';
import { describe } from './events';

suite('the event list', () => {
  it('says in words why an open point is not pre-sent', () => {
    const { text, tone } = describe({ type: 'presend-stopped', time: 0, volume: 'v1', sink: 'site-b', n: 7, limit: 4_194_304 }, (id) => (id === 'v1' ? 'db' : id));
    expect(text).toBe('db → site-b: open point #7 has more than 4,194,304 dirty blocks; not pre-sent, it ships whole at its close (its lag grows)');
    expect(tone).toBe('bad');
  });

  it('says in words when the planner tracks only part of an open point', () => {
    const { text, tone } = describe({ type: 'presend-limited', time: 0, volume: 'v1', n: 9, limit: 262_144 }, (id) => (id === 'v1' ? 'db' : id));
    expect(text).toBe('db: open point #9 has more than 262,144 dirty blocks; the planner pre-sends from the first 262,144, the rest ship at its close (its lag grows)');
    expect(tone).toBe('bad');
  });

  it('says how much of a committed point\'s lag was the sink\'s commit, when it was measured', () => {
    const acked = { type: 'snapshot-acked' as const, time: 0, volume: 'v1', sink: 'site-b', n: 12, lagMs: 4200, sentBytes: 3 * 2 ** 20, minimalBytes: 3 * 2 ** 20 };
    const name = (id: string) => (id === 'v1' ? 'db' : id);
    expect(describe({ ...acked, commitMs: 1600 }, name).text).toBe('db → site-b: committed #12, lag 4.20 s (its commit 1.60 s), sent 3.00 MiB of 3.00 MiB minimal');
    expect(describe({ ...acked, commitMs: null }, name).text).not.toMatch(/its commit/);
  });

  it('says when a volume was demoted, as it says when one was promoted', () => {
    const name = (id: string) => (id === 'v1' ? 'db' : id);
    expect(describe({ type: 'demoted', time: 0, volume: 'v1', epoch: 3 }, name).text).toBe('db: demoted to replica, epoch 3 (its primary resynchronises it by checksum)');
    expect(describe({ type: 'promoted', time: 0, volume: 'v1', epoch: 4, n: 58 }, name).text).toBe('db: promoted to primary, epoch 4, at point #58');
  });
});
