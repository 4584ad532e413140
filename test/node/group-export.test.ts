/**
 * A consistency group exports as one: every volume's image at one point of the group, on the
 * primary (a fresh cut, while a dependent workload runs) and on the replica (the point its
 * members hold). The workload is the one test/node/group.test.ts uses: record k goes to
 * `wal`, and only once it is acknowledged to `db`, so any one cut has, for the newest
 * records W (wal) and D (db), W - 1 <= D <= W. Exported one by one, each image would be
 * its own point (the docs used to say: export again until the times match).
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger, startNode, validateConfig, type HeadstartNode } from '@headstart/node';
import { freePort } from '../helpers/cli';

const SECRET = 'group-export-secret';
const BS = 4096;
const RECORDS = 64;
const MiB = 1 << 20;
const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

function record(k: number): Buffer {
  const b = Buffer.alloc(BS);
  for (let i = 0; i < BS; i += 8) b.writeBigUInt64LE(BigInt(k), i);
  return b;
}

/** The newest record in an image's record area. */
function newest(image: Buffer): number {
  let max = 0;
  for (let b = 0; b < RECORDS; b++) max = Math.max(max, Number(image.readBigUInt64LE(b * BS)));
  return max;
}

const volumes = (role: 'primary' | 'replica', sink: string) => ['wal', 'db', 'solo'].map((name) => ({ name, size: 4 * MiB, role, schedule: { every: '1h' }, sinks: [sink], ...(name === 'solo' ? {} : { group: 'app' }) }));

describe('export --group', () => {
  it('writes every volume of the group at one point, on the primary and on the replica', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-group-export-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const aPeers = await freePort();
    const replica: HeadstartNode = await startNode(validateConfig({ node: { name: 'site-b', dataDir: join(dir, 'b'), secret: SECRET }, listen: { peers: '127.0.0.1:0' }, peers: [{ name: 'site-a', url: `ws://127.0.0.1:${aPeers}` }], volumes: volumes('replica', 'site-a') }), silentLogger());
    cleanup.push(() => replica.stop());
    const primary: HeadstartNode = await startNode(validateConfig({ node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET }, listen: { peers: `127.0.0.1:${aPeers}` }, peers: [{ name: 'site-b', url: `ws://127.0.0.1:${replica.peersPort}` }], volumes: volumes('primary', 'site-b') }), silentLogger());
    cleanup.push(() => primary.stop());

    let k = 0;
    let stopped = false;
    const workload = (async () => {
      while (!stopped) {
        const next = k + 1;
        await primary.volume('wal').write((next % RECORDS) * BS, record(next));
        await primary.volume('db').write((next % RECORDS) * BS, record(next));
        k = next;
        await new Promise((r) => setImmediate(r));
      }
    })();
    try {
      while (k < 200) await new Promise((r) => setTimeout(r, 10));
      const out = join(dir, 'primary');
      await mkdir(out);
      const exported = await primary.exportGroup('db', out);
      expect(exported.group).toBe('app');
      expect(exported.volumes.map((v) => [v.volume, v.path])).toEqual([['wal', join(out, 'wal.raw')], ['db', join(out, 'db.raw')]]);
      expect(new Set(exported.volumes.map((v) => v.scheduledAt))).toEqual(new Set([exported.scheduledAt]));
      const W = newest(await readFile(join(out, 'wal.raw')));
      const D = newest(await readFile(join(out, 'db.raw')));
      expect(W, 'the workload ran into the export').toBeGreaterThan(100);
      expect([W - 1, W]).toContain(D);

      // The replica: its members hold one point while the workload goes on at the source.
      const p = await primary.snapshotNow('wal');
      await primary.waitAcked('wal', p.n, 30_000);
      await primary.waitAcked('db', primary.volume('db').latestClosed!.n, 30_000);
      const rout = join(dir, 'replica');
      await mkdir(rout);
      const held = await replica.exportGroup('wal', rout);
      expect(held.volumes.map((v) => v.volume)).toEqual(['wal', 'db']);
      expect(held.volumes.map((v) => v.scheduledAt)).toEqual([held.scheduledAt, held.scheduledAt]);
      expect(held.volumes.map((v) => v.n)).toEqual(['wal', 'db'].map((n) => replica.volume(n).committed!.n));
      const RW = newest(await readFile(join(rout, 'wal.raw')));
      const RD = newest(await readFile(join(rout, 'db.raw')));
      expect(RW).toBeGreaterThan(100);
      expect([RW - 1, RW]).toContain(RD);
      // Replicating again after it: the next point commits.
      const q = await primary.snapshotNow('wal');
      await primary.waitAcked('wal', q.n, 30_000);

      // Every image's name is checked before any is written; a volume in no group is told to export alone.
      await expect(replica.exportGroup('db', rout)).rejects.toMatchObject({ code: 'EXPORT_EXISTS', message: `${join(rout, 'wal.raw')} exists; choose another path or pass --force` });
      expect((await readdir(rout)).sort()).toEqual(['db.raw', 'wal.raw']);
      await expect(primary.exportGroup('solo', out)).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: 'volume solo is in no consistency group: export it alone (without --group)' });
      // A directory that is not there: refused before the primary closes a point for it.
      const closed = primary.volume('db').latestClosed!.n;
      await expect(primary.exportGroup('db', join(dir, 'no-such-dir'))).rejects.toMatchObject({ code: 'EXPORT_OUTPUT', message: expect.stringContaining(`cannot create ${join(dir, 'no-such-dir', 'wal.raw')}: ENOENT`) });
      expect(primary.volume('db').latestClosed!.n).toBe(closed);
    } finally {
      stopped = true;
      await workload;
    }
  }, 60_000);
  it('puts no image in place unless every one of the group can be: --force over a target that cannot be replaced leaves the others as they were', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-group-export-torn-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const primary: HeadstartNode = await startNode(validateConfig({ node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET }, volumes: ['wal', 'db'].map((name) => ({ name, size: 4 * MiB, schedule: { every: '1h' }, group: 'app' })) }), silentLogger());
    cleanup.push(() => primary.stop());
    await primary.volume('wal').write(0, record(7));
    await primary.volume('db').write(0, record(7));
    const out = join(dir, 'out');
    await mkdir(out);
    // An earlier export's wal.raw, and a db.raw that cannot be replaced (a directory): wal is written first.
    await writeFile(join(out, 'wal.raw'), 'an earlier point');
    await mkdir(join(out, 'db.raw'));
    await writeFile(join(out, 'db.raw', 'keep'), 'x');
    await expect(primary.exportGroup('db', out, { overwrite: true })).rejects.toMatchObject({ code: 'EXPORT_OUTPUT' });
    expect(await readFile(join(out, 'wal.raw'), 'utf8'), 'wal.raw is not left at a point db.raw does not have').toBe('an earlier point');
    expect((await readdir(out)).sort(), 'no temp file left').toEqual(['db.raw', 'wal.raw']);
    // Once the target can be replaced, both go in at one point.
    await rm(join(out, 'db.raw'), { recursive: true });
    const done = await primary.exportGroup('db', out, { overwrite: true });
    expect(done.volumes.map((v) => v.volume)).toEqual(['wal', 'db']);
    expect(newest(await readFile(join(out, 'wal.raw')))).toBe(7);
    expect(newest(await readFile(join(out, 'db.raw')))).toBe(7);
    // Sparse per block: one 4 KiB record takes about that on disk, not the 1 MiB around it.
    expect((await stat(join(out, 'wal.raw'))).blocks * 512).toBeLessThan(MiB / 4);
    expect((await readdir(out)).sort()).toEqual(['db.raw', 'wal.raw']);
  }, 30_000);
});
