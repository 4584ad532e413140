/**
 * A replica's volume can carry an RPO target: with its primary's site lost, the replica's
 * site is where an operator looks, so the feed (the dashboard judges the held point's age by
 * it) and the metrics (an alert on headstart_replica_rpo_age_seconds against it) carry it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateConfig } from './config';
import { toFeedStatus } from './dashboard';
import { silentLogger } from './logger';
import { metricsRegistry } from './metrics';
import { startNode } from './node';

describe("a replica's RPO target", () => {
  it('is in the feed and the metrics, beside the age of the point the replica holds', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-replica-rpo-'));
    const config = validateConfig(
      { node: { name: 'b', dataDir: join(dir, 'data'), secret: 'replica-rpo-test-secret' }, listen: { peers: '127.0.0.1:0' }, volumes: [{ name: 'r', size: '4MiB', role: 'replica', rpoTarget: '90s' }, { name: 'q', size: '4MiB', role: 'replica' }] },
      'test',
      dir,
    );
    const node = await startNode(config, silentLogger());
    try {
      const feed = toFeedStatus(node.status());
      expect(feed.volumes.map((v) => [v.name, v.rpoTargetMs])).toEqual([
        ['r', 90_000],
        ['q', null],
      ]);
      const target = await metricsRegistry(node).getSingleMetricAsString('headstart_rpo_target_seconds');
      expect(target).toContain('headstart_rpo_target_seconds{volume="r"} 90');
      expect(target).not.toContain('volume="q"');
    } finally {
      await node.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
