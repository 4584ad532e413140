/**
 * A scheduled close that cannot be recorded (the volume's disk is full: a real tmpfs, filled;
 * needs root to mount it, as on the CI machine, skipped where that is not allowed) leaves
 * the point open, is retried for the same scheduled time, shows in status, and closes once
 * space is freed. Before, one failed close ended the schedule: no point ever closed again.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectNbd } from '@headstart/nbd';
import { fillDisk, resizeDisk, smallDisk } from '../../../test/helpers/small-disk';
import { validateConfig } from './config';
import { toFeedStatus } from './dashboard';
import { silentLogger } from './logger';
import { metricsRegistry } from './metrics';
import { startNode } from './node';

const disk = smallDisk('4m');

describe.skipIf(disk === null)('a scheduled close on a full disk', () => {
  it('is retried until it closes, and status says so meanwhile', async () => {
    const config = validateConfig(
      { node: { name: 'full', dataDir: join(disk!, 'data') }, listen: { nbd: '127.0.0.1:0', admin: '127.0.0.1:0' }, volumes: [{ name: 'v', size: '64MiB', schedule: { every: '1s' } }] },
      'test',
      disk!,
    );
    const node = await startNode(config, silentLogger());
    try {
      const c = await connectNbd({ host: '127.0.0.1', port: node.nbdPort!, exportName: 'v' });
      await c.write(0, Buffer.alloc(4096, 1));
      await c.flush();
      fillDisk(disk!);
      const view = () => node.status().volumes[0];
      // Closes are due every second; the first that finds the disk full fails and is retried every 5 s.
      const until = Date.now() + 15_000;
      while (!(view().closeFailing !== null && view().closeFailing!.attempts >= 2) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
      const failing = view().closeFailing;
      expect(failing, 'no close failed on the full disk').not.toBeNull();
      expect(failing!.code).toBe('VOLUME_NO_SPACE');
      expect(failing!.attempts).toBeGreaterThanOrEqual(2);
      const metrics = metricsRegistry(node);
      const metric = async (name: string) => Number(/ (\S+)$/m.exec((await metrics.getSingleMetricAsString(name)).split('\n').find((l) => l.startsWith(`${name}{`)) ?? '')?.[1]);
      expect(await metric('headstart_close_failing')).toBe(1);
      expect(await metric('headstart_disk_free_bytes')).toBeLessThan(await metric('headstart_disk_reserve_bytes'));
      expect(view().disk.freeBytes).toBeLessThan(view().disk.reserveBytes);
      // The dashboard's feed carries both (its health rule marks the volume's sinks broken).
      const feed = toFeedStatus(node.status()).volumes[0];
      expect(feed.closeFailing?.code).toBe('VOLUME_NO_SPACE');
      expect(feed.disk!.freeBytes).toBeLessThan(feed.disk!.reserveBytes);
      const stuck = view().latestClosed;
      const open = view().openSnapshot;
      expect(open).toBe(stuck! + 1);

      resizeDisk(disk!, '64m');
      const until2 = Date.now() + 15_000;
      while (view().closeFailing !== null && Date.now() < until2) await new Promise((r) => setTimeout(r, 200));
      expect(view().closeFailing, JSON.stringify(view().closeFailing)).toBeNull();
      expect(await metric('headstart_close_failing')).toBe(0);
      // The delayed point closed with the scheduled time it was due at, and the schedule goes on.
      const delayed = view().history.find((h) => h.n === open);
      expect(delayed?.scheduledAt).toBe(failing!.scheduledAt);
      const until3 = Date.now() + 10_000;
      while ((view().latestClosed ?? 0) < open! + 1 && Date.now() < until3) await new Promise((r) => setTimeout(r, 200));
      expect(view().latestClosed).toBeGreaterThan(open!);
      expect((await c.read(0, 4096)).equals(Buffer.alloc(4096, 1))).toBe(true);
      await c.close();
    } finally {
      await node.stop();
    }
  }, 60_000);
});
