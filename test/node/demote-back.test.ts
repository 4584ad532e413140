/**
 * A demote on the wrong site (the live primary, at 3 a.m.) is undone by promoting it back,
 * without --force: the demote closes a last point of what was written, so the image is
 * exactly that point, and the promotion goes on from it with the data intact. Before, the
 * promotion back refused with SNAPSHOT_UNKNOWN ("it would hold no data of its primary"),
 * and with --force it restarted its numbering at point 0, dated when the volume was made.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isHeadstartError } from '@headstart/errors';
import { silentLogger, startNode, validateConfig, type HeadstartNode } from '@headstart/node';
import { freePort } from '../helpers/cli';

const SECRET = 'demote-back-secret';
const MiB = 1 << 20;
const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('a primary demoted by mistake', () => {
  it('is promoted back at the point its demotion closed, data intact, and its replica follows it again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-demote-back-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const [aPeers, bPeers] = [await freePort(), await freePort()];
    const b: HeadstartNode = await startNode(validateConfig({ node: { name: 'site-b', dataDir: join(dir, 'b'), secret: SECRET }, listen: { peers: `127.0.0.1:${bPeers}` }, peers: [{ name: 'site-a', url: `ws://127.0.0.1:${aPeers}` }], volumes: [{ name: 'vol', size: 8 * MiB, role: 'replica', schedule: { every: '1h' }, sinks: ['site-a'] }] }), silentLogger());
    cleanup.push(() => b.stop());
    const a: HeadstartNode = await startNode(validateConfig({ node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET }, listen: { peers: `127.0.0.1:${aPeers}` }, peers: [{ name: 'site-b', url: `ws://127.0.0.1:${bPeers}` }], volumes: [{ name: 'vol', size: 8 * MiB, role: 'primary', schedule: { every: '1h' }, sinks: ['site-b'] }] }), silentLogger());
    cleanup.push(() => a.stop());
    const v = a.volume('vol');
    await v.write(0, randomBytes(2 * MiB));
    const p = await a.snapshotNow('vol');
    await a.waitAcked('vol', p.n, 30_000);
    await v.write(4 * MiB, randomBytes(MiB)); // written after the last point
    const before = await v.read(0, 8 * MiB);

    const demoted = await a.demote('vol');
    expect(demoted.point).toBe(p.n + 1); // a last point of what was written
    expect(v.readOnly).toBe(true);
    expect(v.committed).toBeNull(); // it holds no other primary's point
    expect(v.demotedPoint?.n).toBe(p.n + 1);
    const closedAt = v.demotedPoint!.scheduledAt;

    const back = await a.promote('vol'); // no --force: its image is its own point
    expect(back).toMatchObject({ epoch: 2, point: p.n + 1 });
    expect(v.latestClosed).toMatchObject({ n: p.n + 1, scheduledAt: closedAt });
    expect((await v.read(0, 8 * MiB)).equals(before)).toBe(true);
    expect(v.demotedPoint).toBeNull();

    // site-b (still a replica, at point p) follows the promoted volume again.
    await v.write(6 * MiB, randomBytes(MiB));
    const next = await a.snapshotNow('vol');
    await a.waitAcked('vol', next.n, 30_000);
    expect((await b.volume('vol').read(0, 8 * MiB)).equals(await v.read(0, 8 * MiB))).toBe(true);
  }, 60_000);

  it('once it has begun to take another primary\'s point, it is no longer its own: promoting it needs what it committed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-demote-back-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const a = await startNode(validateConfig({ node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET }, listen: { peers: '127.0.0.1:0' }, peers: [], volumes: [{ name: 'vol', size: 8 * MiB, role: 'primary', schedule: { every: '1h' }, sinks: [] }] }), silentLogger());
    cleanup.push(() => a.stop());
    const v = a.volume('vol');
    await v.write(0, Buffer.alloc(MiB, 7));
    await a.demote('vol');
    expect(v.demotedPoint).not.toBeNull();
    // A commit of another primary's point begins writing the image: the mark goes first.
    await v.beginApply(v.demotedPoint!.n + 1);
    v.applyFailed(); // and stops half-way (a full disk, say)
    expect(v.demotedPoint).toBeNull();
    const err = await a.promote('vol').then(() => null, (e: unknown) => e);
    expect(isHeadstartError(err) && err.code).toBe('SNAPSHOT_UNKNOWN');
  }, 60_000);
});
