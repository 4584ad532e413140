/**
 * Load leveling on a running node (node.ts levelSchedules, leveling.ts): leveled volumes'
 * points are spread over their interval, weighed by their measured sizes once known, and a
 * move to a new offset never leaves a volume longer than its interval without a point.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connectNbd, type NbdClient } from '@headstart/nbd';
import { validateConfig } from './config';
import { toFeedStatus } from './dashboard';
import { silentLogger } from './logger';
import { metricsRegistry } from './metrics';
import { startNode, type HeadstartNode } from './node';

let node: HeadstartNode | null = null;
let dir = '';
const clients: NbdClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => {});
  await node?.stop();
  node = null;
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('load leveling on a node', () => {
  it('spreads leveled volumes over the interval, and leaves the others on the clock', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-level-'));
    const vol = (name: string, level: boolean) => ({ name, size: '4MiB', schedule: { every: '3s', ...(level ? { level: true } : {}) } });
    const config = validateConfig({ node: { name: 'l', dataDir: join(dir, 'data') }, listen: { admin: '127.0.0.1:0' }, volumes: [vol('a', true), vol('b', true), vol('c', true), vol('plain', false)] }, 'test', dir);
    node = await startNode(config, silentLogger());
    const view = (name: string) => node!.status().volumes.find((v) => v.name === name)!;
    // Nothing measured yet: an even spread, the first on the clock's marks.
    expect(['a', 'b', 'c'].map((v) => view(v).levelOffsetMs)).toEqual([0, 1000, 2000]);
    expect(view('plain').levelOffsetMs).toBeNull();
    const metric = await metricsRegistry(node).getSingleMetricAsString('headstart_level_offset_seconds');
    expect(metric).toContain('headstart_level_offset_seconds{volume="c"} 2');
    expect(metric).not.toContain('volume="plain"');
    // The dashboard's feed carries the offsets too.
    const feed = toFeedStatus(node.status());
    expect(feed.volumes.map((v) => [v.name, v.levelOffsetMs])).toEqual([['a', 0], ['b', 1000], ['c', 2000], ['plain', null]]);
    for (const name of ['a', 'b', 'c', 'plain']) {
      const v = view(name);
      expect((v.nextCloseAt! - (v.levelOffsetMs ?? 0)) % 3000).toBe(0);
    }
    await sleep(3500);
    // The points really fell there.
    for (const name of ['a', 'b', 'c', 'plain']) {
      const v = view(name);
      expect(v.history.length).toBeGreaterThan(0);
      for (const h of v.history) expect((h.scheduledAt - (v.levelOffsetMs ?? 0)) % 3000).toBe(0);
    }
  });

  it('weighs volumes by their measured points, keeps the heavy ones\' drains apart, and never stretches an interval', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-level-'));
    const every = 2000;
    const names = ['big', 'mid', 'small'];
    const config = validateConfig(
      {
        node: { name: 'l', dataDir: join(dir, 'data') },
        listen: { nbd: '127.0.0.1:0', admin: '127.0.0.1:0' },
        linkCap: '1MB/s', // big's 1.2 MB point drains in 1.2 s of a 2 s interval, mid's 0.6 MB in 0.6 s
        volumes: names.map((name) => ({ name, size: '8MiB', schedule: { every: `${every}ms`, level: true } })),
      },
      'test',
      dir,
    );
    node = await startNode(config, silentLogger());
    const n = node;
    const view = (name: string) => n.status().volumes.find((v) => v.name === name)!;
    const initial = names.map((v) => view(v).levelOffsetMs);
    // an even spread, on the model's 16 ms slots
    expect(initial[0]).toBe(0);
    expect(Math.abs(initial[1]! - 667)).toBeLessThanOrEqual(16);
    expect(Math.abs(initial[2]! - 1333)).toBeLessThanOrEqual(16);
    // A sink that never acknowledges: the points keep their dirty sets, which weigh them.
    for (const name of names) await n.volume(name).addSink('hold', { acked: n.volume(name).latestClosed!.n });
    for (const name of names) clients.push(await connectNbd({ host: '127.0.0.1', port: n.nbdPort!, exportName: name }));
    // Every point of big holds 300 blocks (1.2 MB), of mid 150 (0.6 MB), of small one: each
    // volume gets its batch now and again right after each of its closes, so the sizes the
    // node weighs are exact whatever the machine's load.
    const batch: Record<string, number> = { big: 300, mid: 150, small: 1 };
    let stop = false;
    let round = 0;
    const writes: Promise<void>[] = [];
    const write = (name: string) => {
      const blocks = batch[name];
      round++;
      writes.push(clients[names.indexOf(name)].write(((round * blocks) % 1800) * 4096, Buffer.alloc(blocks * 4096, round)));
    };
    for (const name of names) write(name);
    const unsubscribe = n.subscribe((e) => {
      if (e.type === 'snapshot-closed' && !stop && names.includes(e.volume)) write(e.volume);
    });
    // Three measured points each, then the plan is weighed again.
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && names.every((v, i) => view(v).levelOffsetMs === initial[i])) await sleep(100);
    await sleep(2 * every + 300); // two more points under the new plan
    stop = true;
    unsubscribe();
    await Promise.all(writes);
    const offsets = Object.fromEntries(names.map((v) => [v, view(v).levelOffsetMs!]));
    // The even spread had mid close 0.67 s after big, inside big's 1.23 s drain. Weighed, mid
    // closes after that drain, and its own (0.61 s) ends before big's next close.
    const after = (offsets.mid - offsets.big + every) % every;
    expect(after, `offsets ${JSON.stringify(offsets)}`).toBeGreaterThanOrEqual(1200);
    expect(after, `offsets ${JSON.stringify(offsets)}`).toBeLessThanOrEqual(1400);
    for (const name of names) {
      const times = view(name).history.map((h) => h.scheduledAt);
      expect(times.length).toBeGreaterThanOrEqual(5);
      // Moving to a new offset never delays a point: consecutive points at most one interval apart.
      for (let i = 1; i < times.length; i++) expect(times[i] - times[i - 1], `${name}: ${times.join(', ')}`).toBeLessThanOrEqual(every);
      const last = times.at(-1)!;
      expect((last - offsets[name]) % every).toBe(0);
    }
  }, 40_000);
});
