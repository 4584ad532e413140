import { randomBytes } from 'node:crypto';
import { loadHasher, encodeFrame } from '@headstart/protocol';
await loadHasher();
const size = 64 << 20;
const b = randomBytes(size);
for (let rep = 0; rep < 3; rep++) {
  let t = performance.now();
  for (let off = 0; off < size; off += 1 << 20) { const blocks = []; for (let i = 0; i < 256; i++) blocks.push({ block: i, hash: 5n, data: b.subarray(off + i * 4096, off + (i + 1) * 4096) }); encodeFrame({ type: 'BLOCKS', n: 1, batch: 1, blocks }); }
  console.log('encode', (size / 1e6 / ((performance.now() - t) / 1000)).toFixed(0), 'MB/s');
  t = performance.now();
  for (let off = 0; off < size; off += 1 << 20) { const x = Buffer.allocUnsafe(1 << 20); for (let i = 0; i < 256; i++) x.set(b.subarray(off + i * 4096, off + (i + 1) * 4096), i * 4096); }
  console.log('copy only', (size / 1e6 / ((performance.now() - t) / 1000)).toFixed(0), 'MB/s');
  t = performance.now();
  for (let off = 0; off < size; off += 1 << 20) { const x = Buffer.allocUnsafe(1 << 20); }
  console.log('alloc only', (size / 1e6 / ((performance.now() - t) / 1000)).toFixed(0), 'MB/s');
}
process.exit(0);
