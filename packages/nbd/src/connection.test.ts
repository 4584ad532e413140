/**
 * Request validation in the connection, driven by a real client (libnbd's Python binding,
 * as nbdsh uses it) over a real socket: zero-length requests get EINVAL, as nbdkit answers
 * them, whether the connection negotiated structured replies or not, and the connection
 * stays usable. (A zero-length READ once got an empty structured data chunk, which libnbd
 * rejects as out of bounds and then kills the handle.)
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVolume, type Volume } from '@headstart/volume';
import { startNbdServer } from './server';
import type { NbdServer } from './types';

const MiB = 1024 * 1024;

/** Runs a Python script with libnbd (Debian's binding lives in the system Python); it prints one JSON object. */
function nbdPython(script: string): Promise<Record<string, unknown>> {
  const env = { ...process.env, PATH: `/usr/bin:/bin:${process.env.PATH ?? ''}`, LIBNBD_DEBUG: '0' };
  return new Promise((resolve, reject) => {
    execFile('/usr/bin/python3', ['-c', `import nbd, json\n${script}`], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`python failed: ${err.message}\n${String(stderr)}`));
      resolve(JSON.parse(String(stdout).trim().split('\n').at(-1) ?? '') as Record<string, unknown>);
    });
  });
}

describe('NbdConnection request validation (libnbd)', () => {
  let dir: string;
  let volume: Volume;
  let server: NbdServer;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'headstart-nbd-conn-'));
    volume = await createVolume(join(dir, 'v'), { size: 4 * MiB });
    await volume.write(0, Buffer.alloc(4096, 0x5a));
    server = await startNbdServer({ exports: { vol: volume } });
  });
  afterAll(async () => {
    await server?.stop();
    await volume?.shutdown();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const structured of [true, false]) {
    it(`zero-length READ, WRITE, TRIM and WRITE_ZEROES get EINVAL and the connection lives on (${structured ? 'structured' : 'simple'} replies)`, async () => {
      // Strict mode off: libnbd would refuse count 0 itself; we test the server's answer.
      const out = await nbdPython(`
h = nbd.NBD()
h.set_strict_mode(0)
h.set_request_structured_replies(${structured ? 'True' : 'False'})
h.connect_uri(${JSON.stringify(`nbd://127.0.0.1:${server.port}/vol`)})
def err(f):
    try:
        f()
        return 0
    except nbd.Error as e:
        return e.errnum if e.errnum is not None else str(e)
out = {'structured': h.get_structured_replies_negotiated()}
out['read'] = err(lambda: h.pread(0, 0))
out['write'] = err(lambda: h.pwrite(b'', 4096))
out['trim'] = err(lambda: h.trim(0, 4096))
out['zero'] = err(lambda: h.zero(0, 4096))
out['read_at_end'] = err(lambda: h.pread(0, h.get_size()))
out['after'] = h.pread(4096, 0) == b'\\x5a' * 4096
h.pwrite(b'\\x77' * 512, 8192)
out['write_after'] = h.pread(512, 8192) == b'\\x77' * 512
h.shutdown()
print(json.dumps(out))
`);
      expect(out).toEqual({ structured, read: 22, write: 22, trim: 22, zero: 22, read_at_end: 22, after: true, write_after: true });
      // The zero-length requests changed nothing around them.
      expect((await volume.read(4096, 4096)).every((b) => b === 0)).toBe(true);
      expect((await volume.read(8192, 512)).every((b) => b === 0x77)).toBe(true);
    });
  }
});
