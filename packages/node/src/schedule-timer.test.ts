/**
 * A schedule's timer fires on the event loop's monotonic clock, which can be a little ahead
 * of Date.now(): the close it triggers must not find its own scheduled time still "next" and
 * close it a second time (node.ts scheduleNext). Seen in bench:policies: about one close in
 * ten under load was taken twice, a few ms apart, at the same scheduled time.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { validateConfig } from './config';
import { silentLogger } from './logger';
import { startNode, type HeadstartNode } from './node';

let node: HeadstartNode | null = null;
let dir = '';
afterEach(async () => {
  await node?.stop();
  node = null;
  vi.restoreAllMocks();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('a schedule timer that fires early by the wall clock', () => {
  it('closes each scheduled time once', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-early-'));
    // A wall clock that runs 2% slow against the timers' monotonic clock (NTP slewing does
    // this; so, by up to a millisecond, do the two clocks' roundings): a timer armed for the
    // scheduled time fires when Date.now() still reads 20 ms before it.
    const realNow = Date.now.bind(Date);
    const t0 = realNow();
    vi.spyOn(Date, 'now').mockImplementation(() => Math.floor(t0 + (realNow() - t0) * 0.98));
    const config = validateConfig({ node: { name: 'e', dataDir: join(dir, 'data') }, listen: { admin: '127.0.0.1:0' }, volumes: [{ name: 'v', size: '4MiB', schedule: { every: '1s' } }, { name: 'l', size: '4MiB', schedule: { every: '1s', level: true } }] }, 'test', dir);
    node = await startNode(config, silentLogger());
    await new Promise((r) => setTimeout(r, 3600));
    for (const v of node.status().volumes) {
      const times = v.history.map((h) => h.scheduledAt);
      expect(times.length, v.name).toBeGreaterThanOrEqual(3);
      for (let i = 1; i < times.length; i++) expect(times[i] - times[i - 1], `${v.name}: ${times.join(', ')}`).toBe(1000);
    }
  });

  it('waits for a time more than 24.8 days ahead instead of firing at once', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-far-'));
    // setTimeout cannot hold more than 2^31 - 1 ms: a yearly schedule and a monthly
    // verification used to fire after 1 ms, over and over.
    const config = validateConfig(
      {
        node: { name: 'f', dataDir: join(dir, 'data') },
        listen: { admin: '127.0.0.1:0' },
        volumes: [{ name: 'v', size: '4MiB', schedule: { cron: '0 0 29 2 *' }, verify: { every: '30d', replica: 'nbd://127.0.0.1:9/v' } }],
      },
      'test',
      dir,
    );
    node = await startNode(config, silentLogger());
    await new Promise((r) => setTimeout(r, 1500));
    const v = node.status().volumes[0];
    expect(v.history).toEqual([]); // no point closed
    expect(new Date(v.nextCloseAt!).getUTCDate() === 29 || new Date(v.nextCloseAt!).getDate() === 29).toBe(true);
    expect(v.nextCloseAt! - Date.now()).toBeGreaterThan(2 ** 31);
    expect(v.lastVerify).toBeNull(); // no verification ran
  });
});
