/**
 * A peer taken out of a volume's `sinks` used to keep its sink record on the volume for good:
 * the volume kept every point since its last acknowledgement for a replica that would never
 * acknowledge again, until its disk filled. So did the hold of an export that the node
 * stopped in the middle of. Both are removed when the volume starts as primary.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger, startNode, validateConfig } from '@headstart/node';
import { freePort } from '../helpers/cli';

const MiB = 1 << 20;
const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('sinks no longer configured', () => {
  it('are removed at start, with the points kept for them; configured ones stay', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-stale-sinks-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    // Two peers that never answer: nothing is acknowledged, every point is kept for them.
    const peers = [
      { name: 'site-b', url: `ws://127.0.0.1:${await freePort()}` },
      { name: 'site-c', url: `ws://127.0.0.1:${await freePort()}` },
    ];
    const start = (sinks: string[]) =>
      startNode(validateConfig({
        node: { name: 'site-a', dataDir: join(dir, 'a'), secret: 'stale-sinks-secret' },
        listen: { peers: '127.0.0.1:0' },
        peers,
        volumes: [{ name: 'vol', size: 4 * MiB, schedule: { every: '1h' }, sinks }],
      }), silentLogger());
    const a = await start(['site-b', 'site-c']);
    for (let i = 0; i < 3; i++) {
      await a.volume('vol').write(i * 65536, Buffer.alloc(65536, 0x40 + i));
      await a.snapshotNow('vol');
    }
    await a.volume('vol').addSink('export-4242-1'); // an export's hold, its node stopped mid-copy
    const kept = a.volume('vol').snapshots().length;
    expect(kept).toBeGreaterThanOrEqual(3);
    await a.stop();

    const again = await start(['site-c']);
    cleanup.push(() => again.stop());
    const v = again.volume('vol');
    expect(v.sinks().map((s) => s.name)).toEqual(['site-c']);
    expect(v.snapshots().length).toBe(kept); // site-c still needs them all
    await again.stop();

    const none = await start([]);
    cleanup.push(() => none.stop());
    expect(none.volume('vol').sinks()).toEqual([]);
    // Nothing needs the old points: only the latest stays (the base of a future sink).
    expect(none.volume('vol').snapshots().length).toBeLessThan(kept);
  }, 60_000);
});
