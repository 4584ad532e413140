/** Real NBD clients from Debian against a real headstart Volume over a real socket. */
import { createHash } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, startRig, type Rig } from './helpers';

const MiB = 1024 * 1024;

describe('real NBD clients against a headstart volume', () => {
  let rig: Rig;
  /** fio's nbd engine with crc32c verification against the export; its one job's result. */
  const fioVerify = async (job: string[]) => {
    // No verify state file: fio would leave one in the working directory (the repository).
    const r = await run('fio', [...job, '--ioengine=nbd', `--uri=${rig.uri()}`, '--verify=crc32c', '--do_verify=1', '--verify_state_save=0', '--output-format=json']);
    expect(r.code).toBe(0);
    return (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[] }).jobs[0];
  };
  beforeAll(async () => {
    rig = await startRig(64 * MiB);
  });
  afterAll(async () => {
    await rig?.close();
  });

  it('qemu-io writes a pattern and reads it back; the volume holds it', async () => {
    const r = await run('qemu-io', ['-f', 'raw', rig.uri(), '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M', '-c', 'write -P 0x5c 3M 4k', '-c', 'read -P 0x5c 3M 4k', '-c', 'read -P 0 4M 64k']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/Pattern verification failed|error/i);
    const data = await rig.volume.read(0, MiB);
    expect(data.every((b) => b === 0xab)).toBe(true);
    expect((await rig.volume.read(3 * MiB, 4096)).every((b) => b === 0x5c)).toBe(true);
  });

  it('qemu-io sees a pattern mismatch (the check above can fail)', async () => {
    const r = await run('qemu-io', ['-f', 'raw', rig.uri(), '-c', 'read -P 0xcd 0 4k']);
    expect(r.stdout + r.stderr).toMatch(/Pattern verification failed/);
  });

  it('qemu-img convert copies an image in and qemu-img compare agrees', async () => {
    const img = join(rig.dir, 'src.img');
    const buf = Buffer.alloc(16 * MiB);
    for (let i = 0; i < buf.length; i += 4096) buf.writeUInt32BE((i ^ 0x9e3779b9) >>> 0, i); // sparse-ish, distinct blocks
    buf.fill(0x77, 5 * MiB, 6 * MiB + 123);
    await writeFile(img, buf);
    const vol2 = await rig.newVolume('vol2', 16 * MiB);
    rig.server.addExport('vol2', vol2);
    const c = await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', img, rig.uri('vol2')]);
    expect(c.stderr).toBe('');
    expect(c.code).toBe(0);
    const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', img, rig.uri('vol2')]);
    expect(cmp.stdout).toMatch(/Images are identical/);
    expect(cmp.code).toBe(0);
    expect((await vol2.read(0, 16 * MiB)).equals(buf)).toBe(true);
    // and compare notices a difference
    await vol2.write(7 * MiB, Buffer.from('x'));
    const diff = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', img, rig.uri('vol2')]);
    expect(diff.code).toBe(1);
    await rig.server.removeExport('vol2');
  });

  it('nbdinfo lists every export with its size and read-only flag', async () => {
    const ro = await rig.newVolume('ro', 8 * MiB);
    rig.server.addExport('replica-a', ro, { readOnly: true, description: 'a replica' });
    const r = await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${rig.server.port}`]);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout) as { exports: { 'export-name': string; 'export-size': number; is_read_only: boolean; can_flush: boolean; can_fua: boolean; can_trim: boolean; can_zero: boolean; can_multi_conn: boolean; description?: string }[] };
    const byName = Object.fromEntries(info.exports.map((e) => [e['export-name'], e]));
    expect(Object.keys(byName).sort()).toEqual(['replica-a', 'vol']);
    expect(byName.vol['export-size']).toBe(64 * MiB);
    expect(byName.vol).toMatchObject({ is_read_only: false, can_flush: true, can_fua: true, can_trim: true, can_zero: true, can_multi_conn: true });
    expect(byName['replica-a']).toMatchObject({ 'export-size': 8 * MiB, is_read_only: true, description: 'a replica' });
    await rig.server.removeExport('replica-a');
    const after = await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${rig.server.port}`]);
    expect((JSON.parse(after.stdout) as { exports: unknown[] }).exports).toHaveLength(1);
  });

  it('nbdcopy round-trips a 256 MiB image', async () => {
    const size = 256 * MiB;
    const big = await rig.newVolume('big', size);
    rig.server.addExport('big', big);
    const src = join(rig.dir, 'in.img');
    const back = join(rig.dir, 'out.img');
    // Random 1 MiB extents scattered over a sparse image, so holes and data both travel.
    const f = await open(src, 'w');
    await f.truncate(size);
    let seed = 12345;
    for (let i = 0; i < 48; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const chunk = createHash('sha512').update(String(seed)).digest();
      await f.write(Buffer.concat(Array(16384).fill(chunk)), 0, MiB, (seed % 256) * MiB);
    }
    await f.close();
    const up = await run('nbdcopy', [src, rig.uri('big')], { timeoutMs: 90_000 });
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    const down = await run('nbdcopy', [rig.uri('big'), back], { timeoutMs: 90_000 });
    expect(down.code).toBe(0);
    const [a, b] = await Promise.all([readFile(src), readFile(back)]);
    expect(createHash('sha256').update(b).digest('hex')).toBe(createHash('sha256').update(a).digest('hex'));
    await rig.server.removeExport('big');
  }, 120_000);

  it('fio with its nbd engine writes and verifies through the export', async () => {
    const job = await fioVerify(['--name=verify', '--rw=randwrite', '--bs=4k', '--size=8M', '--iodepth=16']);
    expect(job.error).toBe(0);
    expect(job.write.io_bytes).toBe(8 * MiB);
    expect(job.read.io_bytes).toBe(8 * MiB); // the verify pass read everything back
  });

  it('fio verifies 1 MiB sequential writes at depth 8 (payloads read in place, image writes combined)', async () => {
    const job = await fioVerify(['--name=seq', '--rw=write', '--bs=1m', '--size=24M', '--iodepth=8']);
    expect(job.error).toBe(0);
    expect(job.write.io_bytes).toBe(24 * MiB);
    expect(job.read.io_bytes).toBe(24 * MiB);
  });
});

