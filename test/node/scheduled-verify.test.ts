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

/** A replica node and a primary that verifies against its read-only export every second. */
async function pair(prefix: string, rateLimit?: string): Promise<{ dir: string; primary: HeadstartNode }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
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
    peers: [{ name: 'site-b', url: `ws://127.0.0.1:${replica.peersPort}`, ...(rateLimit === undefined ? {} : { rateLimit }) }],
    volumes: [{ name: 'vol', size: 8 * MiB, role: 'primary', schedule: { every: '1h' }, sinks: ['site-b'], verify: { every: '1s', replica: `nbd://127.0.0.1:${nbdPort}/vol` } }],
  }), silentLogger());
  cleanup.push(() => primary.stop());
  return { dir, primary };
}

describe('scheduled verification', () => {
  it('finds the replica equal while healthy, and reports the damaged range after a stray write', async () => {
    const { dir, primary } = await pair('hs-sverify-');
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

  it('waits while a sink is behind, without holding the schedule or closing a point, then verifies', async () => {
    const { primary } = await pair('hs-sverify-behind-', '512KiB/s');
    await until('a first verification', () => primary.status().volumes[0].lastVerify);
    // 4 MiB of random blocks at 512 KiB/s: a backlog of about 8 s (a cap only slows it).
    const data = Buffer.alloc(4 * MiB);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i);
    await primary.volume('vol').write(0, data);
    const point = await primary.snapshotNow('vol');
    const before = primary.status().volumes[0].lastVerify!;
    await until('a deferred verification', () => (primary.status().volumes[0].verifyDeferred >= 2 ? true : null), 6_000);
    const v = primary.status().volumes[0];
    expect(v.sinks[0].acked ?? -1).toBeLessThan(point.n);
    // Nothing held: the schedule still has its next close, and no verification point was closed.
    expect(v.nextCloseAt).not.toBeNull();
    expect(primary.volume('vol').latestClosed?.n).toBe(point.n);
    expect(v.lastVerify).toEqual(before);
    const after = await until('a verification once the sink caught up', () => {
      const lv = primary.status().volumes[0].lastVerify;
      return lv && lv.at > before.at ? lv : null;
    }, 60_000);
    expect(after).toMatchObject({ equal: true, error: null });
    expect(after.point!).toBeGreaterThan(point.n);
    expect(primary.status().volumes[0].verifyDeferred).toBe(0);
  }, 90_000);
});
