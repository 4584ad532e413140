/**
 * A volume on a file system that fills up (a real tmpfs; needs root to mount it, as on the CI
 * machine, skipped where mounting is not allowed): writes that do not fit fail with
 * VOLUME_NO_SPACE before LMDB is asked (space.ts), nothing acknowledged is lost, points
 * still close while the reserve for them lasts, and once space is freed the volume carries
 * on. A volume opened on a disk already full opens (reads, no changes), so a node restarted
 * there still serves and reports.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isHeadstartError } from '@headstart/errors';
import { fillDisk, resizeDisk, smallDisk } from '../../../test/helpers/small-disk';
import { open as openLmdb } from 'lmdb';
import { createVolume, openVolume } from './index';

const BS = 4096;

async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return isHeadstartError(err) ? err.code : `not ours: ${String(err)}`;
  }
  return 'succeeded';
}

const canMount = (() => {
  const d = smallDisk('1m');
  if (d === null) return false;
  execFileSync('umount', [d]);
  return true;
})();

describe.skipIf(!canMount)('a volume whose disk fills up', () => {
  it('stops taking writes while it still has room to close points', async () => {
    // A 4 MiB file system: the volume keeps 1 MiB free for its write log, a quarter of
    // that for closes, acknowledgements and trims (space.ts).
    const disk = smallDisk('4m')!;
    const v = await createVolume(join(disk, 'v'), { size: 64 << 20 });
    const heard: number[] = [];
    v.onWrite((e) => heard.push(e.firstBlock));
    await v.write(0, Buffer.alloc(BS, 1));
    fillDisk(disk, 600 << 10);
    const open = v.openSnapshot;
    let refused: unknown;
    await v.write(100 * BS, Buffer.alloc(BS, 2)).catch((err: unknown) => (refused = err));
    expect(isHeadstartError(refused, 'VOLUME_NO_SPACE'), String(refused)).toBe(true);
    expect((refused as Error).message).toMatch(/no space left on device \(0\.[0-9] MiB free, 1\.0 MiB of it kept for headstart's own records\)/);
    // Nothing of the refused write happened.
    expect(v.dirtyBlocks(open).has(100)).toBe(false);
    expect(heard).toEqual([0]);
    expect((await v.read(100 * BS, BS)).equals(Buffer.alloc(BS))).toBe(true);
    // The point still closes, and the volume reads as it was.
    expect((await v.closeSnapshot()).n).toBe(open);
    expect((await v.read(0, BS)).equals(Buffer.alloc(BS, 1))).toBe(true);
    await v.shutdown();
  });

  it('refuses a write whose log entry does not fit, changes nothing, and carries on once space is freed', async () => {
    const disk = smallDisk('4m')!;
    const v = await createVolume(join(disk, 'v'), { size: 64 << 20 });
    await v.addSink('replica');
    for (let b = 0; b < 64; b++) await v.write(b * BS, Buffer.alloc(BS, 1));
    const closed = await v.closeSnapshot();
    fillDisk(disk);
    // Nothing fits: every write is refused before LMDB is asked (which would say EIO, and
    // in lmdb-js 3.5.6 corrupt its heap, see space.ts).
    const codes = new Set<string>();
    for (let b = 0; b < 64; b++) codes.add(await failure(v.write(b * BS, Buffer.alloc(BS, 2))));
    expect([...codes]).toEqual(['VOLUME_NO_SPACE']);
    const open = v.openSnapshot;
    const dirtyBefore = v.dirtyBlocks(open).size;
    // Nor a close: it fails, and nothing changed (and a consistency group's check says so first).
    expect(() => v.checkCanClose()).toThrow(/no space left on device/);
    expect(() => v.checkCanChangeRole()).toThrow(/no space left on device/);
    expect(await failure(v.closeSnapshot())).toBe('VOLUME_NO_SPACE');
    expect(v.openSnapshot).toBe(open);
    expect(v.dirtyBlocks(open).size).toBe(dirtyBefore);
    // Point `closed` still reads exactly: every block as it was, 1s.
    expect((await v.readBlocksAt(closed.n, 0, 64)).equals(Buffer.alloc(64 * BS, 1))).toBe(true);
    resizeDisk(disk, '64m');
    v.checkCanClose();
    for (let b = 0; b < 64; b++) await v.write(b * BS, Buffer.alloc(BS, 3));
    const next = await v.closeSnapshot();
    expect((await v.readBlocksAt(closed.n, 0, 64)).equals(Buffer.alloc(64 * BS, 1))).toBe(true);
    expect((await v.readBlocksAt(next.n, 0, 64)).equals(Buffer.alloc(64 * BS, 3))).toBe(true);
    await v.shutdown();
  });

  it('opens on a disk already full: reads, no change until its session is recorded, and records it once space is freed', async () => {
    const disk = smallDisk('4m')!;
    const dir = join(disk, 'v');
    const v = await createVolume(dir, { size: 64 << 20 });
    await v.write(0, Buffer.alloc(BS, 1));
    await v.shutdown();
    fillDisk(disk);
    const session = () => {
      const db = openLmdb({ path: join(dir, 'meta.lmdb'), readOnly: true });
      try {
        return db.openDB({ name: 'meta' }).get('session') as { clean: boolean };
      } finally {
        void db.close();
      }
    };
    const w = await openVolume(dir);
    expect(w.sessionOpen).toBe(false);
    expect(session().clean).toBe(true); // the last shutdown's: nothing recorded this session
    expect((await w.read(0, BS)).equals(Buffer.alloc(BS, 1))).toBe(true);
    // No change to the image before the session is recorded: after an OS crash, the next
    // open would read a clean shutdown and trust a log that missed the change.
    expect(await failure(w.write(BS, Buffer.alloc(BS, 2)))).toBe('VOLUME_NO_SPACE');
    expect(await failure(w.writeZeroes(0, BS))).toBe('VOLUME_NO_SPACE');
    expect(w.dirtyBlocks(w.openSnapshot).has(1)).toBe(false); // (block 0: the write before the restart)
    expect((await w.read(0, 2 * BS)).equals(Buffer.concat([Buffer.alloc(BS, 1), Buffer.alloc(BS)]))).toBe(true);
    resizeDisk(disk, '64m');
    await w.write(BS, Buffer.alloc(BS, 2));
    expect(w.sessionOpen).toBe(true);
    expect(session().clean).toBe(false);
    expect((await w.read(0, 2 * BS)).equals(Buffer.concat([Buffer.alloc(BS, 1), Buffer.alloc(BS, 2)]))).toBe(true);
    await w.shutdown();
    expect(session().clean).toBe(true);
  });
});
