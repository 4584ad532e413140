import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isHeadstartError } from '@headstart/errors';
import { SnapshotDigest, blockHash, loadHasher, zeroBlockHash } from '@headstart/protocol';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fillDisk, smallDisk } from '../../../test/helpers/small-disk';
import { alignedBuffer, createVolume } from '@headstart/volume';
import { spawnSync } from 'node:child_process';
import { directSupported, openDirect } from '../../../test/helpers/direct-io';
import { ReplicaTarget } from './replica-target';
import { Staging } from './staging';
import { randomBlock } from './testing.test-helpers';

const BS = 4096;
let dir: string;
beforeAll(loadHasher);
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const blocks = (first: number, datas: Buffer[]) => datas.map((data, i) => ({ block: first + i, hash: data.length === 0 ? zeroBlockHash(BS) : blockHash(data), data }));

async function content(s: Staging, n: number): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  for await (const r of s.runs(n, 1 << 20)) for (let i = 0; i * BS < r.data.length; i++) out.set(r.block + i, r.data.subarray(i * BS, (i + 1) * BS).toString('hex').slice(0, 16));
  return out;
}

describe('staging run records', () => {
  it('stages and reads back for the commit past the page cache where the file system allows it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-staging-'));
    const s = await Staging.open(join(dir, 'st'), BS);
    const a = Array.from({ length: 300 }, (_, i) => randomBlock(BS, 1000 + i));
    const b = randomBlock(BS, 5);
    await s.stage(1, blocks(0, a.slice(0, 200)));
    await s.stage(1, blocks(200, a.slice(200)));
    await s.stage(1, blocks(7, [b])); // resent: the newer copy wins
    const file = join(dir, 'st', 'data-1');
    expect(openDirect(file)).toBe(directSupported(file));
    const buf = alignedBuffer(1 << 20);
    const seen = new Map<number, Buffer>();
    for (const run of s.plan(1, 1 << 20)) {
      const data = await s.read(1, run, buf);
      for (let i = 0; i < run.count; i++) seen.set(run.block + i, Buffer.from(data.subarray(i * BS, (i + 1) * BS)));
    }
    expect(seen.size).toBe(300);
    for (let i = 0; i < 300; i++) expect(seen.get(i)!.equals(i === 7 ? b : a[i]), `block ${i}`).toBe(true);
    await s.close();
  });

  it('a resent block supersedes its older copy, also after reopening; zero runs read back as zeroes', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-staging-'));
    const a = [0, 1, 2, 3, 4].map((i) => randomBlock(BS, 10 + i));
    const b = randomBlock(BS, 99);
    let s = await Staging.open(join(dir, 'st'), BS);
    await s.stage(1, blocks(0, a));
    await s.stage(1, blocks(2, [b])); // collision: block 2 sent again
    await s.stage(1, blocks(10, [Buffer.alloc(0), Buffer.alloc(0)])); // two zero blocks
    await s.stage(2, blocks(0, [randomBlock(BS, 7)]));
    const expected = new Map<number, string>([
      [0, a[0]], [1, a[1]], [2, b], [3, a[3]], [4, a[4]], [10, Buffer.alloc(BS)], [11, Buffer.alloc(BS)],
    ].map(([k, v]) => [k as number, (v as Buffer).toString('hex').slice(0, 16)]));
    expect(await content(s, 1)).toEqual(expected);
    const digest = s.staged(1)!.digest.value;
    expect(s.staged(1)!.blocks.size).toBe(7);
    await s.close();
    s = await Staging.open(join(dir, 'st'), BS);
    expect(await content(s, 1)).toEqual(expected);
    expect(s.staged(1)!.digest.value).toBe(digest);
    expect(s.snapshots()).toEqual([1, 2]);
    await s.discard([1]);
    expect(s.snapshots()).toEqual([2]);
    await s.close();
  });

  it('a marker left by another boot wipes the store (it may hold torn pages); one from this boot, or an empty one, keeps it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-staging-'));
    let s = await Staging.open(join(dir, 'st'), BS);
    await s.stage(1, blocks(0, [randomBlock(BS, 1)]));
    await s.close(); // close syncs: no marker left
    s = await Staging.open(join(dir, 'st'), BS);
    expect(s.snapshots()).toEqual([1]);
    await s.close();
    await writeFile(join(dir, 'st', 'unsynced'), (await import('node:fs')).readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'));
    s = await Staging.open(join(dir, 'st'), BS);
    expect(s.snapshots()).toEqual([1]);
    await s.close();
    // An empty marker: a mark() that never finished (a full disk, a crash before its fsync),
    // so no unsynced write followed it: kept (it may hold a live commit journal).
    await writeFile(join(dir, 'st', 'unsynced'), '');
    s = await Staging.open(join(dir, 'st'), BS);
    expect(s.snapshots()).toEqual([1]);
    await s.close();
    await writeFile(join(dir, 'st', 'unsynced'), 'some-other-boot');
    s = await Staging.open(join(dir, 'st'), BS);
    expect(s.snapshots()).toEqual([]);
    await s.close();
  });

  it('batches staged at once without waiting: overlapping ones land in order, the file and index agree after reopening', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-staging-'));
    let s = await Staging.open(join(dir, 'st'), BS);
    const last = new Map<number, Buffer>();
    const writes: Promise<unknown>[] = [];
    for (let round = 0; round < 6; round++) {
      // rounds overlap: block 8..15 is in every round; 100+round*16 only in its own
      for (const first of [8, 100 + round * 16]) {
        const datas = Array.from({ length: 8 }, (_, i) => randomBlock(BS, round * 100 + first + i));
        datas.forEach((d, i) => last.set(first + i, d));
        writes.push(s.stage(3, blocks(first, datas)));
      }
    }
    await Promise.all(writes);
    const expected = new Map([...last].map(([b, d]) => [b, d.toString('hex').slice(0, 16)]));
    expect(await content(s, 3)).toEqual(expected);
    const digest = s.staged(3)!.digest.value;
    await s.close();
    s = await Staging.open(join(dir, 'st'), BS);
    expect(await content(s, 3)).toEqual(expected);
    expect(s.staged(3)!.digest.value).toBe(digest);
    // discard drops the records, then the files: renamed out of the way at once, removed in
    // the background (a fragmented file takes long to unlink: an ACK waited 35 s for it)
    await s.discard([3]);
    const files = async () => (await readdir(join(dir, 'st'))).filter((f) => /^(data|hashes|dropped)-/.test(f));
    expect((await files()).filter((f) => !f.startsWith('dropped-'))).toEqual([]);
    await s.removed();
    expect(await files()).toEqual([]);
    // a staging file without records (a crash between the two), or a dropped file whose
    // removal a crash cut short, is removed on open
    await s.close();
    await writeFile(join(dir, 'st', 'data-9'), randomBlock(BS, 1));
    await writeFile(join(dir, 'st', 'dropped-1-1'), randomBlock(BS, 2));
    s = await Staging.open(join(dir, 'st'), BS);
    expect(await files()).toEqual([]);
    expect(s.snapshots()).toEqual([]);
    await s.close();
  });
});

describe('staging on a full disk', () => {
  it('a batch that cannot be staged does not count as staged, and staging resumes once space is freed', async (ctx) => {
    const disk = smallDisk('8m');
    if (disk === null) return ctx.skip();
    {
      const s = await Staging.open(join(disk, 'st'), BS);
      const first = [0, 1, 2].map((i) => randomBlock(BS, 20 + i));
      await s.stage(1, blocks(0, first));
      const before = { size: s.staged(1)!.blocks.size, digest: s.staged(1)!.digest.value };
      // Take what is left; the next batch (1 MiB) does not fit.
      fillDisk(disk, 64 << 10);
      const big = Array.from({ length: 256 }, (_, i) => randomBlock(BS, 100 + i));
      let refused: unknown;
      await s.stage(1, blocks(100, big)).catch((err: unknown) => (refused = err));
      expect(isHeadstartError(refused, 'VOLUME_NO_SPACE'), String(refused)).toBe(true);
      // The set is as it was: a resuming source is asked for those blocks again, and a
      // CLOSE whose digest includes them does not match.
      expect(s.staged(1)!.blocks.size).toBe(before.size);
      expect(s.staged(1)!.digest.value).toBe(before.digest);
      await rm(join(disk, 'filler'));
      await s.stage(1, blocks(100, big));
      expect(s.staged(1)!.blocks.size).toBe(before.size + 256);
      expect((await content(s, 1)).get(100)).toBe(big[0].toString('hex').slice(0, 16));
      await s.close();
    }
  });

  it("a point staged while a committed point's files are still being removed waits for their space instead of being refused", async (ctx) => {
    const disk = smallDisk('8m');
    if (disk === null) return ctx.skip();
    const s = await Staging.open(join(disk, 'st'), BS);
    await s.stage(1, blocks(0, Array.from({ length: 1024 }, (_, i) => randomBlock(BS, 200 + i)))); // 4 MiB
    fillDisk(disk, 512 << 10); // room for the commit's records, not for 2 MiB more
    // Point 1 committed: its files go in the background (dropFile), and point 2 needs their
    // 4 MiB at once: staged before the removal is done, it must wait for it.
    await s.discard([1]);
    const next = Array.from({ length: 512 }, (_, i) => randomBlock(BS, 300 + i)); // 2 MiB
    await s.stage(2, blocks(0, next));
    expect(s.staged(2)!.blocks.size).toBe(512);
    expect((await content(s, 2)).get(511)).toBe(next[511].toString('hex').slice(0, 16));
    // With no removal pending, a batch that does not fit is still refused.
    let refused: unknown;
    await s.stage(3, blocks(0, Array.from({ length: 1024 }, (_, i) => randomBlock(BS, 900 + i)))).catch((err: unknown) => (refused = err));
    expect(isHeadstartError(refused, 'VOLUME_NO_SPACE'), String(refused)).toBe(true);
    await s.close();
  });

  it('a journal that cannot be written does not leave staging shut: later batches and close() go on', async (ctx) => {
    const disk = smallDisk('8m');
    if (disk === null) return ctx.skip();
    const s = await Staging.open(join(disk, 'st'), BS);
    await s.stage(1, blocks(0, [randomBlock(BS, 1), randomBlock(BS, 2)]));
    fillDisk(disk);
    let refused: unknown;
    await s.writeJournal({ n: 1, scheduledAt: 1000, closedAt: 1000, lastSeq: 2 }).catch((err: unknown) => (refused = err));
    expect(isHeadstartError(refused, 'VOLUME_NO_SPACE'), String(refused)).toBe(true);
    expect(s.journal()).toBeNull();
    // Before: writeJournal shut the gate that holds staging writes until the commit ends,
    // and nothing opened it again. Every later batch waited for good, and so did close()
    // (a promotion's detach of the volume hung on it: test/node/disk-full.test.ts in CI).
    const later = s.stage(2, blocks(10, [randomBlock(BS, 3)])).then(() => 'staged', (err: unknown) => (isHeadstartError(err) ? err.code : String(err)));
    const outcome = await Promise.race([later, new Promise((r) => setTimeout(() => r('still waiting after 5 s'), 5000))]);
    expect(outcome).toBe('VOLUME_NO_SPACE');
    await rm(join(disk, 'filler'));
    await s.stage(2, blocks(10, [randomBlock(BS, 3)]));
    expect(s.staged(2)!.blocks.size).toBe(1);
    await s.close();
  }, 30_000);

  it('close() does not wait for batches held by the gate of a commit that stopped half-way; the journal stays for the redo', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-staging-gate-'));
    try {
      const s = await Staging.open(join(dir, 'st'), BS);
      await s.stage(1, blocks(0, [randomBlock(BS, 1)]));
      await s.writeJournal({ n: 1, scheduledAt: 1000, closedAt: 1000, lastSeq: 1 });
      // The commit's image writes stop here (a full disk); the session staged point 2 meanwhile.
      const held = s.stage(2, blocks(5, [randomBlock(BS, 2)])).then(() => 'staged', (err: unknown) => (isHeadstartError(err) ? err.code : String(err)));
      const closed = s.close().then(() => 'closed');
      expect(await Promise.race([closed, new Promise((r) => setTimeout(() => r('close still waiting after 5 s'), 5000))])).toBe('closed');
      expect(await held).toBe('REPL_STOPPED');
      const again = await Staging.open(join(dir, 'st'), BS);
      expect(again.journal()?.point.n).toBe(1);
      expect(again.staged(2)).toBeUndefined();
      await again.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('batches that fail before writing leave their blocks as they were, also when a later failed batch restaged the same blocks', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-staging-unstage-'));
    const s = await Staging.open(join(dir, 'st'), BS);
    const a = randomBlock(BS, 1);
    await s.stage(1, blocks(0, [randomBlock(BS, 2)]));
    await s.stage(2, blocks(5, [a])); // point 2, block 5: staged and written
    // Point 1's commit shuts the gate: the next batches of point 2 wait for it...
    await s.writeJournal({ n: 1, scheduledAt: 1000, closedAt: 1000, lastSeq: 1 });
    // ...B restages block 5 as a zero block and adds 6; C restages 6 and adds 7.
    const b = s.stage(2, blocks(5, [Buffer.alloc(0), randomBlock(BS, 3)]));
    const c = s.stage(2, blocks(6, [randomBlock(BS, 4), randomBlock(BS, 5)]));
    expect([...s.staged(2)!.blocks]).toEqual([5, 6, 7]);
    expect([...s.staged(2)!.zero]).toEqual([5]);
    // ...and the process stops before the commit ends: neither is written.
    await s.close();
    expect(await b.then(() => 'staged', (err: unknown) => (isHeadstartError(err) ? err.code : String(err)))).toBe('REPL_STOPPED');
    expect(await c.then(() => 'staged', (err: unknown) => (isHeadstartError(err) ? err.code : String(err)))).toBe('REPL_STOPPED');
    // Point 2 is what was written: block 5 as data, nothing of 6 (B's, restaged by C, which
    // failed too) nor of 7, and its digest is that copy's alone.
    const set = s.staged(2)!;
    expect([...set.blocks]).toEqual([5]);
    expect([...set.zero]).toEqual([]);
    expect(set.broken).toBe(false);
    const expected = new SnapshotDigest();
    expected.add(5, blockHash(a));
    expect(set.digest.value).toBe(expected.value);
    // The next process reads the same from the records and the bytes.
    const again = await Staging.open(join(dir, 'st'), BS);
    expect([...again.staged(2)!.blocks]).toEqual([5]);
    expect(again.staged(2)!.digest.value).toBe(expected.value);
    expect(await again.entries(2, 10)).toEqual(Buffer.concat([u64(5), u64(blockHash(a))]));
    await again.close();
  });
});

describe('a batch holding a block twice', () => {
  it('stages the later copy, counted once', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-staging-dup-'));
    const s = await Staging.open(join(dir, 'st'), BS);
    const [x, y, z] = [1, 2, 3].map((i) => randomBlock(BS, 30 + i));
    await s.stage(1, [...blocks(4, [x]), ...blocks(2, [y]), ...blocks(4, [z])]);
    const expected = new SnapshotDigest();
    expected.add(2, blockHash(y));
    expected.add(4, blockHash(z));
    expect(s.staged(1)!.blocks.size).toBe(2);
    expect(s.staged(1)!.digest.value).toBe(expected.value);
    expect((await content(s, 1)).get(4)).toBe(z.toString('hex').slice(0, 16));
    await s.close();
  });
});

describe('a staging write that fails part-way', () => {
  it('marks its point broken: RESUME then drops the point, so the source sends it whole again', async (ctx) => {
    dir = await mkdtemp(join(tmpdir(), 'hs-staging-broken-'));
    const volume = await createVolume(join(dir, 'rep'), { size: 1 << 20, id: 'v', role: 'replica' });
    const target = await ReplicaTarget.open({ volume, stagingDir: join(dir, 'st') });
    const data = join(dir, 'st', 'data-2');
    try {
      await target.staging.stage(2, blocks(0, [randomBlock(BS, 1)]));
      // The data file refuses writes (EPERM) from here, as a failing disk would (EIO).
      if (spawnSync('chattr', ['+i', data]).status !== 0) return ctx.skip();
      let refused: unknown;
      await target.staging.stage(2, blocks(8, [randomBlock(BS, 2)])).catch((err: unknown) => (refused = err));
      expect(isHeadstartError(refused), String(refused)).toBe(true);
      // Its hash went to the hash file first: what the point's files hold is not known any more.
      expect(target.staging.staged(2)!.broken).toBe(true);
      expect(await target.staging.entries(2, 10)).toEqual(Buffer.alloc(0));
      spawnSync('chattr', ['-i', data]);
      const resume = await target.resume();
      expect(resume.staged).toEqual([]);
      expect(target.staging.snapshots()).toEqual([]);
    } finally {
      spawnSync('chattr', ['-i', data]);
      await target.close();
      await volume.shutdown();
    }
  });
});

function u64(x: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(x));
  return b;
}
