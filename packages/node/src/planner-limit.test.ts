/**
 * A point that dirties more blocks than its planner tracks (policy.maxOpenBlocks): the node
 * says so once per point (log, dashboard feed), status and metrics show how much of D
 * ships at the close, and the next point starts within the limit again.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { FeedEvent } from '@headstart/protocol';
import { validateConfig } from './config';
import { metricsRegistry } from './metrics';
import { startNode } from './node';

const BS = 4096;

describe("an open point over its planner's limit", () => {
  it('is told once, shows in status and metrics, and the next point is tracked again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-planner-limit-'));
    const lines: { msg?: string; n?: number; limit?: number }[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write(chunk, _enc, done) { lines.push(JSON.parse(String(chunk))); done(); } }));
    const config = validateConfig({ node: { name: 'a', dataDir: join(dir, 'data') }, listen: { admin: '127.0.0.1:0' }, volumes: [{ name: 'v', size: '16MiB', policy: { name: 'predictive', maxOpenBlocks: 16 } }] }, 'test', dir);
    const node = await startNode(config, logger);
    try {
      const told: FeedEvent[] = [];
      node.subscribe((e) => e.type === 'presend-limited' && told.push(e as FeedEvent));
      const v = node.volume('v');
      const open = v.openSnapshot;
      await v.write(0, Buffer.alloc(24 * BS, 1));
      await v.write(0, Buffer.alloc(24 * BS, 2)); // the same blocks again: nothing new
      const planner = () => node.status().volumes[0].planner!;
      expect([planner().dirtyBytes, planner().untrackedBytes]).toEqual([24 * BS, 8 * BS]);
      expect(told).toEqual([expect.objectContaining({ type: 'presend-limited', volume: 'v', n: open, limit: 16 })]);
      const warned = lines.filter((l) => l.msg?.startsWith('the open point has more dirty blocks than the planner tracks'));
      expect(warned).toEqual([expect.objectContaining({ n: open, limit: 16 })]);
      const metrics = metricsRegistry(node);
      const metric = async (name: string) => Number(/ (\S+)$/m.exec((await metrics.getSingleMetricAsString(name)).split('\n').find((l) => l.startsWith(`${name}{`)) ?? '')?.[1]);
      expect(await metric('headstart_untracked_bytes')).toBe(8 * BS);
      await node.snapshotNow('v');
      await v.write(0, Buffer.alloc(BS, 3));
      expect([planner().dirtyBytes, planner().untrackedBytes]).toEqual([BS, 0]);
      expect(await metric('headstart_untracked_bytes')).toBe(0);
      expect(told).toHaveLength(1);
    } finally {
      await node.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
