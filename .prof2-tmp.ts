import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVolume } from '@headstart/volume';
import { loadHasher, blockHash, isZero, SnapshotDigest, encodeFrame, decodeFrame } from '@headstart/protocol';
await loadHasher();
const dir = await mkdtemp(join(tmpdir(), 'hs-prof-'));
const size = 128 << 20;
const vol = await createVolume(join(dir, 'src'), { size, id: 'v' });
await vol.addSink('x');
await vol.write(0, randomBytes(size));
const p = await vol.closeSnapshot();
let t = performance.now();
const bufs: Buffer[] = [];
for (const [first, count] of vol.dirtyBlocks(p.n).runs(256)) bufs.push(await vol.readBlocksAt(p.n, first, count));
console.log('readBlocksAt', (size / 1e6 / ((performance.now() - t) / 1000)).toFixed(0), 'MB/s');
t = performance.now();
const d = new SnapshotDigest();
const frames: Buffer[] = [];
let blk = 0;
for (const b of bufs) {
  const blocks = [];
  for (let i = 0; i < b.length; i += 4096) { const x = b.subarray(i, i + 4096); isZero(x); const h = blockHash(x); d.add(blk, h); blocks.push({ block: blk++, hash: h, data: x }); }
  frames.push(encodeFrame({ type: 'BLOCKS', n: 1, batch: 1, blocks }));
}
console.log('hash+digest+encode', (size / 1e6 / ((performance.now() - t) / 1000)).toFixed(0), 'MB/s');
t = performance.now();
for (const f of frames) { const m = decodeFrame(f); if (m.type === 'BLOCKS') for (const b of m.blocks) blockHash(b.data); }
console.log('decode+verify', (size / 1e6 / ((performance.now() - t) / 1000)).toFixed(0), 'MB/s');
process.exit(0);
