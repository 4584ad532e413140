/**
 * Reported link bugs, each reproduced over a real WebSocket with real volumes:
 * a replica restart, an ACK lost in a cut, and a pre-send policy that breaks its contract
 * (duplicates, blocks that are not pending) while writes are still landing at the close.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVolume, type Volume } from '@headstart/volume';
import { afterEach, describe, expect, it } from 'vitest';
import type { PresendPolicy } from './policy';
import { startReplicaServer, type ReplicaEvent, type ReplicaServer } from './replica-server';
import { startSource, type SourceEvent, type SourceLink } from './source';
import { SECRET, imageHash, randomBlock, sourceHashAt } from './testing.test-helpers';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

interface Rig {
  dir: string;
  source: Volume;
  replica: Volume;
  server: ReplicaServer;
  link: SourceLink;
  events: SourceEvent[];
  replicaEvents: ReplicaEvent[];
  startServer(port?: number, onFinished?: (n: number) => void): Promise<ReplicaServer>;
}

async function rig(opts: { policy?: PresendPolicy; onFinished?: (n: number) => void } = {}): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'hs-repl-faults-'));
  const size = 4 * 1024 * 1024;
  const source = await createVolume(join(dir, 'src'), { size, id: 'vol-f' });
  const replica = await createVolume(join(dir, 'rep'), { size, id: 'vol-f', role: 'replica' });
  const events: SourceEvent[] = [];
  const replicaEvents: ReplicaEvent[] = [];
  const r: Rig = {
    dir, source, replica, events, replicaEvents,
    server: undefined as unknown as ReplicaServer,
    link: undefined as unknown as SourceLink,
    async startServer(port = 0, onFinished) {
      r.server = await startReplicaServer({
        secret: SECRET,
        port,
        volumes: [{ volume: replica, stagingDir: join(dir, 'rep-staging'), onCommitPhase: (phase, n) => (phase === 'finished' ? onFinished?.(n) : undefined) }],
        onEvent: (e) => replicaEvents.push(e),
      });
      return r.server;
    },
  };
  await r.startServer(0, opts.onFinished);
  r.link = await startSource({ volume: source, sink: 'r1', url: r.server.url, secret: SECRET, policy: opts.policy, onEvent: (e) => events.push(e) });
  cleanups.push(async () => {
    await r.link.stop();
    await r.server.close();
    await source.shutdown();
    await replica.shutdown();
    await rm(dir, { recursive: true, force: true });
  });
  return r;
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((res) => setTimeout(res, 10));
  }
}

describe('link faults', () => {
  it('a replica server restart looks like a disconnect and reconnects with normal backoff', async () => {
    const r = await rig();
    await r.link.waitAcked(r.source.latestClosed!.n, 20_000);
    const port = r.server.port;
    await r.server.close(); // sends REPL_STOPPED to the source
    await until(() => r.events.some((e) => e.type === 'disconnected' && e.code === 'REPL_STOPPED'));
    expect(r.link.status().state).toBe('disconnected');
    await r.startServer(port);
    const t0 = Date.now();
    await r.source.write(0, randomBlock(4096, 1));
    const p = await r.source.closeSnapshot();
    await r.link.waitAcked(p.n, 20_000);
    // normal backoff starts at 100 ms; the non-retryable path would wait the 5 s maximum
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(r.link.status().state).toBe('connected');
    expect(await imageHash(r.replica)).toBe(await sourceHashAt(r.source, p.n));
  });

  it('a point committed whose ACK was lost is reported acked (onAcked) on resume', async () => {
    let cutAt = -1;
    let r: Rig | undefined;
    r = await rig({
      onFinished: (n) => {
        // committed on the replica; cut the link before its ACK can reach the source
        if (n === cutAt) r!.link.reconnect();
      },
    });
    await r.link.waitAcked(r.source.latestClosed!.n, 20_000);
    await r.source.write(8192, randomBlock(4096, 2));
    cutAt = r.source.openSnapshot;
    const p = await r.source.closeSnapshot();
    await r.link.waitAcked(p.n, 20_000);
    await until(() => r!.events.some((e) => e.type === 'acked' && e.n === p.n));
    expect(r.replica.committed?.n).toBe(p.n);
    expect(r.events.filter((e) => e.type === 'disconnected').length).toBeGreaterThan(0);
  });

  it('a policy returning duplicates and blocks that are not pending, with writes landing at the close, never causes a digest mismatch', async () => {
    const sloppy: PresendPolicy = {
      name: 'sloppy',
      next(_now, budgetBytes, view) {
        const pending = [...view.pending].slice(0, Math.floor(budgetBytes / view.blockSize / 2));
        // every pending block twice, plus blocks never written, out of range, negative, fractional
        return [...pending, ...pending, 1000, 999_999_999, -1, 2.5, Number.NaN, ...pending.slice(0, 3)];
      },
    };
    const r = await rig({ policy: sloppy });
    const bs = r.source.blockSize;
    await r.link.waitAcked(r.source.latestClosed!.n, 20_000);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 64; i++) await r.source.write(i * bs, randomBlock(bs, round * 1000 + i));
      await new Promise((res) => setTimeout(res, 50)); // some pre-sent, then collided below
      // writes still in flight when the close is called: they belong to the closing point
      const landing: Promise<void>[] = [];
      for (let i = 0; i < 200; i++) landing.push(r.source.write(((i * 7) % 900) * bs, randomBlock(bs, round * 1000 + 500 + i)));
      const p = await r.source.closeSnapshot();
      await Promise.all(landing);
      await r.link.waitAcked(p.n, 20_000);
      expect(await imageHash(r.replica)).toBe(await sourceHashAt(r.source, p.n));
    }
    expect(r.replicaEvents.filter((e) => e.type === 'nack')).toEqual([]);
    expect(r.events.filter((e) => e.type === 'disconnected')).toEqual([]);
  });
});
