import { join } from 'node:path';
import { open as openLmdb } from 'lmdb';
import { describe, expect, it } from 'vitest';
import { isHeadstartError } from '@headstart/errors';
import { tempDir } from '../../../test/helpers/tmp';
import { createVolume, openVolume, type Volume } from './index';

const BS = 4096;

/** Block b holds (point, b) as its bytes: what each point should read back. */
const fill = (point: number, b: number) => Buffer.alloc(BS, (point * 31 + b) % 251);

/** Preserved old content the store holds, counted from the LMDB file of a shut volume. */
function preservedEntries(dir: string): number {
  const root = openLmdb({ path: join(dir, 'meta.lmdb'), readOnly: true });
  try {
    return root.openDB({ name: 'preserved', encoding: 'binary' }).getKeysCount();
  } finally {
    void root.close();
  }
}

/** Writes blocks 0..7 in every point 1..last (each block first-written in each: one copy per block per point kept for a sink behind). */
async function writePoints(v: Volume, from: number, last: number): Promise<void> {
  for (let n = from; n <= last; n++) {
    for (let b = 0; b < 8; b++) await v.write(b * BS, fill(n, b));
    await v.write((8 + n) * BS, fill(n, 8 + n)); // one block only this point writes
    await v.closeSnapshot();
  }
}

describe('a sink that catches up (rebaseSink with points acknowledged)', () => {
  it('keeps no old content for the points it skips, and reads its catch-up point exactly', async () => {
    const dir = tempDir();
    let v = await createVolume(dir, { size: 64 * BS });
    await v.addSink('near', {});
    await v.addSink('far', {});
    await writePoints(v, 1, 2);
    await v.acknowledge('near', 2);
    await v.acknowledge('far', 1);
    await writePoints(v, 3, 6); // far is away: 2..6 are kept for it
    await v.acknowledge('near', 6);
    expect(v.isReadable(3)).toBe(true);
    await v.shutdown();
    const before = preservedEntries(dir);
    expect(before).toBeGreaterThanOrEqual(4 * 8); // points 2..5, overwritten in 3..6
    v = await openVolume(dir);

    expect(await v.rebaseSink('far')).toBe(6);
    expect(v.sink('far')).toMatchObject({ acked: 1, catchUpTo: 6 });
    // Points between are no longer readable; the catch-up point is, while the open point overwrites it.
    for (const n of [2, 3, 4, 5]) expect(v.isReadable(n)).toBe(false);
    const err = await v.readBlocksAt(3, 0, 1).then(() => null, (e: unknown) => e);
    expect(isHeadstartError(err) && err.code).toBe('SNAPSHOT_RELEASED');
    for (let b = 0; b < 8; b++) await v.write(b * BS, Buffer.alloc(BS, 0xee)); // point 7, overwriting 6's blocks
    expect(v.isReadable(6)).toBe(true);
    const delta = v.changedSince(1, 6);
    expect([...delta.runs(64)]).toEqual([[0, 8], [10, 5]]); // blocks 0-7 and each point's own, 2..6 (10..14)
    for (let b = 0; b < 15; b++) {
      const want = b < 8 ? fill(6, b) : b === 8 ? Buffer.alloc(BS) : fill(b - 8, b); // 8: never written; 9..14: by point b - 8
      expect((await v.readBlocksAt(6, b, 1)).equals(want), `block ${b} as of 6`).toBe(true);
    }
    // Moving again to the same point does nothing; the sink's record survives a restart.
    expect(await v.rebaseSink('far')).toBe(null);
    await v.shutdown();
    expect(preservedEntries(dir)).toBeLessThanOrEqual(8); // only point 6's blocks, overwritten in 7
    v = await openVolume(dir);
    expect(v.sink('far')).toMatchObject({ acked: 1, catchUpTo: 6 });
    expect(v.changedSince(1, 6).size).toBe(13);
    expect((await v.readBlocksAt(6, 3, 1)).equals(fill(6, 3))).toBe(true);

    // Its acknowledgement of the catch-up point ends the catch-up; what it skipped goes.
    await v.acknowledge('far', 6);
    expect(v.sink('far').catchUpTo).toBeUndefined();
    expect(v.floor).toBe(6);
    await v.shutdown();
  });

  it('an acknowledgement short of the catch-up point (a lost ACK found at reconnect) keeps it', async () => {
    const dir = tempDir();
    const v = await createVolume(dir, { size: 64 * BS });
    await v.addSink('far', {});
    await writePoints(v, 1, 5);
    await v.acknowledge('far', 1);
    expect(await v.rebaseSink('far')).toBe(5);
    await v.acknowledge('far', 3);
    expect(v.sink('far')).toMatchObject({ acked: 3, catchUpTo: 5 });
    expect(v.readFloor).toBe(4);
    expect(v.floor).toBe(3);
    await writePoints(v, 6, 7);
    expect(await v.rebaseSink('far')).toBe(7);
    await v.shutdown();
  });

  it('does not move a sink one point behind, nor a new sink onto a point whose old content is gone', async () => {
    const dir = tempDir();
    const v = await createVolume(dir, { size: 64 * BS });
    await v.addSink('far', {});
    await writePoints(v, 1, 2);
    await v.acknowledge('far', 1);
    expect(await v.rebaseSink('far')).toBe(null); // its next point is the latest anyway
    await writePoints(v, 3, 4);
    expect(await v.rebaseSink('far')).toBe(4);
    // A sink that says it holds point 2 needs 3 and 4 read: 3's old content is gone.
    const err = await v.addSink('other', { acked: 2 }).then(() => null, (e: unknown) => e);
    expect(isHeadstartError(err) && err.code).toBe('SINK_BAD_ACK');
    await v.addSink('other', { acked: 3 });
    await v.shutdown();
  });
});
