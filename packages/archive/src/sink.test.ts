/**
 * The archive sink end to end on a real Volume: full copy, incremental points (deltas,
 * zeroed blocks, a short last chunk), delta and mutate paths, compaction, resume, and
 * restore of every point compared byte for byte with what the volume held at that point.
 * The main scenario runs on both backends (a directory, S3 on a real loopback server).
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isHeadstartError } from '@headstart/errors';
import type { Volume } from '@headstart/volume';
import { readManifest } from './catalog';
import { loadHasher } from './format/hash';
import { manifestKey, objectKey } from './layout';
import { listPoints, verifyArchive } from './points';
import { restorePoint, restoreToNewVolume } from './restore';
import { createArchiveSink, type ArchiveSinkOptions } from './sink';
import { openDirectoryStore } from './store/directory';
import { openS3Store } from './store/s3';
import type { ObjectStore } from './store/types';
import { newVolume, randomWrites, rng, TempDirs } from './testing/fixture';
import { startTestS3, TEST_CREDENTIALS, type TestS3 } from './testing/s3-server';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const BS = 4096;
const CHUNK = 16 * BS; // small chunks: many chunks and chains in a small volume
const SIZE = 10 * CHUNK + 5 * BS; // the last chunk is short

const dirs = new TempDirs();
let s3: TestS3;
beforeAll(async () => {
  s3 = await startTestS3();
});
afterAll(async () => {
  await s3?.stop();
});
afterEach(async () => {
  await dirs.cleanup();
});

let prefixSeq = 0;
const backends: [string, () => Promise<ObjectStore>][] = [
  ['directory', async () => openDirectoryStore({ path: await dirs.make('hs-archive-store-') })],
  ['s3', async () => openS3Store({ bucket: s3.bucket, prefix: `sink${prefixSeq++}`, endpoint: s3.endpoint, credentials: TEST_CREDENTIALS })],
];

/** Writes `points` snapshots of random work, archiving after each; returns the image at every point. */
async function scenario(v: Volume, store: ObjectStore, options: Partial<ArchiveSinkOptions>, points: number, seed: number) {
  const random = rng(seed);
  const sink = await createArchiveSink({ store, source: v, chunkBytes: CHUNK, ...options });
  const images = new Map<number, Buffer>();
  images.set(0, await v.read(0, v.size)); // point 0: the volume as created
  const results = [...(await sink.catchUp(v))];
  for (let i = 0; i < points; i++) {
    await randomWrites(v, random, 25);
    const p = await v.closeSnapshot();
    images.set(p.n, await v.read(0, v.size));
    // Let the volume move on before archiving: the sink must read "as of n", not the image now.
    await randomWrites(v, random, 5);
    results.push(...(await sink.catchUp(v)));
  }
  return { images, results, sink };
}

async function expectRestores(store: ObjectStore, volumeId: string, images: Map<number, Buffer>) {
  const out = await dirs.make('hs-archive-restore-');
  for (const [n, image] of images) {
    const path = join(out, `p${n}.raw`);
    const progress: number[] = [];
    const r = await restorePoint({ store, volumeId, n, path, onProgress: (p) => progress.push(p.bytesDone) });
    const got = await readFile(path);
    expect(got.length).toBe(image.length);
    expect(got.equals(image), `point ${n} restores byte for byte`).toBe(true);
    expect(progress.at(-1)).toBe(image.length);
    expect(r.n).toBe(n);
  }
}

describe.each(backends)('archive sink on %s', (_name, openStore) => {
  it('archives a full copy then incremental points, and every point restores exactly', async () => {
    const v = await newVolume(dirs, SIZE, BS);
    const store = await openStore();
    const { images, results } = await scenario(v, store, {}, 5, 1);
    expect(results[0]).toMatchObject({ n: 0, fullCopy: true });
    for (const r of results.slice(1)) {
      expect(r.fullCopy).toBe(false);
      // Deltas: what goes up is the changed blocks plus small headers, far from whole chunks.
      expect(r.uploadedBytes).toBeLessThan(r.changedBytes * 1.2 + 4096);
    }
    expect(v.sinks().find((s) => s.name === 'archive')?.acked).toBe(5);
    expect((await listPoints({ store, volumeId: v.info.id })).map((p) => p.n)).toEqual([0, 1, 2, 3, 4, 5]);
    await expectRestores(store, v.info.id, images);
    expect((await verifyArchive({ store, volumeId: v.info.id })).ok).toBe(true);
    await v.shutdown();
    await store.close();
  });
});

describe('archive sink (directory)', () => {
  it('delta and mutate paths give identical restores; mutate keeps chains one object long', async () => {
    const a = await newVolume(dirs, SIZE, BS);
    const b = await newVolume(dirs, SIZE, BS);
    const storeA = await openDirectoryStore({ path: await dirs.make() });
    const storeB = await openDirectoryStore({ path: await dirs.make() });
    const ra = await scenario(a, storeA, {}, 4, 7);
    const rb = await scenario(b, storeB, { mutate: true }, 4, 7);
    for (const [n, img] of ra.images) expect(rb.images.get(n)!.equals(img)).toBe(true);
    await expectRestores(storeA, a.info.id, ra.images);
    await expectRestores(storeB, b.info.id, rb.images);
    const h = await loadHasher();
    const mb = await readManifest(storeB, h, b.info.id, 4);
    for (const chain of mb.chunks.values()) expect(chain.length).toBe(1);
    const ma = await readManifest(storeA, h, a.info.id, 4);
    expect(Math.max(...[...ma.chunks.values()].map((c) => c.length))).toBeGreaterThan(1);
    // The price of mutate: whole chunks go up.
    const up = (r: typeof ra) => r.results.slice(1).reduce((s, x) => s + x.uploadedBytes, 0);
    expect(up(rb)).toBeGreaterThan(up(ra));
    await a.shutdown();
    await b.shutdown();
  });

  it('compaction folds a chain into a full object once it would pass maxChain', async () => {
    const v = await newVolume(dirs, 4 * CHUNK, BS);
    const store = await openDirectoryStore({ path: await dirs.make() });
    const sink = await createArchiveSink({ store, source: v, chunkBytes: CHUNK, maxChain: 3 });
    await sink.catchUp(v);
    const images = new Map<number, Buffer>();
    const folded: number[] = [];
    for (let i = 1; i <= 7; i++) {
      await v.write(BS * (i % 16), Buffer.alloc(BS, i)); // always chunk 0
      const p = await v.closeSnapshot();
      images.set(p.n, await v.read(0, v.size));
      const [r] = await sink.catchUp(v);
      folded.push(r.folded);
    }
    const h = await loadHasher();
    const lengths = [];
    for (let n = 1; n <= 7; n++) lengths.push((await readManifest(store, h, v.info.id, n)).chunks.get(0)!.length);
    expect(lengths).toEqual([1, 2, 3, 1, 2, 3, 1]);
    expect(folded).toEqual([0, 0, 0, 1, 0, 0, 1]);
    await expectRestores(store, v.info.id, images);
    await v.shutdown();
  });

  it('compaction also folds a chain as soon as its deltas outweigh the chunk', async () => {
    const v = await newVolume(dirs, 2 * CHUNK, BS);
    const store = await openDirectoryStore({ path: await dirs.make() });
    const sink = await createArchiveSink({ store, source: v, chunkBytes: CHUNK }); // default maxChain
    await sink.catchUp(v);
    const lengths: number[] = [];
    for (let i = 1; i <= 4; i++) {
      await v.write(BS * ((i * 6) % 16), Buffer.alloc(6 * BS, i)); // 6 of the chunk's 16 blocks
      const p = await v.closeSnapshot();
      await sink.catchUp(v);
      lengths.push((await readManifest(store, await loadHasher(), v.info.id, p.n)).chunks.get(0)!.length);
    }
    // 6 + 6 blocks of deltas fit in a 16-block chunk; a third 6 would not: fold.
    expect(lengths).toEqual([1, 2, 3, 1]);
    await expectRestores(store, v.info.id, new Map([[4, await v.read(0, v.size)]]));
    await v.shutdown();
  });

  it('a fully zeroed chunk leaves the manifest; zero blocks stay holes in the restored image', async () => {
    const v = await newVolume(dirs, 4 * CHUNK, BS);
    const store = await openDirectoryStore({ path: await dirs.make() });
    const sink = await createArchiveSink({ store, source: v, chunkBytes: CHUNK });
    await v.write(CHUNK, Buffer.alloc(CHUNK, 9));
    await v.write(3 * CHUNK, Buffer.alloc(BS, 1));
    await v.closeSnapshot();
    await sink.catchUp(v);
    await v.trim(CHUNK, CHUNK);
    const p = await v.closeSnapshot();
    await sink.catchUp(v);
    const h = await loadHasher();
    expect([...(await readManifest(store, h, v.info.id, 1)).chunks.keys()]).toEqual([1, 3]);
    expect([...(await readManifest(store, h, v.info.id, p.n)).chunks.keys()]).toEqual([3]);
    const out = join(await dirs.make(), 'img');
    await restorePoint({ store, volumeId: v.info.id, n: p.n, path: out });
    const st = await stat(out);
    expect(st.size).toBe(4 * CHUNK);
    expect(st.blocks * 512).toBeLessThan(CHUNK); // sparse: one block of data
    expect((await readFile(out)).equals(await v.read(0, v.size))).toBe(true);
    await v.shutdown();
  });

  it('a point already archived is not uploaded again; a lost base falls back to a full copy', async () => {
    const v = await newVolume(dirs, 4 * CHUNK, BS);
    const store = await openDirectoryStore({ path: await dirs.make() });
    const sink = await createArchiveSink({ store, source: v, chunkBytes: CHUNK });
    await sink.catchUp(v);
    await v.write(0, Buffer.alloc(BS, 5));
    const p1 = await v.closeSnapshot();
    const [r1] = await sink.catchUp(v);
    expect(r1.alreadyArchived).toBe(false);
    const again = await sink.archivePoint(p1);
    expect(again).toMatchObject({ alreadyArchived: true, uploadedBytes: 0 });
    await store.delete(manifestKey(v.info.id, 1));
    await v.write(BS, Buffer.alloc(BS, 6));
    const p2 = await v.closeSnapshot();
    const [r2] = await sink.catchUp(v);
    expect(r2).toMatchObject({ n: p2.n, fullCopy: true });
    await expectRestores(store, v.info.id, new Map([[p2.n, await v.read(0, v.size)]]));
    await v.shutdown();
  });

  it('never takes another volume\'s manifests under the same id for its own points (two nodes, one prefix)', async () => {
    const store = await openDirectoryStore({ path: await dirs.make() });
    // Site A's volume db: three points of its data.
    const a = await newVolume(dirs, 4 * CHUNK, BS);
    const sa = await createArchiveSink({ store, source: a, volumeId: 'db', chunkBytes: CHUNK });
    await sa.catchUp(a);
    for (let i = 1; i <= 3; i++) {
      await a.write((i - 1) * CHUNK, Buffer.alloc(CHUNK, 0x10 + i));
      await a.closeSnapshot();
      await sa.catchUp(a);
    }
    // Site B, another volume also named db, archives into the same store.
    await new Promise((r) => setTimeout(r, 5));
    const b = await newVolume(dirs, 4 * CHUNK, BS);
    const sb = await createArchiveSink({ store, source: b, volumeId: 'db', chunkBytes: CHUNK });
    await b.write(0, Buffer.alloc(CHUNK, 0xbb));
    await b.closeSnapshot();
    const err = await sb.catchUp(b).then(() => null, (e: unknown) => e);
    expect(isHeadstartError(err, 'ARCHIVE_GEOMETRY'), String(err)).toBe(true);
    // Nothing of B was acknowledged as archived: the volume keeps its points.
    expect(b.sinks().find((s) => s.name === 'archive')?.acked).toBe(null);
    await a.shutdown();
    await b.shutdown();
  });

  it('stores a chunk whole again when an object its chain needs is gone, so the new point restores', async () => {
    const v = await newVolume(dirs, 4 * CHUNK, BS);
    const store = await openDirectoryStore({ path: await dirs.make() });
    const sink = await createArchiveSink({ store, source: v, volumeId: 'db', chunkBytes: CHUNK });
    await sink.catchUp(v);
    await v.write(0, Buffer.alloc(CHUNK, 0x21)); // point 1: chunk 0 as a full object
    await v.closeSnapshot();
    await sink.catchUp(v);
    const [full] = (await store.list('db/objects/0000000000/')).map((o) => o.key);
    await store.delete(full); // lost by hand, or by the store
    // The node restarts (a fresh sink): the chain is checked before a delta extends it.
    const again = await createArchiveSink({ store, source: v, volumeId: 'db', chunkBytes: CHUNK });
    await v.write(BS, Buffer.alloc(BS, 0x22)); // one block of chunk 0: a delta would need the lost object
    const p = await v.closeSnapshot();
    const [r] = await again.catchUp(v);
    expect(r.repaired).toBe(1);
    const out = join(await dirs.make(), 'p.raw');
    await restorePoint({ store, volumeId: 'db', n: p.n, path: out });
    expect((await readFile(out)).equals(await v.read(0, v.size))).toBe(true);
    await v.shutdown();
  });

  it('never builds a delta over another volume\'s point n-1', async () => {
    const store = await openDirectoryStore({ path: await dirs.make() });
    const a = await newVolume(dirs, 4 * CHUNK, BS);
    const sa = await createArchiveSink({ store, source: a, volumeId: 'db', chunkBytes: CHUNK });
    await sa.catchUp(a);
    await a.write(0, Buffer.alloc(CHUNK, 0xaa));
    await a.closeSnapshot();
    await sa.catchUp(a); // manifests 0 and 1 of A
    const b = await newVolume(dirs, 4 * CHUNK, BS);
    await b.addSink('hold'); // keeps B's points (as an unacknowledged sink does)
    await b.write(CHUNK, Buffer.alloc(BS, 0xb1));
    const b1 = await b.closeSnapshot();
    await b.write(2 * CHUNK, Buffer.alloc(BS, 0xb2));
    const b2 = await b.closeSnapshot();
    const sb = await createArchiveSink({ store, source: b, volumeId: 'db', chunkBytes: CHUNK });
    const err = await sb.archivePoint(b2).then(() => null, (e: unknown) => e);
    expect(b1.n).toBe(1);
    expect(isHeadstartError(err, 'ARCHIVE_GEOMETRY'), String(err)).toBe(true);
    await a.shutdown();
    await b.shutdown();
  });

  it('restores into a new replica volume that records the point as committed', async () => {
    const v = await newVolume(dirs, SIZE, BS);
    const store = await openDirectoryStore({ path: await dirs.make() });
    const { images } = await scenario(v, store, {}, 2, 3);
    const { volume: r, result } = await restoreToNewVolume({ store, volumeId: v.info.id, n: 2, dir: join(await dirs.make(), 'r'), role: 'replica' });
    expect(result.n).toBe(2);
    expect((await r.read(0, r.size)).equals(images.get(2)!)).toBe(true);
    expect(r.committed?.n).toBe(2);
    expect(r.readOnly).toBe(true);
    await r.shutdown();
    await v.shutdown();
  });

  it('a replica seeded from the archive and promoted continues the same archive (its points carry the source\'s stamps)', async () => {
    const v = await newVolume(dirs, SIZE, BS);
    const store = await openDirectoryStore({ path: await dirs.make() });
    await scenario(v, store, {}, 2, 4);
    const { volume: r } = await restoreToNewVolume({ store, volumeId: v.info.id, n: 2, dir: join(await dirs.make(), 'r'), role: 'replica' });
    await r.setRole('primary', r.info.epoch + 1); // the failover
    const sink = await createArchiveSink({ store, source: r, volumeId: v.info.id, chunkBytes: CHUNK });
    await r.write(0, Buffer.alloc(BS, 0x5e));
    const p3 = await r.closeSnapshot();
    await sink.catchUp(r);
    const out = join(await dirs.make(), 'p3.raw');
    await restorePoint({ store, volumeId: v.info.id, n: p3.n, path: out });
    expect((await readFile(out)).equals(await r.read(0, r.size))).toBe(true);
    await r.shutdown();
    await v.shutdown();
  });

  it('verify and restore catch damaged, replaced and missing objects', async () => {
    const v = await newVolume(dirs, SIZE, BS);
    const path = await dirs.make();
    const store = await openDirectoryStore({ path });
    await scenario(v, store, {}, 2, 5);
    const h = await loadHasher();
    const m = await readManifest(store, h, v.info.id, 2);
    const [[chunkA, chainA], [chunkB, chainB], [chunkC, chainC]] = [...m.chunks];
    const keyA = objectKey(v.info.id, chunkA, chainA.at(-1)!);
    const keyB = objectKey(v.info.id, chunkB, chainB.at(-1)!);
    const keyC = objectKey(v.info.id, chunkC, chainC.at(-1)!);
    const bytes = await store.get(keyA);
    bytes[bytes.length >> 1] ^= 0xff;
    await store.put(keyA, bytes); // bit rot
    await store.delete(keyB); // lost
    await store.put(keyC, await store.get(keyA.replace(/\d{10}\/\d{16}\.[fd]$/, '')).catch(() => Buffer.from('not an object at all......')));
    const report = await verifyArchive({ store, volumeId: v.info.id, points: [2] });
    expect(report.ok).toBe(false);
    const byKey = new Map(report.problems.map((p) => [p.key, p.code]));
    expect(byKey.get(keyA)).toBe('ARCHIVE_CORRUPT');
    expect(byKey.get(keyB)).toBe('ARCHIVE_NOT_FOUND');
    expect(byKey.get(keyC)).toBe('ARCHIVE_CORRUPT');
    const shallow = await verifyArchive({ store, volumeId: v.info.id, points: [2], deep: false });
    expect(shallow.problems.some((p) => p.key === keyB && p.code === 'ARCHIVE_NOT_FOUND')).toBe(true);
    const err = await restorePoint({ store, volumeId: v.info.id, n: 2, path: join(path, 'out.raw') }).then(() => null, (e: unknown) => e);
    expect(isHeadstartError(err) && ['ARCHIVE_CORRUPT', 'ARCHIVE_NOT_FOUND'].includes(err.code)).toBe(true);
    await expect(stat(join(path, 'out.raw'))).rejects.toThrow(); // no half image left behind
    await expect(stat(join(path, 'out.raw.partial'))).rejects.toThrow();
    expect(await restorePoint({ store, volumeId: v.info.id, n: 9, path: join(path, 'x') }).catch((e: unknown) => (e as { code: string }).code)).toBe('ARCHIVE_NOT_FOUND');
    await v.shutdown();
  });
});

describe('archive restore and verify report what an operator needs', () => {
  it('a restore into a directory that does not exist fails with a code, not a raw ENOENT', async () => {
    const v = await newVolume(dirs, SIZE, BS);
    const store = await openDirectoryStore({ path: await dirs.make() });
    await scenario(v, store, {}, 1, 11);
    const err = await restorePoint({ store, volumeId: v.info.id, n: 1, path: join(await dirs.make(), 'no', 'such', 'dir', 'x.raw') }).then(() => null, (e: unknown) => e);
    expect(isHeadstartError(err, 'EXPORT_OUTPUT'), String(err)).toBe(true);
    await v.shutdown();
  });

  it('a failed restore into a new volume leaves no half-restored volume; a retry then works', async () => {
    const v = await newVolume(dirs, SIZE, BS);
    const store = await openDirectoryStore({ path: await dirs.make() });
    const { images } = await scenario(v, store, {}, 2, 12);
    const m = await readManifest(store, await loadHasher(), v.info.id, 2);
    const [chunk, chain] = [...m.chunks].at(-1)!;
    const key = objectKey(v.info.id, chunk, chain.at(-1)!);
    const good = await store.get(key);
    const bad = Buffer.from(good);
    bad[bad.length >> 1] ^= 0xff;
    await store.put(key, bad);
    const dir = join(await dirs.make(), 'r');
    const err = await restoreToNewVolume({ store, volumeId: v.info.id, n: 2, dir, role: 'replica' }).then(() => null, (e: unknown) => e);
    expect(isHeadstartError(err, 'ARCHIVE_CORRUPT'), String(err)).toBe(true);
    await expect(stat(join(dir, 'meta.lmdb'))).rejects.toThrow();
    await expect(stat(join(dir, 'image.raw'))).rejects.toThrow();
    await store.put(key, good); // repaired (re-archived): the same command now succeeds
    const { volume: r } = await restoreToNewVolume({ store, volumeId: v.info.id, n: 2, dir, role: 'replica' });
    expect((await r.read(0, r.size)).equals(images.get(2)!)).toBe(true);
    await r.shutdown();
    await v.shutdown();
  });

  it('a restore into a volume directory that holds files refuses, and leaves them as they were', async () => {
    const v = await newVolume(dirs, SIZE, BS);
    const store = await openDirectoryStore({ path: await dirs.make() });
    await scenario(v, store, {}, 1, 13);
    const dir = await dirs.make();
    await writeFile(join(dir, 'image.raw'), 'somebody else\'s image');
    const err = await restoreToNewVolume({ store, volumeId: v.info.id, n: 1, dir, role: 'replica' }).then(() => null, (e: unknown) => e);
    expect(isHeadstartError(err, 'ARCHIVE_CONFIG') && err.message.includes('is not empty (image.raw)'), String(err)).toBe(true);
    expect(await readFile(join(dir, 'image.raw'), 'utf8')).toBe('somebody else\'s image');
    await v.shutdown();
  });

  it('verify names every point a damaged shared object breaks, not only the first', async () => {
    const v = await newVolume(dirs, 4 * CHUNK, BS);
    const store = await openDirectoryStore({ path: await dirs.make() });
    const sink = await createArchiveSink({ store, source: v, chunkBytes: CHUNK });
    await sink.catchUp(v);
    await v.write(0, Buffer.alloc(CHUNK, 7)); // point 1: chunk 0 full object
    await v.closeSnapshot();
    for (let i = 2; i <= 4; i++) {
      await v.write(CHUNK * 2, Buffer.alloc(BS, i)); // points 2..4 touch another chunk only
      await v.closeSnapshot();
    }
    await sink.catchUp(v);
    const full = (await store.list(`${v.info.id}/objects/0000000000/`)).map((o) => o.key);
    expect(full).toHaveLength(1);
    await store.delete(full[0]);
    for (const deep of [false, true]) {
      const report = await verifyArchive({ store, volumeId: v.info.id, deep });
      expect(report.ok).toBe(false);
      expect([...new Set(report.problems.map((p) => p.n))].sort(), `deep=${deep}`).toEqual([1, 2, 3, 4]);
    }
    await v.shutdown();
  });
});

describe('archive sink (S3 with faults)', () => {
  it('uploads through throttling and 5xx with retries, and the result restores exactly', async () => {
    const v = await newVolume(dirs, SIZE, BS);
    const store = openS3Store({ bucket: s3.bucket, prefix: 'faulty', endpoint: s3.proxyEndpoint, credentials: TEST_CREDENTIALS });
    const random = rng(11);
    const sink = await createArchiveSink({ store, source: v, chunkBytes: CHUNK, retry: { baseDelayMs: 2, attempts: 8 } });
    await sink.catchUp(v);
    await randomWrites(v, random, 30);
    await v.closeSnapshot();
    const image = await v.read(0, v.size);
    s3.failNext(4, 503);
    const [r] = await sink.catchUp(v);
    s3.failNext(0, 503);
    expect(r.retries).toBeGreaterThanOrEqual(4);
    await expectRestores(store, v.info.id, new Map([[1, image]]));
    await v.shutdown();
    await store.close();
  });
});
