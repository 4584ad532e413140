/**
 * A replica whose commit is writing its image (or stopped half-way) is "between points":
 * status, metrics and the dashboard's feed say so, and reads of its NBD export wait for the commit, so that a
 * client only ever reads a committed point.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectNbd } from '@headstart/nbd';
import { validateConfig } from './config';
import { toFeedStatus } from './dashboard';
import { silentLogger } from './logger';
import { metricsRegistry } from './metrics';
import { startNode } from './node';

describe('a replica between two points', () => {
  it('shows in status and metrics, and its export\'s reads wait for the commit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-between-'));
    const config = validateConfig({ node: { name: 'b', dataDir: join(dir, 'data'), secret: 'between-points-test-secret' }, listen: { nbd: '127.0.0.1:0', admin: '127.0.0.1:0', peers: '127.0.0.1:0' }, volumes: [{ name: 'r', size: '4MiB', role: 'replica' }] }, 'test', dir);
    const node = await startNode(config, silentLogger());
    try {
      expect(node.status().volumes[0].betweenPoints).toBeNull();
      // What a commit does around its image writes (replica-target.ts apply), held here.
      await node.volume('r').beginApply(3);
      const view = node.status().volumes[0].betweenPoints;
      expect(view?.n).toBe(3);
      expect(toFeedStatus(node.status()).volumes[0].betweenPoints?.n, 'the dashboard feed carries it').toBe(3);
      await new Promise((r) => setTimeout(r, 1100));
      const metricSeconds = async () => Number(/volume="r"} ([0-9.]+)/.exec(await metricsRegistry(node).getSingleMetricAsString('headstart_replica_between_points_seconds'))?.[1]);
      expect(await metricSeconds(), 'a commit still writing is no alarm').toBe(0);
      node.volume('r').applyFailed(); // its image writes stopped half-way (a full disk)
      expect(node.status().volumes[0].betweenPoints?.stalled).toBe(true);
      expect(await metricSeconds()).toBeGreaterThan(1);
      const client = await connectNbd({ host: '127.0.0.1', port: node.nbdPort!, exportName: 'r' });
      let read = false;
      const reading = client.read(0, 4096).then(() => (read = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(read, 'a read through NBD waits for the commit').toBe(false);
      node.volume('r').endApply();
      await reading;
      expect(node.status().volumes[0].betweenPoints).toBeNull();
      await client.close();
    } finally {
      await node.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
