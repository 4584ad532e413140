/**
 * Three sites: A replicates to B and C; B falls behind, A is lost, B is promoted and now
 * ships to C, which followed A further than B. C's committed point number is one B also
 * holds (B numbers its own points on from its promotion), with other content: it must not
 * be taken for B's point.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createVolume, type Volume } from '@headstart/volume';
import { afterEach, describe, expect, it } from 'vitest';
import { startReplicaServer, type ReplicaServer } from './replica-server';
import { startSource, type SourceLink } from './source';
import { SECRET, imageHash, randomBlock, sourceHashAt } from './testing.test-helpers';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  cleanups.length = 0;
});

/** A temp directory of volume sites: volumes of one id (vol-1), each servable as a replica; all cleaned up after the test. */
async function siteDir(prefix: string) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const open = async (name: string, role: 'primary' | 'replica') => {
    const v = await createVolume(join(dir, name), { size: 4 * 1024 * 1024, id: 'vol-1', role });
    cleanups.push(() => v.shutdown());
    return v;
  };
  const serve = async (v: Volume, name: string): Promise<ReplicaServer> => {
    const s = await startReplicaServer({ secret: SECRET, volumes: [{ volume: v, stagingDir: join(dir, `${name}-staging`) }] });
    cleanups.push(() => s.close());
    return s;
  };
  return { dir, open, serve };
}

/**
 * A replicates to B and C; B falls behind, and only C gets A's points 2 and 3 (B at 1, C at 3).
 * `link` starts a source whose link errors go to `errors`.
 */
async function cFurtherThanB(prefix: string) {
  const { open, serve } = await siteDir(prefix);
  const a = await open('a', 'primary');
  const b = await open('b', 'replica');
  const c = await open('c', 'replica');
  const sb = await serve(b, 'b');
  const sc = await serve(c, 'c');
  const errors: string[] = [];
  const link = async (v: Volume, sink: string, url: string): Promise<SourceLink> => {
    const l = await startSource({ volume: v, sink, url, secret: SECRET, onEvent: (e) => void (e.type === 'disconnected' && errors.push(`${e.code}: ${e.message}`)) });
    cleanups.push(() => l.stop());
    return l;
  };
  const bs = a.blockSize;
  const ab = await link(a, 'b', sb.url);
  const ac = await link(a, 'c', sc.url);
  await a.write(0, randomBlock(bs * 8, 1));
  const p1 = await a.closeSnapshot();
  await ab.waitAcked(p1.n, 20_000);
  await ac.waitAcked(p1.n, 20_000);
  await ab.stop();
  await a.write(0, randomBlock(bs * 8, 2));
  await a.closeSnapshot();
  await a.write(bs * 100, randomBlock(bs * 4, 3));
  const p3 = await a.closeSnapshot();
  await ac.waitAcked(p3.n, 20_000);
  await ac.stop();
  expect(c.committed?.n).toBe(3);
  expect(b.committed?.n).toBe(1);
  return { b, c, sc, link, errors, bs };
}

describe('a third site after a promotion', () => {
  it('a replica that followed the old primary further is resynchronised, not taken for the new primary\'s point of the same number', async () => {
    const { b, c, sc, link, bs } = await cFurtherThanB('hs-third-');
    // A is lost; B is promoted at point 1 and writes on, closing its own points 2, 3, 4.
    await b.setRole('primary', 2);
    // Its sink for C is added at once (the node does so when the volume becomes primary).
    await b.addSink('c');
    expect(b.sink('c').baseline).toBe(1);
    await b.write(bs * 200, randomBlock(bs * 2, 4));
    for (let i = 0; i < 3; i++) await b.closeSnapshot();
    expect(b.latestClosed?.n).toBe(4);

    // B ships to C: C's point 3 (A's) is not B's point 3.
    const bc = await link(b, 'c', sc.url);
    await bc.waitAcked(4, 20_000);
    expect(c.committed?.n).toBe(4);
    expect(await imageHash(c)).toBe(await sourceHashAt(b, 4));
  });

  it('a link cut while the new primary has not yet closed a point after the replica\'s does not make the replica refused for good (REPL_DIVERGED)', async () => {
    const { b, c, sc, link, errors, bs } = await cFurtherThanB('hs-third-cut-');
    const held = await imageHash(c);
    // B promoted at 1; it connects to C before it has closed a point after C's 3: C takes
    // B's epoch (fencing A) but still holds A's point 3; the link is cut.
    await b.setRole('primary', 2);
    await b.addSink('c');
    const first = await link(b, 'c', sc.url);
    for (const end = Date.now() + 10_000; c.info.epoch !== 2 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
    expect(c.info.epoch).toBe(2);
    await first.stop();
    expect(c.committed?.n).toBe(3);
    expect(await imageHash(c)).toBe(held);

    // B closes 2..4 and links again: C is resynchronised, not refused as a diverged history.
    await b.write(bs * 200, randomBlock(bs * 2, 4));
    for (let i = 0; i < 3; i++) await b.closeSnapshot();
    const again = await link(b, 'c', sc.url);
    await again.waitAcked(4, 20_000);
    expect(errors.filter((e) => e.startsWith('REPL_DIVERGED'))).toEqual([]);
    expect(c.committed?.n).toBe(4);
    expect(await imageHash(c)).toBe(await sourceHashAt(b, 4));
  });
});

describe('a replica that does not hold the point it acknowledged', () => {
  /** A primary and two replica volumes of it, each behind its own server; B gets points 1-3, C only point 1. */
  async function sites() {
    const { dir, open, serve } = await siteDir('hs-resync-');
    const a = await open('a', 'primary');
    const b = await open('b', 'replica');
    const c = await open('c', 'replica');
    const sb = await serve(b, 'b');
    const sc = await serve(c, 'c');
    const events: string[] = [];
    const link = async (sink: string, url: string): Promise<SourceLink> => {
      const l = await startSource({ volume: a, sink, url, secret: SECRET, onEvent: (e) => void (e.type === 'resync' && events.push(e.message)) });
      cleanups.push(() => l.stop());
      return l;
    };
    const bs = a.blockSize;
    const ab = await link('b', sb.url);
    const ac = await link('c', sc.url);
    await a.write(0, randomBlock(bs * 8, 11));
    const p1 = await a.closeSnapshot();
    await ab.waitAcked(p1.n, 20_000);
    await ac.waitAcked(p1.n, 20_000);
    await ac.stop();
    for (let i = 2; i <= 3; i++) {
      await a.write(bs * 16 * i, randomBlock(bs * 4, 11 + i));
      await ab.waitAcked((await a.closeSnapshot()).n, 20_000);
    }
    await ab.stop();
    expect(a.sink('b').acked).toBe(3);
    return { dir, a, b, c, sb, sc, open, serve, link, events, bs };
  }

  it('is copied afresh when it holds an older point than it acknowledged (restored from an older copy), not refused for good', async () => {
    const { a, c, sc, link, events, bs } = await sites();
    // Sink b's address now reaches a copy that holds point 1 only (C's volume: as if B had been restored from it).
    const l = await link('b', sc.url);
    await a.write(bs * 300, randomBlock(bs * 2, 21));
    const p4 = await a.closeSnapshot();
    await l.waitAcked(p4.n, 20_000);
    // From the latest point when the session began: 3, or 4 if it closed first.
    expect(events).toEqual([expect.stringMatching(/^replica holds point 1, older than point 3 it acknowledged: resynchronising it from point [34]$/)]);
    expect(c.committed?.n).toBe(p4.n);
    expect(await imageHash(c)).toBe(await sourceHashAt(a, p4.n));
  });

  it('is copied afresh when its volume was created anew (a new disk)', async () => {
    const { dir, a, b, sb, open, serve, link, events, bs } = await sites();
    await sb.close();
    await b.shutdown();
    await rm(join(dir, 'b'), { recursive: true, force: true });
    await rm(join(dir, 'b-staging'), { recursive: true, force: true });
    const fresh = await open('b', 'replica');
    const server = await serve(fresh, 'b');
    const l = await link('b', server.url);
    await a.write(bs * 400, randomBlock(bs * 2, 31));
    const p4 = await a.closeSnapshot();
    await l.waitAcked(p4.n, 20_000);
    expect(events).toEqual([expect.stringMatching(/^replica holds no point, but acknowledged point 3: resynchronising it from point [34]$/)]);
    expect(await imageHash(fresh)).toBe(await sourceHashAt(a, p4.n));
  });

  it('is never overwritten by a primary made anew at the same epoch (its data lost): the replica may hold the only copy', async () => {
    const { dir, a, b, sb, open, bs } = await sites();
    const held = await imageHash(b);
    await a.shutdown();
    await rm(join(dir, 'a'), { recursive: true, force: true });
    const anew = await open('a', 'primary'); // epoch 1, as the lost one
    await anew.write(0, randomBlock(bs, 41));
    await anew.closeSnapshot();
    const errors: string[] = [];
    const l = await startSource({ volume: anew, sink: 'b', url: sb.url, secret: SECRET, onEvent: (e) => void (e.type === 'disconnected' && errors.push(`${e.code}: ${e.message}`)) });
    cleanups.push(() => l.stop());
    for (const end = Date.now() + 10_000; errors.length === 0 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
    expect(errors[0]).toMatch(/^REPL_DIVERGED: the replica holds point 3 .* at epoch 1, and this volume \(epoch 1\) was not promoted over it: nothing is sent/);
    expect(b.committed?.n).toBe(3);
    expect(await imageHash(b)).toBe(held);
  });
});
