/**
 * A sink added to a volume whose latest point is no longer readable (a volume without sinks
 * keeps none) takes its first copy from a point the volume closes itself, outside the
 * node's schedule. The planner must plan the point open after it, at once: told of no
 * close, it used to stay on the closed point, sending nothing of the open one.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger, startNode, validateConfig, type HeadstartNode } from '@headstart/node';

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('a sink added at restart', () => {
  it("leaves the planner on the volume's open point", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-planner-sync-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const config = (sinks: string[]) =>
      validateConfig({
        node: { name: 'site-a', dataDir: join(dir, 'a'), secret: 'planner-sync-secret' },
        peers: [{ name: 'site-b', url: 'ws://127.0.0.1:1' }], // never answers: the sink stays in its first copy
        volumes: [{ name: 'vol', size: 4 << 20, role: 'primary', schedule: { every: '1h' }, sinks }],
      });
    const alone: HeadstartNode = await startNode(config([]), silentLogger());
    await alone.volume('vol').write(0, Buffer.alloc(8192, 7));
    await alone.snapshotNow('vol');
    // Written over, and kept by no sink: that point is not readable any more.
    await alone.volume('vol').write(0, Buffer.alloc(8192, 8));
    await alone.stop();

    const a: HeadstartNode = await startNode(config(['site-b']), silentLogger());
    cleanup.push(() => a.stop());
    const v = a.volume('vol');
    expect(v.sinks().map((s) => s.name)).toEqual(['site-b']);
    expect(v.latestClosed?.n).toBe(2); // closed by the sink's first copy, not by the schedule
    expect(a.status().volumes[0].planner?.open).toBe(v.openSnapshot);
  }, 60_000);
});
