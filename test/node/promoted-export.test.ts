/**
 * After a failover with the old primary's site still gone, the promoted volume's new sink
 * (the old site) is in its first copy and has acknowledged nothing: an export and a
 * verification of the new primary must work then, the case they matter most in.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger, startNode, validateConfig, type HeadstartNode } from '@headstart/node';
import { freePort } from '../helpers/cli';
import { smallDisk } from '../helpers/small-disk';

const SECRET = 'promoted-export-secret';
const MiB = 1 << 20;
const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('a promoted primary whose old site is gone', () => {
  it('exports its points and begins a verification (which waits for the gone site, not SINK_BAD_ACK)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-promoted-export-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const aPeers = await freePort();
    const replica: HeadstartNode = await startNode(validateConfig({
      node: { name: 'site-b', dataDir: join(dir, 'b'), secret: SECRET },
      listen: { peers: '127.0.0.1:0' },
      peers: [{ name: 'site-a', url: `ws://127.0.0.1:${aPeers}` }],
      volumes: [{ name: 'vol', size: 8 * MiB, role: 'replica', schedule: { every: '1h' }, sinks: ['site-a'] }],
    }), silentLogger());
    cleanup.push(() => replica.stop());
    const primary: HeadstartNode = await startNode(validateConfig({
      node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET },
      listen: { peers: `127.0.0.1:${aPeers}` },
      peers: [{ name: 'site-b', url: `ws://127.0.0.1:${replica.peersPort}` }],
      volumes: [{ name: 'vol', size: 8 * MiB, role: 'primary', schedule: { every: '1h' }, sinks: ['site-b'] }],
    }), silentLogger());
    const data = Buffer.alloc(2 * MiB);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    await primary.volume('vol').write(MiB, data);
    const point = await primary.snapshotNow('vol');
    await primary.waitAcked('vol', point.n, 30_000);
    await primary.stop(); // the site is lost

    const promoted = await replica.promote('vol', { force: true });
    expect(promoted.point).toBe(point.n);
    expect(replica.status().volumes[0].sinks.find((s) => s.name === 'site-a')?.acked ?? null).toBeNull();
    // Both used to fail with SINK_BAD_ACK ("point N is no longer kept ... full (checksum) resync").
    const exported = await replica.exportImage('vol', join(dir, 'promoted.raw'));
    expect(exported.n).toBeGreaterThan(point.n);
    // The point's scheduled time names it across a consistency group (members number points apart).
    expect(exported.scheduledAt).toBe(replica.volume('vol').latestClosed!.scheduledAt);
    expect(exported.scheduledAt).toBeGreaterThan(point.scheduledAt);
    const image = await readFile(join(dir, 'promoted.raw'));
    expect(image.subarray(MiB, 3 * MiB).equals(data)).toBe(true);
    // The output's own problems are the output's, not a failing volume disk (VOLUME_IO).
    await expect(replica.exportImage('vol', join(dir, 'no-such-dir', 'x.raw'))).rejects.toMatchObject({ code: 'EXPORT_OUTPUT', message: expect.stringContaining(`cannot create ${join(dir, 'no-such-dir', 'x.raw')}: ENOENT`) });
    const small = smallDisk('1m'); // 2 MiB of data do not fit
    if (small !== null) {
      await expect(replica.exportImage('vol', join(small, 'x.raw'))).rejects.toMatchObject({ code: 'EXPORT_OUTPUT', message: expect.stringContaining('ENOSPC') });
      expect(await readdir(small)).toEqual([]); // the partial file is gone
    }
    const verify = await replica.beginVerify('vol', { timeoutMs: 1_000 }).then(() => 'resolved', (err: { code?: string }) => err.code);
    expect(verify).toBe('LINK_TIMEOUT');
    expect(replica.volume('vol').sinks().map((s) => s.name)).toEqual(['site-a']);
  }, 60_000);
});
