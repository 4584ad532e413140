/**
 * Rate caps are shared: a peer's cap holds for all the volumes that ship to it together, and
 * the node-wide linkCap for every link of the node; an operator changes either at run time.
 * Only lower bounds on time are asserted (a cap cannot be beaten by a slow machine).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger, startNode, validateConfig, type HeadstartNode } from '@headstart/node';

const SECRET = 'shared-cap-test-secret';
const MiB = 1 << 20;
const VOLS = ['v1', 'v2', 'v3'];

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

/** Points are taken by the tests (snapshotNow); the schedule, which a volume with sinks needs, fires on 29 February only. */
async function pair(dir: string, caps: { rateLimit?: number; linkCap?: number }): Promise<HeadstartNode> {
  const replica = await startNode(validateConfig({
    node: { name: 'site-b', dataDir: join(dir, 'b'), secret: SECRET },
    listen: { peers: '127.0.0.1:0' },
    volumes: VOLS.map((name) => ({ name, size: 16 * MiB, role: 'replica', sinks: [] })),
  }), silentLogger());
  cleanup.push(() => replica.stop());
  const primary = await startNode(validateConfig({
    node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET },
    ...(caps.linkCap ? { linkCap: caps.linkCap } : {}),
    peers: [{ name: 'site-b', url: `ws://127.0.0.1:${replica.peersPort}`, ...(caps.rateLimit ? { rateLimit: caps.rateLimit } : {}) }],
    volumes: VOLS.map((name) => ({ name, size: 16 * MiB, role: 'primary', schedule: { cron: '0 0 29 2 *' }, policy: { name: 'at-snapshot' }, sinks: ['site-b'] })),
  }), silentLogger());
  cleanup.push(() => primary.stop());
  for (const name of VOLS) {
    const v = primary.volume(name);
    await primary.waitAcked(name, v.latestClosed!.n, 30_000);
  }
  return primary;
}

/** Writes `bytes` of fresh data into every volume, closes a point of each, and times until all are committed. */
async function shipAll(node: HeadstartNode, bytes: number, seed: number): Promise<number> {
  for (const name of VOLS) await node.volume(name).write(0, Buffer.alloc(bytes, seed));
  const t0 = Date.now();
  const points = await Promise.all(VOLS.map((name) => node.snapshotNow(name)));
  await Promise.all(VOLS.map((name, i) => node.waitAcked(name, points[i].n, 60_000)));
  return (Date.now() - t0) / 1000;
}

describe('shared rate caps', () => {
  it("a peer's cap holds for all its volumes together, and changes at run time", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-cap-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const node = await pair(dir, { rateLimit: 2 * MiB });
    // 3 x 2 MiB through one 2 MiB/s cap: about 3 s (each link alone would take 1 s)
    const capped = await shipAll(node, 2 * MiB, 1);
    expect(capped).toBeGreaterThan(2.5);
    expect(node.status().volumes[0].sinks[0].rateLimit).toBe(2 * MiB);
    expect(node.setRateLimit('site-b', 4 * MiB)).toMatchObject({ peer: 'site-b', rateLimit: 4 * MiB, links: 3, cap: { peer: 'site-b', setBy: 'operator' } });
    const faster = await shipAll(node, 2 * MiB, 2);
    expect(faster).toBeGreaterThan(1.2); // 6 MiB at 4 MiB/s
    node.setRateLimit('site-b', null);
    expect(node.status().volumes[0].sinks[0].rateLimit).toBeNull();
    expect(() => node.setRateLimit('nobody', MiB)).toThrow(/no peer/);
    expect(() => node.setRateLimit('site-b', -5)).toThrow(/positive/);
  }, 90_000);

  it('gives a shared cap to the point due soonest first, not to whichever link asks first', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-cap-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const node = await pair(dir, { linkCap: 2 * MiB });
    // v1 has 4 MiB to send, v2 and v3 1 MiB each; v1's point is taken first, then v2's, then
    // v3's: their backlogs all wait for one 2 MiB/s cap.
    for (const name of VOLS) await node.volume(name).write(0, Buffer.alloc(name === 'v1' ? 4 * MiB : MiB, 9));
    const t0 = Date.now();
    const acked: Record<string, number> = {};
    await Promise.all(
      VOLS.map(async (name, i) => {
        await new Promise((r) => setTimeout(r, i * 50));
        const p = await node.snapshotNow(name);
        await node.waitAcked(name, p.n, 60_000);
        acked[name] = (Date.now() - t0) / 1000;
      }),
    );
    // By deadline they commit in the order their points were taken (v1 after about 2 s, then
    // v2, then v3 at about 3 s); first come first served, the three interleave frame by frame
    // and v1, the largest, commits last.
    console.log(`shared cap by deadline: acknowledged after ${JSON.stringify(acked)} s`);
    expect(acked.v1, JSON.stringify(acked)).toBeLessThan(acked.v2);
    expect(acked.v2, JSON.stringify(acked)).toBeLessThan(acked.v3);
    expect(acked.v3).toBeGreaterThan(2.5); // the cap held for all of them together
  }, 90_000);

  it('the node-wide linkCap holds for every link', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-cap-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const node = await pair(dir, { linkCap: 2 * MiB });
    expect(await shipAll(node, 2 * MiB, 3)).toBeGreaterThan(2.5);
    expect(node.setRateLimit(null, null)).toMatchObject({ peer: null, rateLimit: null, links: 3, cap: { peer: null, setBy: 'operator' } });
  }, 90_000);
});
