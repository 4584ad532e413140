import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { learntPath, loadLearnt, saveLearnt } from './planner-state';

const dirs: string[] = [];
const mounts: string[] = [];
afterAll(() => {
  for (const m of mounts) execFileSync('umount', [m], { stdio: 'ignore' });
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A 200 KiB tmpfs (needs root, as on the CI machine), or null where mounting is not allowed. */
function smallDisk(): string | null {
  const dir = mkdtempSync(join(tmpdir(), 'hs-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=200k', 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  mounts.push(dir);
  dirs.push(dir);
  return dir;
}

const disk = smallDisk();

describe('the planner state file', () => {
  it('is saved whole and read back; a missing one is no state', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hs-learnt-'));
    dirs.push(dir);
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
