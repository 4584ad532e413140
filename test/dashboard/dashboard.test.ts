/**
 * The dashboard in a real browser over real replication: two source volumes written to
 * continuously and closed every second, linked over loopback WebSockets to a replica
 * server; the page must show them healthy, show the numbers moving, show a cut link as
 * broken within 2 s, and recover when the replica comes back.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDashboard, type Dashboard } from '@headstart/dashboard';
import { atSnapshotPolicy, continuousPolicy, startReplicaServer, startSource, type ReplicaServer, type SourceLink } from '@headstart/replication';
import { createVolume, type Volume } from '@headstart/volume';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBrowser, screenshot, type TestBrowser } from './browser';
import { ReplicationFeed } from './replication-feed';

const SECRET = 'dashboard-test-pairing-secret';
const TOKEN = 'dashboard-test-token-0123456789';
const SIZE = 8 * 1024 * 1024;
const BS = 4096;
const CLOSE_EVERY_MS = 1000;
const RPO_TARGET_MS = 5000;

const VOLS = [
  { id: 'vol-a', name: 'orders-db', sink: 'dr-site', policy: 'continuous' },
  { id: 'vol-b', name: 'build-cache', sink: 'dr-site', policy: 'at-snapshot' },
] as const;

let dir: string;
let server: ReplicaServer | null = null;
let port: number;
const sources: Volume[] = [];
const replicas: Volume[] = [];
/** A replica outside replication, shown as a node would show one stuck between two points. */
let stuck: Volume | null = null;
const links: SourceLink[] = [];
let feed: ReplicationFeed;
let dashboard: Dashboard;
let browser: TestBrowser;
let page: Page;
let workload: { stop(): Promise<void> };

function seeded(seed: number): Buffer {
  const b = Buffer.alloc(BS);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < BS; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}

function replicaServer(p = 0): Promise<ReplicaServer> {
  return startReplicaServer({ secret: SECRET, port: p, volumes: replicas.map((volume, i) => ({ volume, stagingDir: join(dir, `${VOLS[i].id}-staging`) })) });
}

/** Writes a few blocks every 150 ms and closes each volume's point on a 1 s schedule. */
function startWorkload(): { stop(): Promise<void> } {
  let seed = 1;
  let busy: Promise<unknown> = Promise.resolve();
  let stopped = false;
  const writer = setInterval(() => {
    busy = busy.then(async () => {
      if (stopped) return;
      for (const v of sources) for (let i = 0; i < 4; i++) await v.write(((seed * 7919) % (SIZE / BS)) * BS, seeded(seed++));
    });
  }, 150);
  let next = Date.now() + CLOSE_EVERY_MS;
  for (const v of VOLS) feed.setNextClose(v.id, next);
  const closer = setInterval(() => {
    const at = next;
    next += CLOSE_EVERY_MS;
    busy = busy.then(async () => {
      if (stopped) return;
      for (const v of VOLS) {
        await feed.close(v.id, at);
        feed.setNextClose(v.id, next);
      }
    });
  }, CLOSE_EVERY_MS);
  return {
    async stop() {
      stopped = true;
      clearInterval(writer);
      clearInterval(closer);
      await busy;
    },
  };
}

const row = (volume: string) => `#sink-rows .row[data-volume="${volume}"][data-sink="dr-site"]`;
const cell = (volume: string, col: string) => page.locator(`${row(volume)} [data-col="${col}"]`).textContent();
const committedN = async (volume: string) => Number(/#(\d+)/.exec((await cell(volume, 'committed')) ?? '')?.[1] ?? -1);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hs-dash-'));
  for (const v of VOLS) {
    sources.push(await createVolume(join(dir, `${v.id}-src`), { size: SIZE, blockSize: BS, id: v.id, name: v.name }));
    replicas.push(await createVolume(join(dir, `${v.id}-rep`), { size: SIZE, blockSize: BS, id: v.id, name: v.name, role: 'replica' }));
  }
  server = await replicaServer();
  port = server.port;
  feed = new ReplicationFeed('site-a', () => server);
  for (const [i, v] of VOLS.entries()) {
    feed.addVolume(sources[i]);
    const link = await startSource({
      volume: sources[i], sink: v.sink, url: server.url, secret: SECRET,
      policy: v.policy === 'continuous' ? continuousPolicy() : atSnapshotPolicy(),
      onEvent: feed.sourceEvents(v.id),
    });
    links.push(link);
    feed.addSink(v.id, { name: v.sink, link, policy: v.policy, rpoTargetMs: RPO_TARGET_MS });
  }
  feed.setLevelOffset('vol-b', 250); // as a node reports a leveled schedule (schedule.level)
  // A replica volume of this node whose commit stopped half-way 15 s ago (as a node reports it).
  stuck = await createVolume(join(dir, 'stuck-rep'), { size: SIZE, blockSize: BS, id: 'vol-stuck', name: 'stuck-replica', role: 'replica' });
  feed.addVolume(stuck);
  feed.setBetweenPoints('vol-stuck', { n: 9, forMs: 15_000, stalled: true });
  workload = startWorkload();
  dashboard = await startDashboard({ token: TOKEN, source: feed });
  browser = await openBrowser();
  page = await browser.newPage();
});

afterAll(async () => {
  await workload?.stop();
  await browser?.close();
  await dashboard?.stop();
  feed?.stop();
  for (const l of links) await l.stop();
  await server?.close();
  for (const v of [...sources, ...replicas]) await v.shutdown();
  await stuck?.shutdown();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('dashboard in chromium over real replication', () => {
  it('enforces the token: 401 without it, the page with it', async () => {
    expect((await fetch(dashboard.url)).status).toBe(401);
    expect((await fetch(`${dashboard.url}app.js?token=wrong`)).status).toBe(401);
    expect((await fetch(dashboard.url, { headers: { Authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    const denied = await page.goto(dashboard.url);
    expect(denied?.status()).toBe(401);
    const ok = await page.goto(`${dashboard.url}?token=${TOKEN}`);
    expect(ok?.status()).toBe(200);
    await page.waitForFunction(() => (window as unknown as { headstartDashboard?: { ready: boolean } }).headstartDashboard?.ready === true, null, { timeout: 10_000 });
    expect(page.url()).not.toContain(TOKEN); // the page takes the token out of the address bar
  });

  it('shows every volume x sink, healthy, with numbers that move as replication proceeds', async () => {
    for (const v of VOLS) await page.locator(`${row(v.name)}[data-health="healthy"]`).waitFor({ timeout: 20_000 });
    const before = await Promise.all(VOLS.map((v) => committedN(v.name)));
    await page.waitForFunction(
      ([names, base]) => names.every((n, i) => {
        const t = document.querySelector(`#sink-rows .row[data-volume="${n}"] [data-col="committed"]`)?.textContent ?? '';
        return Number(/#(\d+)/.exec(t)?.[1] ?? -1) >= base[i] + 2;
      }),
      [VOLS.map((v) => v.name), before] as const,
      { timeout: 15_000 },
    );
    expect(await committedN('orders-db')).toBeGreaterThanOrEqual(before[0] + 2);
    // Units everywhere; the lag of a point committed within the second is small.
    expect(await cell('orders-db', 'throughput')).toMatch(/(MB|kB)\/s$/);
    expect(await cell('orders-db', 'dirty')).toMatch(/\d (B|KiB|MiB)$/);
    expect(await cell('orders-db', 'rpo')).toMatch(/(ms|s) \/ 5 s$/);
    expect(await cell('orders-db', 'link')).toBe('connected');
    expect(await cell('orders-db', 'policy')).toBe('continuous');
    expect(await cell('build-cache', 'policy')).toBe('at-snapshot');
    // A leveled volume's "next close" says why it is off the clock's marks; the other's says nothing.
    expect(await page.locator(`${row('build-cache')} [data-col="ts"]`).getAttribute('title')).toBe('leveled: closes 250 ms after the clock\'s marks (schedule.level)');
    expect(await page.locator(`${row('orders-db')} [data-col="ts"]`).getAttribute('title')).toBe('');
    // A replica stuck between two points is broken, and says why.
    const stuckRow = page.locator('#sink-rows .row[data-volume="stuck-replica"]');
    await stuckRow.and(page.locator('[data-health="broken"]')).waitFor({ timeout: 5000 });
    expect(await stuckRow.textContent()).toContain('between points: the commit of #9 (begun ');
    expect(await stuckRow.textContent()).toContain('stopped half-way');
    // Throughput B was measured at some point, and the events and the charts filled in.
    await page.waitForFunction(() => [...document.querySelectorAll('#sinks [data-col="throughput"]')].some((td) => /^[1-9]|^0\.[0-9]*[1-9]/.test(td.textContent ?? '')), null, { timeout: 10_000 });
    await expect.poll(() => page.locator('#event-list li[data-type="snapshot-acked"]').count(), { timeout: 5000 }).toBeGreaterThan(2);
    await expect.poll(() => page.locator('#timeline svg rect').count(), { timeout: 5000 }).toBeGreaterThan(2);
    expect(await page.locator('#chart-lag canvas').count()).toBeGreaterThan(0);
    expect(await page.locator('#summary [data-health="healthy"]').textContent()).toBe('2 healthy');
    await screenshot(page, 'healthy');
  });

  it('shows a cut link as broken within 2 s, catching up while it is away, and recovers when the replica returns', async () => {
    const t0 = Date.now();
    const closing = server!.close();
    server = null;
    await page.waitForFunction(
      (names) => names.every((n) => document.querySelector(`#sink-rows .row[data-volume="${n}"]`)?.getAttribute('data-health') === 'broken'),
      VOLS.map((v) => v.name),
      { timeout: 2000, polling: 50 },
    );
    const shownAfter = Date.now() - t0;
    await closing;
    expect(shownAfter).toBeLessThanOrEqual(2000);
    // The link reports the replica's goodbye as it sees it (disconnected, or error with the peer's code).
    expect(await cell('orders-db', 'link')).toMatch(/^(disconnected|connecting|error)/);
    await expect.poll(() => page.locator('#event-list li[data-type="link-disconnected"]').count(), { timeout: 3000 }).toBeGreaterThan(0);
    await screenshot(page, 'broken');

    // It stays down while points close: orders-db's link, away, is set to catch up (as the
    // node does at each close), and its cell says so, the points it skips in its title.
    await expect.poll(async () => {
      await links[0].followLatest();
      return cell('orders-db', 'link');
    }, { timeout: 10_000, interval: 300 }).toMatch(/^(disconnected|connecting|error) · catching up$/);
    expect(await page.locator(`${row('orders-db')} [data-col="link"]`).getAttribute('title')).toMatch(/^catching up: its next point is #\d+, straight from #\d+ \(the points between are skipped\)/);
    server = await replicaServer(port);
    for (const v of VOLS) await page.locator(`${row(v.name)}[data-health="healthy"]`).waitFor({ timeout: 30_000 });
    // 'connected · catching up' until the catch-up's point is acknowledged (a CI run saw it still shipping).
    await expect.poll(() => cell('orders-db', 'link'), { timeout: 15_000 }).toBe('connected');
    await expect.poll(() => page.locator('#event-list li[data-type="link-connected"]').count(), { timeout: 3000 }).toBeGreaterThan(0);
    await screenshot(page, 'recovered');
  });
});
