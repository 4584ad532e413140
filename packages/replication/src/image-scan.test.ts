import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isHeadstartError } from '@headstart/errors';
import { createVolume } from '@headstart/volume';
import { describe, expect, it } from 'vitest';
import { scanImageInto } from './image-scan';
import { randomBlock } from './testing.test-helpers';

describe('image scan', () => {
  it('finds exactly the blocks another writer changed and puts them in the write log', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-scan-'));
    try {
      const size = 3 * 1024 * 1024;
      const img = join(dir, 'disk.img');
      await writeFile(img, randomBlock(size, 1));
      const v = await createVolume(join(dir, 'vol'), { size, id: 'x' });
      await v.addSink('r');
      const first = await scanImageInto(v, img);
      expect(first.changedBlocks).toBe(size / 4096); // random content: every block differs from the empty volume
      await v.closeSnapshot();
      // the other writer changes three blocks, two adjacent, one in another MiB
      const fh = await open(img, 'r+');
      await fh.write(randomBlock(8192, 2), 0, 8192, 4096 * 10);
      await fh.write(randomBlock(4096, 3), 0, 4096, 2 * 1024 * 1024 + 4096 * 5);
      await fh.close();
      const second = await scanImageInto(v, img);
      expect(second.changedBlocks).toBe(3);
      expect([...v.dirtyBlocks(v.openSnapshot)]).toEqual([10, 11, 512 + 5]);
      expect((await scanImageInto(v, img)).changedBlocks).toBe(0);
      await writeFile(join(dir, 'small.img'), Buffer.alloc(4096));
      await expect(scanImageInto(v, join(dir, 'small.img'))).rejects.toSatisfy((e: unknown) => isHeadstartError(e, 'REPL_VOLUME_MISMATCH'));
      await v.shutdown();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
