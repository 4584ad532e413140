/**
 * Crash safety of archiving, with real processes: a child archives a volume's points and
 * is killed with SIGKILL in the middle of uploading. Then:
 *   - no manifest names a missing object (verifyArchive passes; the interrupted point has
 *     no manifest yet);
 *   - the next run finishes the job without re-uploading what already landed, and the
 *     archived point restores byte for byte.
 * Runs for the full copy and for an incremental point, on the directory and on S3 (a real
 * loopback server).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listPoints, openDirectoryStore, openS3Store, restorePoint, verifyArchive, type ObjectStore } from '@headstart/archive';
import { createVolume, openVolume } from '@headstart/volume';
import { bundle } from '../helpers/bundle';
import { tempDir } from '../helpers/tmp';
// The archive package's test helper (a real S3 server on loopback); not part of its public door.
import { startTestS3, TEST_CREDENTIALS, type TestS3 } from '../../packages/archive/src/testing/s3-server';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const BS = 4096;
const CHUNK = 4 * BS;
const CHUNKS = 128;
const SIZE = CHUNKS * CHUNK; // 2 MiB in 128 chunk objects, so a kill lands mid-upload
let child = '';
let s3: TestS3;

beforeAll(async () => {
  child = await bundle(join(import.meta.dirname, 'archive-child.ts'));
  s3 = await startTestS3('crash-test');
});
afterAll(async () => {
  await rm(child, { force: true });
  await s3?.stop();
});

/** Runs the child; with killAfter, SIGKILLs it once it reported that many stored chunks. */
function runChild(args: string[], killAfter?: number): Promise<{ killed: boolean; lines: string[] }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let buf = '';
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        if (killAfter !== undefined && line.startsWith('U ') && Number(line.slice(2)) >= killAfter) p.kill('SIGKILL');
      }
    });
    p.on('error', reject);
    // 'close', not 'exit': 'exit' can come before the pipe has delivered the last lines.
    p.on('close', (code, signal) => {
      if (signal === 'SIGKILL') resolve({ killed: true, lines });
      else if (code === 0) resolve({ killed: false, lines });
      else reject(new Error(`child exited ${code}: ${err}`));
    });
  });
}

const backends: [string, () => { args: string[]; store: () => Promise<ObjectStore> }][] = [
  ['directory', () => {
    const dir = tempDir('hs-archive-crash-store-');
    return { args: ['dir', dir, '-'], store: () => openDirectoryStore({ path: dir }) };
  }],
  ['s3', () => ({
    args: ['s3', s3.endpoint, s3.bucket],
    store: async () => openS3Store({ bucket: s3.bucket, prefix: 'crash', endpoint: s3.endpoint, credentials: TEST_CREDENTIALS }),
  })],
];

describe.each(backends)('archive crash safety on %s (kill -9 mid-upload, then rerun)', (_name, setup) => {
  it('never leaves a manifest naming a missing object, and the rerun finishes the job', async () => {
    const { args, store: openStore } = setup();
    const volDir = join(tempDir('hs-archive-crash-vol-'), 'v');
    const v = await createVolume(volDir, { size: SIZE, blockSize: BS });
    await v.write(0, randomBytes(SIZE));
    await v.closeSnapshot();
    const images = new Map<number, Buffer>([[1, await v.read(0, SIZE)]]);
    const volumeId = v.info.id;
    await v.shutdown();
    const store = await openStore();
    const childArgs = [volDir, ...args, String(CHUNK)];

    // Round 1: the full copy of point 1; round 2: an incremental point touching most chunks.
    for (const round of [1, 2]) {
      if (round === 2) {
        const w = await openVolume(volDir);
        for (let c = 0; c < SIZE / CHUNK; c += 1) if (c % 5 !== 0) await w.write(c * CHUNK + BS * (c % 4), randomBytes(BS));
        const p = await w.closeSnapshot();
        images.set(p.n, await w.read(0, SIZE));
        await w.shutdown();
      }
      const n = Math.max(...images.keys());
      const crashed = await runChild(childArgs, 10);
      expect(crashed.killed).toBe(true);
      expect(crashed.lines.some((l) => l.startsWith('OK'))).toBe(false);
      // The interrupted point has no manifest; every manifest there is names only present objects.
      expect((await listPoints({ store, volumeId })).map((p) => p.n)).not.toContain(n);
      const check = await verifyArchive({ store, volumeId, deep: false });
      expect(check.problems).toEqual([]);

      const rerun = await runChild(childArgs);
      expect(rerun.killed).toBe(false);
      const ok = rerun.lines.find((l) => l.startsWith('OK '))!;
      const results = JSON.parse(ok.slice(3)) as { n: number; objectsSkipped: number; objectsUploaded: number }[];
      const r = results.find((x) => x.n === n)!;
      // What landed before the kill is not uploaded again.
      expect(r.objectsSkipped).toBeGreaterThanOrEqual(9);
      expect(r.objectsSkipped + r.objectsUploaded).toBeGreaterThan(CHUNKS * 0.7);
      expect((await verifyArchive({ store, volumeId })).ok).toBe(true);
    }
    for (const [n, image] of images) {
      const out = join(tempDir('hs-archive-crash-out-'), 'img');
      await restorePoint({ store, volumeId, n, path: out });
      expect((await readFile(out)).equals(image), `point ${n}`).toBe(true);
    }
    const w = await openVolume(volDir);
    expect(w.sinks().find((s) => s.name === 'archive')?.acked).toBe(Math.max(...images.keys()));
    await w.shutdown();
    await store.close();
  }, 180_000);
});
