import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createVolume } from '@headstart/volume';
import { afterEach, describe, expect, it } from 'vitest';
import { atSnapshotPolicy } from './policy';
import { startReplicaServer } from './replica-server';
import { startSource, type SourceLink } from './source';
import { SECRET, imageHash, randomBlock, sourceHashAt } from './testing.test-helpers';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hs-repl-tls-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('wss', () => {
  it('replicates over TLS with the replica certificate, and refuses an unknown certificate', async () => {
    const dir = await tempDir();
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1']);
    const size = 1024 * 1024;
    const replica = await createVolume(join(dir, 'rep'), { size, id: 'v', role: 'replica' });
    const source = await createVolume(join(dir, 'src'), { size, id: 'v' });
    const server = await startReplicaServer({ secret: SECRET, volumes: [{ volume: replica, stagingDir: join(dir, 'st') }], tls: { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') } });
    cleanups.push(async () => {
      await server.close();
      await source.shutdown();
      await replica.shutdown();
    });
    expect(server.url.startsWith('wss://')).toBe(true);
    // without the CA the source refuses the replica's certificate
    const events: { type: string; code?: string; message?: string }[] = [];
    const untrusting = await startSource({ volume: source, sink: 'r', url: server.url, secret: SECRET, onEvent: (e) => events.push(e) });
    await new Promise((r) => setTimeout(r, 500));
    await untrusting.stop();
    expect(events.some((e) => e.type === 'disconnected' && /certificate/i.test(e.message ?? ''))).toBe(true);
    expect(replica.committed).toBeNull();
    const link = await startSource({ volume: source, sink: 'r', url: server.url, secret: SECRET, ca: await readFile(join(dir, 'cert.pem')) });
    cleanups.push(() => link.stop());
    await source.write(0, randomBlock(8192, 1));
    const p = await source.closeSnapshot();
    await link.waitAcked(p.n, 20_000);
    expect(await imageHash(replica)).toBe(await sourceHashAt(source, p.n));
  });
});

describe('fan-out', () => {
  it('ships to two sinks each at its own pace; the volume keeps what the slowest still needs', async () => {
    const dir = await tempDir();
    const size = 2 * 1024 * 1024;
    const source = await createVolume(join(dir, 'src'), { size, id: 'v' });
    const reps = await Promise.all([1, 2].map((i) => createVolume(join(dir, `rep${i}`), { size, id: 'v', role: 'replica' })));
    const servers = await Promise.all(reps.map((volume, i) => startReplicaServer({ secret: SECRET, volumes: [{ volume, stagingDir: join(dir, `st${i}`) }] })));
    const links: SourceLink[] = [];
    cleanups.push(async () => {
      for (const l of links) await l.stop();
      for (const s of servers) await s.close();
      await source.shutdown();
      for (const r of reps) await r.shutdown();
    });
    links.push(await startSource({ volume: source, sink: 'fast', url: servers[0].url, secret: SECRET }));
    links.push(await startSource({ volume: source, sink: 'slow', url: servers[1].url, secret: SECRET, policy: atSnapshotPolicy(), rateLimit: 128 * 1024 }));
    const bs = source.blockSize;
    const points: number[] = [];
    for (let k = 0; k < 3; k++) {
      for (let i = 0; i < 200; i++) await source.write(((k * 150 + i) % 512) * bs, randomBlock(bs, k * 1000 + i));
      points.push((await source.closeSnapshot()).n);
    }
    const last = points.at(-1)!;
    await links[0].waitAcked(last, 20_000);
    const fastHash = await sourceHashAt(source, last);
    expect(await imageHash(reps[0])).toBe(fastHash);
    // the slow sink has not got there yet, so every point it still needs is kept
    const slowAcked = source.sink('slow').acked;
    expect(slowAcked === null || slowAcked < last).toBe(true);
    expect(source.floor).toBe(slowAcked ?? source.sink('slow').baseline - 1);
    for (const n of points) if (slowAcked === null || n > slowAcked) expect(source.isReadable(n)).toBe(true);
    links[1].setRateLimit(null);
    await links[1].waitAcked(last, 20_000);
    expect(await imageHash(reps[1])).toBe(fastHash);
  });
});
