/**
 * The space check before a write-log commit counts what LMDB will really take: a preserved
 * 4 KiB block (copy-on-write for a sink that is behind) goes to overflow pages of its own,
 * two 4 KiB pages with their header. Counted as 4 KiB, the check allowed for half of it.
 */
import { join } from 'node:path';
import { open } from 'lmdb';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers/tmp';
import { LogBatcher } from './log-batch';
import type { SpaceGuard } from './space';

describe('the write log batcher', () => {
  it('asks the space check for at least what LMDB takes for preserved blocks', async () => {
    const root = open({ path: join(tempDir(), 'meta.lmdb') });
    const log = root.openDB<unknown, number>({ name: 'log' });
    const preserved = root.openDB<Buffer, [number, number]>({ name: 'preserved', encoding: 'binary' });
    let asked = 0;
    const space = { forWrites: (lmdbBytes: number) => void (asked += lmdbBytes), writeStarted: () => {} } as unknown as SpaceGuard;
    const batcher = new LogBatcher(root, log, preserved, space);
    const blocks = 256;
    for (let b = 0; b < blocks; b++) {
      await batcher.record(b + 1, { offset: b * 4096, length: 4096 }, [{ key: [1, b], value: Buffer.alloc(4096, b) }], 4096);
    }
    const stats = preserved.getStats() as { treeBranchPageCount: number; treeLeafPageCount: number; overflowPages: number; pageSize: number };
    const taken = (stats.treeBranchPageCount + stats.treeLeafPageCount + stats.overflowPages) * stats.pageSize;
    expect(stats.overflowPages).toBeGreaterThanOrEqual(2 * blocks); // two pages a block, as said
    expect(asked).toBeGreaterThanOrEqual(taken);
    await root.close();
  });
});
