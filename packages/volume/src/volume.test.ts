import { join } from 'node:path';
import { rm, stat, symlink } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { describe, expect, it, vi } from 'vitest';
import { isHeadstartError } from '@headstart/errors';
import { tempDir } from '../../../test/helpers/tmp';
import { createVolume, openVolume } from './index';

const KiB = 1024;
const MiB = 1024 * KiB;

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(isHeadstartError(err), `expected ${code}, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}

describe('volume', () => {
  it('creates a sparse image, writes and reads at any offset', async () => {
    const dir = tempDir();
    const v = await createVolume(dir, { size: 8 * MiB, name: 'vol1' });
    expect(v.info).toMatchObject({ name: 'vol1', size: 8 * MiB, blockSize: 4096, role: 'primary', epoch: 1 });
    // unaligned write spanning three blocks
    const data = Buffer.alloc(9000, 0x5a);
    await v.write(4000, data);
    expect((await v.read(4000, 9000)).equals(data)).toBe(true);
    expect((await v.read(0, 4000)).every((x) => x === 0)).toBe(true);
    expect((await v.read(13000, 1000)).every((x) => x === 0)).toBe(true);
    expect(v.dirtyBlocks(v.openSnapshot).size).toBe(4); // bytes 4000..12999 touch blocks 0-3
    await v.writeZeroes(4096, 4096);
    expect((await v.read(4096, 4096)).every((x) => x === 0)).toBe(true);
    expect((await v.read(4000, 96)).every((x) => x === 0x5a)).toBe(true);
    await v.trim(0, 8 * MiB);
    expect((await v.read(0, 16 * KiB)).every((x) => x === 0)).toBe(true);
    await v.flush();
    await v.shutdown();
    const s = await stat(join(dir, 'image.raw'));
    expect(s.size).toBe(8 * MiB);
  });

  it('rejects bad requests with stable codes and leaves the volume untouched', async () => {
    const v = await createVolume(tempDir(), { size: 1 * MiB });
    await v.write(0, Buffer.alloc(4096, 7));
    await expectCode(v.write(1 * MiB - 10, Buffer.alloc(11)), 'VOLUME_OUT_OF_RANGE');
    await expectCode(v.read(-1, 10), 'VOLUME_BAD_REQUEST');
    await expectCode(v.read(0.5, 10), 'VOLUME_BAD_REQUEST');
    await expectCode(v.writeZeroes(0, 2 * MiB), 'VOLUME_OUT_OF_RANGE');
    await expectCode(v.readBlocksAt(99, 0, 1), 'SNAPSHOT_UNKNOWN');
    expect((await v.read(0, 4096)).every((x) => x === 7)).toBe(true);
    expect(v.stats().seq).toBe(1);
    await v.shutdown();
    await expectCode(v.read(0, 1), 'VOLUME_CLOSED');
  });

  it('validates geometry and refuses a second open of the same directory', async () => {
    await expectCode(createVolume(tempDir(), { size: 4096, blockSize: 3000 }), 'VOLUME_BAD_GEOMETRY');
    await expectCode(createVolume(tempDir(), { size: 5000 }), 'VOLUME_BAD_GEOMETRY');
    await expectCode(createVolume(tempDir(), { size: 4 * MiB, blockSize: 2 * MiB }), 'VOLUME_BAD_GEOMETRY');
    const dir = tempDir();
    const v = await createVolume(dir, { size: MiB });
    await expectCode(openVolume(dir), 'VOLUME_LOCKED');
    await expectCode(createVolume(dir, { size: MiB }), 'VOLUME_EXISTS');
    await v.shutdown();
    await expectCode(openVolume(tempDir()), 'VOLUME_NOT_FOUND');
  });

  it('takes over a lock left by an earlier process that had this pid, and still refuses a live one', async () => {
    // A node in a container restarts as the same pid after a crash (kill -9, OOM, power
    // loss): the lock its previous run left names this very process. It was refused as
    // "open in process N (this one)" at every start, so the node could never start again.
    const dir = tempDir();
    const v = await createVolume(dir, { size: MiB });
    await v.write(0, Buffer.alloc(4096, 7));
    await v.shutdown();
    await symlink(String(process.pid), join(dir, 'lock'));
    const again = await openVolume(dir);
    expect((await again.read(0, 4096))[0]).toBe(7);
    // this process holds it now: a second open here is refused, as before
    await expectCode(openVolume(dir), 'VOLUME_LOCKED');
    await again.shutdown();
    // a lock naming another live process (the test runner's parent) is not taken over
    await symlink(String(process.ppid), join(dir, 'lock'));
    await expectCode(openVolume(dir), 'VOLUME_LOCKED');
    await rm(join(dir, 'lock'));
  });

  it.runIf(process.platform === 'linux')('takes over a lock whose owner was killed and is a zombie not reaped yet', async () => {
    // kill -9 of a node, restarted at once (a supervisor): the dead process stays a zombie
    // until its parent reaps it, 2 s measured under a busy init; kill(pid, 0) still finds it.
    const dir = tempDir();
    const v = await createVolume(dir, { size: MiB });
    await v.shutdown();
    // `sleep 0` exits at once; its parent exec'd into `sleep 30`, which never reaps it.
    const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const zombie = Number((await new Promise<string>((resolve) => parent.stdout!.once('data', (d: Buffer) => resolve(d.toString())))).trim());
      await vi.waitFor(() => expect(readFileSync(`/proc/${zombie}/stat`, 'utf8')).toMatch(/\) Z /), { timeout: 5000 });
      await symlink(String(zombie), join(dir, 'lock'));
      const again = await openVolume(dir);
      await again.shutdown();
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it('zeroing (trim, write-zeroes, zero blocks applied on a replica) takes no new space in the sparse image', async () => {
    const dir = tempDir();
    const v = await createVolume(dir, { size: 64 * MiB });
    const allocated = async (d: string) => (await stat(join(d, 'image.raw'))).blocks * 512;
    await v.write(8 * MiB, Buffer.alloc(MiB, 0x5a));
    await v.write(20 * MiB + 100, Buffer.alloc(10_000, 0x6b));
    await v.closeSnapshot();
    const before = await allocated(dir);
    // An mkfs discards the whole device: before, that allocated all 64 MiB.
    await v.trim(0, 64 * MiB);
    expect(await allocated(dir)).toBeLessThanOrEqual(before);
    expect((await v.read(0, 64 * MiB)).every((x) => x === 0)).toBe(true);
    // Recorded and shipped: the blocks it changed, and only those (a discard of space that
    // is zero already, as mkfs's on a new volume or fstrim's of free space, is no write).
    expect(v.dirtyBlocks(v.openSnapshot).size).toBe(256 + 3);
    expect([...v.openWrites()].map((e) => [e.kind, e.offset, e.length])).toEqual([
      ['trim', 8 * MiB, MiB],
      ['trim', 20 * MiB, 3 * 4096], // whole blocks: the zeroes around the data in them change nothing either
    ]);
    await v.trim(0, 64 * MiB);
    await v.writeZeroes(MiB, 100);
    expect([...v.openWrites()]).toHaveLength(2);
    expect(v.dirtyBlocks(v.openSnapshot).size).toBe(256 + 3);
    // Unaligned zeroing keeps the bytes around it, and over data it zeroes exactly its range.
    await v.write(30 * MiB, Buffer.alloc(3 * 4096, 0x7c));
    await v.writeZeroes(30 * MiB + 1000, 5000);
    const back = await v.read(30 * MiB, 3 * 4096);
    expect(back.subarray(0, 1000).every((x) => x === 0x7c)).toBe(true);
    expect(back.subarray(1000, 6000).every((x) => x === 0)).toBe(true);
    expect(back.subarray(6000).every((x) => x === 0x7c)).toBe(true);
    await v.shutdown();

    // A replica applying a zero run: nothing over holes, zeroes over data.
    const rdir = tempDir();
    const r = await createVolume(rdir, { size: 64 * MiB, role: 'replica' });
    await r.applyBlocks([{ block: 10, data: Buffer.alloc(2 * 4096, 3) }]);
    const rBefore = await allocated(rdir);
    await r.applyBlocks([{ block: 0, data: Buffer.alloc(4 * MiB) }]);
    expect(await allocated(rdir)).toBe(rBefore);
    expect((await r.read(0, 4 * MiB)).every((x) => x === 0)).toBe(true);
    await r.shutdown();
  });

  it('a replica refuses writes but applies blocks at commit', async () => {
    const v = await createVolume(tempDir(), { size: MiB, role: 'replica' });
    expect(v.readOnly).toBe(true);
    await expectCode(v.write(0, Buffer.alloc(512)), 'VOLUME_READ_ONLY');
    await expectCode(v.trim(0, 512), 'VOLUME_READ_ONLY');
    await v.applyBlocks([{ block: 3, data: Buffer.alloc(4096, 9) }]);
    await v.setCommitted({ n: 4, scheduledAt: 1, closedAt: 2, lastSeq: 10 });
    expect(v.committed?.n).toBe(4);
    expect((await v.read(3 * 4096, 4096)).every((x) => x === 9)).toBe(true);
    await expectCode(v.applyBlocks([{ block: 256, data: Buffer.alloc(4096) }]), 'VOLUME_OUT_OF_RANGE');
    // promotion: writable, numbering continues after the committed point
    await v.setRole('primary', 2);
    expect(v.info).toMatchObject({ role: 'primary', epoch: 2 });
    expect(v.openSnapshot).toBe(5);
    await v.write(0, Buffer.alloc(512, 1));
    await expectCode(v.setRole('replica', 1), 'VOLUME_BAD_REQUEST');
    await v.shutdown();
  });

  it('a point released while a read of it waits on the disk fails that read as released, never with another point\'s bytes', async () => {
    // Seen in a fault campaign: a runner hashing a point that its last sink acknowledged at
    // that moment got VOLUME_CORRUPT ("preserved copy of block 1344 as of point 0 is missing").
    const v = await createVolume(tempDir(), { size: MiB });
    await v.addSink('replica');
    await v.write(0, Buffer.alloc(4096, 1));
    const p1 = await v.closeSnapshot();
    await v.write(0, Buffer.alloc(4096, 2));
    const p2 = await v.closeSnapshot();
    await v.write(0, Buffer.alloc(4096, 3));
    // A slow disk: the image read of point 1 waits until the point has been released.
    const image = (v as unknown as { image: { pread(buf: Uint8Array, position: number): Promise<void> } }).image;
    const pread = image.pread.bind(image);
    let go!: () => void;
    const released = new Promise<void>((resolve) => (go = resolve));
    image.pread = async (buf, position) => {
      await released;
      return pread(buf, position);
    };
    const read = v.readBlocksAt(p1.n, 0, 1);
    await v.acknowledge('replica', p2.n);
    go();
    await expectCode(read, 'SNAPSHOT_RELEASED');
    image.pread = pread;
    // Both points are released now (the sink has point 2, and block 0 was written since).
    await expectCode(v.readBlocksAt(p2.n, 0, 1), 'SNAPSHOT_RELEASED');
    expect((await v.read(0, 4096))[0]).toBe(3);
    await v.shutdown();
  });

  it('reads closed points exactly while newer writes overwrite them (copy-on-write)', async () => {
    const dir = tempDir();
    const v = await createVolume(dir, { size: MiB });
    await v.addSink('replica');
    await v.write(0, Buffer.alloc(8192, 1));
    const p1 = await v.closeSnapshot({ scheduledAt: 1000 });
    expect(p1).toMatchObject({ n: 1, scheduledAt: 1000, lastSeq: 1 });
    await v.write(4096, Buffer.alloc(4096, 2));
    const p2 = await v.closeSnapshot();
    await v.write(0, Buffer.alloc(8192, 3));
    expect([...v.dirtyBlocks(1)]).toEqual([0, 1]);
    expect([...v.dirtyBlocks(2)]).toEqual([1]);
    expect([...v.changedSince(1)]).toEqual([0, 1]);
    const at1 = await v.readBlocksAt(1, 0, 2);
    const at2 = await v.readBlocksAt(2, 0, 2);
    expect(at1.subarray(0, 8192).every((x) => x === 1)).toBe(true);
    expect(at2.subarray(0, 4096).every((x) => x === 1)).toBe(true);
    expect(at2.subarray(4096).every((x) => x === 2)).toBe(true);
    await v.shutdown();
    // the same after a reopen
    const w = await openVolume(dir);
    expect((await w.readBlocksAt(1, 0, 2)).equals(at1)).toBe(true);
    expect((await w.readBlocksAt(2, 0, 2)).equals(at2)).toBe(true);
    expect([...w.dirtyBlocks(2)]).toEqual([1]);
    expect([...w.dirtyBlocks(w.openSnapshot)]).toEqual([0, 1]);
    // acknowledging frees what no sink needs
    await w.acknowledge('replica', p1.n);
    await expectCode(w.readBlocksAt(1, 0, 1), 'SNAPSHOT_RELEASED');
    expect((await w.readBlocksAt(2, 0, 2)).equals(at2)).toBe(true);
    await w.acknowledge('replica', p2.n);
    await w.acknowledge('replica', p2.n); // idempotent
    await expectCode(w.acknowledge('replica', 7), 'SINK_BAD_ACK');
    await expectCode(w.acknowledge('nobody', 1), 'SINK_UNKNOWN');
    expect(w.snapshots().map((p) => p.n)).toEqual([2]);
    await w.shutdown();
  });

  it('keeps what the slowest of several sinks needs', async () => {
    const v = await createVolume(tempDir(), { size: MiB });
    await v.addSink('fast');
    await v.addSink('slow');
    await v.write(0, Buffer.alloc(4096, 1));
    await v.closeSnapshot();
    await v.write(0, Buffer.alloc(4096, 2));
    await v.closeSnapshot();
    await v.acknowledge('fast', 2);
    expect((await v.readBlocksAt(1, 0, 1))[0]).toBe(1);
    await v.acknowledge('slow', 1);
    expect((await v.readBlocksAt(2, 0, 1))[0]).toBe(2);
    await v.removeSink('slow');
    expect(v.floor).toBe(2);
    await v.shutdown();
  });

  it('gives a new sink an intact baseline, closing a point if needed', async () => {
    const v = await createVolume(tempDir(), { size: MiB });
    await v.write(0, Buffer.alloc(4096, 1));
    await v.closeSnapshot(); // point 1, no sink: nothing preserved
    const intact = await v.addSink('a');
    expect(intact).toMatchObject({ acked: null, baseline: 1 });
    await v.write(0, Buffer.alloc(4096, 2)); // point 1 still readable: preserved
    expect((await v.readBlocksAt(1, 0, 1))[0]).toBe(1);
    await v.removeSink('a');
    const b = await v.addSink('b'); // open point has writes: a new point is closed for b
    expect(b.baseline).toBe(2);
    await v.write(0, Buffer.alloc(4096, 3));
    expect((await v.readBlocksAt(2, 0, 1))[0]).toBe(2);
    await expectCode(v.addSink("c", { acked: 0 }), "SINK_BAD_ACK"); // point 0 is below the floor
    expect((await v.addSink("d", { acked: 1 })).acked).toBe(1); // point 1 is the floor: deltas from it are kept
    await v.shutdown();
  });

  it('orders concurrent overlapping writes around a close', async () => {
    const v = await createVolume(tempDir(), { size: MiB });
    await v.addSink('r');
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 50; i++) writes.push(v.write((i % 5) * 1000, Buffer.alloc(3000, i)));
    const closing = v.closeSnapshot();
    for (let i = 50; i < 100; i++) writes.push(v.write((i % 5) * 1000, Buffer.alloc(3000, i)));
    const p = await closing;
    await Promise.all(writes);
    // point p holds exactly the result of the first 50 writes, in order
    const model = Buffer.alloc(8192);
    for (let i = 0; i < 50; i++) model.fill(i, (i % 5) * 1000, (i % 5) * 1000 + 3000);
    expect((await v.readBlocksAt(p.n, 0, 2)).equals(model)).toBe(true);
    const now = Buffer.alloc(8192);
    for (let i = 0; i < 100; i++) now.fill(i, (i % 5) * 1000, (i % 5) * 1000 + 3000);
    expect((await v.read(0, 8192)).equals(now)).toBe(true);
    await v.shutdown();
  });

  it("lists the open snapshot's writes from the log after a reopen, with their times", async () => {
    const dir = tempDir();
    let now = 1_000_000;
    const clock = { now: () => now };
    const v = await createVolume(dir, { size: 1 * MiB, clock });
    await v.write(0, Buffer.alloc(4096, 1));
    await v.closeSnapshot();
    now += 5000;
    await v.write(8192, Buffer.alloc(8192, 2));
    now += 5000;
    await v.writeZeroes(4096, 8192); // block 1 is zero already: the zeroing is block 2's
    await v.flush();
    const expected = [
      { offset: 8192, length: 8192, time: 1_005_000, kind: 'write' },
      { offset: 8192, length: 4096, time: 1_010_000, kind: 'zero' },
    ];
    expect([...v.openWrites()]).toMatchObject(expected);
    await v.shutdown();
    const again = await openVolume(dir, { clock });
    expect([...again.openWrites()]).toMatchObject(expected);
    await again.closeSnapshot();
    expect([...again.openWrites()]).toEqual([]);
    await again.shutdown();
  });

  it('opens a 1 TiB sparse volume quickly', async () => {
    const dir = tempDir();
    const TiB = 2 ** 40;
    const v = await createVolume(dir, { size: TiB });
    await v.write(TiB - 4096, Buffer.alloc(4096, 1));
    await v.shutdown();
    const t0 = performance.now();
    const w = await openVolume(dir);
    const openMs = performance.now() - t0;
    expect((await w.read(TiB - 4096, 1))[0]).toBe(1);
    await w.shutdown();
    // Generous bound: this guards against an O(size) open, not against a slow machine.
    expect(openMs).toBeLessThan(5000);
    expect((await stat(join(dir, 'image.raw'))).blocks * 512).toBeLessThan(64 * MiB);
  });
});

describe('a replica commit and its readers', () => {
  it('holds reads while a commit writes the image, and fails them with VOLUME_BETWEEN_POINTS if it never finishes', async () => {
    const v = await createVolume(tempDir(), { size: MiB, role: 'replica' });
    await v.beginApply(1);
    let done = false;
    const held = v.read(0, 4096).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(done, 'a read during the commit waits').toBe(false);
    v.endApply();
    await held;
    expect(done).toBe(true);
    // A commit that stops half-way (a full disk) and is never retried.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      await v.beginApply(2);
      const stuck = v.read(0, 4096);
      const outcome = stuck.then(() => 'read', (err: unknown) => (isHeadstartError(err) ? err.code : String(err)));
      await vi.advanceTimersByTimeAsync(59_000);
      await vi.advanceTimersByTimeAsync(2_000);
      expect(await outcome).toBe('VOLUME_BETWEEN_POINTS');
    } finally {
      vi.useRealTimers();
    }
    v.endApply();
    expect((await v.read(0, 4096)).length).toBe(4096);
    // Shut down while a read waits for a stopped commit: the read fails at once.
    await v.beginApply(3);
    const waiting = v.read(0, 4096).then(() => 'read', (err: unknown) => (isHeadstartError(err) ? err.code : String(err)));
    const t0 = Date.now();
    await v.shutdown();
    expect(await waiting).toBe('VOLUME_CLOSED');
    expect(Date.now() - t0).toBeLessThan(5_000);
  });
});

describe('volume sessions', () => {
  it('tells an OS crash (boot id changed while open) from a process crash', async () => {
    const { open: openLmdb } = await import('lmdb');
    const dir = tempDir();
    const v = await createVolume(dir, { size: MiB });
    expect(v.uncleanOsShutdown).toBe(false);
    await v.shutdown();
    // Simulate a machine crash: the session was left open under another boot.
    const db = openLmdb({ path: join(dir, 'meta.lmdb') });
    await db.openDB({ name: 'meta' }).put('session', { bootId: 'another-boot', clean: false });
    await db.close();
    const w = await openVolume(dir);
    expect(w.uncleanOsShutdown).toBe(true);
    await w.shutdown();
    const x = await openVolume(dir);
    expect(x.uncleanOsShutdown).toBe(false);
    await x.shutdown();
  });
});

describe('pristine point 0', () => {
  it('knows that point 0 of a new primary is all zeroes, until a role change', async () => {
    const v = await createVolume(tempDir(), { size: MiB });
    expect(v.isZeroPoint(0)).toBe(true);
    expect(v.isZeroPoint(1)).toBe(false);
    await v.write(0, Buffer.alloc(512, 1));
    expect(v.isZeroPoint(0)).toBe(true); // point 0 itself did not change
    await v.setRole('replica', 2);
    expect(v.isZeroPoint(0)).toBe(false);
    await v.shutdown();
    const r = await createVolume(tempDir(), { size: MiB, role: 'replica' });
    expect(r.isZeroPoint(0)).toBe(false);
    await r.shutdown();
  });
});

describe('sinks added while a point closes', () => {
  it('gets a baseline that is still readable exactly', async () => {
    const v = await createVolume(tempDir(), { size: MiB });
    await v.write(0, Buffer.alloc(4096, 1));
    await v.closeSnapshot(); // point 1, no sink: nothing preserved from now on
    const writes = [v.write(0, Buffer.alloc(4096, 2)), v.write(4096, Buffer.alloc(4096, 3))];
    const closing = v.closeSnapshot(); // point 2 closes while its writes are in flight
    const adding = v.addSink('late'); // must not pick point 1: block 0 was overwritten unpreserved
    await Promise.all([...writes, closing]);
    const sink = await adding;
    const base = await v.readBlocksAt(sink.baseline, 0, 2);
    expect(base[0]).toBe(2);
    expect(base[4096]).toBe(3);
    await v.write(0, Buffer.alloc(4096, 9)); // preserved for the sink from now on
    expect((await v.readBlocksAt(sink.baseline, 0, 1))[0]).toBe(2);
    await v.shutdown();
  });
});
