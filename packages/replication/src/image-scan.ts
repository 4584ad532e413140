/**
 * Protecting an image file that something else writes (a VM's disk, a file a database
 * writes directly, no NBD in the path): headstart keeps a volume as the image's shadow and,
 * before each snapshot close, scans the image against the volume's current content (which
 * is the last point plus earlier scans). Every block that differs is written into the
 * volume, so it enters the write log and ships like any other write. Ranges are compared
 * by xxhash64 first (cheap) and only differing ranges are compared block by block.
 * A block the other writer changes DURING the scan is caught by the next scan; a point is
 * exactly the image only if the writer is quiesced (or the file is a snapshot/reflink copy)
 * while the scan runs.
 */
import { open } from 'node:fs/promises';
import { HeadstartError, fromSystemError } from '@headstart/errors';
import { loadHasher, rangeHash } from '@headstart/protocol';
import type { Volume } from '@headstart/volume';

export interface ScanResult {
  readonly scannedBytes: number;
  readonly changedBlocks: number;
}

/** Bytes compared per step. */
const SCAN_RANGE_BYTES = 1024 * 1024;

export async function scanImageInto(volume: Volume, imagePath: string): Promise<ScanResult> {
  await loadHasher();
  const fh = await open(imagePath, 'r').catch((err: unknown) => {
    throw fromSystemError(err, `opening the protected image ${imagePath}`);
  });
  try {
    const { size } = await fh.stat();
    if (size !== volume.size) throw new HeadstartError('REPL_VOLUME_MISMATCH', `image ${imagePath} is ${size} B, its volume ${volume.size} B; resize the volume to match`);
    const bs = volume.blockSize;
    const buf = Buffer.alloc(SCAN_RANGE_BYTES);
    let changed = 0;
    for (let off = 0; off < size; off += SCAN_RANGE_BYTES) {
      const len = Math.min(SCAN_RANGE_BYTES, size - off);
      const theirs = buf.subarray(0, len);
      let got = 0;
      while (got < len) {
        const { bytesRead } = await fh.read(theirs, got, len - got, off + got);
        if (bytesRead === 0) theirs.fill(0, got);
        got = bytesRead === 0 ? len : got + bytesRead;
      }
      const ours = await volume.read(off, len);
      if (rangeHash(theirs) === rangeHash(ours)) continue;
      // write back runs of differing blocks
      for (let i = 0; i < len; ) {
        if (theirs.compare(ours, i, i + bs, i, i + bs) === 0) {
          i += bs;
          continue;
        }
        let j = i + bs;
        while (j < len && theirs.compare(ours, j, j + bs, j, j + bs) !== 0) j += bs;
        await volume.write(off + i, Buffer.from(theirs.subarray(i, j)));
        changed += (j - i) / bs;
        i = j;
      }
    }
    return { scannedBytes: size, changedBlocks: changed };
  } finally {
    await fh.close();
  }
}
