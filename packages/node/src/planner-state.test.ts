import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { smallDisk } from '../../../test/helpers/small-disk';
import { tempDir } from '../../../test/helpers/tmp';
import { learntPath, loadLearnt, saveLearnt } from './planner-state';

const disk = smallDisk('200k');

describe('the planner state file', () => {
  it('is saved whole and read back; a missing one is no state', async () => {
    const dir = tempDir('hs-learnt-');
    const path = learntPath(dir, 'vol');
    expect(loadLearnt(path)).toBeUndefined();
    await saveLearnt(path, Uint8Array.of(1, 2, 3));
    expect([...loadLearnt(path)!]).toEqual([1, 2, 3]);
    await saveLearnt(path, Uint8Array.of(4));
    expect([...loadLearnt(path)!]).toEqual([4]);
    expect(readdirSync(join(dir, 'planner'))).toEqual(['vol.learnt']);
  });

  it.skipIf(disk === null)('on a full disk the save fails with ENOSPC, leaves no partial file and keeps the old state', async () => {
    const path = learntPath(disk!, 'vol');
    const old = new Uint8Array(50_000).fill(7);
    await saveLearnt(path, old);
    await expect(saveLearnt(path, new Uint8Array(300_000).fill(9))).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(readdirSync(join(disk!, 'planner'))).toEqual(['vol.learnt']);
    expect(readFileSync(path).equals(Buffer.from(old))).toBe(true);
  });
});
