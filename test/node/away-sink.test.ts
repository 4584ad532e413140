/**
 * A sink that is away is not kept every point for (Node.followLatest, Volume.rebaseSink).
 *
 * A replica site that has points and goes away catches up when it returns: one delta from
 * its last point straight to the latest, each block written between sent once; meanwhile the
 * primary keeps only the numbers of the blocks written, not their old content per point.
 *
 * After a failover with the old primary's site gone, the promoted volume's sink for that
 * site holds nothing of its history yet: its first copy will be a full one, by checksum.
 * Points are not kept for it meanwhile: before, every point from the promotion on was (the
 * old content of each block first written in each), growing the metadata store with every
 * point for as long as the site stayed away (a helper measured 4.7 GiB over an hour of a
 * busy volume). When the site returns and is demoted, it takes a full copy of the latest
 * point and follows on from there, equal to the new primary.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger, startNode, validateConfig, type HeadstartNode } from '@headstart/node';
import { freePort } from '../helpers/cli';

const SECRET = 'away-sink-secret';
const MiB = 1 << 20;
const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe("a promoted volume's sink for the lost site", () => {
  it('keeps no points while the site is away, and syncs it from the latest when it returns', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-away-sink-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const aPeers = await freePort();
    const siteA = () =>
      startNode(validateConfig({ node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET }, listen: { peers: `127.0.0.1:${aPeers}` }, peers: [{ name: 'site-b', url: `ws://127.0.0.1:${replica.peersPort}` }], volumes: [{ name: 'vol', size: 8 * MiB, role: 'primary', schedule: { every: '1h' }, sinks: ['site-b'] }] }), silentLogger());
    const replica: HeadstartNode = await startNode(validateConfig({ node: { name: 'site-b', dataDir: join(dir, 'b'), secret: SECRET }, listen: { peers: '127.0.0.1:0' }, peers: [{ name: 'site-a', url: `ws://127.0.0.1:${aPeers}` }], volumes: [{ name: 'vol', size: 8 * MiB, role: 'replica', schedule: { every: '1h' }, sinks: ['site-a'] }] }), silentLogger());
    cleanup.push(() => replica.stop());
    let primary: HeadstartNode = await siteA();
    await primary.volume('vol').write(0, Buffer.alloc(4 * MiB, 1));
    const p = await primary.snapshotNow('vol');
    await primary.waitAcked('vol', p.n, 30_000);
    await primary.stop(); // the site is lost

    await replica.promote('vol', { force: true });
    const v = replica.volume('vol');
    // Ten points, each rewriting the same 2 MiB: every one of them would keep 2 MiB of old content for the away sink.
    for (let i = 0; i < 10; i++) {
      await v.write(0, Buffer.alloc(2 * MiB, 10 + i));
      await replica.snapshotNow('vol');
    }
    await expect.poll(() => v.sink('site-a').baseline, { timeout: 5000 }).toBe(v.latestClosed!.n);
    await expect.poll(() => v.snapshots().length, { timeout: 5000 }).toBeLessThanOrEqual(2);
    expect(v.sink('site-a').acked).toBeNull();

    // The old site returns (fenced: it is still primary at the old epoch), is demoted, and takes the latest point.
    primary = await siteA();
    cleanup.push(() => primary.stop());
    await expect.poll(() => replica.status().volumes[0].sinks.find((s) => s.name === 'site-a')?.state, { timeout: 20_000 }).toBe('fenced');
    await primary.demote('vol');
    const last = await replica.snapshotNow('vol');
    await replica.waitAcked('vol', last.n, 30_000);
    expect(primary.volume('vol').committed?.n).toBe(last.n);
    const back = await primary.volume('vol').read(0, 8 * MiB);
    const here = await v.read(0, 8 * MiB);
    expect(back.equals(here)).toBe(true);
    expect(here[0]).toBe(19);
    expect(here[3 * MiB]).toBe(1);
  }, 90_000);

  it("a promoted volume's new sink whose first copy a restart cut off half-way takes it again from the latest point, and ends equal", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-away-sink-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const [aPeers, bPeers] = [await freePort(), await freePort()];
    const siteB = () => startNode(validateConfig({ node: { name: 'site-b', dataDir: join(dir, 'b'), secret: SECRET }, listen: { peers: `127.0.0.1:${bPeers}` }, peers: [{ name: 'site-a', url: `ws://127.0.0.1:${aPeers}` }], volumes: [{ name: 'vol', size: 16 * MiB, role: 'replica', schedule: { every: '1h' }, sinks: ['site-a'] }] }), silentLogger());
    // A slow link (4 MB/s): the first copy of 12 MiB takes about 3 s. site-a's volume was
    // promoted (made a replica, then promoted with nothing committed): only a promoted
    // volume keeps no points for a sink that holds nothing.
    const siteA = (role: 'primary' | 'replica' = 'primary') => startNode(validateConfig({ node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET }, listen: { peers: `127.0.0.1:${aPeers}` }, peers: [{ name: 'site-b', url: `ws://127.0.0.1:${bPeers}`, rateLimit: '4MB/s' }], volumes: [{ name: 'vol', size: 16 * MiB, role, schedule: { every: '1h' }, sinks: ['site-b'] }] }), silentLogger());
    let a = await siteA('replica');
    await a.promote('vol', { force: true });
    await a.volume('vol').write(0, randomBytes(12 * MiB));
    await a.snapshotNow('vol');
    let b = await siteB();
    const v = () => a.volume('vol');
    const baseline = v().sink('site-b').baseline;
    // Part of the copy reaches site-b (staged there), then both sites stop.
    await expect.poll(() => a.status().volumes[0].sinks[0]?.payloadBytesSent ?? 0, { timeout: 20_000 }).toBeGreaterThan(2 * MiB);
    expect(v().sink('site-b').acked).toBeNull();
    await b.stop();
    await a.stop();
    // site-a comes back alone and takes points: the away sink's copy moves to the latest.
    a = await siteA();
    for (let i = 0; i < 3; i++) {
      await v().write(i * MiB, Buffer.alloc(MiB, 0xa0 + i));
      await a.snapshotNow('vol');
      await new Promise((r) => setTimeout(r, 200));
    }
    await expect.poll(() => v().sink('site-b').baseline, { timeout: 15_000 }).toBe(v().latestClosed!.n);
    expect(v().sink('site-b').baseline).toBeGreaterThan(baseline);
    // site-b returns: it takes the copy at the new point and holds exactly site-a's.
    b = await siteB();
    cleanup.push(() => b.stop(), () => a.stop());
    const last = await a.snapshotNow('vol');
    await a.waitAcked('vol', last.n, 60_000);
    expect(b.volume('vol').committed?.n).toBe(last.n);
    expect((await b.volume('vol').read(0, 16 * MiB)).equals(await v().read(0, 16 * MiB))).toBe(true);
  }, 120_000);
});

describe('a replica site that has points and goes away', () => {
  it('is kept no old content per point meanwhile, and catches up in one delta to the latest when it returns', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-away-sink-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const [aPeers, bPeers] = [await freePort(), await freePort()];
    const siteB = () => startNode(validateConfig({ node: { name: 'site-b', dataDir: join(dir, 'b'), secret: SECRET }, listen: { peers: `127.0.0.1:${bPeers}` }, peers: [{ name: 'site-a', url: `ws://127.0.0.1:${aPeers}` }], volumes: [{ name: 'vol', size: 32 * MiB, role: 'replica', schedule: { every: '1h' }, sinks: ['site-a'] }] }), silentLogger());
    const a = await startNode(validateConfig({ node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET }, listen: { peers: `127.0.0.1:${aPeers}` }, peers: [{ name: 'site-b', url: `ws://127.0.0.1:${bPeers}` }], volumes: [{ name: 'vol', size: 32 * MiB, role: 'primary', schedule: { every: '1h' }, sinks: ['site-b'] }] }), silentLogger());
    cleanup.push(() => a.stop());
    let b = await siteB();
    const v = a.volume('vol');
    await v.write(0, randomBytes(4 * MiB));
    const p = await a.snapshotNow('vol');
    await a.waitAcked('vol', p.n, 30_000);
    await b.stop(); // the replica site goes away

    // Twenty points, each rewriting the same 4 MiB (and 4 KiB of its own): kept per point, 80 MiB of old content.
    for (let i = 0; i < 20; i++) {
      await v.write(0, Buffer.alloc(4 * MiB, 10 + i));
      await v.write(8 * MiB + i * 4096, Buffer.alloc(4096, 10 + i));
      await a.snapshotNow('vol');
      await new Promise((r) => setTimeout(r, 50));
    }
    // A close falls between the link's tries now and then: the sink catches up to the latest.
    for (let i = 0; i < 50 && v.sink('site-b').catchUpTo !== v.latestClosed!.n; i++) {
      await a.snapshotNow('vol');
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(v.sink('site-b')).toMatchObject({ acked: p.n, catchUpTo: v.latestClosed!.n });
    expect(v.isReadable(p.n + 1)).toBe(false);
    // The metadata store held about one point's old content at most (LMDB takes two 4 KiB pages per block).
    const meta = (await stat(join(dir, 'a', 'volumes', 'vol', 'meta.lmdb'))).size;
    expect(meta).toBeLessThan(40 * MiB); // measured 17.0 MB; 160.6 MB when every point was kept for it
    expect(a.status().volumes[0].sinks.find((s) => s.name === 'site-b')?.catchUpTo).toBe(v.latestClosed!.n);

    // The site returns: one delta, 4 MiB and 20 blocks, and it is byte-equal.
    const sent = a.status().volumes[0].sinks.find((s) => s.name === 'site-b')!.payloadBytesSent;
    b = await siteB();
    cleanup.push(() => b.stop());
    const last = v.latestClosed!.n;
    await a.waitAcked('vol', last, 60_000);
    expect(b.volume('vol').committed?.n).toBe(last);
    expect((await b.volume('vol').read(0, 32 * MiB)).equals(await v.read(0, 32 * MiB))).toBe(true);
    expect(a.status().volumes[0].sinks.find((s) => s.name === 'site-b')!.payloadBytesSent - sent).toBe(4 * MiB + 20 * 4096);
    expect(v.sink('site-b').catchUpTo).toBeUndefined();
  }, 120_000);
});
