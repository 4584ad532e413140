import { describe, expect, it } from 'vitest';
import { Repeats } from './repeats';

describe('a repeated failure', () => {
  it('is said once, then every few minutes with how many, and its end with how long', () => {
    const r = new Repeats(300_000);
    const down = 'LINK_CLOSED connect ECONNREFUSED';
    expect(r.failed('db\0site-b', down, 0)).toEqual({ log: true, count: 1, since: 0 });
    for (let t = 5_000; t < 300_000; t += 5_000) expect(r.failed('db\0site-b', down, t).log).toBe(false);
    expect(r.failed('db\0site-b', down, 300_000)).toEqual({ log: true, count: 61, since: 0 });
    expect(r.failed('db\0site-b', down, 305_000).log).toBe(false);
    // Another cause is said at once; another link is its own.
    expect(r.failed('db\0site-b', 'REPL_EPOCH_FENCED fenced', 310_000)).toEqual({ log: true, count: 1, since: 310_000 });
    expect(r.failed('wal\0site-b', down, 311_000).log).toBe(true);
    // Its end counts the whole outage, from the first failure of any kind (a site that was
    // away, then came back fenced: 'up' after 5 min 20 s, not "down for 10 s").
    expect(r.ended('db\0site-b', 320_000)).toEqual({ count: 63, forMs: 320_000 });
    expect(r.ended('db\0site-b', 321_000)).toBeNull();
    // After it ended, the next failure is said again.
    expect(r.failed('db\0site-b', down, 330_000).log).toBe(true);
  });
});
