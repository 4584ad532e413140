/** Test helpers: temp volumes and a source/replica pair joined over a real WebSocket on port 0. */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVolume, type Volume } from '@headstart/volume';
import { startReplicaServer, type ReplicaServer } from './replica-server';
import type { ReplicaVolumeConfig } from './replica-target';
import { startSource, type SourceLink, type SourceOptions } from './source';

export const SECRET = 'pairing-secret-for-tests';

export interface Pair {
  dir: string;
  source: Volume;
  replica: Volume;
  server: ReplicaServer;
  link: SourceLink;
  cleanup(): Promise<void>;
}

export async function makePair(opts: { size?: number; blockSize?: number; source?: Partial<SourceOptions>; replica?: Partial<ReplicaVolumeConfig>; startLink?: boolean } = {}): Promise<Pair> {
  const dir = await mkdtemp(join(tmpdir(), 'hs-repl-'));
  const size = opts.size ?? 4 * 1024 * 1024;
  const source = await createVolume(join(dir, 'src'), { size, blockSize: opts.blockSize, id: 'vol-1' });
  const replica = await createVolume(join(dir, 'rep'), { size, blockSize: opts.blockSize, id: 'vol-1', role: 'replica' });
  const server = await startReplicaServer({ secret: SECRET, volumes: [{ volume: replica, stagingDir: join(dir, 'rep-staging'), ...opts.replica }] });
  const pair: Pair = {
    dir, source, replica, server,
    link: undefined as unknown as SourceLink, // set just below unless startLink is false
    async cleanup() {
      await pair.link?.stop();
      await server.close();
      await source.shutdown();
      await replica.shutdown();
      await rm(dir, { recursive: true, force: true });
    },
  };
  if (opts.startLink !== false) pair.link = await startSource({ volume: source, sink: 'r1', url: server.url, secret: SECRET, ...opts.source });
  return pair;
}

/** sha256 of the whole volume as of closed point n on the source. */
export async function sourceHashAt(v: Volume, n: number): Promise<string> {
  const h = createHash('sha256');
  const count = v.size / v.blockSize;
  for (let b = 0; b < count; b += 256) h.update(await v.readBlocksAt(n, b, Math.min(256, count - b)));
  return h.digest('hex');
}

export async function imageHash(v: Volume): Promise<string> {
  const h = createHash('sha256');
  for (let off = 0; off < v.size; off += 1 << 20) h.update(await v.read(off, Math.min(1 << 20, v.size - off)));
  return h.digest('hex');
}

export function randomBlock(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}
