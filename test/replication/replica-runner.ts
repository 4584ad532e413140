/**
 * A replica node process for end-to-end tests: opens (or creates) a replica volume, starts
 * the replica server, prints events as JSON lines. `pausePhase`/`pauseMs` hold a commit at
 * that phase so a test can kill -9 the process there.
 */
import { existsSync } from 'node:fs';
import { startReplicaServer, type CommitPhase } from '@headstart/replication';
import { createVolume, openVolume } from '@headstart/volume';
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
}

const cfg = config<Config>();
const volume = existsSync(`${cfg.dir}/meta.lmdb`) ? await openVolume(cfg.dir) : await createVolume(cfg.dir, { size: cfg.size, id: cfg.id, role: 'replica' });
const server = await startReplicaServer({
  secret: cfg.secret,
  port: cfg.port ?? 0,
  volumes: [{
    volume,
    stagingDir: `${cfg.dir}-staging`,
    onCommitPhase: async (phase, n) => {
      const cpu = process.cpuUsage();
      emit({ event: 'phase', phase, n, t: Date.now(), cpuUs: cpu.user + cpu.system, userUs: cpu.user, sysUs: cpu.system });
      if (phase === 'finished') emit({ event: 'committed', n, hash: cfg.noHash ? null : await imageHash(volume), t: Date.now() });
      if (cfg.pausePhase === phase && n >= (cfg.pauseFrom ?? 0)) await new Promise((r) => setTimeout(r, cfg.pauseMs ?? 5_000));
    },
  }],
  onEvent: (e) => emit({ event: 'replica', ...e }),
});
const c = volume.committed;
emit({ event: 'listening', url: server.url, port: server.port, committed: c?.n ?? null, hash: c && !cfg.noHash ? await imageHash(volume) : null });
process.on('SIGTERM', () => {
  void server.close().then(() => volume.shutdown()).then(() => process.exit(0));
});
