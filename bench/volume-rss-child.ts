/**
 * Child of bench/volume.bench.ts: the memory that holding write-tracking state needs.
 *   fill DIR SIZE PERCENT   creates a sparse volume with one sink that never acknowledges and
 *                           dirties PERCENT of its blocks over 3 closed points (4 KiB writes
 *                           at scattered offsets).
 *   open DIR                opens it in this fresh process (the dirty sets are rebuilt from the
 *                           write log) and prints the growth of the process's own memory
 *                           (RssAnon) and of its file-backed pages (RssFile: LMDB's memory map,
 *                           page cache the kernel can reclaim) as JSON.
 * The bench opens a volume with 1% dirty and one with nothing dirty, each in a fresh process,
 * and subtracts: what is left is what the tracking state costs.
 */
import { readFileSync, rmSync } from 'node:fs';
import { createVolume, openVolume } from '@headstart/volume';

const [mode, dir, sizeArg, percentArg] = process.argv.slice(2);

/** Resident memory after the garbage collector settled: a few full collections, a moment apart, so V8 gives back the pages it no longer uses. */
async function memory(): Promise<{ anon: number; file: number }> {
  for (let i = 0; i < 4; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 50));
  }
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
  return { anon: kb('RssAnon'), file: kb('RssFile') };
}

if (mode === 'fill') {
  const size = Number(sizeArg);
  const v = await createVolume(dir, { size });
  await v.addSink('slow-replica');
  const blocks = size / 4096;
  const dirty = Math.floor((blocks * Number(percentArg)) / 100);
  const stride = dirty > 0 ? Math.floor(blocks / dirty) : 1;
  const data = Buffer.alloc(4096, 0xa5);
  for (let point = 0; point < 3; point++) {
    const inFlight = new Set<Promise<unknown>>();
    for (let i = point; i < dirty; i += 3) {
      const block = i * stride + ((i * 7919) % stride);
      const p: Promise<unknown> = v.write(block * 4096, data).then(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= 64) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    await v.closeSnapshot();
  }
  await v.shutdown();
  process.stdout.write(JSON.stringify({ written: dirty }) + '\n');
} else {
  // Warm up first: open and close a tiny volume, so that loading and compiling the code
  // (which frees memory again later, at random) happens before the first reading.
  const warm = `${dir}-warm`;
  await (await createVolume(warm, { size: 1 << 20 })).shutdown();
  await (await openVolume(warm)).shutdown();
  rmSync(warm, { recursive: true, force: true });
  const before = await memory();
  const v = await openVolume(dir);
  const after = await memory();
  const stats = v.stats();
  await v.shutdown();
  const dirtyBlocks = Object.values(stats.dirtyBlocks).reduce((a, b) => a + b, 0);
  process.stdout.write(JSON.stringify({ dirtyBlocks, dirtySetBytes: stats.dirtySetBytes, anonGrowth: after.anon - before.anon, fileGrowth: after.file - before.file }) + '\n');
}
