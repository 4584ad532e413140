/**
 * End to end: source and replica as separate processes on loopback (runner scripts), with
 * kill -9 at the dangerous moments. After every restart the invariant must hold: each
 * point the replica reports committed has exactly the source's content of that point
 * (sha256 over readBlocksAt(n) on the source vs the replica's whole image).
 */
import { execFile } from 'node:child_process';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkInvariant, Proc, type Ev } from './procs';

const SECRET = 'e2e-pairing-secret';
const SIZE = 4 * 1024 * 1024;
const ID = 'e2e-volume';
const run = promisify(execFile);
/** Generous: these tests start processes on a machine CI shares; a real failure is a wrong hash, not a slow step. */
const TEST_TIMEOUT_MS = 180_000;

let dir: string;
const procs: Proc[] = [];
const spawnProc = (script: 'replica-runner.ts' | 'source-runner.ts', config: Record<string, unknown>) => {
  const p = new Proc(script, { size: SIZE, id: ID, secret: SECRET, ...config });
  procs.push(p);
  return p;
};

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hs-e2e-repl-'));
});
afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop();
  await rm(dir, { recursive: true, force: true });
});

const committedN = (e: Ev) => (e.event === 'committed' ? (e.n as number) : -1);
const all = (ps: Proc[]) => ps.flatMap((p) => p.events);

describe('replication between processes', () => {
  it('the replica equals each committed point while qemu-io writes through NBD and snapshots close every ~0.8 s', async () => {
    const replica = spawnProc('replica-runner.ts', { dir: join(dir, 'rep') });
    const { url } = await replica.waitFor((e) => e.event === 'listening', 60_000, 'replica listening');
    const source = spawnProc('source-runner.ts', { dir: join(dir, 'src'), url, intervalMs: 800, nbd: true });
    const { port } = await source.waitFor((e) => e.event === 'nbd', 60_000, 'nbd export');
    const until = Date.now() + 4_000;
    let i = 0;
    while (Date.now() < until) {
      const off = ((i * 7919) % 1000) * 4096;
      const len = 4096 * (1 + (i % 16));
      await run('qemu-io', ['-f', 'raw', '-c', `write -P ${(i % 250) + 1} ${off} ${Math.min(len, SIZE - off)}`, `nbd://127.0.0.1:${port}`]);
      i++;
    }
    const lastClosed = Math.max(...source.events.filter((e) => e.event === 'closed').map((e) => e.n as number));
    await replica.waitFor((e) => committedN(e) >= lastClosed, 60_000, `commit of ${lastClosed}`);
    const { checked, mismatches } = checkInvariant(source.events, replica.events);
    expect(mismatches).toEqual([]);
    expect(checked).toBeGreaterThanOrEqual(3);
    // the writes really moved: the committed content changed across points
    const hashes = new Set(replica.events.filter((e) => e.event === 'committed').map((e) => e.hash));
    expect(hashes.size).toBeGreaterThanOrEqual(3);
  }, TEST_TIMEOUT_MS);

  it('kill -9 of the replica mid-commit (after the journal, after applying) and mid-staging: restarts keep the invariant', async () => {
    const reps: Proc[] = [];
    const rep = (extra: Record<string, unknown>) => {
      const p = spawnProc('replica-runner.ts', { dir: join(dir, 'rep'), ...extra });
      reps.push(p);
      return p;
    };
    let r = rep({ pausePhase: 'journaled', pauseMs: 60_000, pauseFrom: 2 });
    const { url, port } = await r.waitFor((e) => e.event === 'listening', 60_000, 'replica listening');
    const source = spawnProc('source-runner.ts', { dir: join(dir, 'src'), url, intervalMs: 600, writeBlocks: 16, writeEveryMs: 40 });
    // 1. journal written, nothing applied yet
    const j = await r.waitFor((e) => e.event === 'phase' && e.phase === 'journaled' && (e.n as number) >= 2, 60_000, 'journaled');
    await r.kill9();
    // 2. blocks applied to the image, point not yet recorded: the image is ahead of the record
    r = rep({ port, pausePhase: 'applied', pauseMs: 60_000, pauseFrom: (j.n as number) + 1 });
    const l1 = await r.waitFor((e) => e.event === 'listening', 60_000, 'replica restart 1');
    expect(l1.committed).toBe(j.n); // the redo journal finished the interrupted commit
    const a = await r.waitFor((e) => e.event === 'phase' && e.phase === 'applied' && (e.n as number) > (j.n as number), 60_000, 'applied');
    await r.kill9();
    r = rep({ port });
    const l2 = await r.waitFor((e) => e.event === 'listening', 60_000, 'replica restart 2');
    expect(l2.committed).toBe(a.n);
    // 3. mid-staging: let it commit once more, then kill while the next point stages
    const c = await r.waitFor((e) => committedN(e) > (a.n as number), 60_000, 'commit after restart 2');
    await new Promise((res) => setTimeout(res, 250));
    await r.kill9();
    r = rep({ port });
    await r.waitFor((e) => e.event === 'listening', 60_000, 'replica restart 3');
    await r.waitFor((e) => committedN(e) >= (c.n as number) + 2, 60_000, 'replication goes on');
    const { checked, mismatches } = checkInvariant(source.events, all(reps));
    expect(mismatches).toEqual([]);
    expect(checked).toBeGreaterThanOrEqual(4);
  }, TEST_TIMEOUT_MS);

  it('kill -9 of the source mid-ship: after a restart replication goes on and the invariant holds', async () => {
    const replica = spawnProc('replica-runner.ts', { dir: join(dir, 'rep') });
    const { url } = await replica.waitFor((e) => e.event === 'listening', 60_000, 'replica listening');
    // a slow link and many writes: points queue up behind the link
    let source = spawnProc('source-runner.ts', { dir: join(dir, 'src'), url, intervalMs: 500, writeBlocks: 64, writeEveryMs: 30, rateLimit: 512 * 1024, policy: 'at-snapshot' });
    await replica.waitFor((e) => committedN(e) >= 1, 60_000, 'first delta committed');
    await source.waitFor((e) => e.event === 'closed' && (e.n as number) >= 5, 60_000, 'points closed');
    const sourceEvents = [...source.events];
    await source.kill9();
    const closedBefore = Math.max(...sourceEvents.filter((e) => e.event === 'closed').map((e) => e.n as number));
    source = spawnProc('source-runner.ts', { dir: join(dir, 'src'), url, intervalMs: 500, writeBlocks: 8, writeEveryMs: 50 });
    await replica.waitFor((e) => committedN(e) >= closedBefore + 1, 60_000, `commit past ${closedBefore}`);
    const { checked, mismatches } = checkInvariant([...sourceEvents, ...source.events], replica.events);
    expect(mismatches).toEqual([]);
    expect(checked).toBeGreaterThanOrEqual(3);
  }, TEST_TIMEOUT_MS);

  it('network drops mid-transfer (a TCP proxy cuts every connection repeatedly): replication goes on, the invariant holds', async () => {
    const replica = spawnProc('replica-runner.ts', { dir: join(dir, 'rep') });
    const { port } = await replica.waitFor((e) => e.event === 'listening', 60_000, 'replica listening');
    // a proxy between the processes that the test can cut
    const live = new Set<Socket>();
    let forwarded = 0;
    const proxy: Server = createServer((client) => {
      const upstream = connect(port as number, '127.0.0.1');
      live.add(client);
      live.add(upstream);
      client.on('data', (d) => (forwarded += d.length));
      client.pipe(upstream);
      upstream.pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        live.delete(client);
        live.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    const proxyPort = (proxy.address() as { port: number }).port;
    try {
      const source = spawnProc('source-runner.ts', { dir: join(dir, 'src'), url: `ws://127.0.0.1:${proxyPort}`, intervalMs: 500, writeBlocks: 48, writeEveryMs: 30, rateLimit: 2 * 1024 * 1024 });
      await replica.waitFor((e) => committedN(e) >= 1, 60_000, 'first commit');
      for (let cut = 0; cut < 4; cut++) {
        const before = forwarded;
        const deadline = Date.now() + 5_000;
        while (forwarded - before < 200_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20)); // mid-transfer
        for (const s of live) s.destroy();
      }
      const disconnects = source.events.filter((e) => e.event === 'source' && e.type === 'disconnected').length;
      expect(disconnects).toBeGreaterThanOrEqual(3);
      const lastClosed = Math.max(...source.events.filter((e) => e.event === 'closed').map((e) => e.n as number));
      await replica.waitFor((e) => committedN(e) >= lastClosed, 60_000, `commit of ${lastClosed}`);
      const { checked, mismatches } = checkInvariant(source.events, replica.events);
      expect(mismatches).toEqual([]);
      expect(checked).toBeGreaterThanOrEqual(3);
    } finally {
      for (const s of live) s.destroy();
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  }, TEST_TIMEOUT_MS);
});
