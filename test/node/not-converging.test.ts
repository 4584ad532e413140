/**
 * A primary whose writes outrun its link's rate cap: the node must say "not converging"
 * (status, metrics, log) instead of staying silent while the replica falls further behind,
 * and say it no more once the writers stop and the sink catches up.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startNode, validateConfig, type HeadstartNode } from '@headstart/node';
import { formatStatus } from '../../apps/cli/src/format';

const SECRET = 'not-converging-test-secret';
const INTERVAL_MS = 1000; // the shortest interval a configuration accepts
const LINK = 64 * 1024; // bytes/s
const BS = 4096;

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('a sink that cannot keep up', () => {
  it('is flagged not converging while writes outrun the link, and the flag clears once it catches up', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-converge-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const lines: { msg?: string; sink?: string }[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write(chunk, _enc, done) { lines.push(JSON.parse(String(chunk))); done(); } }));
    const replica: HeadstartNode = await startNode(validateConfig({
      node: { name: 'site-b', dataDir: join(dir, 'b'), secret: SECRET },
      listen: { peers: '127.0.0.1:0' },
      volumes: [{ name: 'vol', size: 16 << 20, role: 'replica', sinks: [] }],
    }), logger.child({ node: 'b' }));
    cleanup.push(() => replica.stop());
    const primary: HeadstartNode = await startNode(validateConfig({
      node: { name: 'site-a', dataDir: join(dir, 'a'), secret: SECRET },
      peers: [{ name: 'site-b', url: `ws://127.0.0.1:${replica.peersPort}`, rateLimit: LINK }],
      volumes: [{ name: 'vol', size: 16 << 20, role: 'primary', schedule: { every: `${INTERVAL_MS}ms` }, policy: { name: 'at-snapshot' }, sinks: ['site-b'] }],
    }), logger.child({ node: 'a' }));
    cleanup.push(() => primary.stop());
    const sink = () => primary.status().volumes[0].sinks.find((s) => s.name === 'site-b')!;
    await until('the first point acknowledged', () => sink().acked !== null, 20_000);
    expect(sink().notConverging).toBe(false);
    // Of a scheduled point's lag, the replica's commit (CLOSE to ACK), in status as in its text.
    await until('a scheduled point acknowledged', () => sink().lastLagMs !== null, 20_000);
    const first = sink();
    expect(first.lastCommitMs).not.toBeNull();
    expect(first.lastCommitMs!).toBeLessThanOrEqual(first.lastLagMs!);
    expect(formatStatus(primary.status())).toMatch(/sink site-b: link connected, .*, lag \d+\.\d s \(its commit \d+\.\d s\), RPO age/);

    // Twice what the link carries: 128 KiB of fresh blocks per 1 s interval, at 64 KiB/s.
    const volume = primary.volume('vol');
    let writing = true;
    let block = 0;
    const writer = (async () => {
      while (writing) {
        for (let i = 0; i < (2 * LINK * INTERVAL_MS) / 1000 / BS; i++) await volume.write((block++ % 4096) * BS, Buffer.alloc(BS, (block % 251) + 1));
        await new Promise((r) => setTimeout(r, INTERVAL_MS));
      }
    })();
    try {
      await until('not converging', () => sink().notConverging, 30_000);
    } finally {
      writing = false;
      await writer;
    }
    expect(lines.some((l) => l.msg?.startsWith('not converging') && l.sink === 'site-b')).toBe(true);
    expect(sink().state).toBe('connected'); // the link is fine: it is the load that is too much

    await until('converging again', () => !sink().notConverging, 30_000);
    expect(lines.some((l) => l.msg?.startsWith('converging again') && l.sink === 'site-b')).toBe(true);

    // The replica goes away: its backlog grows with every close, but because the link is
    // down (its state says so), not because writes outrun it.
    await replica.stop();
    await until('the link down', () => sink().state !== 'connected', 20_000);
    const closed = primary.status().volumes[0].latestClosed!;
    await until('ten more closes', () => primary.status().volumes[0].latestClosed! >= closed + 10, 30_000);
    expect(sink().notConverging).toBe(false);
    expect(formatStatus(primary.status())).not.toContain('NOT CONVERGING');
  }, 120_000);
});
