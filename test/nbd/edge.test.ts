/**
 * Edge cases driven by libnbd (Python binding, as nbdsh uses it) and by raw sockets:
 * FUA, zero, trim, flush, out-of-range, read-only, simple vs structured replies, many
 * clients, clients that die mid-request, garbage, removal of an export in use, and the
 * recorder hook.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlockDevice } from '@headstart/volume';
import { PY_ERRNO, byteReader, nbdPython, option, requestHeader, run, spawnClient, startRig, type Rig } from './helpers';

const MiB = 1024 * 1024;

/** Python prelude: connect with client-side checks off so the server's answers are tested. */
function py(uri: string, body: string, structured = true): string {
  return `
h = nbd.NBD()
h.set_strict_mode(0)
h.set_request_structured_replies(${structured ? 'True' : 'False'})
h.connect_uri(${JSON.stringify(uri)})
${PY_ERRNO}
out = {}
${body}
h.shutdown()
print(json.dumps(out))
`;
}

describe('NBD edge cases (libnbd and raw sockets)', () => {
  let rig: Rig;
  const recorded: [string, number, number][] = [];
  beforeAll(async () => {
    rig = await startRig(16 * MiB);
    const ro = await rig.newVolume('ro', 4 * MiB);
    await ro.write(0, Buffer.alloc(4096, 0x42));
    rig.server.addExport('ro', ro, { readOnly: true });
    const rec = await rig.newVolume('rec', 4 * MiB);
    rig.server.addExport('rec', rec, { recorder: { record: (op, offset, length) => void recorded.push([op, offset, length]) } });
  });
  afterAll(async () => {
    await rig?.close();
  });

  for (const structured of [true, false]) {
    it(`FUA write, zero, trim, flush and reads round-trip (${structured ? 'structured' : 'simple'} replies)`, async () => {
      const out = await nbdPython(
        py(
          rig.uri(),
          `
out['structured'] = h.get_structured_replies_negotiated()
out['flags'] = [h.can_fua(), h.can_flush(), h.can_trim(), h.can_zero(), h.can_multi_conn(), h.is_read_only()]
h.pwrite(b'\\x11' * 65536, 1048576, nbd.CMD_FLAG_FUA)
out['fua'] = h.pread(65536, 1048576) == b'\\x11' * 65536
h.pwrite(b'\\x22' * 8192, 2097152)
h.zero(4096, 2097152 + 1024, nbd.CMD_FLAG_NO_HOLE)
d = h.pread(8192, 2097152)
out['zero'] = d[:1024] == b'\\x22' * 1024 and d[1024:5120] == bytes(4096) and d[5120:] == b'\\x22' * 3072
h.pwrite(b'\\x33' * 8192, 3145728)
h.trim(8192, 3145728)
out['trim'] = h.pread(8192, 3145728) == bytes(8192)
h.flush()
out['unaligned'] = (h.pwrite(b'abc', 4095), h.pread(5, 4094))[1] == b'\\x00abc\\x00'
`,
          structured,
        ),
      );
      expect(out).toEqual({ structured, flags: [true, true, true, true, true, false], fua: true, zero: true, trim: true, unaligned: true });
      expect((await rig.volume.read(1048576, 4)).toString('hex')).toBe('11111111');
    });

    it(`out-of-range requests get EINVAL (a write or write-zeroes ENOSPC, as the spec says) and the connection lives on (${structured ? 'structured' : 'simple'})`, async () => {
      const out = await nbdPython(
        py(
          rig.uri(),
          `
size = h.get_size()
out['read'] = err(lambda: h.pread(4096, size - 2048))
out['write'] = err(lambda: h.pwrite(b'x' * 4096, size))
out['zero'] = err(lambda: h.zero(8192, size - 4096))
out['trim'] = err(lambda: h.trim(4096, size + 4096))
out['huge_offset'] = err(lambda: h.pread(512, 2**63))
out['still_ok'] = h.pread(4, 1048576) == b'\\x11' * 4
`,
          structured,
        ),
      );
      expect(out).toEqual({ read: 22, write: 28, zero: 28, trim: 22, huge_offset: 22, still_ok: true });
    });
  }

  it('a read-only export says so and refuses writes with EPERM, but serves reads', async () => {
    const out = await nbdPython(
      py(
        rig.uri('ro'),
        `
out['ro'] = h.is_read_only()
out['write'] = err(lambda: h.pwrite(b'x' * 512, 0))
out['zero'] = err(lambda: h.zero(512, 0))
out['trim'] = err(lambda: h.trim(512, 0))
out['read'] = h.pread(4096, 0) == b'\\x42' * 4096
out['flush'] = err(lambda: h.flush())
`,
      ),
    );
    expect(out).toEqual({ ro: true, write: 1, zero: 1, trim: 1, read: true, flush: 0 });
  });

  it('an unknown export is refused with a clear error, and LIST shows the real ones', async () => {
    const r = await run('nbdinfo', [rig.uri('nope')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/nope/);
    expect(r.stderr).toMatch(/No such file or directory/); // libnbd's word for NBD_REP_ERR_UNKNOWN
  });

  it('serves many clients at once, each seeing its own writes', async () => {
    const clients = Array.from({ length: 6 }, (_, i) =>
      nbdPython(
        py(
          rig.uri(),
          `
import random
base = ${8 * MiB + i * 65536}
pat = bytes([${i + 1}]) * 4096
for k in range(16):
    h.aio_pwrite(pat, base + k * 4096)
while h.aio_in_flight() > 0:
    h.poll(-1)
out['ok'] = h.pread(65536, base) == pat * 16
`,
        ),
      ),
    );
    const results = await Promise.all(clients);
    expect(results.every((r) => r.ok === true)).toBe(true);
    for (let i = 0; i < 6; i++) expect((await rig.volume.read(8 * MiB + i * 65536, 65536)).every((b) => b === i + 1)).toBe(true);
  });

  it('answers pipelined requests by handle, in any order (raw socket, 200 in flight)', async () => {
    const s = await attach(rig.server.port, 'vol');
    const replies = collectSimpleReplies(s);
    const reqs: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      reqs.push(requestHeader(1, BigInt(1000 + i), BigInt(12 * MiB + i * 4096), 4096), Buffer.alloc(4096, i & 0xff));
    }
    s.write(Buffer.concat(reqs));
    const got = await replies.next(200);
    expect(got.map((r) => r.handle).sort((a, b) => Number(a - b))).toEqual(Array.from({ length: 200 }, (_, i) => BigInt(1000 + i)));
    expect(got.every((r) => r.error === 0)).toBe(true);
    expect((await rig.volume.read(12 * MiB + 199 * 4096, 4096)).every((b) => b === 199)).toBe(true);
    // NBD_CMD_DISC right behind 50 writes: every write is still answered, then the close.
    const closed = new Promise((r) => s.once('close', r));
    const tail: Buffer[] = [];
    for (let i = 0; i < 50; i++) tail.push(requestHeader(1, BigInt(5000 + i), BigInt(13 * MiB + i * 4096), 4096), Buffer.alloc(4096, 0x61));
    s.write(Buffer.concat([...tail, requestHeader(2, 1n, 0n, 0)]));
    expect((await replies.next(50)).every((r) => r.error === 0)).toBe(true);
    await closed;
    expect((await rig.volume.read(13 * MiB + 49 * 4096, 4096)).every((b) => b === 0x61)).toBe(true);
  });

  it('an unknown command gets EINVAL; a bad request magic ends only that connection', async () => {
    const s = await attach(rig.server.port, 'vol');
    const replies = collectSimpleReplies(s);
    s.write(requestHeader(77, 5n, 0n, 0));
    expect((await replies.next(1))[0]).toEqual({ handle: 5n, error: 22 });
    const bad = requestHeader(0, 6n, 0n, 512);
    bad.writeUInt32BE(0xdeadbeef, 0);
    s.write(bad);
    await new Promise((r) => s.once('close', r));
    expect(rig.logger.lines.some((l) => String(l.fields.reason).startsWith('NBD_BAD_REQUEST'))).toBe(true);
    // the server still serves others
    const q = await run('qemu-io', ['-f', 'raw', rig.uri(), '-c', 'read -P 0x11 1M 4k']);
    expect(q.code).toBe(0);
  });

  it('an oversized WRITE closes only that connection, before its payload is read', async () => {
    const s = await attach(rig.server.port, 'vol');
    s.write(requestHeader(1, 9n, 0n, 64 * MiB)); // no payload follows
    await new Promise((r) => s.once('close', r));
    expect(rig.logger.lines.some((l) => String(l.fields.reason).startsWith('NBD_REQUEST_TOO_LARGE'))).toBe(true);
  });

  it('rejects a garbage handshake and logs why; other clients are unaffected', async () => {
    for (const garbage of [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.from([0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]), Buffer.from([0xff, 0xff, 0xff, 0xff])]) {
      const s = connect(rig.server.port, '127.0.0.1');
      s.on('error', () => {});
      s.resume(); // drain the greeting so the close is seen
      s.write(garbage);
      await new Promise((r) => s.once('close', r));
    }
    const reasons = rig.logger.lines.map((l) => String(l.fields.reason ?? ''));
    expect(reasons.some((r) => r.includes('NBD_BAD_HANDSHAKE'))).toBe(true);
    const q = await run('qemu-io', ['-f', 'raw', rig.uri(), '-c', 'write -P 0x3c 14M 4k', '-c', 'read -P 0x3c 14M 4k']);
    expect(q.code).toBe(0);
  });

  it('random garbage, before or after a good handshake, never changes the volume', async () => {
    const before = await rig.volume.read(0, 16 * MiB);
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    for (let i = 0; i < 20; i++) {
      const garbage = Buffer.from(Array.from({ length: 1 + ((i * 997) % 5000) }, rand));
      const s = i % 2 === 0 ? await attach(rig.server.port, 'vol') : connect(rig.server.port, '127.0.0.1');
      s.on('error', () => {});
      s.resume();
      const closed = new Promise((r) => s.once('close', r));
      s.write(garbage);
      await Promise.race([closed, new Promise((r) => setTimeout(r, 200))]);
      s.destroy();
    }
    expect((await rig.volume.read(0, 16 * MiB)).equals(before)).toBe(true);
    const q = await run('qemu-io', ['-f', 'raw', rig.uri(), '-c', 'read 0 64k']);
    expect(q.code).toBe(0);
  });

  it('a client killed mid-request does not hurt the volume or other clients', async () => {
    // A raw client sends a write header and half its payload, then vanishes.
    const s = await attach(rig.server.port, 'vol');
    s.write(Buffer.concat([requestHeader(1, 1n, 0n, 65536), Buffer.alloc(30000, 0xee)]));
    await new Promise((r) => setTimeout(r, 50));
    s.destroy();
    // A real client killed while copying (many writes, so it is still busy when killed
    // however fast the server is; if it did finish, waiting for its exit must not hang).
    const copy = Array.from({ length: 200 }, () => ['-c', 'write -P 0x99 4M 8M']).flat();
    const child = spawnClient('qemu-io', ['-f', 'raw', rig.uri(), ...copy]);
    const exited = new Promise((r) => child.once('exit', r));
    await new Promise((r) => setTimeout(r, 150));
    child.kill('SIGKILL');
    await exited;
    // Nothing of the half-sent write landed; the volume still serves a fresh client.
    expect((await rig.volume.read(0, 65536)).includes(0xee)).toBe(false);
    const q = await run('qemu-io', ['-f', 'raw', rig.uri(), '-c', 'write -P 0x5a 15M 64k', '-c', 'read -P 0x5a 15M 64k']);
    expect(q.code).toBe(0);
    expect(q.stdout).not.toMatch(/fail/i);
    expect(rig.logger.lines.some((l) => /middle of a request/.test(l.msg))).toBe(true);
  });

  it('NBD_OPT_ABORT and unknown options are answered per the spec', async () => {
    const s = connect(rig.server.port, '127.0.0.1');
    const reader = byteReader(s);
    await reader.take(18);
    s.write(Buffer.from([0, 0, 0, 3]));
    s.write(option(42)); // unknown
    const r1 = await reader.take(20);
    expect(r1.readUInt32BE(12)).toBe(0x80000001); // NBD_REP_ERR_UNSUP
    await reader.take(r1.readUInt32BE(16));
    s.write(option(3, Buffer.from('x'))); // LIST with data
    const r2 = await reader.take(20);
    expect(r2.readUInt32BE(12)).toBe(0x80000003); // NBD_REP_ERR_INVALID
    await reader.take(r2.readUInt32BE(16));
    s.write(option(2)); // ABORT
    const r3 = await reader.take(20);
    expect(r3.readUInt32BE(12)).toBe(1); // ACK
    await new Promise((r) => s.once('close', r));
  });

  it('records every accepted write, zero and trim of an export with a recorder', async () => {
    const q = await run('qemu-io', ['-f', 'raw', rig.uri('rec'), '-c', 'write -P 1 0 8k', '-c', 'write -z 64k 4k', '-c', 'discard 128k 4k', '-c', 'write -P 1 8M 4k']);
    expect(q.stdout).toMatch(/Input\/output error|Invalid argument|error/); // the last one is out of range
    expect(recorded).toEqual([
      ['write', 0, 8192],
      ['zero', 65536, 4096],
      ['trim', 131072, 4096],
    ]);
  });

  it('pauses a client that writes faster than the device accepts (bounded bytes in flight)', async () => {
    // A device that holds every write until released: a fast writer must be stopped by the
    // server, not buffered. The real volume sits behind the gate.
    let started = 0;
    const gate: (() => void)[] = [];
    const inner = rig.volume;
    const slow: BlockDevice = {
      size: inner.size,
      blockSize: inner.blockSize,
      readOnly: false,
      read: (o, l) => inner.read(o, l),
      write: async (o, d, opt) => {
        started++;
        await new Promise<void>((r) => gate.push(r));
        await inner.write(o, d, opt);
      },
      writeZeroes: (o, l, opt) => inner.writeZeroes(o, l, opt),
      trim: (o, l, opt) => inner.trim(o, l, opt),
      flush: () => inner.flush(),
    };
    const { startNbdServer } = await import('@headstart/nbd');
    const server = await startNbdServer({ exports: { slow }, maxInflightBytes: 1 * MiB, maxRequest: 1 * MiB });
    try {
      const s = await attach(server.port, 'slow');
      const replies = collectSimpleReplies(s);
      const total = 200; // 200 x 64 KiB = 12.5 MiB offered
      let written = 0;
      const pump = () => {
        while (written < total) {
          const ok = s.write(Buffer.concat([requestHeader(1, BigInt(written), BigInt((written % 64) * 65536), 65536), Buffer.alloc(65536, 7)]));
          written++;
          if (!ok) return void s.once('drain', pump);
        }
      };
      pump();
      await new Promise((r) => setTimeout(r, 500));
      // 1 MiB cap / 64 KiB = 16 writes, plus what was already in the one receive buffer
      // (256 KiB = 4 more) when the socket was paused; 200 were offered.
      expect(started).toBeGreaterThan(0);
      expect(started).toBeLessThanOrEqual(16 + 4 + 1);
      const release = setInterval(() => gate.splice(0).forEach((r) => r()), 5);
      const got = await replies.next(total);
      clearInterval(release);
      expect(got.every((r) => r.error === 0)).toBe(true);
      expect(started).toBe(total);
      s.destroy();
    } finally {
      gate.splice(0).forEach((r) => r());
      await server.stop();
    }
  });

  it('removeExport answers in-flight requests, disconnects its clients, and hides the name', async () => {
    const v = await rig.newVolume('tmp', 4 * MiB);
    // Hold the write inside the device so it is surely in flight when the export goes away.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let started = 0;
    const gated: BlockDevice = Object.assign(Object.create(v) as BlockDevice, {
      write: async (o: number, d: Uint8Array) => {
        started++;
        await held;
        await v.write(o, d);
      },
    });
    rig.server.addExport('tmp', gated);
    const s = await attach(rig.server.port, 'tmp');
    const replies = collectSimpleReplies(s);
    const closed = new Promise((r) => s.once('close', r));
    s.write(Buffer.concat([requestHeader(1, 1n, 0n, 4096), Buffer.alloc(4096, 3)]));
    while (started === 0) await new Promise((r) => setTimeout(r, 5));
    let removed = false;
    const removal = rig.server.removeExport('tmp').then(() => (removed = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(removed).toBe(false); // still waiting for the write
    release();
    expect(await replies.next(1)).toEqual([{ handle: 1n, error: 0 }]);
    await closed;
    await removal;
    expect((await v.read(0, 4096)).every((b) => b === 3)).toBe(true);
    expect(rig.server.exports().map((e) => e.name)).not.toContain('tmp');
    const r = await run('nbdinfo', [rig.uri('tmp')]);
    expect(r.code).not.toBe(0);
  });
});

// --- raw-socket helpers ---

/** Fixed newstyle handshake with NBD_OPT_EXPORT_NAME (simple replies only). */
async function attach(port: number, name: string): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  const first = await new Promise<Buffer>((resolve) => s.once('data', resolve));
  expect(first.subarray(0, 8).toString()).toBe('NBDMAGIC');
  s.write(Buffer.concat([Buffer.from([0, 0, 0, 3]), option(1, Buffer.from(name))]));
  await new Promise<Buffer>((resolve) => s.once('data', resolve)); // 10 bytes: size + flags
  return s;
}

function collectSimpleReplies(s: Socket) {
  const replies: { handle: bigint; error: number }[] = [];
  let buf = Buffer.alloc(0);
  let waiter: (() => void) | null = null;
  s.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    while (buf.length >= 16) {
      expect(buf.readUInt32BE(0)).toBe(0x67446698);
      replies.push({ error: buf.readUInt32BE(4), handle: buf.readBigUInt64BE(8) });
      buf = buf.subarray(16);
    }
    waiter?.();
  });
  return {
    async next(n: number) {
      while (replies.length < n) await new Promise<void>((r) => (waiter = r));
      return replies.splice(0, n);
    },
  };
}
