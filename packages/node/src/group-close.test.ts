/**
 * The source side of a consistency group (node.ts closePoints), in-process: its volumes close
 * at one scheduled time, whichever of them is named, and those times keep growing when the
 * clock steps back (the replica knows a group's points by them).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { connectNbd } from '@headstart/nbd';
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
});
