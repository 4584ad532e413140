/** Shared by the replication runner scripts (separate processes in end-to-end tests and the link benchmark). */
import { createHash } from 'node:crypto';
import type { Volume } from '@headstart/volume';

/** One JSON object per stdout line: the parent test reads these. */
export function emit(event: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(event) + '\n');
}

export async function imageHash(v: Volume): Promise<string> {
  const h = createHash('sha256');
  for (let off = 0; off < v.size; off += 1 << 20) h.update(await v.read(off, Math.min(1 << 20, v.size - off)));
  return h.digest('hex');
}

export async function pointHash(v: Volume, n: number): Promise<string> {
  const h = createHash('sha256');
  const count = v.size / v.blockSize;
  for (let b = 0; b < count; b += 256) h.update(await v.readBlocksAt(n, b, Math.min(256, count - b)));
  return h.digest('hex');
}

export function config<T>(): T {
  const raw = process.argv[2];
  if (!raw) throw new Error('usage: runner.ts <json config>');
  return JSON.parse(raw) as T; // test-supplied config, not network input
}
