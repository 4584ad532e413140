/**
 * Consistency groups on the replica (commit-group.ts), in one process over real WebSockets:
 * two source volumes, closed at one scheduled time, ship to one replica server on which
 * their replicas form a group.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HeadstartError } from '@headstart/errors';
import { createVolume, openVolume, type Volume } from '@headstart/volume';
import { startReplicaServer, type ReplicaServer } from './replica-server';
import type { CommitPhase } from './replica-target';
import { startSource, type SourceLink } from './source';
import { SECRET, imageHash, randomBlock, sourceHashAt } from './testing.test-helpers';

const SIZE = 2 * 1024 * 1024;
const IDS = ['data', 'log'] as const;
type Id = (typeof IDS)[number];

interface Site {
  dir: string;
  sources: Record<Id, Volume>;
  replicas: Record<Id, Volume>;
  server: ReplicaServer;
  links: Partial<Record<Id, SourceLink>>;
  phases: { id: Id; phase: CommitPhase; n: number }[];
}

let site: Site | null = null;
/** Fault injection per volume: called at each commit phase; may throw or hold. */
const hooks: Partial<Record<Id, (phase: CommitPhase, n: number) => void | Promise<void>>> = {};

async function startServer(s: Pick<Site, 'dir' | 'replicas' | 'phases'>): Promise<ReplicaServer> {
  return startReplicaServer({
    secret: SECRET,
    volumes: IDS.map((id) => ({
      volume: s.replicas[id],
      stagingDir: join(s.dir, `${id}-staging`),
      group: 'app',
      onCommitPhase: async (phase: CommitPhase, n: number) => {
        s.phases.push({ id, phase, n });
        await hooks[id]?.(phase, n);
      },
    })),
  });
}

async function makeSite(): Promise<Site> {
  const dir = await mkdtemp(join(tmpdir(), 'hs-group-'));
  const sources = {} as Record<Id, Volume>;
  const replicas = {} as Record<Id, Volume>;
  for (const id of IDS) {
    sources[id] = await createVolume(join(dir, `src-${id}`), { size: SIZE, id });
    replicas[id] = await createVolume(join(dir, `rep-${id}`), { size: SIZE, id, role: 'replica' });
  }
  const phases: Site['phases'] = [];
  const server = await startServer({ dir, replicas, phases });
  site = { dir, sources, replicas, server, links: {}, phases };
  return site;
}

async function link(s: Site, id: Id): Promise<SourceLink> {
  const l = await startSource({ volume: s.sources[id], group: 'app', sink: 'r', url: s.server.url, secret: SECRET });
  s.links[id] = l;
  return l;
}

/** Closes both source volumes at one scheduled time, as the node does for a group. */
async function closeGroup(s: Site, scheduledAt: number): Promise<Record<Id, number>> {
  const [a, b] = await Promise.all(IDS.map((id) => s.sources[id].closeSnapshot({ scheduledAt })));
  return { data: a.n, log: b.n };
}

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

afterEach(async () => {
  for (const id of IDS) delete hooks[id];
  if (!site) return;
  const s = site;
  site = null;
  for (const l of Object.values(s.links)) await l?.stop();
  await s.server.close();
  for (const v of [...Object.values(s.sources), ...Object.values(s.replicas)]) await v.shutdown().catch(() => {});
  await rm(s.dir, { recursive: true, force: true });
});

describe('a consistency group on the replica', () => {
  it('commits a point on no member until every member has it, then on all', async () => {
    const s = await makeSite();
    const data = await link(s, 'data');
    await link(s, 'log');
    for (const id of IDS) await s.links[id]!.waitAcked(s.sources[id].sink('r').baseline, 10_000);
    for (const id of IDS) await s.sources[id].addSink('hold', { acked: s.sources[id].sink('r').baseline }); // keep points readable
    await s.links.log!.stop(); // the log volume's link is down: its point cannot arrive
    delete s.links.log;
    await s.sources.data.write(0, randomBlock(64 * 4096, 1));
    await s.sources.log.write(0, randomBlock(8 * 4096, 2));
    const T = Date.now();
    const p = await closeGroup(s, T);
    await until('the data volume\'s CLOSE accepted', () => s.server.targets.get('data')!.acceptedUpTo === p.data);
    await new Promise((r) => setTimeout(r, 500));
    // Accepted, but not journaled or written: the log volume has not got the point.
    expect(s.phases.filter((x) => x.id === 'data' && x.n === p.data).map((x) => x.phase)).toEqual([]);
    expect(s.replicas.data.committed?.scheduledAt).not.toBe(T);
    // What status shows for it.
    expect(s.server.targets.get('data')!.groupWait()).toMatchObject({ group: 'app', scheduledAt: T, phase: 'closed', waitingFor: ['log'] });
    expect(s.server.targets.get('log')!.groupWait()).toBeNull();
    await link(s, 'log');
    await data.waitAcked(p.data, 15_000);
    await s.links.log!.waitAcked(p.log, 15_000);
    for (const id of IDS) {
      expect(s.replicas[id].committed?.scheduledAt).toBe(T);
      expect(await imageHash(s.replicas[id])).toBe(await sourceHashAt(s.sources[id], p[id]));
      expect(s.server.targets.get(id)!.groupWait()).toBeNull();
    }
    // Neither member wrote its image before both journals were durable.
    const ofT = s.phases.filter((x) => x.n === p[x.id]);
    const journaled = ofT.filter((x) => x.phase === 'journaled');
    const firstApplied = ofT.findIndex((x) => x.phase === 'applied');
    expect(journaled.map((x) => x.id).sort()).toEqual(['data', 'log']);
    expect(firstApplied).toBeGreaterThan(-1);
    expect(Math.max(...journaled.map((x) => ofT.indexOf(x)))).toBeLessThan(firstApplied);
  });

  it('after a crash, drops a journal the other member never wrote, and redoes one it did', async () => {
    const s = await makeSite();
    for (const id of IDS) await link(s, id);
    for (const id of IDS) await s.links[id]!.waitAcked(s.sources[id].sink('r').baseline, 10_000);
    const base = { data: s.replicas.data.committed!, log: s.replicas.log.committed! };
    for (const id of IDS) await s.sources[id].addSink('hold', { acked: s.sources[id].sink('r').baseline });
    // The log volume fails just before its journal, every time: the data volume journals and waits.
    hooks.log = (phase) => {
      if (phase === 'ready') throw new HeadstartError('VOLUME_IO', 'injected: the journal write failed');
    };
    await s.sources.data.write(0, randomBlock(64 * 4096, 3));
    await s.sources.log.write(4096, randomBlock(8 * 4096, 4));
    const T1 = Date.now();
    const p1 = await closeGroup(s, T1);
    await until('the data volume journaled', () => s.phases.some((x) => x.id === 'data' && x.phase === 'journaled' && x.n === p1.data));
    await new Promise((r) => setTimeout(r, 300));
    expect(s.phases.some((x) => x.id === 'data' && x.phase === 'applied' && x.n === p1.data)).toBe(false);
    // "Crash" here: the server stops with the data volume's journal durable and the log's not written.
    for (const id of IDS) await s.links[id]!.stop();
    s.links = {};
    await s.server.close();
    for (const id of IDS) {
      const dir = join(s.dir, `rep-${id}`);
      await s.replicas[id].shutdown();
      s.replicas[id] = await openVolume(dir);
    }
    delete hooks.log;
    s.phases.length = 0;
    s.server = await startServer(s);
    // The undecided journal was dropped: both members are at the point before T1, none applied it.
    expect(s.phases.filter((x) => x.phase === 'applied')).toEqual([]);
    for (const id of IDS) expect(s.replicas[id].committed).toEqual(base[id]);

    // Now the decided case: both journal, then the data volume "crashes" before writing its image.
    hooks.data = (phase) => {
      if (phase === 'journaled') throw new HeadstartError('VOLUME_IO', 'injected: the process died after the journal');
    };
    for (const id of IDS) await link(s, id);
    await s.links.log!.waitAcked(p1.log, 15_000); // log: journaled, decided (data's journal is durable), committed
    expect(s.replicas.data.committed?.scheduledAt).toBe(base.data.scheduledAt);
    expect(s.replicas.log.committed?.scheduledAt).toBe(T1);
    for (const id of IDS) await s.links[id]!.stop();
    s.links = {};
    await s.server.close();
    delete hooks.data;
    s.phases.length = 0;
    s.server = await startServer(s);
    // Reopened: the data volume's journal is redone, since the log volume committed T1.
    expect(s.phases.filter((x) => x.id === 'data' && x.phase === 'applied').length).toBe(1);
    for (const id of IDS) {
      expect(s.replicas[id].committed?.scheduledAt).toBe(T1);
      expect(await imageHash(s.replicas[id])).toBe(await sourceHashAt(s.sources[id], p1[id]));
    }
  });

  it('does not wait for a member still in its first full copy', async () => {
    const s = await makeSite();
    await link(s, 'data');
    await s.links.data!.waitAcked(s.sources.data.sink('r').baseline, 10_000);
    // The log volume joins late, and its first copy is slow to commit.
    let release!: () => void;
    const slow = new Promise<void>((r) => (release = r));
    hooks.log = (phase) => (phase === 'applied' ? slow : undefined);
    await link(s, 'log');
    await until('the log volume\'s first copy accepted', () => s.server.targets.get('log')!.acceptedUpTo !== null);
    await s.sources.data.write(0, randomBlock(4 * 4096, 7));
    const T = Date.now();
    const p = await closeGroup(s, T);
    await s.links.data!.waitAcked(p.data, 15_000);
    expect(s.replicas.data.committed?.scheduledAt).toBe(T);
    expect(s.replicas.log.committed).toBeNull();
    release();
    await s.links.log!.waitAcked(p.log, 15_000);
    expect(s.replicas.log.committed?.scheduledAt).toBe(T);
  });

  it('refuses a source whose volume is not in the replica volume\'s group, saying so', async () => {
    const s = await makeSite();
    for (const group of ['other', undefined]) {
      const events: { type: string; code?: string; message?: string }[] = [];
      const l = await startSource({ volume: s.sources.data, group, sink: 'r', url: s.server.url, secret: SECRET, onEvent: (e) => events.push(e) });
      try {
        await until('the refusal', () => events.some((e) => e.type === 'disconnected'));
      } finally {
        await l.stop();
      }
      const refusal = events.find((e) => e.type === 'disconnected')!;
      expect(refusal.code).toBe('REPL_VOLUME_MISMATCH');
      expect(refusal.message).toContain(`source volume data is ${group ? 'in consistency group other' : 'in no consistency group'}, this replica's is in consistency group app: configure the same group on both sites`);
    }
    expect(s.replicas.data.committed).toBeNull();
  });

  it('does not wait for a member whose source skipped the point', async () => {
    const s = await makeSite();
    for (const id of IDS) await link(s, id);
    for (const id of IDS) await s.links[id]!.waitAcked(s.sources[id].sink('r').baseline, 10_000);
    await s.sources.data.write(0, randomBlock(4 * 4096, 5));
    // Only the data volume closes at T1 (a close that failed on the log volume); both at T2.
    const T1 = Date.now();
    const d1 = await s.sources.data.closeSnapshot({ scheduledAt: T1 });
    await s.sources.log.write(0, randomBlock(4 * 4096, 6));
    const p2 = await closeGroup(s, T1 + 1000);
    await s.links.data!.waitAcked(p2.data, 15_000);
    await s.links.log!.waitAcked(p2.log, 15_000);
    expect(d1.n).toBe(p2.data - 1);
    for (const id of IDS) expect(s.replicas[id].committed?.scheduledAt).toBe(T1 + 1000);
  });
});
