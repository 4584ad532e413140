/**
 * A consistency group fails over as one, with the real CLI, real NBD clients and kill -9.
 *
 * Two volumes of group `app` — `wal` and `db`, as a database's log and data — take a
 * workload whose writes depend on each other: record k goes to `wal`, and only once it is
 * acknowledged, record k to `db`; record k+1 to `wal` only once `db` acknowledged k. Any
 * state a crash can leave has, for the newest records W (wal) and D (db), W - 1 <= D <= W.
 * `db` also takes bulk writes, so its points take longer to ship than `wal`'s over the capped
 * link: committed one by one, the replica's `wal` would run ahead of its `db` for most of
 * each interval. The replica site is killed -9 twice while it replicates, then the source
 * site is killed -9 (the disaster) and the replica site once more; one `promote` must make
 * both volumes primary at the same point, and the pair must satisfy the invariant. Then
 * the old site returns and one `demote` fails both volumes back. On the way, the dashboard
 * names the group on each row.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectNbd, type NbdClient } from '@headstart/nbd';
import { callAdmin, loadConfig, type NodeStatus } from '@headstart/node';
import { killHard, runCli, startServe, waitFor, waitServing } from '../helpers/cli';
import { pairedSites } from '../helpers/sites';
import { openBrowser } from '../dashboard/browser';
import { tempDir } from '../helpers/tmp';

const BS = 4096;
const RECORDS = 256; // record k lives in block k % RECORDS of each volume
const MiB = 1 << 20;

async function status(config: string): Promise<NodeStatus | null> {
  const r = await runCli(['status', '--json', '-c', config]);
  return r.code === 0 ? (JSON.parse(r.stdout) as NodeStatus) : null;
}

function record(k: number): Buffer {
  const b = Buffer.alloc(BS);
  for (let i = 0; i < BS; i += 8) b.writeBigUInt64LE(BigInt(k), i);
  return b;
}

/** The newest record in a volume's record area (0 if none). */
async function newest(c: NbdClient): Promise<number> {
  const area = await c.read(0, RECORDS * BS);
  let max = 0;
  for (let b = 0; b < RECORDS; b++) {
    const k = Number(area.readBigUInt64LE(b * BS));
    for (let i = 8; i < BS; i += 8) expect(area.readBigUInt64LE(b * BS + i), `block ${b} holds one record whole`).toBe(BigInt(k));
    max = Math.max(max, k);
  }
  return max;
}

describe('a consistency group', () => {
  it('is promoted as one, at one point, after kill -9 of both sites', async () => {
    const dir = tempDir('headstart-group-');
    const { a, b, ports, ok } = await pairedSites(dir, { a: join(dir, 'a-data'), b: join(dir, 'b-data') });
    for (const name of ['wal', 'db']) {
      await ok(['init', 'volume', name, '--size', '64MiB', '--role', 'primary', '--every', '1s', '--sink', 'site-b', '--group', 'app', '-c', a]);
      await ok(['init', 'volume', name, '--size', '64MiB', '--role', 'replica', '--every', '1s', '--sink', 'site-a', '--group', 'app', '-c', b]);
    }
    const siteA = startServe(a);
    let siteB = startServe(b);
    await waitServing(siteA, a);
    await waitServing(siteB, b);
    expect((await runCli(['status', '-c', a])).stdout).toContain('volume wal (group app)');
    await ok(['rate', '4MB/s', '--peer', 'site-b', '-c', a]);
    const wal = await waitFor('NBD wal', () => connectNbd({ host: '127.0.0.1', port: ports.aNbd, exportName: 'wal' }));
    const db = await waitFor('NBD db', () => connectNbd({ host: '127.0.0.1', port: ports.aNbd, exportName: 'db' }));

    // The workload, until the source site dies.
    let k = 0;
    let stopped = false;
    const dependent = (async () => {
      while (!stopped) {
        const next = k + 1;
        await wal.write((next % RECORDS) * BS, record(next));
        await db.write((next % RECORDS) * BS, record(next));
        k = next;
        await new Promise((r) => setTimeout(r, 2));
      }
    })().catch(() => undefined);
    const bulk = (async () => {
      for (let i = 0; !stopped; i++) {
        await db.write((8 + (i % 48)) * MiB, randomBytes(MiB));
        await new Promise((r) => setTimeout(r, 400));
      }
    })().catch(() => undefined);

    // The dashboard (headless Chromium) names each row's group, and the cap on its link.
    const dashboard = /dashboard:\s+(http:\/\/\S+)/.exec(siteA.log())?.[1];
    expect(dashboard, 'site-a printed its dashboard URL').toBeDefined();
    const browser = await openBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(dashboard!);
      const cell = page.locator('#sink-rows .row[data-volume="db"][data-sink="site-b"] [data-col="volume"]');
      await expect.poll(() => cell.textContent(), { timeout: 20_000 }).toBe('db · group app');
      // And the cap that binds each link, and why (the operator's 4 MB/s above).
      const b = page.locator('#sink-rows .row[data-volume="db"][data-sink="site-b"] [data-col="throughput"]');
      await expect.poll(() => b.textContent(), { timeout: 10_000 }).toMatch(/ \/ cap 4\.00 MB\/s$/);
      expect(await b.getAttribute('title')).toBe('link cap 4.00 MB/s: peer site-b, set by an operator');
    } finally {
      await browser.close();
    }

    // db's points take longer over the capped link: the replica's wal waits for them, and says so.
    // Only while db lags, a part of each interval, which gets shorter as commits get faster:
    // sampled every 20 ms through the admin API the CLI calls (a CLI process per sample, slow
    // on a loaded machine, missed it in CI twice), and given a minute.
    const bConfig = await loadConfig(b);
    const walWait = async () => ((await callAdmin(bConfig, 'GET', '/v1/status').catch(() => null)) as NodeStatus | null)?.volumes.find((v) => v.name === 'wal')?.groupWait ?? null;
    const held = await waitFor('wal held for db on site-b', walWait, 60_000, 20);
    expect(held.waitingFor).toEqual(['db']);
    expect(held.group).toBe('app');

    // The replica site dies twice while it replicates, at some moment of a commit or not.
    const committedOnB = async () => (await status(b))?.volumes.find((v) => v.name === 'db')?.committed?.scheduledAt ?? null;
    for (const wait of [2_700, 3_300]) {
      await new Promise((r) => setTimeout(r, wait));
      await killHard(siteB.process);
      siteB = startServe(b);
      const before = await waitServing(siteB, b);
      const since = before.volumes.find((v) => v.name === 'db')?.committed?.scheduledAt ?? 0;
      await waitFor('site-b committing again', async () => ((await committedOnB()) ?? 0) > since || null, 30_000);
    }
    await new Promise((r) => setTimeout(r, 1_500));

    // The source closed both volumes of the group at the same times.
    const sa = await status(a);
    const times = (name: string) => sa!.volumes.find((v) => v.name === name)!.history.map((h) => h.scheduledAt).filter((t) => t > 0);
    expect(times('wal').length).toBeGreaterThan(5);
    expect(times('db').slice(-5)).toEqual(times('wal').slice(-5));

    // The disaster: the source site goes, then the replica site crashes too and comes back.
    await killHard(siteA.process);
    stopped = true;
    await Promise.all([dependent, bulk]);
    await killHard(siteB.process);
    siteB = startServe(b);
    await waitServing(siteB, b);
    const r = await runCli(['promote', 'db', '--force', '--json', '-c', b]);
    expect(r.code, `${r.stdout}\n${r.stderr}\n${siteB.log().slice(-3000)}`).toBe(0);
    const promoted = JSON.parse(r.stdout) as { volumes: { name: string; point: number | null }[] };
    expect(promoted.volumes.map((v) => v.name).sort()).toEqual(['db', 'wal']);

    const sb = (await status(b))!;
    const wv = sb.volumes.find((v) => v.name === 'wal')!;
    const dv = sb.volumes.find((v) => v.name === 'db')!;
    expect([wv.role, dv.role]).toEqual(['primary', 'primary']);
    const walB = await connectNbd({ host: '127.0.0.1', port: ports.bNbd, exportName: 'wal' });
    const dbB = await connectNbd({ host: '127.0.0.1', port: ports.bNbd, exportName: 'db' });
    const W = await newest(walB);
    const D = await newest(dbB);
    await walB.close();
    await dbB.close();
    expect(W, 'records reached the replica').toBeGreaterThan(10);
    expect(D, `wal's newest record ${W}, db's ${D}: one point of the group, not two`).toBeGreaterThanOrEqual(W - 1);
    expect(D).toBeLessThanOrEqual(W);
    expect(k, 'the source had written more than the replica holds, or as much').toBeGreaterThanOrEqual(W);

    // Failback: the old site returns, fenced; one demote makes both its volumes replicas,
    // and site-b brings both back to its points.
    const siteA2 = startServe(a);
    await waitServing(siteA2, a);
    // Both volumes, each with its own epoch (a volume added to a group later counts its own).
    expect(await ok(['demote', 'wal', '-c', a])).toMatch(/wal \(epoch 1, at its point (\d+)\), db \(epoch 1, at its point \d+\) are replicas; the primary will resynchronise them by checksum/);
    await ok(['snapshot', 'db', '--wait', '-c', b]);
    for (const name of ['db', 'wal']) {
      const v = JSON.parse(await ok(['verify', name, '--json', '-c', b, '--replica', `nbd://127.0.0.1:${ports.aNbd}/${name}`])) as { equal: boolean };
      expect(v.equal, `${name} on site-a equals site-b after failback`).toBe(true);
    }
    const sa2 = (await status(a))!;
    expect(sa2.volumes.map((v) => v.role)).toEqual(['replica', 'replica']);
    expect(sa2.volumes[0].committed?.scheduledAt).toBe(sa2.volumes[1].committed?.scheduledAt);
    // Both volumes' images at the one point they hold, through the CLI (export --group).
    const images = join(dir, 'images');
    await mkdir(images);
    const exported = JSON.parse(await ok(['export', 'db', '--group', '-o', images, '--json', '-c', a])) as { group: string; scheduledAt: number; volumes: { volume: string; scheduledAt: number; path: string }[] };
    expect(exported.group).toBe('app');
    expect(exported.volumes.map((v) => [v.volume, v.scheduledAt, v.path])).toEqual([['wal', exported.scheduledAt, join(images, 'wal.raw')], ['db', exported.scheduledAt, join(images, 'db.raw')]]);
    expect((await readdir(images)).sort()).toEqual(['db.raw', 'wal.raw']);
    await killHard(siteA2.process);
  }, 240_000);
});
