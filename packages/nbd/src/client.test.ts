/** The small client against our server (real Volume) and against nbdkit (a real server). */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isHeadstartError, type HeadstartError } from '@headstart/errors';
import { createVolume, type Volume } from '@headstart/volume';
import { connectNbd } from './client';
import { startNbdServer } from './server';
import type { NbdServer } from './types';

const MiB = 1024 * 1024;

/** A port nobody listens on: bound by the kernel's choice, then released. */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  return port;
}

describe('connectNbd', () => {
  let dir: string;
  let volume: Volume;
  let server: NbdServer;
  let nbdkit: ChildProcess;
  let kitPort: number;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'headstart-nbd-client-'));
    volume = await createVolume(join(dir, 'v'), { size: 8 * MiB });
    server = await startNbdServer({ exports: { vol: volume } });
    server.addExport('ro', volume, { readOnly: true });
    kitPort = await freePort();
    nbdkit = spawn('nbdkit', ['-f', '--exit-with-parent', '-i', '127.0.0.1', '-p', String(kitPort), 'memory', '4M'], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      try {
        await (await connectNbd({ port: kitPort })).close();
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });
  afterAll(async () => {
    nbdkit?.kill();
    await server?.stop();
    await volume?.shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes, reads, zeroes, trims and flushes through our server, pipelined', async () => {
    const c = await connectNbd({ port: server.port, exportName: 'vol' });
    expect(c.size).toBe(8 * MiB);
    expect(c.readOnly).toBe(false);
    const writes = Array.from({ length: 64 }, (_, i) => c.write(i * 4096, Buffer.alloc(4096, i + 1), { fua: i === 63 }));
    await Promise.all(writes);
    const reads = await Promise.all(Array.from({ length: 64 }, (_, i) => c.read(i * 4096, 4096)));
    expect(reads.every((b, i) => b.every((x) => x === i + 1))).toBe(true);
    await c.writeZeroes(0, 8192);
    await c.trim(8192, 4096);
    await c.flush();
    expect((await c.read(0, 3 * 4096)).every((x) => x === 0)).toBe(true);
    expect((await volume.read(3 * 4096, 1))[0]).toBe(4);
    // Zero-length requests are refused (EINVAL, as nbdkit does) and the connection goes on.
    const empty = await c.read(0, 0).catch((e: unknown) => e);
    expect(isHeadstartError(empty, 'NBD_CLIENT_REQUEST_FAILED') && empty.details?.errno).toBe(22);
    const emptyWrite = await c.write(4096, Buffer.alloc(0)).catch((e: unknown) => e);
    expect(isHeadstartError(emptyWrite, 'NBD_CLIENT_REQUEST_FAILED') && emptyWrite.details?.errno).toBe(22);
    expect((await c.read(3 * 4096, 4)).equals(Buffer.alloc(4, 4))).toBe(true);
    await c.close();
  });

  it('reports server errors with the errno and keeps the connection', async () => {
    const c = await connectNbd({ port: server.port, exportName: 'ro' });
    expect(c.readOnly).toBe(true);
    const err = await c.write(0, Buffer.alloc(512)).catch((e: unknown) => e);
    expect(isHeadstartError(err, 'NBD_CLIENT_REQUEST_FAILED') && err.details?.errno).toBe(1);
    const range = await c.read(8 * MiB, 512).catch((e: unknown) => e);
    expect(isHeadstartError(range, 'NBD_CLIENT_REQUEST_FAILED') && range.details?.errno).toBe(22);
    expect((await c.read(0, 4)).length).toBe(4);
    await c.close();
  });

  it('a refused connection rejects with NBD_CLIENT_PROTOCOL naming host:port and the cause', async () => {
    const port = await freePort();
    const err = await connectNbd({ host: '127.0.0.1', port, exportName: 'vol' }).catch((e: unknown) => e);
    expect(isHeadstartError(err, 'NBD_CLIENT_PROTOCOL')).toBe(true);
    expect((err as Error).message).toBe(`cannot connect to the NBD server at 127.0.0.1:${port}: connect ECONNREFUSED`);
    expect((err as HeadstartError).details).toMatchObject({ host: '127.0.0.1', port, errno: 'ECONNREFUSED' });
  });

  it('a server that hangs up during the handshake rejects with NBD_CLIENT_PROTOCOL naming host:port', async () => {
    // Sends the greeting, then closes as soon as the client answers: not an NBD server we can use.
    const rude = createServer((s) => {
      s.write(Buffer.concat([Buffer.from('4e42444d41474943', 'hex'), Buffer.from('49484156454f5054', 'hex'), Buffer.from([0, 3])]));
      s.once('data', () => s.destroy());
    });
    await new Promise<void>((r) => rude.listen(0, '127.0.0.1', () => r()));
    const port = (rude.address() as { port: number }).port;
    try {
      const err = await connectNbd({ port, exportName: 'vol' }).catch((e: unknown) => e);
      expect(isHeadstartError(err, 'NBD_CLIENT_PROTOCOL')).toBe(true);
      expect((err as Error).message).toMatch(new RegExp(`^cannot connect to the NBD server at 127\\.0\\.0\\.1:${port}: (connection closed during the handshake|read ECONNRESET)$`));
    } finally {
      await new Promise<void>((r) => rude.close(() => r()));
    }
  });

  it('refuses an unknown export with NBD_EXPORT_UNKNOWN', async () => {
    const err = await connectNbd({ port: server.port, exportName: 'nope' }).catch((e: unknown) => e);
    expect(isHeadstartError(err, 'NBD_EXPORT_UNKNOWN')).toBe(true);
  });

  it('talks to nbdkit too (a server we did not write)', async () => {
    const c = await connectNbd({ port: kitPort });
    expect(c.size).toBe(4 * MiB);
    const data = Buffer.from(Array.from({ length: 1 * MiB }, (_, i) => (i * 7) & 0xff));
    await c.write(123, data);
    expect((await c.read(123, data.length)).equals(data)).toBe(true);
    await c.flush();
    await c.close();
  });
});
