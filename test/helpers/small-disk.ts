/**
 * Small real file systems for full-disk tests (disk.ts): a tmpfs per call, or null where
 * mounting is not allowed (the test skips), unmounted and removed after the test file.
 */
import { afterAll } from 'vitest';
import { mountTmpfs, unmountTmpfs } from './disk';

export { fillDisk, resizeDisk } from './disk';

const mounted: string[] = [];
afterAll(() => {
  for (const dir of mounted.splice(0)) unmountTmpfs(dir);
});

/** A tmpfs of `size` ("8m", "200k") at a new directory, or null where mounting is not allowed. */
export function smallDisk(size: string): string | null {
  const dir = mountTmpfs(size);
  if (dir !== null) mounted.push(dir);
  return dir;
}
