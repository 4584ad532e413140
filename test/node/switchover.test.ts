/**
 * A planned switchover, as docs/operations.md's runbook does it: the primary is demoted,
 * then the replica promoted at once. The replica used to refuse for 15 s after the demote
 * (NODE_PRIMARY_REACHABLE, "still shipping to this node"), because a source that stopped on
 * purpose looked like one whose link had just dropped. A source that is connected always
 * counts as alive; one that is only cut off, or whose node stops without a demote (a restart),
 * for 15 s after.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger, startNode, validateConfig, type HeadstartNode } from '@headstart/node';
import { freePort } from '../helpers/cli';

const SECRET = 'switchover-secret';
const MiB = 1 << 20;
const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

/** Two sites, vol primary on site-a and replica on site-b, point 1 committed; site-a can be started again on its data directory (after a stop). */
async function sites(): Promise<{ a: HeadstartNode; b: HeadstartNode; dir: string; restartA: () => Promise<HeadstartNode> }> {
  const dir = await mkdtemp(join(tmpdir(), 'hs-switchover-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const [aPeers, bPeers] = [await freePort(), await freePort()];
  const node = (name: string, peer: string, port: number, peerPort: number, role: 'primary' | 'replica') =>
    startNode(validateConfig({
      node: { name, dataDir: join(dir, name), secret: SECRET },
      listen: { peers: `127.0.0.1:${port}` },
      peers: [{ name: peer, url: `ws://127.0.0.1:${peerPort}` }],
      volumes: [{ name: 'vol', size: 4 * MiB, role, schedule: { every: '1h' }, sinks: [peer] }],
    }), silentLogger());
  const b = await node('site-b', 'site-a', bPeers, aPeers, 'replica');
  cleanup.push(() => b.stop());
  const a = await node('site-a', 'site-b', aPeers, bPeers, 'primary');
  cleanup.push(() => a.stop());
  await a.volume('vol').write(0, Buffer.alloc(64 * 1024, 0x3c));
  const p = await a.snapshotNow('vol');
  await a.waitAcked('vol', p.n, 30_000);
  const restartA = async () => {
    const again = await node('site-a', 'site-b', aPeers, bPeers, 'primary');
    cleanup.push(() => again.stop());
    return again;
  };
  return { a, b, dir, restartA };
}

describe('planned switchover', () => {
  it('promotes the replica right after its primary was demoted', async () => {
    const { a, b } = await sites();
    const link = () => b.status().volumes[0]!.primaryLink!;
    expect(link().connected).toMatch(/^site-a at 127\.0\.0\.1:\d+$/);
    expect(link().demotedAt).toBeNull();
    await a.demote('vol');
    // The session's end reaches the replica a moment after the demote returns.
    let promoted: Awaited<ReturnType<HeadstartNode['promote']>> | null = null;
    for (const end = Date.now() + 5_000; promoted === null && Date.now() < end; ) {
      promoted = await b.promote('vol').catch((err: { code?: string }) => {
        if (err.code !== 'NODE_PRIMARY_REACHABLE') throw err;
        return new Promise<null>((r) => setTimeout(() => r(null), 100));
      });
    }
    expect(promoted, 'still refused 5 s after the demote').not.toBeNull();
    expect(b.status().volumes[0]!.primaryLink).toBeNull(); // a primary now
    expect(promoted!.epoch).toBe(2);
  }, 60_000);

  it('still refuses while the primary is alive and shipping', async () => {
    const { b } = await sites();
    await expect(b.promote('vol')).rejects.toMatchObject({ code: 'NODE_PRIMARY_REACHABLE' });
  }, 60_000);

  it('refuses while the primary is connected, however long ago its last point was', async () => {
    // The guard used to count only from the last commit: 15 s after it, a replica of a live,
    // connected primary on an hourly schedule was promoted without a word (two primaries).
    const { b } = await sites();
    await new Promise((r) => setTimeout(r, 16_000));
    await expect(b.promote('vol')).rejects.toMatchObject({ code: 'NODE_PRIMARY_REACHABLE', message: expect.stringContaining('is connected and shipping to this node') });
    expect(b.volume('vol').readOnly).toBe(true);
  }, 60_000);

  it('refuses for a while after its primary node stopped without demoting (a restart), unless forced', async () => {
    const { a, b } = await sites();
    await a.stop();
    await new Promise((r) => setTimeout(r, 500)); // the link's end reaches the replica
    const link = b.status().volumes[0]!.primaryLink!;
    expect(link).toMatchObject({ connected: null, demotedAt: null });
    expect(Date.now() - link.lastSeenAt!).toBeLessThan(5_000);
    await expect(b.promote('vol')).rejects.toMatchObject({ code: 'NODE_PRIMARY_REACHABLE', message: expect.stringContaining('did not demote') });
    expect((await b.promote('vol', { force: true })).epoch).toBe(2);
  }, 60_000);
});

describe('promoting a replica that never committed a point', () => {
  it('is refused without --force (it would be a volume of zeroes), and done with it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-never-synced-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    // Its primary's address answers nothing: the replica never receives a point.
    const b = await startNode(validateConfig({
      node: { name: 'site-b', dataDir: join(dir, 'b'), secret: SECRET },
      listen: { peers: '127.0.0.1:0' },
      peers: [{ name: 'site-a', url: `ws://127.0.0.1:${await freePort()}` }],
      volumes: [{ name: 'vol', size: 4 * MiB, role: 'replica', schedule: { every: '1h' }, sinks: ['site-a'] }],
    }), silentLogger());
    cleanup.push(() => b.stop());
    await expect(b.promote('vol')).rejects.toMatchObject({ code: 'SNAPSHOT_UNKNOWN', message: expect.stringContaining('has not committed any point from a primary yet') });
    expect(b.volume('vol').readOnly).toBe(true);
    expect((await b.promote('vol', { force: true })).epoch).toBe(2);
  }, 60_000);
});

describe('a primary made anew (its data lost) that keeps connecting', () => {
  it('is refused by its replica, which keeps its data and can be promoted without waiting on it', async () => {
    const { a, b, dir, restartA } = await sites();
    const held = await b.volume('vol').read(0, 64 * 1024);
    await a.stop();
    await rm(join(dir, 'site-a', 'volumes'), { recursive: true, force: true }); // its disk is lost
    const anew = await restartA();
    await anew.volume('vol').write(0, Buffer.alloc(4096, 0x01));
    await anew.snapshotNow('vol');
    const sink = () => anew.status().volumes[0]!.sinks[0]!;
    for (const end = Date.now() + 15_000; !(sink().lastError ?? '').startsWith('REPL_DIVERGED') && Date.now() < end; ) await new Promise((r) => setTimeout(r, 100));
    expect(sink().lastError).toMatch(/^REPL_DIVERGED: the replica holds point \d+ .* was not promoted over it: nothing is sent/);
    expect((await b.volume('vol').read(0, 64 * 1024)).equals(held)).toBe(true);
    // Its refused sessions do not count as a primary shipping: 15 s after the old one
    // dropped, promote goes through (a refused session under way for a moment says so).
    await new Promise((r) => setTimeout(r, 15_500));
    let promoted: Awaited<ReturnType<HeadstartNode['promote']>> | null = null;
    for (let i = 0; i < 10 && promoted === null; i++) {
      promoted = await b.promote('vol').catch((err: { code?: string; message?: string }) => {
        if (err.code !== 'NODE_PRIMARY_REACHABLE' || !String(err.message).includes('is connected')) throw err;
        return new Promise<null>((r) => setTimeout(() => r(null), 200));
      });
    }
    expect(promoted?.epoch).toBe(2);
    expect((await b.volume('vol').read(0, 64 * 1024)).equals(held)).toBe(true);
  }, 90_000);
});
