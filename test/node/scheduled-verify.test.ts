/**
 * Scheduled verification: the primary compares itself with the replica's read-only NBD export
 * on its own, with no false alarm while it is healthy, and names the damaged range when the
 * replica's image is changed behind headstart's back (bit rot, a stray write).
 */
import { open, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger, startNode, validateConfig, type HeadstartNode } from '@headstart/node';
import { freePort } from '../helpers/cli';

const SECRET = 'scheduled-verify-secret';
const MiB = 1 << 20;

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

async function until<T>(what: string, get: () => T | null | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== null && v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('scheduled verification', () => {
  it('finds the replica equal while healthy, and reports the damaged range after a stray write', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-sverify-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const nbdPort = await freePort();
    const replica: HeadstartNode = await startNode(validateConfig({
      node: { name: 'site-b', dataDir: join(dir, 'b'), secret: SECRET },
      listen: { peers: '127.0.0.1:0', nbd: `127.0.0.1:${nbdPort}` },
      volumes: [{ name: 'vol', size: 8 * MiB, role: 'replica', sinks: [] }],
    }), silentLogger());
    cleanup.push(() => replica.stop());
    const primary: HeadstartNode = await startNode(validateConfig({
      node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET },
      peers: [{ name: 'site-b', url: `ws://127.0.0.1:${replica.peersPort}` }],
      volumes: [{ name: 'vol', size: 8 * MiB, role: 'primary', schedule: { every: '1h' }, sinks: ['site-b'], verify: { every: '1s', replica: `nbd://127.0.0.1:${nbdPort}/vol` } }],
    }), silentLogger());
    cleanup.push(() => primary.stop());
    await primary.volume('vol').write(MiB, Buffer.alloc(64 * 1024, 0x5a));

    const healthy = await until('a first verification', () => primary.status().volumes[0].lastVerify);
    expect(healthy).toMatchObject({ equal: true, differingBytes: 0, error: null });
    expect(healthy.point).toBeGreaterThan(0);

    // A stray write into the replica's image, behind headstart's back, in the 4th MiB.
    const fh = await open(join(dir, 'b', 'volumes', 'vol', 'image.raw'), 'r+');
    await fh.write(Buffer.alloc(512, 0xee), 0, 512, 3 * MiB + 4096);
    await fh.close();
    const damaged = await until('a verification that sees the damage', () => {
      const lv = primary.status().volumes[0].lastVerify;
      return lv && lv.at > healthy.at && lv.equal === false ? lv : null;
    });
    expect(damaged.ranges).toEqual([[3 * MiB, MiB]]);
    expect(damaged.differingBytes).toBe(MiB);
  }, 90_000);
});
