/**
 * A replica node process for end-to-end tests: opens (or creates) a replica volume, starts
 * the replica server, prints events as JSON lines. `pausePhase`/`pauseMs` hold a commit at
 * that phase so a test can kill -9 the process there. After recovery it reports what each
 * volume holds ('recovered', with its image hash), then 'listening'. With `members`, a
 * consistency group of volumes, each in `dir/<id>`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startReplicaServer, type CommitPhase } from '@headstart/replication';
import { createVolume, openVolume, type Volume } from '@headstart/volume';
import { config, emit, imageHash } from './runner-common';

interface Config {
  dir: string;
  size: number;
  id: string;
  secret: string;
  port?: number;
  pausePhase?: CommitPhase;
  pauseMs?: number;
  /** Pause only commits of points >= this (default 0). */
  pauseFrom?: number;
  /** Skip hashing the image after each commit (benchmarks). */
  noHash?: boolean;
  /** A consistency group of these volume ids, each in `dir/<id>`, named `group`; events name the volume. */
  members?: string[];
  group?: string;
}

const cfg = config<Config>();
// The server takes sessions as soon as it is started, and a session's commit would change
// an image while 'recovered' below hashes it (a hash of no point, reported as the recovered
// one): commits wait until what recovery left is reported.
let reportRecovered: () => void = () => undefined;
const recoveredReported = new Promise<void>((resolve) => (reportRecovered = resolve));
const specs = cfg.members ? cfg.members.map((id) => ({ id, dir: join(cfg.dir, id) })) : [{ id: cfg.id, dir: cfg.dir }];
const volumes: { id: string; volume: Volume }[] = [];
for (const spec of specs) {
  volumes.push({ id: spec.id, volume: existsSync(`${spec.dir}/meta.lmdb`) ? await openVolume(spec.dir) : await createVolume(spec.dir, { size: cfg.size, id: spec.id, role: 'replica' }) });
}
const server = await startReplicaServer({
  secret: cfg.secret,
  port: cfg.port ?? 0,
  volumes: specs.map((spec, i) => {
    const volume = volumes[i].volume;
    return {
      volume,
      stagingDir: `${spec.dir}-staging`,
      group: cfg.group,
      onCommitPhase: async (phase: CommitPhase, n: number) => {
        if (phase === 'ready') await recoveredReported;
        const cpu = process.cpuUsage();
        emit({ event: 'phase', volume: spec.id, phase, n, t: Date.now(), cpuUs: cpu.user + cpu.system, userUs: cpu.user, sysUs: cpu.system });
        if (phase === 'finished') emit({ event: 'committed', volume: spec.id, n, scheduledAt: volume.committed?.scheduledAt, hash: cfg.noHash ? null : await imageHash(volume), t: Date.now() });
        if (cfg.pausePhase === phase && n >= (cfg.pauseFrom ?? 0)) await new Promise((r) => setTimeout(r, cfg.pauseMs ?? 5_000));
      },
    };
  }),
  onEvent: (e) => emit({ event: 'replica', ...e }),
});
// What each volume holds once recovery is done (a group's volumes: the same point).
for (const { id, volume } of volumes) {
  const c = volume.committed;
  emit({ event: 'recovered', volume: id, n: c?.n ?? null, scheduledAt: c?.scheduledAt ?? null, hash: c && !cfg.noHash ? await imageHash(volume) : null });
}
reportRecovered();
// The first volume's point again for callers of one volume (its hash is in 'recovered': not computed twice).
emit({ event: 'listening', url: server.url, port: server.port, volume: volumes[0].id, committed: volumes[0].volume.committed?.n ?? null });
// A commit held for its group, every 2 s: what a stuck campaign reports.
setInterval(() => {
  for (const { id } of volumes) {
    const wait = server.targets.get(id)?.groupWait();
    if (wait) emit({ event: 'group-wait', volume: id, ...wait });
  }
}, 2_000).unref();
process.on('SIGTERM', () => {
  void server.close().then(() => Promise.all(volumes.map((v) => v.volume.shutdown()))).then(() => process.exit(0));
});
