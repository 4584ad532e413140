/**
 * A source node process for end-to-end tests: opens (or creates) a source volume, ships it
 * to the replica at `url`, writes random blocks (or exports the volume over NBD for an
 * outside writer) and closes a snapshot every `intervalMs`, printing each point's hash.
 * A second sink 'hold' that never acknowledges keeps every point readable, so the hash of
 * any point can still be computed after a restart.
 *
 * As the node does at each close (node.ts followLatest), a link that is away (no session
 * under way) catches up: its next point becomes the latest, all the links or none.
 *
 * With `members`, it runs a consistency group instead: one volume per id in `dir/<id>`, each
 * exported over NBD under its id and shipped with its group, all closed in one synchronous
 * step at one scheduled time, as the node does (node.ts closePoints). Events name the volume.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { isHeadstartError } from '@headstart/errors';
import { startNbdServer } from '@headstart/nbd';
import { predictivePolicy, type PredictivePolicy } from '@headstart/node';
import { atSnapshotPolicy, continuousPolicy, startSource, type SourceLink } from '@headstart/replication';
import { createVolume, openVolume, type SnapshotPoint, type Volume } from '@headstart/volume';
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
  /** Blocks written per write burst (0: no writes of its own; one volume only). */
  writeBlocks?: number;
  writeEveryMs?: number;
  nbd?: boolean;
  seed?: number;
  /** A consistency group of these volume ids (see the header), named `group`. */
  members?: string[];
  group?: string;
}

interface Shipped {
  id: string;
  volume: Volume;
  link: SourceLink;
  predictive: PredictivePolicy | null;
}

const cfg = config<Config>();
const specs = cfg.members ? cfg.members.map((id) => ({ id, dir: join(cfg.dir, id) })) : [{ id: cfg.id, dir: cfg.dir }];
let nextCloseAt = Date.now() + cfg.intervalMs;
const shipped: Shipped[] = [];
for (const spec of specs) {
  const volume = existsSync(`${spec.dir}/meta.lmdb`) ? await openVolume(spec.dir) : await createVolume(spec.dir, { size: cfg.size, id: spec.id });
  if (!volume.sinks().some((s) => s.name === 'hold')) await volume.addSink('hold', { acked: volume.latestClosed!.n });
  const predictive = cfg.policy === 'predictive' ? predictivePolicy({ volume, nextCloseAt: () => nextCloseAt, linkHint: cfg.rateLimit ?? undefined }) : null;
  const link = await startSource({
    volume,
    group: cfg.group,
    sink: 'r1',
    url: cfg.url,
    secret: cfg.secret,
    policy: predictive ?? (cfg.policy === 'at-snapshot' ? atSnapshotPolicy() : continuousPolicy()),
    rateLimit: cfg.rateLimit ?? null,
    onEvent: (e) => emit({ event: 'source', volume: spec.id, ...e }),
  });
  shipped.push({ id: spec.id, volume, link, predictive });
}
for (const { id, volume } of shipped) {
  for (const p of volume.snapshots()) {
    if (!volume.isReadable(p.n)) continue;
    // 'hold' keeps the points after the one it was added at; that one goes as soon as r1
    // acknowledges it, which can happen while it is being hashed here.
    const hash = await pointHash(volume, p.n).catch((err: unknown) => {
      if (isHeadstartError(err, 'SNAPSHOT_RELEASED')) return null;
      throw err;
    });
    if (hash !== null) emit({ event: 'closed', volume: id, n: p.n, scheduledAt: p.scheduledAt, hash });
  }
}
if (cfg.nbd) {
  const exports = cfg.members ? Object.fromEntries(shipped.map((s) => [s.id, s.volume])) : { vol: shipped[0].volume };
  const nbd = await startNbdServer({ exports, defaultExport: Object.keys(exports)[0] });
  emit({ event: 'nbd', port: nbd.port });
}
emit({ event: 'started', open: shipped[0].volume.openSnapshot });

const volume = shipped[0].volume;
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
    // Every volume closes in one synchronous step, at one time later than the last (as the
    // node closes a group). A close that fails (a full disk) changes nothing; the next
    // interval tries again, as the node does.
    const last = Math.max(...shipped.map((s) => s.volume.latestClosed?.scheduledAt ?? -Infinity));
    const scheduledAt = Math.max(Date.now(), last + 1);
    try {
      for (const s of shipped) s.volume.checkCanClose();
    } catch (err) {
      emit({ event: 'close-failed', message: (err as Error).message });
      nextCloseAt = Date.now() + cfg.intervalMs;
      continue;
    }
    const closing = shipped.map((s) =>
      s.volume.closeSnapshot({ scheduledAt }).catch((err: Error) => {
        emit({ event: 'close-failed', volume: s.id, message: err.message });
        return null;
      }),
    );
    const points: (SnapshotPoint | null)[] = await Promise.all(closing);
    nextCloseAt = Date.now() + cfg.intervalMs;
    for (const [i, p] of points.entries()) {
      if (p === null) continue;
      const s = shipped[i];
      s.predictive?.schedule(nextCloseAt);
      s.predictive?.onClose(p.n, p.closedAt, nextCloseAt);
      emit({ event: 'closed', volume: s.id, n: p.n, scheduledAt: p.scheduledAt, hash: await pointHash(s.volume, p.n) });
    }
    if (shipped.every((s) => s.link.mayFollowLatest)) {
      for (const s of shipped) {
        const from = s.volume.sink('r1').acked;
        s.link.followLatest().then(
          (to) => to !== null && emit({ event: 'catch-up', volume: s.id, from, to }),
          (err: Error) => emit({ event: 'catch-up-failed', volume: s.id, message: err.message }),
        );
      }
    }
  }
}
void writer();
void closer();
// Where each link stands, every 2 s: what a stuck campaign reports.
setInterval(() => {
  for (const s of shipped) {
    const st = s.link.status();
    emit({ event: 'link-status', volume: s.id, state: st.state, acked: st.acked, lastError: st.lastError });
  }
}, 2_000).unref();
process.on('SIGTERM', () => {
  stopping = true;
  void Promise.all(shipped.map((s) => s.link.stop()))
    .then(() => Promise.all(shipped.map((s) => s.volume.shutdown())))
    .then(() => process.exit(0));
});
