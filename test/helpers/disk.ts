/**
 * Small real file systems: a tmpfs mounted at a new directory (mounting needs root, as on the
 * CI machine; where it is not allowed, mountTmpfs says null), grown in place, filled up to a
 * few bytes, unmounted. No test framework here: the fault campaign uses it as a script too.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A tmpfs of `size` ("8m", "200k") at a new directory, or null where mounting is not allowed. */
export function mountTmpfs(size: string): string | null {
  const dir = mkdtempSync(join(tmpdir(), 'headstart-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  return dir;
}

/** Unmounts (lazily: a process may still hold files there) and removes the directory. */
export function unmountTmpfs(dir: string): void {
  try {
    execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
  } catch {
    // unmounted already
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Grows (or shrinks) a disk from mountTmpfs in place. */
export function resizeDisk(dir: string, size: string): void {
  execFileSync('mount', ['-o', `remount,size=${size}`, dir]);
}

/** Takes every byte left on the file system at `dir` but `leave`, in a file named `filler`. */
export function fillDisk(dir: string, leave = 0): void {
  const fd = openSync(join(dir, 'filler'), 'a');
  try {
    for (const chunk of [1 << 16, 4096, 512]) {
      try {
        for (;;) {
          const s = statfsSync(dir);
          if (s.bavail * s.bsize - chunk < leave) break;
          writeSync(fd, Buffer.alloc(chunk, 7));
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
}
