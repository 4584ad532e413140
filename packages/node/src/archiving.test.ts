import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { listPoints, openStore, protectPoint } from '@headstart/archive';
import { createVolume, type Volume } from '@headstart/volume';
import { startArchiver, type ArchivedEvent, type ArchiveConfig, type Archiver } from './archiving';
import { silentLogger } from './logger';

const dirs: string[] = [];
const open: { volume: Volume; archiver: Archiver }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    await o.archiver.stop();
    await o.volume.shutdown();
  }
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function setup(archive: Omit<ArchiveConfig, 'store'>, storePath?: (dir: string) => Promise<string>) {
  const dir = await mkdtemp(join(tmpdir(), 'hs-archiving-'));
  dirs.push(dir);
  const volume = await createVolume(join(dir, 'vol'), { id: 'vol', name: 'vol', size: 1 << 20, blockSize: 4096 });
  const path = storePath ? await storePath(dir) : join(dir, 'archive');
  const events: (ArchivedEvent & { at: number })[] = [];
  const archiver = await startArchiver(volume, { ...archive, store: { kind: 'dir', path } }, silentLogger(), (e) => events.push({ ...e, at: Date.now() }));
  open.push({ volume, archiver });
  const closePoint = async (fill: number) => {
    await volume.write(fill * 4096, Buffer.alloc(4096, fill));
    const p = await volume.closeSnapshot({ scheduledAt: Date.now() });
    archiver.kick();
    return p.n;
  };
  const archived = async (n: number) => {
    const until = Date.now() + 20_000;
    // Acknowledged, and the run (retention included) over.
    while ((archiver.view().acked ?? -1) < n || archiver.view().busy) {
      if (Date.now() > until) throw new Error(`point ${n} not archived: ${JSON.stringify(archiver.view())}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { dir, path, volume, archiver, events, closePoint, archived };
}

describe('the archive sink of a node volume', () => {
  it('archives every closed point and prunes by the retention policy after each', async () => {
    const t = await setup({ retention: { keepLast: 2 } });
    const ns = [await t.closePoint(1), await t.closePoint(2), await t.closePoint(3)];
    await t.archived(ns[2]);
    const v = t.archiver.view();
    expect(v).toMatchObject({ name: 'archive', state: 'connected', lastError: null, acked: ns[2] });
    expect(v.ackedScheduledAt).not.toBeNull();
    expect(t.events.map((e) => e.n)).toEqual(expect.arrayContaining(ns));
    const store = await openStore(t.path);
    expect((await listPoints({ store, volumeId: 'vol' })).map((p) => p.n)).toEqual(ns.slice(1));
    await store.close();
    // The volume released what the archive (its only sink) acknowledged.
    expect(t.volume.snapshots().every((p) => p.n >= ns[2])).toBe(true);
  });

  it('prunes the volumes of a consistency group together: a time one of them protects stays in both', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-archiving-'));
    dirs.push(dir);
    const path = join(dir, 'archive');
    const names = ['wal', 'db'];
    const members: { volume: Volume; archiver: Archiver }[] = [];
    for (const name of names) {
      const volume = await createVolume(join(dir, name), { id: name, name, size: 1 << 20, blockSize: 4096 });
      const archiver = await startArchiver(volume, { retention: { keepLast: 2 }, store: { kind: "dir", path } }, silentLogger(), () => {}, names.filter((n) => n !== name));
      members.push({ volume, archiver });
      open.push({ volume, archiver });
    }
    const t0 = Date.now();
    const closeAll = async (k: number) => {
      let n = -1;
      for (const m of members) {
        await m.volume.write(k * 4096, Buffer.alloc(4096, k));
        n = (await m.volume.closeSnapshot({ scheduledAt: t0 + k * 1000 })).n;
        m.archiver.kick();
      }
      const until = Date.now() + 20_000;
      while (members.some((m) => (m.archiver.view().acked ?? -1) < n || m.archiver.view().busy)) {
        if (Date.now() > until) throw new Error(`point ${n} not archived by both`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await closeAll(1);
    const store = await openStore(path);
    const times = async (id: string) => (await listPoints({ store, volumeId: id })).map((p) => p.scheduledAt - t0);
    await protectPoint({ store, volumeId: 'db', n: (await listPoints({ store, volumeId: 'db' })).find((p) => p.scheduledAt === t0 + 1000)!.n });
    for (let k = 2; k <= 5; k++) await closeAll(k);
    // keepLast 2 alone would have let wal's point at 1 s go: db protects that time.
    expect(await times('wal')).toContain(1000);
    expect(await times('db')).toContain(1000);
    expect(await times('wal')).not.toContain(2000);
    await store.close();
  });

  it('with `every`, catches up at most that often: points closed meanwhile go up together', async () => {
    const t = await setup({ every: 2000 });
    const first = await t.closePoint(1);
    await t.archived(first);
    const a = await t.closePoint(2);
    const b = await t.closePoint(3);
    await new Promise((r) => setTimeout(r, 300));
    expect(t.archiver.view().acked).toBe(first); // not right after the closes: at the next slot
    await t.archived(b);
    const [ea, eb] = t.events.slice(-2);
    expect([ea.n, eb.n]).toEqual([a, b]);
    expect(eb.at - ea.at).toBeLessThan(50); // one run: delivered together
  });

  it('a failing store: the error shows, the volume keeps the points, and a retry with backoff catches up', async () => {
    // The store's directory cannot be created: a file is in the way.
    const t = await setup({}, async (dir) => {
      const p = join(dir, 'blocked');
      await writeFile(p, 'not a directory');
      return join(p, 'archive');
    });
    const n = await t.closePoint(1);
    const until = Date.now() + 10_000;
    while (t.archiver.view().lastError === null && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(t.archiver.view()).toMatchObject({ state: 'error', acked: null });
    expect(t.archiver.view().lastError).toMatch(/^ARCHIVE_/);
    expect(t.volume.snapshots().some((p) => p.n === n)).toBe(true);
    await rm(join(t.dir, 'blocked'));
    await t.archived(n);
    expect(t.archiver.view()).toMatchObject({ state: 'connected', lastError: null });
  });
});
