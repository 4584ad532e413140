/**
 * A source node process for end-to-end tests: opens (or creates) a source volume, ships it
 * to the replica at `url`, writes random blocks (or exports the volume over NBD for an
 * outside writer) and closes a snapshot every `intervalMs`, printing each point's hash.
 * A second sink 'hold' that never acknowledges keeps every point readable, so the hash of
 * any point can still be computed after a restart.
 */
import { existsSync } from 'node:fs';
import { isHeadstartError } from '@headstart/errors';
import { startNbdServer } from '@headstart/nbd';
import { predictivePolicy } from '@headstart/node';
import { atSnapshotPolicy, continuousPolicy, startSource } from '@headstart/replication';
import { createVolume, openVolume } from '@headstart/volume';
import { config, emit, pointHash } from './runner-common';

interface Config {
  dir: string;
  size: number;
  id: string;
  secret: string;
  url: string;
  intervalMs: number;
  /** Default continuous; predictive is the node's planner (@headstart/node), told of each close as the node tells it. */
  policy?: 'continuous' | 'at-snapshot' | 'predictive';
  rateLimit?: number | null;
  /** Blocks written per write burst (0: no writes of its own). */
  writeBlocks?: number;
  writeEveryMs?: number;
  nbd?: boolean;
  seed?: number;
}

const cfg = config<Config>();
const volume = existsSync(`${cfg.dir}/meta.lmdb`) ? await openVolume(cfg.dir) : await createVolume(cfg.dir, { size: cfg.size, id: cfg.id });
if (!volume.sinks().some((s) => s.name === 'hold')) await volume.addSink('hold', { acked: volume.latestClosed!.n });
let nextCloseAt = Date.now() + cfg.intervalMs;
const predictive = cfg.policy === 'predictive' ? predictivePolicy({ volume, nextCloseAt: () => nextCloseAt, linkHint: cfg.rateLimit ?? undefined }) : null;
const link = await startSource({
  volume,
  sink: 'r1',
  url: cfg.url,
  secret: cfg.secret,
  policy: predictive ?? (cfg.policy === 'at-snapshot' ? atSnapshotPolicy() : continuousPolicy()),
  rateLimit: cfg.rateLimit ?? null,
  onEvent: (e) => emit({ event: 'source', ...e }),
});
for (const p of volume.snapshots()) {
  if (!volume.isReadable(p.n)) continue;
  // 'hold' keeps the points after the one it was added at; that one goes as soon as r1
  // acknowledges it, which can happen while it is being hashed here.
  const hash = await pointHash(volume, p.n).catch((err: unknown) => {
    if (isHeadstartError(err, 'SNAPSHOT_RELEASED')) return null;
    throw err;
  });
  if (hash !== null) emit({ event: 'closed', n: p.n, hash });
}
if (cfg.nbd) {
  const nbd = await startNbdServer({ exports: { vol: volume }, defaultExport: 'vol' });
  emit({ event: 'nbd', port: nbd.port });
}
emit({ event: 'started', open: volume.openSnapshot });

const bs = volume.blockSize;
const blocks = volume.size / bs;
let x = (cfg.seed ?? 1) * 7919 + Date.now();
const rnd = () => {
  x = (x * 1103515245 + 12345) % 2147483648;
  return x;
};
let stopping = false;
async function writer(): Promise<void> {
  while (!stopping && (cfg.writeBlocks ?? 0) > 0) {
    for (let i = 0; i < cfg.writeBlocks!; i++) {
      const b = rnd() % blocks;
      const data = Buffer.alloc(bs, rnd() % 256);
      data.writeUInt32LE(rnd(), 0);
      await volume.write(b * bs, data);
    }
    await new Promise((r) => setTimeout(r, cfg.writeEveryMs ?? 50));
  }
}
async function closer(): Promise<void> {
  while (!stopping) {
    await new Promise((r) => setTimeout(r, Math.max(0, nextCloseAt - Date.now())));
    if (stopping) break;
    // A close that fails (a full disk) changes nothing; the next interval tries again, as the node does.
    const p = await volume.closeSnapshot().catch((err: Error) => {
      emit({ event: 'close-failed', message: err.message });
      return null;
    });
    if (p) {
      nextCloseAt = Date.now() + cfg.intervalMs;
      predictive?.schedule(nextCloseAt);
      predictive?.onClose(p.n, p.closedAt, nextCloseAt);
      emit({ event: 'closed', n: p.n, hash: await pointHash(volume, p.n) });
    } else nextCloseAt = Date.now() + cfg.intervalMs;
  }
}
void writer();
void closer();
process.on('SIGTERM', () => {
  stopping = true;
  void link.stop().then(() => volume.shutdown()).then(() => process.exit(0));
});
