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
});
