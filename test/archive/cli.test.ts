/**
 * The archive wired into the product, end to end with real processes: a `headstart serve`
 * node whose volume has an `archive:` block archives points as they close (a directory
 * store, and once an S3 store on a real s3rver on loopback that refuses the first requests);
 * `headstart archive list|restore|prune|verify` read them back; a restored image hashes
 * like the source's point; the failing store shows in `status` as the archive sink's last
 * error and the node catches up once the store answers.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../apps/cli/src/main';
import { createArchiveSink, listPoints, openDirectoryStore, protectPoint } from '@headstart/archive';
import { connectNbd, type NbdClient } from '@headstart/nbd';
import { createVolume, openVolume } from '@headstart/volume';
import { callAdmin, loadConfig, type NodeStatus, type SinkView } from '@headstart/node';
import { freePort, runCli, startServe, stopGracefully, waitFor } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';
import { startTestS3, TEST_CREDENTIALS, type TestS3 } from '../../packages/archive/src/testing/s3-server';

const MiB = 1 << 20;
const SIZE = 8 * MiB;

let s3: TestS3 | null = null;
afterAll(async () => {
  await s3?.stop();
});

async function writeConfig(dir: string, store: string, ports: { nbd: number; admin: number }): Promise<string> {
  const path = join(dir, 'headstart.yaml');
  await writeFile(
    path,
    [
      'node: { name: site-a, dataDir: ./data }',
      `listen: { nbd: "127.0.0.1:${ports.nbd}", admin: "127.0.0.1:${ports.admin}" }`,
      'volumes:',
      `  - name: vol`,
      `    size: ${SIZE}`,
      // Points are taken by hand (`headstart snapshot`) in these tests. An archived volume
      // needs a schedule; an hourly one closed an extra point when a run crossed the hour
      // (CI, 12:00: the list ended [2, 3], not [1, 2]). This one fires on 29 February only.
      '    schedule: { cron: "0 0 29 2 *" }',
      '    archive:',
      `      store: "${store}"`,
      '      concurrency: 4',
      '',
    ].join('\n'),
  );
  return path;
}

async function archiveSink(config: string): Promise<SinkView | undefined> {
  const status = (await callAdmin(await loadConfig(config), 'GET', '/v1/status')) as NodeStatus;
  return status.volumes[0].sinks.find((s) => s.name === 'archive');
}

async function write(client: NbdClient, seed: number, blocks: number): Promise<void> {
  for (let i = 0; i < blocks; i++) {
    const block = (seed * 7919 + i * 104729) % (SIZE / 4096);
    await client.write(block * 4096, Buffer.alloc(4096 * (1 + (i % 3)), (seed * 31 + i) & 0xff).subarray(0, Math.min(4096 * (1 + (i % 3)), SIZE - block * 4096)));
  }
  await client.flush();
}

async function hashExport(client: NbdClient): Promise<string> {
  const h = createHash('sha256');
  for (let at = 0; at < SIZE; at += MiB) h.update(await client.read(at, MiB));
  return h.digest('hex');
}

const sha = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');

async function ok(args: string[]): Promise<string> {
  const r = await runCli(args);
  expect(r.code, `headstart ${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r.stdout.trim();
}

/** Writes, closes a point, and returns its number and the volume's hash as of that point (nothing writes in between). */
async function point(config: string, client: NbdClient, seed: number, blocks = 40): Promise<{ n: number; hash: string }> {
  await write(client, seed, blocks);
  const hash = await hashExport(client);
  // Through the admin API in-process (what `headstart snapshot` calls): a CLI process per point would only add start-up time.
  const { n } = (await callAdmin(await loadConfig(config), 'POST', '/v1/volumes/vol/snapshot')) as { n: number };
  return { n, hash };
}

/**
 * The CLI in-process: main() is exactly what bin/headstart.js runs. Used for the quick
 * checks (help pages, error paths), where a process each would only add start-up time.
 */
async function inProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((stdout += String(chunk)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((stderr += String(chunk)), true));
  try {
    return { code: await main(['node', 'headstart', ...args]), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe('headstart archive --help', () => {
  it('has --help on every archive command, with the exit codes', async () => {
    for (const cmd of [['archive'], ['archive', 'list'], ['archive', 'restore'], ['archive', 'prune'], ['archive', 'verify']]) {
      const { code, stdout: text } = await inProcess([...cmd, '--help']);
      expect(code, cmd.join(' ')).toBe(0);
      expect(text).toContain(`Usage: headstart ${cmd.join(' ')}`);
      if (cmd.length > 1) expect(text).toContain('--json');
    }
  });
});

describe('headstart archive verify', () => {
  it('is not OK for a volume the archive has no point of (a typo must not pass as verified)', async () => {
    const dir = tempDir('headstart-archive-verify-');
    await mkdir(join(dir, 'archive'));
    const { code, stdout } = await inProcess(['archive', 'verify', '--store', join(dir, 'archive'), '--volume', 'typo']);
    expect(code).toBe(4);
    expect(stdout).toContain('DAMAGED');
    expect(stdout).toContain('ARCHIVE_NOT_FOUND: volume typo has no archived point');
  });
});

describe('headstart archive: a consistency group', () => {
  /**
   * Two volumes of group app in one configuration, archived (through the library) at the
   * same scheduled times T + 1, 2, 3 s, as the group's node closes them; their images then.
   */
  async function groupArchive() {
    const dir = tempDir('headstart-archive-group-');
    const config = join(dir, 'headstart.yaml');
    const volume = (name: string) => [`  - name: ${name}`, `    size: ${MiB}`, '    group: app', '    schedule: { cron: "0 0 29 2 *" }', '    archive:', '      store: "dir:./archive"', '      retention: { keepLast: 1 }'];
    await writeFile(config, ['node: { name: site-a, dataDir: ./data }', 'volumes:', ...volume('wal'), ...volume('db'), ''].join('\n'));
    const store = await openDirectoryStore({ path: join(dir, 'archive') });
    const T = (Math.floor(Date.now() / 86_400_000) + 1) * 86_400_000;
    const images = new Map<string, Buffer>();
    for (const name of ['wal', 'db']) {
      const v = await createVolume(join(dir, 'vols', name), { id: name, name, size: MiB, blockSize: 4096 });
      const sink = await createArchiveSink({ store, source: v });
      await sink.catchUp(v);
      for (let k = 1; k <= 3; k++) {
        await v.write((k + (name === 'db' ? 10 : 0)) * 4096, Buffer.alloc(4096, k));
        await v.closeSnapshot({ scheduledAt: T + k * 1000 });
        images.set(`${name}@${k * 1000}`, await v.read(0, MiB));
        await sink.catchUp(v);
      }
      await v.shutdown();
    }
    const at = async (id: string, t: number) => (await listPoints({ store, volumeId: id })).find((p) => p.scheduledAt === t)!.n;
    return { dir, config, store, T, images, at };
  }

  it('prune keeps the same times in each of its volumes: a time one protects stays in the other', async () => {
    const { config, store, T, at } = await groupArchive();
    await protectPoint({ store, volumeId: 'db', n: await at('db', T + 1000) });
    const r = await inProcess(['archive', 'prune', '--json', '-c', config]);
    expect(r.code, r.stderr).toBe(0);
    const pruned = JSON.parse(r.stdout) as { volumes: { volume: string; kept: { n: number; reasons: string[] }[] }[] };
    const wal = pruned.volumes.find((v) => v.volume === 'wal')!;
    expect(wal.kept).toEqual([
      { n: await at('wal', T + 1000), reasons: ['protected'] },
      { n: await at('wal', T + 3000), reasons: ['newest', 'last'] },
    ]);
    for (const id of ['wal', 'db']) expect((await listPoints({ store, volumeId: id })).map((p) => p.scheduledAt - T)).toEqual([1000, 3000]);
    await store.close();
  });

  it('restore --group rebuilds every volume at one time; refuses a time a volume lacks, or a target that exists', async () => {
    const { dir, config, store, T, images, at } = await groupArchive();
    const out = join(dir, 'restored');
    const r = await inProcess(['archive', 'restore', 'db', String(await at('db', T + 2000)), '--group', '--out', out, '--json', '-c', config]);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as { group: string; scheduledAt: number; volumes: { volume: string; n: number; target: string }[] };
    expect(res).toMatchObject({ group: 'app', scheduledAt: T + 2000 });
    expect(res.volumes.map((v) => [v.volume, v.n, v.target])).toEqual([
      ['db', await at('db', T + 2000), join(out, 'db.raw')],
      ['wal', await at('wal', T + 2000), join(out, 'wal.raw')],
    ]);
    for (const name of ['wal', 'db']) expect((await readFile(join(out, `${name}.raw`))).equals(images.get(`${name}@2000`)!), name).toBe(true);
    // As replica volumes a node can take over, one directory each.
    const vols = join(dir, 'volumes');
    const seeded = await inProcess(['archive', 'restore', 'wal', String(await at('wal', T + 3000)), '--group', '--to-volume', vols, '-c', config]);
    expect(seeded.code, seeded.stderr).toBe(0);
    expect(seeded.stdout).toContain('restored group app at');
    for (const name of ['wal', 'db']) {
      const v = await openVolume(join(vols, name));
      expect(v.info.role).toBe('replica');
      expect((await v.read(0, MiB)).equals(images.get(`${name}@3000`)!), name).toBe(true);
      await v.shutdown();
    }
    // Again into the same directory: nothing is overwritten.
    const again = await inProcess(['archive', 'restore', 'wal', String(await at('wal', T + 3000)), '--group', '--out', out, '-c', config]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('exists; restore never overwrites');
    // A member that fails half-way (its image cannot be written: a directory stands where
    // its temporary file goes): the error says which, and db, restored before it, is not
    // kept either, so the group is never half restored.
    const half = join(dir, 'half');
    await mkdir(join(half, 'wal.raw.group-partial.partial'), { recursive: true });
    const failed = await inProcess(['archive', 'restore', 'db', String(await at('db', T + 3000)), '--group', '--out', half, '-c', config]);
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain(`group app: restoring wal to ${join(half, 'wal.raw')} failed`);
    expect(failed.stderr).toContain('nothing of the group was kept');
    expect(await readdir(half)).toEqual(['wal.raw.group-partial.partial']);
    // Cleared, the same restore succeeds.
    await rm(join(half, 'wal.raw.group-partial.partial'), { recursive: true });
    const retried = await inProcess(['archive', 'restore', 'db', String(await at('db', T + 3000)), '--group', '--out', half, '-c', config]);
    expect(retried.code, retried.stderr).toBe(0);
    for (const name of ['wal', 'db']) expect((await readFile(join(half, `${name}.raw`))).equals(images.get(`${name}@3000`)!), name).toBe(true);
    expect((await readdir(half)).sort()).toEqual(['db.raw', 'wal.raw']);
    // A time one volume no longer holds: refused before anything is written.
    await inProcess(['archive', 'prune', '--volume', 'wal', '--keep-last', '1', '-c', config]);
    const torn = await inProcess(['archive', 'restore', 'db', String(await at('db', T + 1000)), '--group', '--out', join(dir, 'torn'), '-c', config]);
    expect(torn.code).toBe(1);
    expect(torn.stderr).toContain('group app cannot be restored at');
    expect(torn.stderr).toContain('no point scheduled then in wal');
    expect(await readdir(dir)).not.toContain('torn');
    await store.close();
  });
});

describe('headstart archive: a node archives its points; the CLI lists, restores, prunes and verifies', () => {
  it('on a directory store', async () => {
    const dir = tempDir('headstart-archive-cli-');
    const ports = { nbd: await freePort(), admin: await freePort() };
    const config = await writeConfig(dir, 'dir:./archive', ports);
    const serve = startServe(config);
    try {
      await waitFor('the node', () => archiveSink(config), 30_000);
      const client = await waitFor('NBD', () => connectNbd({ host: '127.0.0.1', port: ports.nbd, exportName: 'vol' }));
      const p1 = await point(config, client, 1);
      const p2 = await point(config, client, 2);
      const p3 = await point(config, client, 3);
      await client.close();
      const sink = await waitFor('the archive to hold the last point', async () => {
        const s = await archiveSink(config);
        return s !== undefined && s.acked !== null && s.acked >= p3.n ? s : null;
      });
      expect(sink.lastError).toBeNull();
      expect(sink.state).toBe('connected');
      expect(sink.rpoAgeMs).not.toBeNull();
      expect(sink.payloadBytesSent).toBeGreaterThan(0);
      // The human status shows the archive as a sink.
      expect(await ok(['status', '-c', config])).toMatch(/sink archive: archive store ok, last committed \d+/);

      // list: every point as it closed (the config names the store: dir:./archive relative to it).
      const list = JSON.parse(await ok(['archive', 'list', '--json', '-c', config])) as { volumes: { volume: string; points: { n: number; fullCopy: boolean }[] }[] };
      expect(list.volumes).toHaveLength(1);
      expect(list.volumes[0].volume).toBe('vol');
      // The sink's baseline (the point closed when the volume was created, archived as the node started) comes first.
      const all = list.volumes[0].points.map((p) => p.n);
      expect(all.slice(-3)).toEqual([p1.n, p2.n, p3.n]);
      expect(list.volumes[0].points[0].fullCopy).toBe(true);
      expect(list.volumes[0].points.at(-1)!.fullCopy).toBe(false);
      // The same through --store, and the human table.
      expect((await inProcess(['archive', 'list', '--store', join(dir, 'archive')])).stdout).toContain(`volume vol in dir:${join(dir, 'archive')}: ${all.length} point(s)`);

      // restore: images hash like the source at those points (a delta point and the oldest).
      for (const p of [p3, p1]) {
        const image = join(dir, `restored-${p.n}.raw`);
        const r = JSON.parse(await ok(['archive', 'restore', 'vol', String(p.n), '--out', image, '--json', '-c', config])) as { n: number; size: number };
        expect(r).toMatchObject({ n: p.n, size: SIZE });
        expect(await sha(image)).toBe(p.hash);
      }
      // restore never overwrites; a point the archive lacks is a clear error.
      const again = await inProcess(['archive', 'restore', 'vol', String(p3.n), '--out', join(dir, `restored-${p3.n}.raw`), '-c', config]);
      expect(again.code).toBe(2);
      expect(again.stderr).toContain('ARCHIVE_CONFIG');
      const missing = await inProcess(['archive', 'restore', 'vol', '999', '--out', join(dir, 'x.raw'), '-c', config]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('ARCHIVE_NOT_FOUND');

      // prune --dry-run: says what would go, deletes nothing.
      const dry = JSON.parse((await inProcess(['archive', 'prune', '--dry-run', '--keep-last', '1', '--json', '-c', config])).stdout) as { dryRun: boolean; volumes: { deletedPoints: number[]; kept: { n: number }[] }[] };
      expect(dry.dryRun).toBe(true);
      expect(dry.volumes[0].deletedPoints).toEqual(all.slice(0, -1));
      expect(dry.volumes[0].kept.map((k) => k.n)).toEqual([p3.n]);
      const after = JSON.parse((await inProcess(['archive', 'list', '--json', '-c', config])).stdout) as typeof list;
      expect(after.volumes[0].points.map((p) => p.n)).toEqual(all);
      const noPolicy = await inProcess(['archive', 'prune', '--dry-run', '-c', config]);
      expect(noPolicy.code).toBe(2);
      expect(noPolicy.stderr).toContain('no retention for vol');

      // verify --deep: every object read and checked.
      const verified = JSON.parse(await ok(['archive', 'verify', '--deep', '--json', '-c', config])) as { ok: boolean; volumes: { objects: number }[] };
      expect(verified.ok).toBe(true);
      expect(verified.volumes[0].objects).toBeGreaterThan(0);
      // A damaged object: verify --deep names it and exits 4 (a check found the data different).
      const objects = join(dir, 'archive', 'vol', 'objects');
      const victim = join(objects, (await readdir(objects, { recursive: true })).find((f) => f.endsWith('.f'))!);
      const bytes = await readFile(victim);
      bytes[bytes.length >> 1] ^= 0xff;
      await writeFile(victim, bytes);
      const damaged = await runCli(['archive', 'verify', '--deep', '-c', config]);
      expect(damaged.code, damaged.stderr).toBe(4);
      expect(damaged.stdout).toContain('ARCHIVE_CORRUPT');
      // A damaged manifest: list still shows the other points, and names the damaged one (exit 4).
      const manifest = join(dir, 'archive', 'vol', 'manifests', String(p2.n).padStart(16, '0'));
      const m = await readFile(manifest);
      m[m.length >> 1] ^= 0xff;
      await writeFile(manifest, m);
      const listed = await runCli(['archive', 'list', '-c', config]);
      expect(listed.code, listed.stderr).toBe(4);
      expect(listed.stdout).toContain(`volume vol in dir:${join(dir, 'archive')}: ${all.length - 1} point(s), 1 DAMAGED`);
      expect(listed.stdout).toMatch(new RegExp(`DAMAGED point ${p2.n}: .*checksum mismatch`));
      expect(listed.stdout).toMatch(new RegExp(`^\\s+${p3.n}\\s`, 'm'));
    } finally {
      expect(await stopGracefully(serve.process)).toBe(0);
    }
  }, 120_000);

  it('on a real S3 server that refuses the first requests: status shows the error, the node catches up', async () => {
    s3 = await startTestS3('hs-archive');
    process.env.AWS_ACCESS_KEY_ID = TEST_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = TEST_CREDENTIALS.secretAccessKey;
    const dir = tempDir('headstart-archive-s3-');
    const ports = { nbd: await freePort(), admin: await freePort() };
    // Through the fault proxy: the first requests are answered 403 (denied, not retried inside a run).
    const url = `s3://${s3.bucket}/site-a?endpoint=${s3.proxyEndpoint}&region=us-east-1&pathStyle=true`;
    const config = await writeConfig(dir, url, ports);
    const serve = startServe(config);
    try {
      await waitFor('the node', () => archiveSink(config), 30_000);
      const client = await waitFor('NBD', () => connectNbd({ host: '127.0.0.1', port: ports.nbd, exportName: 'vol' }));
      s3.failNext(3, 403);
      const p1 = await point(config, client, 5);
      const failing = await waitFor('the archive sink to report the failing store', async () => {
        const s = await archiveSink(config);
        return s?.lastError ? s : null;
      }, 20_000, 100);
      expect(failing.state).toBe('error');
      expect(failing.lastError).toContain('ARCHIVE_STORE_DENIED');
      expect(failing.acked ?? -1).toBeLessThan(p1.n);
      const p2 = await point(config, client, 6);
      await client.close();
      const sink = await waitFor('the archive to catch up after backoff', async () => {
        const s = await archiveSink(config);
        return s !== undefined && s.acked !== null && s.acked >= p2.n ? s : null;
      }, 30_000);
      expect(sink.lastError).toBeNull();
      expect(serve.log()).toContain('archiving failed');

      const list = JSON.parse(await ok(['archive', 'list', '--store', url, '--json'])) as { volumes: { volume: string; points: { n: number }[] }[] };
      expect(list.volumes.map((v) => v.volume)).toEqual(['vol']);
      expect(list.volumes[0].points.map((p) => p.n).slice(-2)).toEqual([p1.n, p2.n]);
      const image = join(dir, 'restored.raw');
      await ok(['archive', 'restore', 'vol', String(p2.n), '--out', image, '--store', url]);
      expect(await sha(image)).toBe(p2.hash);
      expect(JSON.parse(await ok(['archive', 'verify', '--store', url, '--json'])).ok).toBe(true);
    } finally {
      expect(await stopGracefully(serve.process)).toBe(0);
    }
  }, 120_000);
});

describe('DR from the archive', () => {
  /**
   * `sinkFirst`: site-a ships to site-b from the start (its sink for site-b keeps every point
   * since, so the seed point is still there: the source records it as acknowledged and sends
   * what came after). Otherwise site-b is added only after the seed point was archived and
   * released: the source compares checksums and sends only the blocks that differ.
   */
  async function drill(sinkFirst: boolean): Promise<void> {
    const dir = tempDir('headstart-archive-dr-');
    const ports = { aNbd: await freePort(), aAdmin: await freePort(), bNbd: await freePort(), bAdmin: await freePort(), bPeers: await freePort() };
    const secret = 'archive-dr-test-secret-0123456789';
    const a = join(dir, 'a', 'headstart.yaml');
    const b = join(dir, 'b', 'headstart.yaml');
    await mkdir(join(dir, 'a'), { recursive: true });
    await mkdir(join(dir, 'b'), { recursive: true });
    const configA = (withB: boolean) =>
      writeFile(
        a,
        [
          `node: { name: site-a, dataDir: ./data, secret: ${secret} }`,
          `listen: { nbd: "127.0.0.1:${ports.aNbd}", admin: "127.0.0.1:${ports.aAdmin}" }`,
          withB ? `peers: [{ name: site-b, url: "ws://127.0.0.1:${ports.bPeers}" }]` : '',
          'volumes:',
          `  - { name: vol, size: ${SIZE}, schedule: { cron: "0 0 29 2 *" }, sinks: [${withB ? 'site-b' : ''}], archive: { store: ./archive } }`,
          '',
        ].join('\n'),
      );
    await configA(sinkFirst);
    await writeFile(
      b,
      [
        `node: { name: site-b, dataDir: ./data, secret: ${secret} }`,
        `listen: { nbd: "127.0.0.1:${ports.bNbd}", admin: "127.0.0.1:${ports.bAdmin}", peers: "127.0.0.1:${ports.bPeers}" }`,
        'volumes:',
        `  - { name: vol, size: ${SIZE}, role: replica }`,
        '',
      ].join('\n'),
    );
    // Site A runs alone: site-b does not exist yet.
    let siteA = startServe(a);
    let siteB: ReturnType<typeof startServe> | null = null;
    try {
      await waitFor('site-a', () => archiveSink(a), 30_000);
      const client = await waitFor('NBD on site-a', () => connectNbd({ host: '127.0.0.1', port: ports.aNbd, exportName: 'vol' }));
      // The whole volume written: a full sync to site-b would move all of it.
      for (let at = 0; at < SIZE; at += MiB) await client.write(at, Buffer.alloc(MiB, (at / MiB + 1) & 0xff));
      const seed = await point(a, client, 11);
      await waitFor('the archive to hold the seed point', async () => ((await archiveSink(a))?.acked ?? -1) >= seed.n || null);

      // The new site is seeded from the archive, not from site-a.
      const restored = JSON.parse(await ok(['archive', 'restore', 'vol', String(seed.n), '--to-volume', join(dir, 'b', 'data', 'volumes', 'vol'), '--json', '-c', a])) as { n: number };
      expect(restored.n).toBe(seed.n);
      // Written after the seed point: the difference, 20 blocks inside the first MiB (one checksum range of the link).
      for (let i = 0; i < 20; i++) await client.write(i * 7 * 4096, Buffer.alloc(4096, 0xa0 + i));
      const later = await point(a, client, 12, 0);
      await client.close();
      const status = async (config: string) => (await callAdmin(await loadConfig(config), 'GET', '/v1/status')) as NodeStatus;
      if (!sinkFirst) {
        await waitFor('the archive to hold the later point', async () => ((await archiveSink(a))?.acked ?? -1) >= later.n || null);
        // site-a kept nothing for site-b: the seed point is gone from the volume by now.
        expect(await stopGracefully(siteA.process)).toBe(0);
        await configA(true);
        siteA = startServe(a);
        await waitFor('site-a again', () => archiveSink(a), 30_000);
      }

      siteB = startServe(b);
      await waitFor('site-b to commit the later point', async () => ((await status(b).catch(() => null))?.volumes[0].committed?.n ?? -1) >= later.n || null, 60_000).catch((err: Error) => {
        throw new Error(`${err.message}\n--- site-a log ---\n${siteA.log().slice(-4000)}\n--- site-b log ---\n${siteB!.log().slice(-4000)}`);
      });
      const toB = (await status(a)).volumes[0].sinks.find((s) => s.name === 'site-b')!;
      // Only what changed after the seed point went over the link, never the 8 MiB: the 20 blocks
      // themselves, or (checksum compare) the one 1 MiB range that holds them.
      expect(toB.payloadBytesSent).toBeGreaterThan(0);
      expect(toB.payloadBytesSent).toBeLessThanOrEqual(sinkFirst ? 20 * 4096 : MiB);
      const replica = await waitFor('NBD on site-b', () => connectNbd({ host: '127.0.0.1', port: ports.bNbd, exportName: 'vol' }));
      expect(await hashExport(replica)).toBe(later.hash);
      await replica.close();
    } finally {
      if (siteB) expect(await stopGracefully(siteB.process)).toBe(0);
      expect(await stopGracefully(siteA.process)).toBe(0);
    }
  }

  it('seeds a new replica from the archive; the source still keeps that point and sends only what came after', () => drill(true), 120_000);
  it('seeds a new replica from the archive; the source released that point and sends only the blocks that differ (checksums)', () => drill(false), 120_000);
});
