import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVolume, type Volume } from '@headstart/volume';
import { afterEach, describe, expect, it } from 'vitest';
import { startReplicaServer } from './replica-server';
import { startSource, type SourceEvent } from './source';
import { SECRET, imageHash, randomBlock, sourceHashAt } from './testing.test-helpers';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('replica server: one volume out of service, the others untouched', () => {
  it('detach ends only that volume\'s session and refuses its source as busy (retryable); attach resumes it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-repl-detach-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const size = 1024 * 1024;
    const vols: { source: Volume; replica: Volume; events: SourceEvent[] }[] = [];
    for (const id of ['a', 'b']) {
      const source = await createVolume(join(dir, `src-${id}`), { size, id });
      const replica = await createVolume(join(dir, `rep-${id}`), { size, id, role: 'replica' });
      vols.push({ source, replica, events: [] });
      cleanups.push(async () => {
        await source.shutdown();
        await replica.shutdown();
      });
    }
    const config = (i: number) => ({ volume: vols[i].replica, stagingDir: join(dir, `staging-${i}`) });
    const server = await startReplicaServer({ secret: SECRET, volumes: [config(0), config(1)] });
    cleanups.push(() => server.close());
    const links = await Promise.all(vols.map((v) => startSource({ volume: v.source, sink: 'r', url: server.url, secret: SECRET, onEvent: (e) => v.events.push(e) })));
    cleanups.push(async () => {
      for (const l of links) await l.stop();
    });
    const bs = vols[0].source.blockSize;
    for (const [i, l] of links.entries()) await l.waitAcked(vols[i].source.latestClosed!.n, 20_000);

    await server.detach('a');
    expect(server.targets.has('a')).toBe(false);
    // b goes on replicating while a is out of service
    await vols[1].source.write(0, randomBlock(4 * bs, 1));
    const pb = await vols[1].source.closeSnapshot();
    await links[1].waitAcked(pb.n, 20_000);
    expect(await imageHash(vols[1].replica)).toBe(await sourceHashAt(vols[1].source, pb.n));
    expect(vols[1].events.filter((e) => e.type === 'disconnected')).toEqual([]);
    // a's source is told to retry, not that the volume is unknown
    await vols[0].source.write(0, randomBlock(4 * bs, 2));
    const pa = await vols[0].source.closeSnapshot();
    const deadline = Date.now() + 10_000;
    while (!vols[0].events.some((e) => e.type === 'disconnected' && e.code === 'REPL_TARGET_BUSY')) {
      if (Date.now() > deadline) throw new Error(`no REPL_TARGET_BUSY: ${JSON.stringify(vols[0].events)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(links[0].status().state).toBe('disconnected');
    expect(vols[0].replica.committed?.n ?? null).toBeLessThan(pa.n);

    await server.attach(config(0));
    await links[0].waitAcked(pa.n, 20_000);
    expect(await imageHash(vols[0].replica)).toBe(await sourceHashAt(vols[0].source, pa.n));
    await expect(server.attach(config(0))).rejects.toThrow(/attached already/);
  });
});
