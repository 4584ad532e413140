/**
 * bench:archive — what the archive costs, against its anchors, side by side in one run:
 *   - upload: bytes stored per incremental snapshot against the bytes the snapshot changed
 *     (its dirty set x block size), for delta objects (the default) and for whole-chunk
 *     re-upload (the "mutate" path, one full object per changed chunk) on the same writes;
 *   - restore: MB/s of restoring the newest point (full copy + a delta chain per chunk,
 *     every checksum verified, fsync at the end) from the directory backend into a raw
 *     image, against a plain file copy (read + write + fsync) of the same bytes.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createArchiveSink, DEFAULT_MAX_CHAIN, openDirectoryStore, restorePoint, type ArchiveResult } from '@headstart/archive';
import { createVolume } from '@headstart/volume';
import { defineSuite, round } from './lib';

const MiB = 1 << 20;
const BS = 4096;

/** Plain file copy: read + write in 4 MiB pieces, then fsync — what `cp` plus a sync costs. */
async function copyFile(from: string, to: string): Promise<number> {
  const src = await open(from, 'r');
  const dst = await open(to, 'w');
  const buf = Buffer.allocUnsafe(4 * MiB);
  let total = 0;
  for (;;) {
    const { bytesRead } = await src.read(buf, 0, buf.length, total);
    if (bytesRead === 0) break;
    let off = 0;
    while (off < bytesRead) off += (await dst.write(buf, off, bytesRead - off, total + off)).bytesWritten;
    total += bytesRead;
  }
  await dst.sync();
  await src.close();
  await dst.close();
  return total;
}

const secondsOf = async (fn: () => Promise<unknown>) => {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
};

export default defineSuite({
  name: 'archive',
  description: 'incremental upload bytes (delta vs whole-chunk) and restore speed vs file copy',
  async run({ quick, log }) {
    const size = (quick ? 128 : 512) * MiB;
    const snapshots = quick ? 4 : 8;
    /** Share of blocks each snapshot rewrites, scattered 4 KiB writes plus a few short runs. */
    const dirtyShare = 0.01;
    const dir = mkdtempSync(join(tmpdir(), 'hs-bench-archive-'));
    try {
      const volume = await createVolume(join(dir, 'vol'), { size, blockSize: BS });
      const deltaStore = await openDirectoryStore({ path: join(dir, 'store-delta') });
      // Only the bytes the whole-chunk store receives matter, not their durability: skip its
      // fsyncs (4 x 128 MiB of them) so the run stays short and quiet on a shared machine.
      const wholeStore = await openDirectoryStore({ path: join(dir, 'store-whole'), durable: false });
      const delta = await createArchiveSink({ store: deltaStore, source: volume });
      const whole = await createArchiveSink({ store: wholeStore, source: volume, mutate: true });

      log(`  filling a ${size / MiB} MiB volume with random data`);
      for (let off = 0; off < size; off += 4 * MiB) await volume.write(off, randomBytes(4 * MiB));
      await volume.closeSnapshot();
      await delta.catchUp(volume, 'archive');
      await whole.catchUp(volume, 'archive-whole');

      const blocks = size / BS;
      const d: ArchiveResult[] = [];
      const w: ArchiveResult[] = [];
      for (let s = 0; s < snapshots; s++) {
        const writes = Math.round(blocks * dirtyShare);
        for (let i = 0; i < writes; i++) {
          const run = i % 20 === 0 ? 8 : 1;
          const b = Math.floor(Math.random() * (blocks - run));
          await volume.write(b * BS, randomBytes(run * BS));
        }
        await volume.closeSnapshot();
        d.push(...(await delta.catchUp(volume, 'archive')));
        w.push(...(await whole.catchUp(volume, 'archive-whole')));
        log(`  snapshot ${s + 1}/${snapshots}: changed ${(d.at(-1)!.changedBytes / MiB).toFixed(2)} MiB, delta upload ${(d.at(-1)!.uploadedBytes / MiB).toFixed(2)} MiB, whole-chunk upload ${(w.at(-1)!.uploadedBytes / MiB).toFixed(2)} MiB`);
      }
      // Steady state, compaction included: a small volume archived over more points than
      // DEFAULT_MAX_CHAIN, so every chunk's chain is folded once in the run.
      const steadyPoints = DEFAULT_MAX_CHAIN + 4;
      const small = await createVolume(join(dir, 'vol-steady'), { size: 16 * MiB, blockSize: BS });
      await small.write(0, randomBytes(16 * MiB));
      await small.closeSnapshot();
      const steadySink = await createArchiveSink({ store: await openDirectoryStore({ path: join(dir, 'store-steady'), durable: false }), source: small });
      await steadySink.catchUp(small);
      const st: ArchiveResult[] = [];
      for (let s = 0; s < steadyPoints; s++) {
        for (let i = 0; i < (16 * MiB / BS) * dirtyShare; i++) await small.write(Math.floor(Math.random() * (16 * MiB / BS)) * BS, randomBytes(BS));
        await small.closeSnapshot();
        st.push(...(await steadySink.catchUp(small)));
      }
      await small.shutdown();
      const steady = st.reduce((s, r) => s + r.uploadedBytes, 0) / st.reduce((s, r) => s + r.changedBytes, 0);
      log(`  steady state over ${steadyPoints} points (compaction included): ${steady.toFixed(2)} bytes uploaded per changed byte`);

      const changed = d.reduce((s, r) => s + r.changedBytes, 0);
      const upDelta = d.reduce((s, r) => s + r.uploadedBytes, 0);
      const upWhole = w.reduce((s, r) => s + r.uploadedBytes, 0);
      const latest = volume.latestClosed!.n;
      const volumeId = volume.info.id;
      const image = join(dir, 'vol', 'image.raw');
      const imageBytes = (await stat(image)).size;
      await volume.shutdown();

      // Restore and copy alternate, several times each, best of each: one noisy shared machine.
      const restoreS: number[] = [];
      const copyS: number[] = [];
      for (let i = 0; i < (quick ? 10 : 12); i++) {
        const out = join(dir, `restored-${i}.raw`);
        restoreS.push(await secondsOf(() => restorePoint({ store: deltaStore, volumeId, n: latest, path: out })));
        rmSync(out);
        const copy = join(dir, `copy-${i}.raw`);
        copyS.push(await secondsOf(() => copyFile(image, copy)));
        rmSync(copy);
      }
      const restoreMBs = size / MiB / Math.min(...restoreS);
      const copyMBs = imageBytes / MiB / Math.min(...copyS);
      log(`  restore ${restoreMBs.toFixed(0)} MB/s, file copy ${copyMBs.toFixed(0)} MB/s`);

      const perDelta = upDelta / changed;
      const perWhole = upWhole / changed;
      return {
        table: [
          ['figure', 'delta objects', 'whole-chunk re-upload', 'anchor'],
          ['upload bytes / changed byte', round(perDelta, 4), round(perWhole, 2), '1.0 (changed bytes)'],
          ['uploaded MiB over all snapshots', round(upDelta / MiB, 2), round(upWhole / MiB, 2), round(changed / MiB, 2)],
          [`upload bytes / changed byte over ${steadyPoints} points, compaction included`, round(steady, 3), '', ''],
          ['restore MB/s (newest point, dir backend)', round(restoreMBs, 0), '', round(copyMBs, 0)],
          ['restore / file copy', round(restoreMBs / copyMBs, 3), '', 1],
        ],
        json: {
          upload_bytes_per_changed_byte: round(perDelta, 4),
          whole_chunk_upload_bytes_per_changed_byte: round(perWhole, 3),
          upload_bytes_per_changed_byte_with_compaction: round(steady, 3),
          restore_ratio: round(restoreMBs / copyMBs, 3),
          restore_mb_s: round(restoreMBs, 1),
          file_copy_mb_s: round(copyMBs, 1),
          volume_mib: size / MiB,
          snapshots,
          dirty_share: dirtyShare,
          changed_mib: round(changed / MiB, 2),
        },
        notes: [
          `${snapshots} snapshots, each rewriting ${dirtyShare * 100}% of the ${size / MiB} MiB volume's blocks at random (4 KiB writes, every 20th an 8-block run); 4 MiB chunks.`,
          'Uploaded bytes count every object, manifest and marker the store received; changed bytes are the dirty set x 4 KiB.',
          `The first row has no compaction (fewer points than maxChain ${DEFAULT_MAX_CHAIN}); the steady-state row (a 16 MiB volume, same write pattern) includes the fold of every chain into a full 4 MiB chunk object, the price of bounded restores under sparse writes.`,
          'Restore reads one full object plus its delta chain per chunk, verifies every checksum and fsyncs; the copy is read + write + fsync. Best of several runs each, alternating.',
        ],
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
});
