/**
 * The source side of a consistency group (node.ts closePoints), in-process: its volumes close
 * at one scheduled time, whichever of them is named, and those times keep growing when the
 * clock steps back (the replica knows a group's points by them). A node that went down in
 * the middle of a group's close gives the point to the volumes that missed it at its next
 * start, at the group's cut, unless they took writes after it. Volumes made at different times
 * (a new group, a volume added to one) are no such half-done close.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { connectNbd } from '@headstart/nbd';
import { openVolume } from '@headstart/volume';
import { validateConfig } from './config';
import { silentLogger } from './logger';
import { startNode, type HeadstartNode } from './node';

let node: HeadstartNode | null = null;
let dir = '';
afterEach(async () => {
  vi.restoreAllMocks();
  await node?.stop();
  node = null;
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('a consistency group on its source', () => {
  it('closes every volume at one time, in one cut, and the times grow even when the clock steps back', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-group-close-'));
    const vol = (name: string, group?: string) => ({ name, size: '8MiB', ...(group ? { group } : {}) });
    const config = validateConfig({ node: { name: 'g', dataDir: join(dir, 'data') }, listen: { nbd: '127.0.0.1:0', admin: '127.0.0.1:0' }, volumes: [vol('wal', 'app'), vol('db', 'app'), vol('alone')] }, 'test', dir);
    node = await startNode(config, silentLogger());
    const n = node;
    const latest = (name: string) => n.status().volumes.find((v) => v.name === name)!.history.at(-1)!;
    // A sink that never acknowledges keeps the points readable (a volume without sinks drops them).
    for (const name of ['wal', 'db']) await n.volume(name).addSink('hold', { acked: n.volume(name).latestClosed!.n });
    const wal = await connectNbd({ host: '127.0.0.1', port: n.nbdPort!, exportName: 'wal' });
    const db = await connectNbd({ host: '127.0.0.1', port: n.nbdPort!, exportName: 'db' });

    // Naming either volume closes both, at one scheduled time; a volume outside the group is untouched.
    const aloneBefore = n.status().volumes.find((v) => v.name === 'alone')!.latestClosed;
    const p1 = await n.snapshotNow('db');
    expect(latest('wal').scheduledAt).toBe(p1.scheduledAt);
    expect(latest('db').n).toBe(p1.n);
    const p2 = await n.snapshotNow('wal');
    expect(latest('db').scheduledAt).toBe(p2.scheduledAt);
    expect(n.status().volumes.find((v) => v.name === 'alone')!.latestClosed).toBe(aloneBefore);

    // Dependent writes racing a close: wal's record k, once acknowledged, then db's. In any
    // point, db's newest record is wal's or one less.
    let k = 0;
    let stop = false;
    const record = (i: number) => Buffer.alloc(4096, i % 251);
    const writer = (async () => {
      while (!stop) {
        await wal.write(0, record(k + 1));
        await db.write(0, record(k + 1));
        k++;
      }
    })().catch((err: unknown) => {
      if (!stop) throw err;
    });
    try {
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 5 + i));
        const p = await n.snapshotNow('wal');
        const dbPoint = latest('db');
        expect(dbPoint.scheduledAt).toBe(p.scheduledAt);
        const w = (await n.volume('wal').readBlocksAt(p.n, 0, 1))[0];
        const d = (await n.volume('db').readBlocksAt(dbPoint.n, 0, 1))[0];
        expect([w, (w + 250) % 251], `wal holds record ${w}, db ${d}`).toContain(d);
      }
    } finally {
      stop = true;
      await writer;
    }
    expect(k, 'the writer raced the closes').toBeGreaterThan(20);

    // The clock steps back an hour: the next point's time is still after the last one's.
    const before = latest('wal').scheduledAt;
    const now = Date.now();
    vi.spyOn(Date, 'now').mockReturnValue(now - 3_600_000);
    const p3 = await n.snapshotNow('db');
    vi.restoreAllMocks();
    expect(p3.scheduledAt).toBeGreaterThan(before);
    expect(latest('wal').scheduledAt).toBe(p3.scheduledAt);
    await wal.close();
    await db.close();
  });

  it('at start, closes the point a group close left on some of its volumes, at the group\'s cut, unless they took later writes', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-group-torn-'));
    const vol = (name: string) => ({ name, size: '8MiB', group: 'app' });
    const config = validateConfig({ node: { name: 'g', dataDir: join(dir, 'data') }, listen: { nbd: '127.0.0.1:0', admin: '127.0.0.1:0' }, volumes: [vol('wal'), vol('db')] }, 'test', dir);
    const volumeDir = (name: string) => join(dir, 'data', 'volumes', name);
    const write = async (name: string, byte: number) => {
      const c = await connectNbd({ host: '127.0.0.1', port: node!.nbdPort!, exportName: name });
      await c.write(0, Buffer.alloc(4096, byte));
      await c.close();
    };
    node = await startNode(config, silentLogger());
    for (const name of ['wal', 'db']) await node.volume(name).addSink('hold', { acked: node.volume(name).latestClosed!.n });
    await write('wal', 1);
    await write('db', 1);
    await node.stop();
    node = null;

    // What a kill inside the close step leaves: wal's point recorded, db's not.
    const wal = await openVolume(volumeDir('wal'));
    const cut = await wal.closeSnapshot({ scheduledAt: Date.now() });
    await wal.shutdown();
    node = await startNode(config, silentLogger());
    const dbPoint = node.volume('db').latestClosed!;
    expect(dbPoint.scheduledAt, 'db got the group\'s point at start').toBe(cut.scheduledAt);
    expect(dbPoint.closedAt).toBe(cut.closedAt);
    expect((await node.volume('db').readBlocksAt(dbPoint.n, 0, 1))[0]).toBe(1);
    expect(node.volume('wal').latestClosed).toEqual(cut);
    await node.stop();
    node = null;

    // A volume that missed the close and took writes after the cut (its own record had
    // failed while the node ran on) keeps them in its open point: not closed at that time.
    const wal2 = await openVolume(volumeDir('wal'));
    const cut2 = await wal2.closeSnapshot({ scheduledAt: Date.now() + 1000 });
    await wal2.shutdown();
    const db2 = await openVolume(volumeDir('db'), { clock: { now: () => cut2.closedAt + 5 } });
    await db2.write(0, Buffer.alloc(4096, 2));
    await db2.shutdown();
    node = await startNode(config, silentLogger());
    expect(node.volume('db').latestClosed!.scheduledAt).toBe(cut.scheduledAt);
    expect(node.volume('db').openSnapshot).toBe(dbPoint.n + 1);
  });
  it('takes the creation of its volumes, or of a volume added to it, for no half-done close', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-group-new-'));
    const lines: { level: number; msg?: string; volume?: string; group?: string }[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write(chunk, _enc, done) { lines.push(JSON.parse(String(chunk))); done(); } }));
    const vol = (name: string) => ({ name, size: '8MiB', group: 'app' });
    const config = (names: string[]) => validateConfig({ node: { name: 'g', dataDir: join(dir, 'data') }, listen: { nbd: '127.0.0.1:0', admin: '127.0.0.1:0' }, volumes: names.map(vol) }, 'test', dir);
    // (the test's own 'hold' sinks are removed at the restart, and said so: not the group's business)
    const alarms = () => lines.filter((l) => l.level >= 40 && l.group !== undefined).map((l) => `${l.volume}: ${l.msg}`);

    // A new group: each volume is made (its point 0) a moment after the one before.
    node = await startNode(config(['wal', 'db']), logger);
    expect(alarms()).toEqual([]);
    expect([node.volume('wal').latestClosed!.n, node.volume('db').latestClosed!.n], 'no point closed but the creations').toEqual([0, 0]);
    for (const name of ['wal', 'db']) await node.volume(name).addSink('hold', { acked: 0 });
    const p1 = await node.snapshotNow('wal');
    const c = await connectNbd({ host: '127.0.0.1', port: node.nbdPort!, exportName: 'wal' });
    await c.write(0, Buffer.alloc(4096, 1)); // a write after the group's last close
    await c.close();
    await node.stop();
    node = null;

    // A third volume joins the group: made at this start, after the group's last close.
    node = await startNode(config(['wal', 'db', 'idx']), logger);
    expect(alarms()).toEqual([]);
    expect(node.volume('wal').latestClosed).toEqual(p1);
    expect(node.volume('db').latestClosed!.scheduledAt).toBe(p1.scheduledAt);
    expect(node.volume('idx').latestClosed!.n).toBe(0);
  });
  it('makes a volume added to a group after a failover in the role the group holds, not the one it started as', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-group-role-'));
    // The configuration gives a group one role, what it started as: replica on this site.
    const vol = (name: string) => ({ name, size: '8MiB', role: 'replica', schedule: { every: '1h' }, sinks: ['site-a'], group: 'app' });
    const config = (names: string[]) => validateConfig({ node: { name: 'site-b', dataDir: join(dir, 'data'), secret: 'group-role-secret-0123' }, listen: { peers: '127.0.0.1:0', admin: '127.0.0.1:0' }, peers: [{ name: 'site-a', url: 'ws://127.0.0.1:9' }], volumes: names.map(vol) }, 'test', dir);
    node = await startNode(config(['wal', 'db']), silentLogger());
    await node.promote('wal', { force: true }); // site-a is lost: the group is primary here now
    await node.stop();
    node = null;

    node = await startNode(config(['wal', 'idx', 'db']), silentLogger());
    const n = node;
    expect(n.status().volumes.map((v) => `${v.name} ${v.role}`)).toEqual(['wal primary', 'idx primary', 'db primary']);
    // It closes with the group: one point, one time, on all three.
    const p = await n.snapshotNow('wal');
    expect(n.volume('idx').latestClosed!.scheduledAt).toBe(p.scheduledAt);
    expect(n.volume('db').latestClosed!.scheduledAt).toBe(p.scheduledAt);
  });
});
