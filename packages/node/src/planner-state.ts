/**
 * Where a node keeps what each volume's planner has learnt (the rewrite model, the blocks'
 * and regions' history, the allowance gain, the link throughput):
 * <dataDir>/planner/<volume>.learnt, saved at a close (at most every 5 minutes), at
 * demotion and at shutdown, read when the volume's planner starts (a restart, a crash, a
 * promotion back to primary). It only makes the planner start warm: a file that is missing,
 * unreadable or damaged means a cold start and a warning, never a failed start, and a
 * failed save (a full disk) is logged and retried at a later close.
 */
import { readFileSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export function learntPath(dataDir: string, volume: string): string {
  return join(dataDir, 'planner', `${volume}.learnt`);
}

/** The saved bytes, or undefined when there are none; any other failure is thrown. */
export function loadLearnt(path: string): Uint8Array | undefined {
  try {
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Writes `bytes` to `path` whole or not at all: a temp file, synced, renamed over the old one. */
export async function saveLearnt(path: string, bytes: Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.partial-${process.pid}`;
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(bytes);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
}
